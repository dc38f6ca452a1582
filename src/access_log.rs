//! The access log (`server.access_log`): one line per request and per
//! WebSocket session, JSON or text, to stdout, stderr or a file.
//!
//! Lines are handed to a writer thread through a bounded queue and written
//! buffered; if the writer falls behind, lines are dropped and counted
//! (`ferry_access_log_dropped_lines_total`) rather than slowing requests.
//! Without `server.access_log`, request lines go to the log (stderr) instead.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use crate::config::{AccessLogConfig, AccessLogFormat, AccessLogTarget};
use crate::metrics::Metrics;

/// Lines waiting for the writer before new ones are dropped.
const QUEUE: usize = 16 * 1024;

/// An open access log.
#[derive(Debug)]
pub struct AccessLog {
    tx: SyncSender<Vec<u8>>,
    pub format: AccessLogFormat,
    /// Whether query strings are logged.
    pub query: bool,
    metrics: Arc<Metrics>,
}

impl AccessLog {
    /// Opens the target (a file is created or appended to) and starts the writer.
    pub fn open(config: &AccessLogConfig, metrics: Arc<Metrics>) -> io::Result<Arc<AccessLog>> {
        let out: Box<dyn Write + Send> = match &config.target {
            AccessLogTarget::Stdout => Box::new(io::stdout()),
            AccessLogTarget::Stderr => Box::new(io::stderr()),
            AccessLogTarget::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("ferry-access-log".into())
            .spawn(move || write_lines(rx, out))?;
        Ok(Arc::new(AccessLog {
            tx,
            format: config.format,
            query: config.query,
            metrics,
        }))
    }

    /// Queues one line (a trailing newline is added). Never blocks.
    pub fn write(&self, mut line: Vec<u8>) {
        line.push(b'\n');
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.metrics.access_log_dropped(),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

fn write_lines(rx: Receiver<Vec<u8>>, out: Box<dyn Write + Send>) {
    let mut out = io::BufWriter::with_capacity(64 * 1024, out);
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => {
                let _ = out.write_all(&line);
                // Write whatever else is queued, then flush once.
                while let Ok(line) = rx.try_recv() {
                    let _ = out.write_all(&line);
                }
                let _ = out.flush();
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = out.flush();
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = out.flush();
                return;
            }
        }
    }
}

/// A field value in a log line.
pub enum Value<'a> {
    Str(&'a str),
    Num(u64),
    Float(f64),
    Bool(bool),
}

/// The keys of a request record, in the order they are written. Every JSON
/// record has all of them (`null` when unknown), so log pipelines see one
/// schema; docs/operations.md describes each. [`RequestRecord::fields`]
/// returns an array of this length, which keeps the two in step.
pub const REQUEST_KEYS: [&str; 20] = [
    "time",
    "type",
    "client",
    "listener",
    "method",
    "host",
    "path",
    "query",
    "route",
    "upstream",
    "upstream_addr",
    "status",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "upstream_ms",
    "tls",
    "http",
    "aborted",
    "error",
];

/// The keys of a WebSocket session record, in order (see [`REQUEST_KEYS`]).
pub const WEBSOCKET_KEYS: [&str; 19] = [
    "time",
    "type",
    "client",
    "listener",
    "host",
    "path",
    "route",
    "upstream",
    "upstream_addr",
    "origin",
    "http",
    "duration_ms",
    "bytes_in",
    "bytes_out",
    "messages_in",
    "messages_out",
    "close_code",
    "closed_by",
    "close_reason",
];

/// One request record (`"type": "request"`): a request ferry answered, one
/// its HTTP/1.1 parser refused (no method or path then), or one the client
/// abandoned.
#[derive(Debug, Default)]
pub struct RequestRecord<'a> {
    pub client: &'a str,
    /// The listener's bound address.
    pub listener: &'a str,
    pub method: Option<&'a str>,
    pub host: Option<&'a str>,
    pub path: Option<&'a str>,
    /// Only with `query = true`.
    pub query: Option<&'a str>,
    pub route: Option<&'a str>,
    pub upstream: Option<&'a str>,
    pub upstream_addr: Option<&'a str>,
    /// `None`: the client left before ferry had an answer.
    pub status: Option<u16>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_ms: Option<f64>,
    pub upstream_ms: Option<f64>,
    pub tls: Option<&'a str>,
    pub http: &'a str,
    /// The client went away before the response was complete.
    pub aborted: bool,
    pub error: Option<&'a str>,
}

impl<'a> RequestRecord<'a> {
    /// The record's fields, keyed by [`REQUEST_KEYS`]; `time` is passed in.
    pub fn fields(&self, time: &'a str) -> [(&'static str, Option<Value<'a>>); 20] {
        let values = [
            Some(Value::Str(time)),
            Some(Value::Str("request")),
            Some(Value::Str(self.client)),
            Some(Value::Str(self.listener)),
            self.method.map(Value::Str),
            self.host.map(Value::Str),
            self.path.map(Value::Str),
            self.query.map(Value::Str),
            self.route.map(Value::Str),
            self.upstream.map(Value::Str),
            self.upstream_addr.map(Value::Str),
            self.status.map(|s| Value::Num(u64::from(s))),
            Some(Value::Num(self.bytes_in)),
            Some(Value::Num(self.bytes_out)),
            self.duration_ms.map(Value::Float),
            self.upstream_ms.map(Value::Float),
            self.tls.map(Value::Str),
            Some(Value::Str(self.http)),
            Some(Value::Bool(self.aborted)),
            self.error.map(Value::Str),
        ];
        keyed(REQUEST_KEYS, values)
    }

    /// The record as one line (without the newline).
    pub fn render(&self, format: AccessLogFormat) -> Vec<u8> {
        let time = now_rfc3339();
        render(format, &self.fields(&time))
    }
}

