//! The deployment files in deploy/ are valid: the compose file parses and
//! wires ferry as the edge and the frontend's file server, the Dockerfiles
//! are multi-stage builds of ferry (one with the frontend built in), and the
//! config they ship passes `ferry check`. (No docker engine runs here.)

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
    // The built SPA is mounted read-only where deploy/proxy.toml serves it,
    // so no frontend web server runs next to ferry.
    let root = static_root();
    assert!(
        volumes.iter().any(|v| v
            .as_str()
            .is_some_and(|v| v.ends_with(&format!(":{root}:ro")))),
        "dist/ mounted read-only at {root}: {volumes:?}"
    );
    let others: Vec<&str> = services
        .as_hash()
        .unwrap()
        .keys()
        .filter_map(Yaml::as_str)
        .filter(|s| *s != "ferry")
        .collect();
    assert!(others.contains(&"backend"), "{others:?}");
    assert!(
        !others.contains(&"frontend"),
        "ferry serves the frontend itself: {others:?}"
    );
    for (name, service) in services.as_hash().unwrap() {
        let image = service["image"].as_str().unwrap_or("");
        assert!(!image.contains("nginx"), "{name:?} runs {image}");
    }
}

/// The `root` of deploy/proxy.toml's static route.
fn static_root() -> String {
    let text = std::fs::read_to_string(root().join("deploy/proxy.toml")).unwrap();
    let config = ferry::config::Config::parse(&text, "deploy/proxy.toml", Path::new("/etc/ferry"))
        .expect("deploy/proxy.toml is valid");
    let roots: Vec<String> = config
        .routes
        .iter()
        .filter_map(|r| match &r.action {
            ferry::config::RouteAction::Static(files) => Some(files.root.display().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(roots.len(), 1, "one static route: {roots:?}");
    roots[0].clone()
}

#[test]
fn dockerfile_is_a_multi_stage_build_of_ferry() {
    let text = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    assert_builds_ferry(&text);
}

/// The variant with the SPA built in: a node stage runs `npm ci` and
/// `npm run build`, its dist/ lands where deploy/proxy.toml serves it, and
/// every instruction of deploy/Dockerfile is there too, in order (so the
/// two images cannot drift apart).
#[test]
fn dockerfile_with_frontend_builds_the_spa_into_the_ferry_image() {
    let plain = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    let text = std::fs::read_to_string(root().join("deploy/Dockerfile.with-frontend")).unwrap();
    assert_builds_ferry(&text);
    assert!(text.contains("FROM node:"), "a node stage");
    assert!(text.contains("npm ci"), "installs from the lock file");
    assert!(text.contains("npm run build"), "builds the SPA");
    assert!(
        text.contains("COPY --from=frontend package.json package-lock.json"),
        "the frontend comes in as the named build context `frontend`"
    );
    let copy = format!("COPY --from=web /web/dist {}", static_root());
    assert!(text.contains(&copy), "{copy}");
    let ours = instructions(&text);
    let mut rest = ours.iter();
    for line in instructions(&plain) {
        assert!(
            rest.any(|l| *l == line),
            "deploy/Dockerfile's `{line}` is missing (or out of order) in Dockerfile.with-frontend"
        );
    }
}

/// The instruction lines of a Dockerfile, continuations joined, comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        current.push_str(t.trim_end_matches('\\').trim());
        current.push(' ');
        if !t.ends_with('\\') {
            out.push(current.trim().to_owned());
            current.clear();
        }
    }
    out
}

fn assert_builds_ferry(text: &str) {
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
