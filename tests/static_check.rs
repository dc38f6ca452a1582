//! `ferry check` on `static` routes, as an operator runs it: a missing or
//! wrong `root`, an SPA without its index, `--no-files`, and the warning for
//! a static route placed above a route whose requests it would take.

use std::path::Path;
use std::process::{Command, Output};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// `ferry check ARGS -c proxy.toml` in `dir`; (exit code, stdout, stderr).
fn check(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out: Output = Command::new(FERRY)
        .arg("check")
        .args(args)
        .args(["-c", "proxy.toml"])
        .current_dir(dir)
        .env_remove("FERRY_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A plain listener, a backend on an IP (nothing to resolve) and `routes`.
fn write_config(dir: &Path, routes: &str) {
    std::fs::write(
        dir.join("proxy.toml"),
        format!(
            "[[listen]]\naddr = \"127.0.0.1:0\"\n\n[upstream.backend]\nservers = [\"127.0.0.1:9\"]\n\n{routes}"
        ),
    )
    .unwrap();
}

/// `dist/index.html` and `dist/assets/app.js` under `dir`.
fn build_dist(dir: &Path) {
    std::fs::create_dir_all(dir.join("dist/assets")).unwrap();
    std::fs::write(dir.join("dist/index.html"), "<!doctype html>").unwrap();
    std::fs::write(dir.join("dist/assets/app.js"), "console.log(1)").unwrap();
}

const API_THEN_APP: &str = "[[route]]\nname = \"api\"\npath_prefix = [\"/api\", \"/auth\"]\nupstream = \"backend\"\n\n[[route]]\nname = \"app\"\npath_prefix = \"/\"\nstatic = { root = \"dist\", spa = true }\n";

#[test]
fn a_missing_root_is_an_error_with_line_key_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), API_THEN_APP);
    let (code, _, stderr) = check(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    // Line 15 is the app route's `static`; column 19 is the value of `root`.
    // A relative root is resolved against the config file's directory (here `-c proxy.toml`).
    assert!(
        stderr.contains("error: proxy.toml:15:19: route[1].static.root: dist does not exist"),
        "{stderr}"
    );
    assert!(stderr.contains("help: build the frontend"), "{stderr}");
    assert!(stderr.contains("--no-files"), "{stderr}");
    assert!(stderr.contains("proxy.toml: check failed"), "{stderr}");

    // Built, the same file passes and says what the route does.
    build_dist(dir.path());
    let (code, stdout, stderr) = check(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(
            "2. app          any host; prefix / -> files dist (spa: index.html for missing extension-less paths)"
        ),
        "{stdout}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn a_root_that_is_a_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    build_dist(dir.path());
    write_config(
        dir.path(),
        "[[route]]\nname = \"app\"\nstatic = { root = \"dist/index.html\" }\n",
    );
    let (code, _, stderr) = check(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("route[0].static.root: ")
            && stderr.contains("index.html is a file, not a directory"),
        "{stderr}"
    );
    assert!(
        stderr.contains("help: `root` names the directory"),
        "{stderr}"
    );
}

#[test]
fn an_spa_without_its_index_is_an_error_and_a_plain_root_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    build_dist(dir.path());
    std::fs::remove_file(dir.path().join("dist/index.html")).unwrap();
    write_config(dir.path(), API_THEN_APP);
    let (code, _, stderr) = check(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "error: proxy.toml:15:10: route[1].static.index: dist/index.html does not exist"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("with spa = true"), "{stderr}");

    // A named index that is not there.
    write_config(
        dir.path(),
        &API_THEN_APP.replace("spa = true", "spa = true, index = \"app.html\""),
    );
    let (code, _, stderr) = check(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("route[1].static.index: ") && stderr.contains("app.html does not exist"),
        "{stderr}"
    );

    // Without spa, serving `/` without an index is only a warning...
    write_config(dir.path(), &API_THEN_APP.replace(", spa = true", ""));
    let (code, _, stderr) = check(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: proxy.toml:15:10: route[1].static.index: ")
            && stderr.contains("does not exist, so `/` gets 404"),
        "{stderr}"
    );
    // ...and nothing for a route that does not serve `/`.
    write_config(
        dir.path(),
        "[[route]]\nname = \"assets\"\npath_prefix = \"/assets/\"\nstatic = { root = \"dist\" }\n",
    );
    let (code, _, stderr) = check(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn no_files_skips_the_directory_checks() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), API_THEN_APP);
    let (code, stdout, stderr) = check(dir.path(), &["--no-files"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("dist"), "{stderr}");
    assert!(stdout.contains("-> files "), "{stdout}");
    assert!(
        stdout.ends_with("proxy.toml: configuration OK\n"),
        "{stdout}"
    );
}