/// One WebSocket session record (`"type": "websocket"`), written when it ends.
#[derive(Debug, Default)]
pub struct WebSocketRecord<'a> {
    pub client: &'a str,
    pub listener: &'a str,
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub route: &'a str,
    pub upstream: &'a str,
    pub upstream_addr: &'a str,
    pub origin: Option<&'a str>,
    pub http: &'a str,
    pub duration_ms: f64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub close_code: u16,
    pub closed_by: &'a str,
    pub close_reason: &'a str,
}

impl<'a> WebSocketRecord<'a> {
    /// The record's fields, keyed by [`WEBSOCKET_KEYS`].
    pub fn fields(&self, time: &'a str) -> [(&'static str, Option<Value<'a>>); 19] {
        let values = [
            Some(Value::Str(time)),
            Some(Value::Str("websocket")),
            Some(Value::Str(self.client)),
            Some(Value::Str(self.listener)),
            self.host.map(Value::Str),
            Some(Value::Str(self.path)),
            Some(Value::Str(self.route)),
            Some(Value::Str(self.upstream)),
            Some(Value::Str(self.upstream_addr)),
            self.origin.map(Value::Str),
            Some(Value::Str(self.http)),
            Some(Value::Float(self.duration_ms)),
            Some(Value::Num(self.bytes_in)),
            Some(Value::Num(self.bytes_out)),
            Some(Value::Num(self.messages_in)),
            Some(Value::Num(self.messages_out)),
            Some(Value::Num(u64::from(self.close_code))),
            Some(Value::Str(self.closed_by)),
            Some(Value::Str(self.close_reason)),
        ];
        keyed(WEBSOCKET_KEYS, values)
    }

    pub fn render(&self, format: AccessLogFormat) -> Vec<u8> {
        let time = now_rfc3339();
        render(format, &self.fields(&time))
    }
}

fn keyed<'a, const N: usize>(
    keys: [&'static str; N],
    values: [Option<Value<'a>>; N],
) -> [(&'static str, Option<Value<'a>>); N] {
    let mut values = values.into_iter();
    keys.map(|key| (key, values.next().flatten()))
}

/// Renders `fields` as one JSON object (an unknown value is `null`) or one
/// `key=value` text line (an unknown value is left out).
pub fn render(format: AccessLogFormat, fields: &[(&str, Option<Value<'_>>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    match format {
        AccessLogFormat::Json => {
            out.push(b'{');
            for (i, (key, value)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_str(&mut out, key);
                out.push(b':');
                match value {
                    None => out.extend_from_slice(b"null"),
                    Some(value) => scalar(&mut out, value, true),
                }
            }
            out.push(b'}');
        }
        AccessLogFormat::Text => {
            let mut first = true;
            for (key, value) in fields {
                let Some(value) = value else { continue };
                if !first {
                    out.push(b' ');
                }
                first = false;
                if *key != "time" {
                    out.extend_from_slice(key.as_bytes());
                    out.push(b'=');
                }
                scalar(&mut out, value, false);
            }
        }
    }
    out
}

/// One value: strings always quoted in JSON, in text only when they must be.
fn scalar(out: &mut Vec<u8>, value: &Value<'_>, json: bool) {
    match value {
        Value::Str(s) if json || s.is_empty() || s.contains([' ', '"', '=']) => json_str(out, s),
        Value::Str(s) => out.extend_from_slice(s.as_bytes()),
        Value::Num(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::Float(f) => out.extend_from_slice(format!("{f:.1}").as_bytes()),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
    }
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// The current time as RFC 3339 UTC with milliseconds: `2026-11-27T15:43:40.142Z`.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_text_lines() {
        let fields = [
            ("time", Some(Value::Str("2026-11-27T00:00:00.000Z"))),
            ("path", Some(Value::Str("/a \"b\"\n"))),
            ("query", None),
            ("status", Some(Value::Num(200))),
            ("duration_ms", Some(Value::Float(1.25))),
        ];
        let json = String::from_utf8(render(AccessLogFormat::Json, &fields)).unwrap();
        assert_eq!(
            json,
            r#"{"time":"2026-11-27T00:00:00.000Z","path":"/a \"b\"\n","query":null,"status":200,"duration_ms":1.2}"#
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["path"], "/a \"b\"\n");
        let text = String::from_utf8(render(AccessLogFormat::Text, &fields)).unwrap();
        assert_eq!(
            text,
            r#"2026-11-27T00:00:00.000Z path="/a \"b\"\n" status=200 duration_ms=1.2"#
        );
        assert_eq!(now_rfc3339().len(), 24);
    }

    #[test]
    fn every_record_has_every_key_and_the_docs_list_them() {
        let json = RequestRecord::default().render(AccessLogFormat::Json);
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = REQUEST_KEYS.to_vec();
        want.sort_unstable();
        assert_eq!(keys, want, "serde_json sorts keys");
        assert!(v["status"].is_null() && v["route"].is_null(), "{v}");
        let json = WebSocketRecord::default().render(AccessLogFormat::Json);
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v.as_object().unwrap().len(), WEBSOCKET_KEYS.len());
        assert!(v["origin"].is_null());

        let docs = include_str!("../docs/operations.md");
        let (requests, sessions) = docs
            .split_once("#### WebSocket session records")
            .expect("docs/operations.md has the session records section");
        for key in REQUEST_KEYS {
            assert!(
                requests.contains(&format!("| `{key}` |")),
                "docs: request field `{key}`"
            );
        }
        for key in WEBSOCKET_KEYS {
            assert!(
                sessions.contains(&format!("`{key}`")),
                "docs: session field `{key}`"
            );
        }
    }
}
