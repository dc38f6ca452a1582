//! Static routes: real files in a temp dir, served through real TLS over
//! HTTP/1.1 and HTTP/2.

mod common;

use std::path::Path;

use common::*;
use tempfile::TempDir;

/// A root with the files most tests use.
fn site() -> TempDir {
    let dir = TempDir::new().unwrap();
    let r = dir.path();
    let w = |p: &str, body: &str| {
        let path = r.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    };
    w("index.html", "<html>index</html>");
    w("page.html", "<p>page</p>");
    w("app.js", "console.log('identity');");
    w("app.js.br", "BR");
    w("app.js.gz", "GZ");
    w("app.js.zst", "ZST");
    w("style.css", "body{}");
    w("data.json", "{}");
    w("logo.svg", "<svg/>");
    w("blob.unknownext", "?");
    w("digits.txt", "0123456789");
    w("index-BQ3c9TqL.js", "hashed");
    w("my-component.js", "plain");
    w("assets/logo.png", "png");
    w("dir/index.html", "dir index");
    w("empty/.keep", "");
    w(".env", "SECRET=1");
    w(".well-known/x", "well known");
    dir
}

fn config(root: &Path, keys: &str) -> String {
    ProxyToml::new()
        .tls_listener()
        .route_keys(&format!(
            "name = \"app\"\npath_prefix = \"/\"\nstatic = {{ root = {:?}{keys} }}",
            root.display().to_string()
        ))
        .build()
}

async fn get(c: &mut Client, method: &str, path: &str, headers: &[(&str, &str)]) -> Fetched {
    let mut req = request(method, "localhost", path, c.is_h2());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    c.fetch(req.body(empty()).unwrap()).await
}

const PROTOS: [Proto; 2] = [Proto::H1, Proto::H2];

