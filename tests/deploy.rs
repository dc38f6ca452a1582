//! The deployment files in deploy/ are valid: the compose file parses and
//! wires ferry as the edge, the Dockerfile is a multi-stage build of ferry,
//! and the config it ships passes `ferry check`. (No docker engine runs here.)

use std::path::Path;
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn compose_file_parses_and_wires_ferry_as_the_edge() {
    let text = std::fs::read_to_string(root().join("deploy/docker-compose.example.yml")).unwrap();
    let docs = YamlLoader::load_from_str(&text).expect("valid YAML");
    let services = &docs[0]["services"];
    let ferry = &services["ferry"];
    assert!(!ferry.is_badvalue(), "a `ferry` service");
    let ports: Vec<String> = ferry["ports"]
        .as_vec()
        .expect("ferry publishes ports")
        .iter()
        .map(|p| {
            p.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{p:?}"))
        })
        .collect();
    assert!(ports.iter().any(|p| p.ends_with(":443")), "{ports:?}");
    assert!(ports.iter().any(|p| p.ends_with(":80")), "{ports:?}");
    assert!(!ferry["healthcheck"].is_badvalue(), "a healthcheck");
    assert!(
        !ferry["stop_grace_period"].is_badvalue(),
        "a stop_grace_period for the drain"
    );
    let volumes = ferry["volumes"].as_vec().expect("volumes");
    assert!(
        volumes
            .iter()
            .any(|v| v.as_str().is_some_and(|v| v.contains("/etc/ferry"))),
        "{volumes:?}"
    );
    let others = services
        .as_hash()
        .unwrap()
        .keys()
        .filter_map(Yaml::as_str)
        .filter(|s| *s != "ferry")
        .count();
    assert!(others >= 2, "backend and frontend services");
}

#[test]
fn dockerfile_is_a_multi_stage_build_of_ferry() {
    let text = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    let from = text
        .lines()
        .filter(|l| l.trim_start().to_ascii_uppercase().starts_with("FROM "))
        .count();
    assert!(from >= 2, "multi-stage: {from} FROM lines");
    assert!(
        text.contains("COPY --from="),
        "copies the binary from the build stage"
    );
    assert!(
        text.contains("cargo build --release"),
        "builds ferry in release mode"
    );
    for directive in ["EXPOSE", "ENTRYPOINT", "STOPSIGNAL"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(directive)),
            "{directive}"
        );
    }
    // Every line is a known instruction, a continuation, or a comment.
    let known = [
        "FROM",
        "RUN",
        "COPY",
        "WORKDIR",
        "ENV",
        "ARG",
        "EXPOSE",
        "ENTRYPOINT",
        "CMD",
        "USER",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "LABEL",
        "VOLUME",
    ];
    let mut continued = false;
    for line in text.lines() {
        let t = line.trim();
        if !continued && !t.is_empty() && !t.starts_with('#') {
            let word = t.split_whitespace().next().unwrap().to_ascii_uppercase();
            assert!(
                known.contains(&word.as_str()),
                "unknown Dockerfile instruction: {line}"
            );
        }
        continued = t.ends_with('\\');
    }
}

#[test]
fn the_shipped_config_passes_check() {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["check", "--no-files", "-c", "deploy/proxy.toml"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
