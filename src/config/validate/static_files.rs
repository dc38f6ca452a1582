//! `static = { root, spa, index, immutable, precompressed, hidden,
//! follow_symlinks }` on a route. Only the shape is checked here (a config
//! must parse where its files are not, e.g. in CI); whether `root` and the
//! index exist is `ferry check`'s question, asked unless `--no-files`.

use std::path::Path;
use std::sync::Arc;

use regex::Regex;
use toml::Spanned;

use crate::config::error::Problems;
use crate::config::file::FileStatic;
use crate::config::{Encoding, FollowSymlinks, RouteAction, StaticConfig};

/// The route's `static` table as a [`RouteAction::Static`]; relative roots
/// resolve against the config file's directory.
pub(super) fn action(key: &str, f: &FileStatic, base: &Path, p: &mut Problems<'_>) -> RouteAction {
    let key = format!("{key}.static");
    let root = f.root.get_ref();
    if root.trim().is_empty() {
        p.push(
            Some(f.root.span()),
            format!("{key}.root"),
            "`root` is empty",
            Some("name the directory to serve, e.g. root = \"/srv/app/dist\"".into()),
        );
    }
    let index = f
        .index
        .as_ref()
        .map_or_else(|| "index.html".to_owned(), |i| i.get_ref().clone());
    if let Some(i) = &f.index {
        if index.is_empty() || index.contains(['/', '\\', '\0']) || index == "." || index == ".." {
            p.push(
                Some(i.span()),
                format!("{key}.index"),
                format!("`{index}` is not a file name"),
                Some("write a bare file name such as \"index.html\"".into()),
            );
        }
    }
    let immutable = f
        .immutable
        .as_ref()
        .and_then(|re| match Regex::new(re.get_ref()) {
            Ok(re) => Some(re),
            Err(e) => {
                p.push(
                    Some(re.span()),
                    format!("{key}.immutable"),
                    format!(
                        "invalid regex: {}",
                        e.to_string().replace('\n', "\n        ")
                    ),
                    Some("it is matched against the request path, e.g. \"^/assets/\"".into()),
                );
                None
            }
        });
    StaticConfig {
        root: base.join(root),
        spa: flag(&f.spa, false),
        index,
        immutable,
        precompressed: precompressed(&key, f, p),
        hidden: flag(&f.hidden, false),
        follow_symlinks: follow_symlinks(&key, f, p),
    }
    .into()
}

impl From<StaticConfig> for RouteAction {
    fn from(config: StaticConfig) -> RouteAction {
        RouteAction::Static(Arc::new(config))
    }
}

fn flag(v: &Option<Spanned<bool>>, default: bool) -> bool {
    v.as_ref().map_or(default, |b| *b.get_ref())
}

/// `precompressed = ["br", "zstd", "gzip"]` (the default); `[]` turns it off.
fn precompressed(key: &str, f: &FileStatic, p: &mut Problems<'_>) -> Vec<Encoding> {
    let Some(list) = &f.precompressed else {
        return vec![Encoding::Brotli, Encoding::Zstd, Encoding::Gzip];
    };
    let mut out = Vec::new();
    for (i, e) in list.get_ref().iter().enumerate() {
        let encoding = match e.get_ref().as_str() {
            "br" => Encoding::Brotli,
            "zstd" => Encoding::Zstd,
            "gzip" => Encoding::Gzip,
            other => {
                p.push(
                    Some(e.span()),
                    format!("{key}.precompressed[{i}]"),
                    format!("unknown encoding `{other}`"),
                    Some("use \"br\" (file.br), \"zstd\" (file.zst) or \"gzip\" (file.gz)".into()),
                );
                continue;
            }
        };
        if out.contains(&encoding) {
            p.push(
                Some(e.span()),
                format!("{key}.precompressed[{i}]"),
                format!("`{}` is listed twice", encoding.token()),
                None,
            );
        }
        out.push(encoding);
    }
    out.dedup();
    out
}

fn follow_symlinks(key: &str, f: &FileStatic, p: &mut Problems<'_>) -> FollowSymlinks {
    let Some(v) = &f.follow_symlinks else {
        return FollowSymlinks::WithinRoot;
    };
    match v.get_ref().as_str() {
        "within_root" => FollowSymlinks::WithinRoot,
        "never" => FollowSymlinks::Never,
        "always" => FollowSymlinks::Always,
        other => {
            p.push(
                Some(v.span()),
                format!("{key}.follow_symlinks"),
                format!("`{other}` is not a symlink policy"),
                Some("use \"within_root\" (the default), \"never\" or \"always\"".into()),
            );
            FollowSymlinks::WithinRoot
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_semantic, parse_str};
    use crate::config::{Encoding, FollowSymlinks, RouteAction};

    #[test]
    fn defaults_and_relative_root() {
        let c = parse_str(
            "[[listen]]\naddr = \"127.0.0.1:8080\"\n[[route]]\nstatic = { root = \"dist\" }\n",
        )
        .unwrap();
        let RouteAction::Static(s) = &c.routes[0].action else {
            panic!("not a static route: {:?}", c.routes[0].action)
        };
        assert_eq!(s.root, std::path::Path::new("/etc/ferry/dist"));
        assert_eq!(s.index, "index.html");
        assert!(!s.spa && !s.hidden && s.immutable.is_none());
        assert_eq!(
            s.precompressed,
            [Encoding::Brotli, Encoding::Zstd, Encoding::Gzip]
        );
        assert_eq!(s.follow_symlinks, FollowSymlinks::WithinRoot);
    }

    #[test]
    fn semantic_checks() {
        assert_semantic(&[
            (
                "upstream = \"backend\"",
                "static = { root = \"dist\", precompressed = [\"deflate\"] }",
                "unknown encoding `deflate`",
            ),
            (
                "upstream = \"backend\"",
                "static = { root = \"dist\", follow_symlinks = \"yes\" }",
                "not a symlink policy",
            ),
            (
                "upstream = \"backend\"",
                "static = { root = \"dist\", immutable = \"(\" }",
                "invalid regex",
            ),
            (
                "upstream = \"backend\"",
                "static = { root = \"dist\", index = \"../x.html\" }",
                "is not a file name",
            ),
            (
                "upstream = \"backend\"",
                "upstream = \"backend\"\nstatic = { root = \"dist\" }",
                "exactly one of `upstream`, `static` and `redirect`",
            ),
            (
                "upstream = \"backend\"",
                "static = { root = \"dist\" }\nmax_body_size = \"1MB\"",
                "no effect on a static route",
            ),
            (
                "upstream = \"backend\"",
                "redirect = { to = \"https://x\" }\ncompress = true",
                "no effect on a redirect route",
            ),
        ]);
    }
}
