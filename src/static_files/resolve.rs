//! Which file a request path names: the lexical checks (decoding, `.`/`..`,
//! dotfiles), then the file system (symlink policy, directories and their
//! index, the SPA fallback, precompressed siblings). [`locate`] is the one
//! function both the server and `ferry route` call.

use std::fs::{self, Metadata};
use std::io;
use std::path::{Path, PathBuf};

use http::header::{self, HeaderMap};
use http::{Method, Uri};

use super::StaticError;
use crate::config::{FollowSymlinks, StaticConfig};
use crate::encoding::{AcceptEncoding, Encoding};

/// How a located file came to answer the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The file the path names.
    File,
    /// A directory's index (`/dir/` → `dir/index.html`), or the index requested by name.
    Index,
    /// The SPA fallback: the root's index for a path with no file.
    SpaFallback,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Index => "index",
            Kind::SpaFallback => "spa_fallback",
        }
    }
}

/// What a request to a static route resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    /// A regular file under the root.
    File(FileTarget),
    /// `/dir` names a directory with an index: 301 to `/dir/` (query kept).
    Redirect { location: String },
}

/// The file to serve and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTarget {
    /// The file as resolved (its canonical path unless `follow_symlinks = "always"`).
    pub path: PathBuf,
    pub kind: Kind,
    /// The request path, decoded and with `.`/`..` resolved (`/assets/app.js`,
    /// `/users/42` for a fallback): what the caching rules look at.
    pub request_path: String,
    /// The precompressed siblings that exist, in the configured order.
    pub siblings: Vec<Encoding>,
    /// The sibling chosen by `Accept-Encoding`; `None`: the file itself.
    pub encoding: Option<Encoding>,
}

impl FileTarget {
    /// The file whose bytes are sent: the chosen sibling, else the file.
    pub fn served_path(&self) -> PathBuf {
        match self.encoding {
            Some(e) => sibling(&self.path, e),
            None => self.path.clone(),
        }
    }
}

/// The request path as segments under the root, with whether it ended in `/`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Segments {
    pub parts: Vec<String>,
    pub trailing_slash: bool,
}

impl Segments {
    pub fn display(&self) -> String {
        let mut out = String::new();
        for p in &self.parts {
            out.push('/');
            out.push_str(p);
        }
        if self.trailing_slash || out.is_empty() {
            out.push('/');
        }
        out
    }
}

/// Resolves the request `method`, `uri` and `headers` under `files`. Does
/// file-system work (stat, canonicalize): run it off the async runtime.
pub fn locate(
    files: &StaticConfig,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Located, StaticError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(StaticError::MethodNotAllowed);
    }
    let segments = lexical(uri.path(), files.hidden)?;
    let root = fs::canonicalize(&files.root)
        .map_err(|_| StaticError::NotFound("the root directory is missing"))?;
    let mut lexical_path = root.clone();
    lexical_path.extend(&segments.parts);
    let request_path = segments.display();

    let miss = match checked(&root, &lexical_path, files.follow_symlinks)? {
        Some((path, meta)) if meta.is_dir() => {
            let index = path.join(&files.index);
            match checked(&root, &index, files.follow_symlinks)? {
                Some((index, meta)) if meta.is_file() => {
                    if !segments.trailing_slash && !segments.parts.is_empty() {
                        let mut location = format!("{}/", uri.path());
                        if let Some(q) = uri.query() {
                            location.push('?');
                            location.push_str(q);
                        }
                        return Ok(Located::Redirect { location });
                    }
                    return Ok(Located::File(target(
                        files,
                        &root,
                        index,
                        Kind::Index,
                        request_path,
                        headers,
                    )?));
                }
                _ => "a directory without an index file (no listings)",
            }
        }
        Some((path, meta)) if meta.is_file() => {
            if segments.trailing_slash {
                "a file named with a trailing slash"
            } else {
                let is_index = segments.parts.last() == Some(&files.index);
                let kind = if is_index { Kind::Index } else { Kind::File };
                return Ok(Located::File(target(
                    files,
                    &root,
                    path,
                    kind,
                    request_path,
                    headers,
                )?));
            }
        }
        Some(_) => "not a regular file",
        None => "no such file",
    };
    if !files.spa {
        return Err(StaticError::NotFound(miss));
    }
    let last = segments.parts.last().map_or("", String::as_str);
    if last.contains('.') {
        return Err(StaticError::NotFound(
            "no such file; no SPA fallback for a name with an extension",
        ));
    }
    if !accepts_html(headers) {
        return Err(StaticError::NotFound(
            "no such file; no SPA fallback: Accept does not allow text/html",
        ));
    }
    let index = root.join(&files.index);
    match checked(&root, &index, files.follow_symlinks)? {
        Some((index, meta)) if meta.is_file() => Ok(Located::File(target(
            files,
            &root,
            index,
            Kind::SpaFallback,
            request_path,
            headers,
        )?)),
        _ => Err(StaticError::NotFound(
            "no such file, and the SPA index file is missing",
        )),
    }
}