#[tokio::test]
async fn traversal_is_refused() {
    let outside = TempDir::new().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
    let dir = site();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        dir.path().join("out.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink(dir.path().join("page.html"), dir.path().join("in.html")).unwrap();
    let proxy = TestProxy::start(&config(dir.path(), "")).await;
    for proto in PROTOS {
        let mut c = proxy.client(proto).await;
        for path in [
            "/../secret.txt",
            "/a/../../x",
            "/%2e%2e/x",
            "/a%2fb",
            "/a%2Fpage.html",
            "/a%5cb",
            "/a%00b",
        ] {
            let res = get(&mut c, "GET", path, &[]).await;
            assert_eq!(res.status(), 400, "{proto:?} {path}: {}", res.text());
            assert!(!res.text().contains("secret"));
        }
        assert_eq!(get(&mut c, "GET", "/out.txt", &[]).await.status(), 404);
        let inside = get(&mut c, "GET", "/in.html", &[]).await;
        assert_eq!((inside.status(), inside.text()), (200, "<p>page</p>"));
        // Resolved lexically inside the root: served.
        let dots = get(&mut c, "GET", "/dir/../page.html", &[]).await;
        assert_eq!(dots.status(), 200);
    }
    let raw = raw_h1(
        proxy.tls_addr.unwrap(),
        Some(&proxy.ca),
        b"GET /a\\..\\page.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw.status, 400, "{}", raw.head);

    for (policy, out, inside) in [("never", 404, 404), ("always", 200, 200)] {
        let proxy = TestProxy::start(&config(
            dir.path(),
            &format!(", follow_symlinks = \"{policy}\""),
        ))
        .await;
        let mut c = proxy.client(Proto::H1).await;
        let o = get(&mut c, "GET", "/out.txt", &[]).await;
        assert_eq!(o.status(), out, "{policy}");
        if out == 200 {
            assert_eq!(o.text(), "secret");
        }
        assert_eq!(
            get(&mut c, "GET", "/in.html", &[]).await.status(),
            inside,
            "{policy}"
        );
    }
}

#[tokio::test]
async fn dotfiles_directories_and_methods() {
    let dir = site();
    let proxy = TestProxy::start(&config(dir.path(), "")).await;
    for proto in PROTOS {
        let mut c = proxy.client(proto).await;
        assert_eq!(get(&mut c, "GET", "/.env", &[]).await.status(), 404);
        assert_eq!(get(&mut c, "GET", "/%2eenv", &[]).await.status(), 404);
        let wk = get(&mut c, "GET", "/.well-known/x", &[]).await;
        assert_eq!((wk.status(), wk.text()), (200, "well known"));
        let d = get(&mut c, "GET", "/dir/", &[]).await;
        assert_eq!((d.status(), d.text()), (200, "dir index"));
        assert_eq!(d.header("cache-control"), Some("no-cache"));
        let empty = get(&mut c, "GET", "/empty/", &[]).await;
        assert_eq!(empty.status(), 404);
        assert!(!empty.text().contains(".keep"));
        let redirect = get(&mut c, "GET", "/dir?q=1", &[]).await;
        assert_eq!(redirect.status(), 301);
        assert_eq!(redirect.header("location"), Some("/dir/?q=1"));
        for method in ["POST", "PUT", "DELETE"] {
            let res = get(&mut c, method, "/page.html", &[]).await;
            assert_eq!(res.status(), 405, "{method}");
            assert_eq!(res.header("allow"), Some("GET, HEAD"));
        }
    }
    let proxy = TestProxy::start(&config(dir.path(), ", hidden = true")).await;
    let mut c = proxy.client(Proto::H1).await;
    let env = get(&mut c, "GET", "/.env", &[]).await;
    assert_eq!((env.status(), env.text()), (200, "SECRET=1"));
}

#[tokio::test]
async fn types_validators_ranges_and_head() {
    let dir = site();
    let proxy = TestProxy::start(&config(dir.path(), ", precompressed = []")).await;
    for proto in PROTOS {
        let mut c = proxy.client(proto).await;
        for (path, ty) in [
            ("/page.html", "text/html; charset=utf-8"),
            ("/style.css", "text/css; charset=utf-8"),
            ("/data.json", "application/json; charset=utf-8"),
            ("/logo.svg", "image/svg+xml; charset=utf-8"),
            ("/blob.unknownext", "application/octet-stream"),
        ] {
            let res = get(&mut c, "GET", path, &[]).await;
            assert_eq!(res.header("content-type"), Some(ty), "{path}");
            assert_eq!(res.header("x-content-type-options"), Some("nosniff"));
        }
        let js = get(&mut c, "GET", "/app.js", &[]).await;
        assert!(
            js.header("content-type")
                .unwrap()
                .ends_with("javascript; charset=utf-8")
        );

        let full = get(&mut c, "GET", "/digits.txt", &[]).await;
        let etag = full.header("etag").unwrap().to_owned();
        let modified = full.header("last-modified").unwrap().to_owned();
        assert!(etag.starts_with("\"a-"), "{etag}");
        assert_eq!(full.header("accept-ranges"), Some("bytes"));
        assert_eq!(full.header("content-length"), Some("10"));

        let inm = get(&mut c, "GET", "/digits.txt", &[("if-none-match", &etag)]).await;
        assert_eq!(inm.status(), 304);
        assert!(inm.body.is_empty());
        assert_eq!(inm.header("etag"), Some(etag.as_str()));
        assert_eq!(inm.header("cache-control"), full.header("cache-control"));
        let ims = get(
            &mut c,
            "GET",
            "/digits.txt",
            &[("if-modified-since", &modified)],
        )
        .await;
        assert_eq!(ims.status(), 304);
        let both = get(
            &mut c,
            "GET",
            "/digits.txt",
            &[
                ("if-none-match", "\"other\""),
                ("if-modified-since", &modified),
            ],
        )
        .await;
        assert_eq!((both.status(), both.text()), (200, "0123456789"));

        for (range, status, body, content_range) in [
            ("bytes=2-4", 206, "234", Some("bytes 2-4/10")),
            ("bytes=7-", 206, "789", Some("bytes 7-9/10")),
            ("bytes=-2", 206, "89", Some("bytes 8-9/10")),
            ("bytes=0-1,4-5", 200, "0123456789", None),
        ] {
            let res = get(&mut c, "GET", "/digits.txt", &[("range", range)]).await;
            assert_eq!((res.status(), res.text()), (status, body), "{range}");
            assert_eq!(res.header("content-range"), content_range, "{range}");
            assert_eq!(res.header("content-length"), Some(&*body.len().to_string()));
        }
        let unsat = get(&mut c, "GET", "/digits.txt", &[("range", "bytes=10-")]).await;
        assert_eq!(unsat.status(), 416);
        assert_eq!(unsat.header("content-range"), Some("bytes */10"));
        let ok = get(
            &mut c,
            "GET",
            "/digits.txt",
            &[("range", "bytes=0-0"), ("if-range", &etag)],
        )
        .await;
        assert_eq!((ok.status(), ok.text()), (206, "0"));
        let stale = get(
            &mut c,
            "GET",
            "/digits.txt",
            &[("range", "bytes=0-0"), ("if-range", "\"old\"")],
        )
        .await;
        assert_eq!((stale.status(), stale.text()), (200, "0123456789"));

        let head = get(&mut c, "HEAD", "/digits.txt", &[]).await;
        assert_eq!(head.status(), 200);
        assert_eq!(head.header("content-length"), Some("10"));
        assert!(head.body.is_empty());
    }
}

#[tokio::test]
async fn precompressed_siblings_by_q_value() {
    let dir = site();
    let proxy = TestProxy::start(&config(dir.path(), "")).await;
    for proto in PROTOS {
        let mut c = proxy.client(proto).await;
        let mut etags = std::collections::BTreeSet::new();
        for (ae, body, encoding) in [
            ("gzip, deflate, br, zstd", "BR", Some("br")),
            ("br;q=0.5, gzip", "GZ", Some("gzip")),
            ("zstd", "ZST", Some("zstd")),
            (
                "br;q=0, gzip;q=0, zstd;q=0",
                "console.log('identity');",
                None,
            ),
            ("identity", "console.log('identity');", None),
        ] {
            let res = get(&mut c, "GET", "/app.js", &[("accept-encoding", ae)]).await;
            assert_eq!((res.status(), res.text()), (200, body), "{ae}");
            assert_eq!(res.header("content-encoding"), encoding, "{ae}");
            assert_eq!(res.header("vary"), Some("Accept-Encoding"));
            assert!(res.header("content-type").unwrap().contains("javascript"));
            etags.insert(res.header("etag").unwrap().to_owned());
            assert_eq!(res.header("accept-ranges").is_some(), encoding.is_none());
        }
        assert_eq!(etags.len(), 4, "{etags:?}");
        let ranged = get(
            &mut c,
            "GET",
            "/app.js",
            &[("accept-encoding", "br"), ("range", "bytes=0-0")],
        )
        .await;
        assert_eq!((ranged.status(), ranged.text()), (200, "BR"));
        let plain = get(&mut c, "GET", "/page.html", &[("accept-encoding", "br")]).await;
        assert_eq!(plain.header("content-encoding"), None);
        assert_eq!(plain.header("vary"), None);
    }
}

#[tokio::test]
async fn cache_policy_and_overrides() {
    let dir = site();
    let proxy = TestProxy::start(&config(dir.path(), ", spa = true")).await;
    let immutable = "public, max-age=31536000, immutable";
    let short = "public, max-age=300, must-revalidate";
    for proto in PROTOS {
        let mut c = proxy.client(proto).await;
        for (path, cc) in [
            ("/index-BQ3c9TqL.js", immutable),
            ("/assets/logo.png", immutable),
            ("/", "no-cache"),
            ("/index.html", "no-cache"),
            ("/users/42", "no-cache"),
            ("/my-component.js", short),
            ("/page.html", short),
        ] {
            let res = get(&mut c, "GET", path, &[]).await;
            assert_eq!(res.status(), 200, "{path}");
            assert_eq!(res.header("cache-control"), Some(cc), "{path}");
        }
    }
    let proxy = TestProxy::start(
        &ProxyToml::new()
            .tls_listener()
            .route_keys(&format!(
                "name = \"app\"\npath_prefix = \"/\"\nstatic = {{ root = {:?}, immutable = \"^/page\" }}\nresponse_headers = {{ set = {{ \"Cache-Control\" = \"no-store\" }} }}",
                dir.path().display().to_string()
            ))
            .route_keys(&format!(
                "name = \"x\"\npath_prefix = \"/\"\nstatic = {{ root = {:?} }}",
                dir.path().display().to_string()
            ))
            .build(),
    )
    .await;
    let mut c = proxy.client(Proto::H1).await;
    assert_eq!(
        get(&mut c, "GET", "/page.html", &[])
            .await
            .header("cache-control"),
        Some("no-store")
    );
    let proxy = TestProxy::start(&config(dir.path(), ", immutable = \"^/page\"")).await;
    let mut c = proxy.client(Proto::H1).await;
    assert_eq!(
        get(&mut c, "GET", "/page.html", &[])
            .await
            .header("cache-control"),
        Some(immutable)
    );
    assert_eq!(
        get(&mut c, "GET", "/index-BQ3c9TqL.js", &[])
            .await
            .header("cache-control"),
        Some(short)
    );
}

#[tokio::test]
async fn spa_fallback_rules() {
    let dir = site();
    let api = Backend::start(|_req| async {
        http::Response::builder()
            .status(404)
            .body(body("upstream says no"))
            .unwrap()
    })
    .await;
    let proxy = TestProxy::start(
        &ProxyToml::new()
            .tls_listener()
            .upstream("backend", &[api.addr])
            .route("api", "/api", "backend")
            .route_keys(&format!(
                "name = \"app\"\npath_prefix = \"/\"\nstatic = {{ root = {:?}, spa = true }}",
                dir.path().display().to_string()
            ))
            .build(),
    )
    .await;
    for proto in PROTOS {
        let mut c = proxy.client(proto).await;
        let deep = get(
            &mut c,
            "GET",
            "/users/42",
            &[("accept", "text/html,*/*;q=0.8")],
        )
        .await;
        assert_eq!((deep.status(), deep.text()), (200, "<html>index</html>"));
        assert_eq!(deep.header("cache-control"), Some("no-cache"));
        assert_eq!(get(&mut c, "GET", "/assets/x.js", &[]).await.status(), 404);
        let json = get(
            &mut c,
            "GET",
            "/users/42",
            &[("accept", "application/json")],
        )
        .await;
        assert_eq!(json.status(), 404);
        let api = get(&mut c, "GET", "/api/unknown", &[("accept", "text/html")]).await;
        assert_eq!((api.status(), api.text()), (404, "upstream says no"));
    }
    let proxy = TestProxy::start(&config(dir.path(), "")).await;
    let mut c = proxy.client(Proto::H1).await;
    assert_eq!(get(&mut c, "GET", "/users/42", &[]).await.status(), 404);
}

#[tokio::test]
async fn files_are_served_fresh_and_reload_changes_the_root() {
    let dir = site();
    let other = TempDir::new().unwrap();
    std::fs::write(other.path().join("page.html"), "other root").unwrap();
    let proxy = TestProxy::start_file(&config(dir.path(), "")).await;
    let mut c = proxy.client(Proto::H2).await;
    let first = get(&mut c, "GET", "/page.html", &[]).await;
    std::fs::write(dir.path().join("page.html"), "<p>changed, longer</p>").unwrap();
    let second = get(&mut c, "GET", "/page.html", &[]).await;
    assert_eq!(second.text(), "<p>changed, longer</p>");
    assert_ne!(first.header("etag"), second.header("etag"));

    proxy.rewrite_config(&config(other.path(), ""));
    within(async {
        loop {
            if get(&mut c, "GET", "/page.html", &[]).await.text() == "other root" {
                break;
            }
        }
    })
    .await;
}
