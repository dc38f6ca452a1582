//! The module map in `src/lib.rs` stays true: every `crate::...` path in a
//! top-level module's source names a module in a lower layer. (A static
//! check of the source text; it keeps the graph one-way as code moves.)

use std::collections::BTreeSet;
use std::path::Path;

/// The layers of `src/lib.rs`'s module map, top first.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["app"],
    &["admin", "signal"],
    &["reload", "server"],
    &["proxy"],
    &["upstream", "tls", "access_log", "static_files"],
    &["config"],
    &["router", "metrics", "drain", "telemetry", "encoding"],
];

fn layer(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| {
            panic!("module `{module}` is not in the map: add it to src/lib.rs and LAYERS")
        })
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules that `code` names through `crate::`.
fn uses(code: &str) -> BTreeSet<String> {
    let single = regex::Regex::new(r"\bcrate::([a-z_]+)").unwrap();
    let group = regex::Regex::new(r"\bcrate::\{([^}]*)\}").unwrap();
    let mut out: BTreeSet<String> = single
        .captures_iter(code)
        .map(|c| c[1].to_owned())
        .collect();
    for c in group.captures_iter(code) {
        for item in c[1].split(',') {
            if let Some(first) = item.trim().split("::").next().filter(|s| !s.is_empty()) {
                out.insert(first.to_owned());
            }
        }
    }
    out
}

#[test]
fn every_module_uses_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = top.trim_end_matches(".rs");
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        // Code only: not comments (doc links may point anywhere).
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for used in uses(&code) {
            if used != module && layer(&used) <= layer(module) {
                wrong.push(format!("{} uses crate::{used}", rel.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "upward or sideways edges in the module graph (see src/lib.rs):\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn the_map_in_lib_rs_lists_every_module() {
    let lib = include_str!("../src/lib.rs");
    let declared: BTreeSet<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';'))
        .collect();
    let mapped: BTreeSet<&str> = LAYERS.iter().flat_map(|l| l.iter().copied()).collect();
    assert_eq!(declared, mapped, "src/lib.rs's modules and LAYERS differ");
    for (i, layer) in LAYERS.iter().enumerate() {
        let line = format!("//! {}  {}", i + 1, layer.join("  "));
        assert!(lib.contains(&line), "lib.rs's map lacks `{line}`");
    }
}
