//! `ferry check` for `static` routes: the directory and its index file are
//! there (unless `--no-files`), and no static route stands in front of a
//! route whose requests it would take.
//!
//! A static route never passes a request on: a path that is not a file gets
//! 404 from it (or the SPA's index), not the next route. So a static
//! `path_prefix = "/"` placed above `/api` answers the API's requests too.

use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::{CheckError, CheckReport, CheckWarning};
use crate::config::file::FileConfig;
use crate::config::{Config, RouteAction, RouteConfig, StaticConfig, line_col};
use crate::router::{HostPattern, Matcher, PathMatch};

/// Where a problem is: `proxy.toml:31:10: route[3].static.root`.
#[derive(Debug)]
pub struct Location {
    file: String,
    /// 1-based line and column, when the file could be read again.
    line_col: Option<(usize, usize)>,
    key: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some((line, col)) = self.line_col {
            write!(f, ":{line}:{col}")?;
        }
        write!(f, ": {}", self.key)
    }
}

/// What is wrong with a path a static route needs.
#[derive(Debug, thiserror::Error)]
pub enum FileProblem {
    #[error("{} does not exist", .0.display())]
    Missing(PathBuf),
    #[error("{} is a file, not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{} is not a file", .0.display())]
    NotAFile(PathBuf),
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

const ROOT_MISSING_HELP: &str = "build the frontend into it (`npm run build` writes dist/) or fix the path (a relative root is resolved against the config file's directory); if it exists only where ferry runs (a container), use `ferry check --no-files`";
const ROOT_NOT_DIRECTORY_HELP: &str =
    "`root` names the directory whose files are served (the build's dist/), not a file in it";
const UNREADABLE_HELP: &str =
    "ferry must be able to read it as the user it runs as (uid 10001 in the deploy/ image)";
const SPA_INDEX_HELP: &str = "with spa = true every app path (a deep link such as /orders/42) is answered with this file: build the frontend into root, or set `index` to the file your build writes";

/// The problems with each static route's `root` and index file.
pub(super) fn files(config: &Config, report: &mut CheckReport) {
    let statics: Vec<(usize, &RouteConfig, &StaticConfig)> = config
        .routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match &r.action {
            RouteAction::Static(files) => Some((i, r, &**files)),
            _ => None,
        })
        .collect();
    if statics.is_empty() {
        return;
    }
    let spans = Spans::read(&config.source);
    for (i, route, files) in statics {
        let at = |key: &str| spans.location(&config.source, i, key);
        let problem = match std::fs::metadata(&files.root) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                Some((FileProblem::Missing(files.root.clone()), ROOT_MISSING_HELP))
            }
            Err(source) => Some((
                FileProblem::Unreadable {
                    path: files.root.clone(),
                    source,
                },
                UNREADABLE_HELP,
            )),
            Ok(m) if !m.is_dir() => Some((
                FileProblem::NotADirectory(files.root.clone()),
                ROOT_NOT_DIRECTORY_HELP,
            )),
            Ok(_) => None,
        };
        if let Some((problem, help)) = problem {
            report.errors.push(CheckError::StaticFiles {
                at: at("root"),
                problem,
                help,
            });
            continue;
        }
        let index = files.root.join(&files.index);
        let problem = match std::fs::metadata(&index) {
            Ok(m) if m.is_file() => continue,
            Ok(_) => FileProblem::NotAFile(index),
            Err(e) if e.kind() == ErrorKind::NotFound => FileProblem::Missing(index),
            Err(source) => FileProblem::Unreadable {
                path: index,
                source,
            },
        };
        if files.spa {
            report.errors.push(CheckError::StaticFiles {
                at: at("index"),
                problem,
                help: SPA_INDEX_HELP,
            });
        } else if route.matcher.path.matches("/") {
            // Only where it shows: a route for `/static/` needs no index.html.
            report.warnings.push(CheckWarning::NoIndex {
                at: at("index"),
                problem,
            });
        }
    }
}

/// The warning for an earlier static route that takes every request of
/// `later` (`covers` already said it does).
pub(super) fn takes_all(earlier: &RouteConfig, later: &RouteConfig) -> CheckWarning {
    CheckWarning::StaticTakesAll {
        earlier: earlier.name.to_string(),
        what: describe(earlier),
        later: later.name.to_string(),
    }
}

