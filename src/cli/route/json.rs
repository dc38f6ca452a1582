//! `ferry route --format json`: the report for scripts.

use http::HeaderMap;
use serde_json::{Value, json};

use super::{Certificate, Report};
use crate::config::ListenerKind;
use crate::proxy::decision::{Action, OriginCheck};
use crate::static_files::Located;

impl Report<'_> {
    /// The request as JSON: every fact [`Report::text`] prints, for scripts.
    pub fn json(&self) -> Value {
        let d = self.decision.as_ref();
        let route = d
            .and_then(|d| d.route)
            .map(|i| json!({ "index": i, "name": &*self.config.routes[i].name }));
        let upstream = d
            .and_then(|d| d.upstream)
            .map(|i| Value::from(&*self.config.upstreams[i].name));
        let websocket = d.and_then(|d| d.websocket.as_ref()).map(|ws| {
            json!({
                "handshake": ws.handshake.label(),
                "origin": ws.origin.origin(),
                "verdict": verdict_label(&ws.origin),
            })
        });
        let mut out = json!({
            "request": {
                "method": self.query.method.as_str(),
                "url": self.query.url.to_string(),
                "websocket": self.query.is_websocket(),
                "client": self.query.client.to_string(),
                "headers": headers_json(&self.client_head.headers),
            },
            "listener": self.listener.map(|l| json!({
                "addr": l.addr.to_string(),
                "kind": listener_label(l.kind),
            })),
            "certificate": self.certificate.as_ref().map(certificate_json),
            "route": route,
            "upstream": upstream,
            "websocket": websocket,
            "served": self.served(),
        });
        if let (Value::Object(out), Value::Object(result)) = (&mut out, self.result_json()) {
            out.extend(result);
        }
        out
    }

    /// `result` (`forward`, `redirect`, `refuse`, `no_listener`) and what
    /// goes with it: the status, location or error, or the upstream request.
    fn result_json(&self) -> Value {
        let action = self.decision.as_ref().map(|d| &d.action);
        let (result, status, location, error) = match action {
            None => ("no_listener", None, None, None),
            Some(Action::Refuse(e)) => {
                let status = Some(e.status().as_u16());
                ("refuse", status, None, Some(e.to_string()))
            }
            Some(Action::Redirect { status, location }) => (
                "redirect",
                Some(status.as_u16()),
                location.to_str().ok(),
                None,
            ),
            Some(Action::Forward(_)) => ("forward", None, None, None),
            Some(Action::Static(_)) => {
                let answer = self.static_answer.as_ref();
                let status = answer.map(|a| a.status().as_u16());
                let location = answer.and_then(|a| match &a.result {
                    Ok(Located::Redirect { location }) => Some(location.as_str()),
                    _ => None,
                });
                let error = answer.and_then(|a| a.result.as_ref().err().map(|e| e.to_string()));
                ("static", status, location, error)
            }
        };
        let forward = match action {
            Some(Action::Forward(f)) => Some(f),
            _ => None,
        };
        let head = self.upstream_head.as_ref();
        json!({
            "result": result,
            "status": status,
            "location": location,
            "error": error,
            "read_timeout_ms": forward.map(|f| f.read_timeout.as_millis() as u64),
            "upstream_request": head.map(|head| json!({
                "method": head.method.as_str(),
                "uri": head.uri.to_string(),
                "version": "HTTP/1.1",
                "headers": headers_json(&head.headers),
            })),
            "removed_headers": head.map(|head| super::removed(&self.client_head.headers, &head.headers)),
            "static": self.static_answer.as_ref().map(|a| match &a.result {
                Ok(Located::File(t)) => json!({
                    "file": t.path.display().to_string(),
                    "kind": t.kind.label(),
                    "encoding": t.encoding.map(|e| e.token()),
                    "served_file": t.served_path().display().to_string(),
                    "cache_control": a.cache_control,
                }),
                _ => Value::Null,
            }),
        })
    }
}

fn certificate_json(c: &Certificate) -> Value {
    match c {
        Certificate::Unread => json!({ "checked": false }),
        Certificate::Covers(file) => json!({ "checked": true, "covers": true, "file": file }),
        Certificate::Uncovered(_) => json!({ "checked": true, "covers": false }),
    }
}

fn headers_json(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (k.as_str().to_owned(), value)
        })
        .collect()
}

fn listener_label(kind: ListenerKind) -> &'static str {
    match kind {
        ListenerKind::Tls => "tls",
        ListenerKind::Plain => "plain",
        ListenerKind::RedirectHttps => "redirect_https",
    }
}

fn verdict_label(origin: &OriginCheck) -> &'static str {
    match origin {
        OriginCheck::NotSent => "not_sent",
        OriginCheck::Unrestricted(_) => "unrestricted",
        OriginCheck::Allowed(_) => "allowed",
        OriginCheck::Missing => "missing",
        OriginCheck::NotAllowed(_) => "not_allowed",
    }
}
