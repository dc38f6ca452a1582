//! `Content-Type` from the file name (mime_guess's table, kept up to date
//! with the IANA registry and Apache's list).

use std::path::Path;

use http::HeaderValue;

/// The type of `path`; `; charset=utf-8` for text types, and
/// `application/octet-stream` for names the table does not know.
pub fn content_type(path: &Path) -> HeaderValue {
    let Some(mime) = mime_guess::from_path(path).first() else {
        return HeaderValue::from_static("application/octet-stream");
    };
    let essence = mime.essence_str();
    let textual = mime.type_() == mime_guess::mime::TEXT
        || matches!(
            essence,
            "application/javascript" | "application/json" | "application/xml" | "image/svg+xml"
        )
        || essence.ends_with("+json")
        || essence.ends_with("+xml");
    let value = if textual {
        format!("{essence}; charset=utf-8")
    } else {
        essence.to_owned()
    };
    HeaderValue::from_str(&value)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types() {
        let t = |name: &str| content_type(Path::new(name));
        assert_eq!(t("a.html"), "text/html; charset=utf-8");
        assert_eq!(t("a.css"), "text/css; charset=utf-8");
        assert!(
            t("a.js")
                .to_str()
                .unwrap()
                .ends_with("javascript; charset=utf-8")
        );
        assert_eq!(t("a.json"), "application/json; charset=utf-8");
        assert_eq!(t("a.svg"), "image/svg+xml; charset=utf-8");
        assert_eq!(t("a.png"), "image/png");
        assert_eq!(t("a.wasm"), "application/wasm");
        assert_eq!(t("a.unknownext"), "application/octet-stream");
        assert_eq!(t("noext"), "application/octet-stream");
    }
}