/// The located file with its siblings and the encoding to send.
fn target(
    files: &StaticConfig,
    root: &Path,
    path: PathBuf,
    kind: Kind,
    request_path: String,
    headers: &HeaderMap,
) -> Result<FileTarget, StaticError> {
    let mut siblings = Vec::new();
    for &e in &files.precompressed {
        if let Some(meta) = checked_sibling(root, &sibling(&path, e), files.follow_symlinks)? {
            if meta.is_file() {
                siblings.push(e);
            }
        }
    }
    let encoding = if siblings.is_empty() {
        None
    } else {
        AcceptEncoding::from_headers(headers).choose(&siblings)
    };
    Ok(FileTarget {
        path,
        kind,
        request_path,
        siblings,
        encoding,
    })
}

/// `app.js` → `app.js.br`.
pub(crate) fn sibling(path: &Path, e: Encoding) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(e.extension());
    PathBuf::from(name)
}

/// `path` (under the canonical `root`) with the symlink policy applied:
/// `None` when nothing is there; a refusal when a symlink may not be followed.
fn checked(
    root: &Path,
    path: &Path,
    policy: FollowSymlinks,
) -> Result<Option<(PathBuf, Metadata)>, StaticError> {
    let resolved = match policy {
        FollowSymlinks::Always => path.to_path_buf(),
        FollowSymlinks::Never | FollowSymlinks::WithinRoot => match no_symlink_below(root, path) {
            // The common case: no link on the way, so the lexical path is the real one.
            Ok(Some(meta)) => return Ok(Some((path.to_path_buf(), meta))),
            Ok(None) => match fs::canonicalize(path) {
                Ok(real) if real == path => real,
                Ok(_) if policy == FollowSymlinks::Never => {
                    return Err(StaticError::NotFound(
                        "a symlink on the path (follow_symlinks = \"never\")",
                    ));
                }
                Ok(real) if real.starts_with(root) => real,
                Ok(_) => {
                    return Err(StaticError::NotFound(
                        "a symlink that leaves the root (follow_symlinks = \"within_root\")",
                    ));
                }
                Err(e) => return missing(e),
            },
            Err(e) => return missing(e),
        },
    };
    match fs::metadata(&resolved) {
        Ok(meta) => Ok(Some((resolved, meta))),
        Err(e) => missing(e),
    }
}

/// The metadata of `path` (under the canonical `root`) when no component
/// below the root is a symlink — one `lstat` per component below the root,
/// where `canonicalize` costs a `readlink` per component from `/`; `None`
/// when one is (the caller then resolves the link).
fn no_symlink_below(root: &Path, path: &Path) -> io::Result<Option<Metadata>> {
    let Ok(below) = path.strip_prefix(root) else {
        return Ok(None);
    };
    let mut at = root.to_path_buf();
    let mut last = None;
    for component in below.components() {
        at.push(component);
        let meta = fs::symlink_metadata(&at)?;
        if meta.file_type().is_symlink() {
            return Ok(None);
        }
        last = Some(meta);
    }
    match last {
        Some(meta) => Ok(Some(meta)),
        None => fs::metadata(root).map(Some),
    }
}

/// [`checked`] for a sibling of a file already checked: `path` differs from
/// a resolved path only in its last component, so unless that component is
/// itself a symlink it is resolved too, and one `lstat` answers what
/// `canonicalize` (a `readlink` per component) would.
fn checked_sibling(
    root: &Path,
    path: &Path,
    policy: FollowSymlinks,
) -> Result<Option<Metadata>, StaticError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            Ok(checked(root, path, policy)?.map(|(_, meta)| meta))
        }
        Ok(meta) => Ok(Some(meta)),
        Err(e) => missing(e),
    }
}

/// A lookup that found nothing is a miss; permission problems too (the
/// client learns nothing about what it may not read); anything else is ours.
fn missing<T>(e: io::Error) -> Result<Option<T>, StaticError> {
    match e.kind() {
        io::ErrorKind::NotFound
        | io::ErrorKind::NotADirectory
        | io::ErrorKind::PermissionDenied => Ok(None),
        _ => Err(StaticError::Io(e)),
    }
}

/// The path's segments under the root: each percent-decoded (an encoded
/// `/`, NUL or backslash is refused), `.` and `..` resolved (climbing above
/// the root is refused), then dotfiles refused unless `hidden` (a top-level
/// `.well-known` is always allowed).
pub(crate) fn lexical(path: &str, hidden: bool) -> Result<Segments, StaticError> {
    let raw: Vec<&str> = path.split('/').collect();
    let trailing_slash = path.ends_with('/');
    let mut parts: Vec<String> = Vec::new();
    for seg in raw {
        let seg = decode(seg)?;
        match seg.as_str() {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(StaticError::BadPath("the path climbs above the root"));
                }
            }
            _ => parts.push(seg),
        }
    }
    if !hidden {
        for (i, p) in parts.iter().enumerate() {
            if p.starts_with('.') && !(i == 0 && p == ".well-known") {
                return Err(StaticError::NotFound("a dotfile (hidden = false)"));
            }
        }
    }
    // A path ending in `.` or `..` names a directory.
    let trailing_slash = trailing_slash || path.ends_with("/.") || path.ends_with("/..");
    Ok(Segments {
        parts,
        trailing_slash,
    })
}