#[test]
fn a_static_route_above_the_api_is_reported_and_below_it_is_not() {
    let dir = tempfile::tempdir().unwrap();
    build_dist(dir.path());
    let app_then_api = "[[route]]\nname = \"app\"\npath_prefix = \"/\"\nstatic = { root = \"dist\", spa = true }\n\n[[route]]\nname = \"api\"\npath_prefix = [\"/api\", \"/auth\"]\nupstream = \"backend\"\n\n[[route]]\nname = \"old\"\npath_prefix = \"/old\"\nredirect = { to = \"https://example.com{uri}\" }\n";
    write_config(dir.path(), app_then_api);
    let (code, _, stderr) = check(dir.path(), &["--no-files"]);
    assert_eq!(code, Some(0), "a warning, not an error: {stderr}");
    for later in ["api", "old"] {
        assert!(
            stderr.contains(&format!(
                "warning: route `app` (static, path_prefix /) comes before route `{later}` and takes all its requests"
            )),
            "{later}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("help: move `{later}` above `app`")),
            "{stderr}"
        );
    }
    // One warning per shadowed route, not the generic one as well.
    assert!(!stderr.contains("can never match"), "{stderr}");

    // The right order: no warning.
    write_config(dir.path(), API_THEN_APP);
    let (code, _, stderr) = check(dir.path(), &["--no-files"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn host_overlap_decides_whether_a_static_route_shadows() {
    let dir = tempfile::tempdir().unwrap();
    let routes = |app_hosts: &str, api_hosts: &str| {
        format!(
            "[[route]]\nname = \"app\"\n{app_hosts}path_prefix = \"/\"\nstatic = {{ root = \"dist\" }}\n\n[[route]]\nname = \"api\"\n{api_hosts}path_prefix = \"/api\"\nupstream = \"backend\"\n"
        )
    };
    // Different exact hosts: the app never sees the API's requests.
    write_config(
        dir.path(),
        &routes("hosts = \"app.test\"\n", "hosts = \"api.test\"\n"),
    );
    let (code, _, stderr) = check(dir.path(), &["--no-files"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");

    // The API on any host, the app on one: the app takes the API's requests for that host.
    write_config(dir.path(), &routes("hosts = \"app.test\"\n", ""));
    let (_, _, stderr) = check(dir.path(), &["--no-files"]);
    assert!(
        stderr.contains(
            "warning: route `app` (static, path_prefix /) comes before route `api` and takes its requests for app.test"
        ),
        "{stderr}"
    );

    // A wildcard app over one of the API's names.
    write_config(
        dir.path(),
        &routes(
            "hosts = \"*.app.test\"\n",
            "hosts = [\"api.test\", \"eu.app.test\"]\n",
        ),
    );
    let (_, _, stderr) = check(dir.path(), &["--no-files"]);
    assert!(
        stderr.contains("and takes its requests for eu.app.test "),
        "{stderr}"
    );

    // The same hosts: all of them.
    write_config(
        dir.path(),
        &routes("hosts = \"app.test\"\n", "hosts = \"app.test\"\n"),
    );
    let (_, _, stderr) = check(dir.path(), &["--no-files"]);
    assert!(stderr.contains("takes all its requests"), "{stderr}");
}

#[test]
fn a_route_with_both_upstream_and_static_is_refused_naming_the_route() {
    let dir = tempfile::tempdir().unwrap();
    build_dist(dir.path());
    write_config(
        dir.path(),
        "[[route]]\nname = \"app\"\npath_prefix = \"/\"\nupstream = \"backend\"\nstatic = { root = \"dist\" }\n",
    );
    let (code, _, stderr) = check(dir.path(), &["--no-files"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "proxy.toml:7:1: route[0]: a route has exactly one of `upstream`, `static` and `redirect`"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("help: split it into two [[route]] blocks"),
        "{stderr}"
    );
}