/// The first earlier static route that takes every request of `later` for
/// some of its hosts (certainly: its path condition covers `later`'s, and
/// those hosts match both). `covers` found none that takes them all.
pub(super) fn takes_some(earlier: &[RouteConfig], later: &RouteConfig) -> Option<CheckWarning> {
    earlier.iter().find_map(|e| {
        if !matches!(e.action, RouteAction::Static(_)) || !path_covers(&e.matcher, &later.matcher) {
            return None;
        }
        let hosts = shared_hosts(&e.matcher.hosts, &later.matcher.hosts);
        (!hosts.is_empty()).then(|| CheckWarning::StaticTakesHosts {
            earlier: e.name.to_string(),
            what: describe(e),
            later: later.name.to_string(),
            hosts: hosts.join(", "),
        })
    })
}

/// `static, path_prefix /`: the route as its keys were written.
fn describe(r: &RouteConfig) -> String {
    let path = match &r.matcher.path {
        PathMatch::Any => "no path condition".to_owned(),
        PathMatch::Prefix(p) => format!("path_prefix {}", p.join(", ")),
        PathMatch::Exact(p) => format!("path_exact {}", p.join(", ")),
        PathMatch::Regex(re) => format!("path_regex {}", re.as_str()),
    };
    format!("static, {path}")
}

/// Whether `earlier`'s path condition matches every path `later`'s does.
fn path_covers(earlier: &Matcher, later: &Matcher) -> bool {
    let any_host = |m: &Matcher| Matcher {
        hosts: Vec::new(),
        path: m.path.clone(),
    };
    any_host(earlier).covers(&any_host(later))
}

/// The host patterns whose every name both lists match (`earlier` is not
/// empty: an empty list covers all and `covers` handled it).
fn shared_hosts(earlier: &[HostPattern], later: &[HostPattern]) -> Vec<String> {
    if later.is_empty() {
        return earlier.iter().map(ToString::to_string).collect();
    }
    let mut shared = Vec::new();
    for l in later {
        for e in earlier {
            let both = match (e, l) {
                (HostPattern::Exact(a), HostPattern::Exact(b)) => (a == b).then(|| l.clone()),
                (HostPattern::Wildcard(_), HostPattern::Exact(name)) => {
                    e.matches(name).then(|| l.clone())
                }
                (HostPattern::Exact(name), HostPattern::Wildcard(_)) => {
                    l.matches(name).then(|| e.clone())
                }
                (HostPattern::Wildcard(a), HostPattern::Wildcard(b)) => {
                    if b.ends_with(a.as_str()) {
                        Some(l.clone())
                    } else if a.ends_with(b.as_str()) {
                        Some(e.clone())
                    } else {
                        None
                    }
                }
            };
            if let Some(name) = both.map(|h| h.to_string()) {
                if !shared.contains(&name) {
                    shared.push(name);
                }
            }
        }
    }
    shared
}

/// The config file read again for the positions of `static` keys (the
/// validated config keeps none). Missing when it cannot be read or parsed:
/// the messages then name the file and key only.
struct Spans {
    src: String,
    file: Option<FileConfig>,
}

impl Spans {
    fn read(source: &str) -> Spans {
        let src = std::fs::read_to_string(Path::new(source)).unwrap_or_default();
        let file = toml::from_str(&src).ok();
        Spans { src, file }
    }

    /// `route[i].static.<key>`, at the key's value, else at the `static` table.
    fn location(&self, file: &str, i: usize, key: &str) -> Location {
        let span = self
            .file
            .as_ref()
            .and_then(|f| f.route.get(i))
            .and_then(|r| r.get_ref().static_files.as_ref())
            .map(|s| {
                let f = s.get_ref();
                let at = match key {
                    "root" => Some(f.root.span()),
                    "index" => f.index.as_ref().map(|i| i.span()),
                    _ => None,
                };
                at.unwrap_or_else(|| s.span())
            });
        Location {
            file: file.to_owned(),
            line_col: span.map(|s| line_col(&self.src, s.start)),
            key: format!("route[{i}].static.{key}"),
        }
    }
}