/// One segment percent-decoded; a `%` that starts no escape is kept.
fn decode(seg: &str) -> Result<String, StaticError> {
    if !seg.contains(['%', '\\', '\0']) {
        return Ok(seg.to_owned());
    }
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = match bytes[i] {
            b'%' => match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(hi), Some(lo)) => {
                    i += 2;
                    hi << 4 | lo
                }
                _ => b'%',
            },
            b => b,
        };
        match b {
            b'/' => return Err(StaticError::BadPath("encoded slash in request path")),
            b'\\' => return Err(StaticError::BadPath("backslash in request path")),
            0 => return Err(StaticError::BadPath("NUL in request path")),
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| StaticError::BadPath("request path is not UTF-8"))
}

fn hex(b: Option<&u8>) -> Option<u8> {
    match *b? {
        b @ b'0'..=b'9' => Some(b - b'0'),
        b @ b'a'..=b'f' => Some(b - b'a' + 10),
        b @ b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether `Accept` allows `text/html`: absent, or the most specific of
/// `text/html`, `text/*`, `*/*` listed has q > 0.
pub(crate) fn accepts_html(headers: &HeaderMap) -> bool {
    let mut any = false;
    // (specificity, q): text/html 2, text/* 1, */* 0.
    let mut best: Option<(u8, bool)> = None;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for member in value.split(',') {
            let mut params = member.split(';');
            let range = params.next().unwrap_or("").trim().to_ascii_lowercase();
            if range.is_empty() {
                continue;
            }
            any = true;
            let specificity = match range.as_str() {
                "text/html" => 2,
                "text/*" => 1,
                "*/*" => 0,
                _ => continue,
            };
            let positive = params
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .is_none_or(|(_, v)| v.trim().parse::<f32>().is_ok_and(|q| q > 0.0));
            if best.is_none_or(|(s, _)| specificity > s) {
                best = Some((specificity, positive));
            }
        }
    }
    match best {
        Some((_, positive)) => positive,
        None => !any,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parts(path: &str) -> Result<Vec<String>, StaticError> {
        lexical(path, false).map(|s| s.parts)
    }

    #[test]
    fn lexical_resolution() {
        assert_eq!(parts("/a/b.js").unwrap(), ["a", "b.js"]);
        assert_eq!(parts("/a/./b/../c").unwrap(), ["a", "c"]);
        assert_eq!(parts("//a///b").unwrap(), ["a", "b"]);
        assert_eq!(parts("/caf%C3%A9").unwrap(), ["café"]);
        assert_eq!(parts("/a%20b").unwrap(), ["a b"]);
        assert_eq!(parts("/100%").unwrap(), ["100%"]);
        assert_eq!(parts("/%41%zz").unwrap(), ["A%zz"]);
        assert_eq!(parts("/a/%2e%2e/b").unwrap(), ["b"]);
        assert!(parts("/").unwrap().is_empty());
        assert!(lexical("/a/..", false).unwrap().trailing_slash);
        assert!(!lexical("/a", false).unwrap().trailing_slash);
    }

    #[test]
    fn refusals() {
        let bad = |p: &str| matches!(lexical(p, false), Err(StaticError::BadPath(_)));
        assert!(bad("/../x"));
        assert!(bad("/a/../../x"));
        assert!(bad("/%2e%2e/x"));
        assert!(bad("/a%2fb"));
        assert!(bad("/a%2Fb"));
        assert!(bad("/a%5cb"));
        assert!(bad("/a\\b"));
        assert!(bad("/a%00b"));
        assert!(bad("/%ff"));
        let hidden = |p: &str| matches!(lexical(p, false), Err(StaticError::NotFound(_)));
        assert!(hidden("/.env"));
        assert!(hidden("/a/.git/config"));
        assert!(hidden("/%2egit/config"));
        assert!(hidden("/a/.well-known/x"));
        assert!(hidden("/.well-known/.x"));
        assert_eq!(parts("/.well-known/x").unwrap(), [".well-known", "x"]);
        assert_eq!(lexical("/.env", true).unwrap().parts, [".env"]);
        // `..` resolved before the dotfile rule: this is `/x`.
        assert_eq!(parts("/.git/../x").unwrap(), ["x"]);
    }

    fn accept(values: &[&str]) -> bool {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        }
        accepts_html(&h)
    }

    #[test]
    fn html_in_accept() {
        assert!(accept(&[]));
        assert!(accept(&["*/*"]));
        assert!(accept(&["text/*"]));
        assert!(accept(&[
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ]));
        assert!(accept(&["application/json", "text/html"]));
        assert!(!accept(&["application/json"]));
        assert!(!accept(&["text/html;q=0"]));
        assert!(!accept(&["text/html;q=0, */*"]));
        assert!(!accept(&["*/*;q=0"]));
        assert!(!accept(&["image/*"]));
    }
}
