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
}

/// Renders `fields` as one JSON object or one `key=value` text line.
pub fn render(format: AccessLogFormat, fields: &[(&str, Option<Value<'_>>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    match format {
        AccessLogFormat::Json => {
            out.push(b'{');
            let mut first = true;
            for (key, value) in fields {
                let Some(value) = value else { continue };
                if !first {
                    out.push(b',');
                }
                first = false;
                json_str(&mut out, key);
                out.push(b':');
                match value {
                    Value::Str(s) => json_str(&mut out, s),
                    Value::Num(n) => out.extend_from_slice(n.to_string().as_bytes()),
                    Value::Float(f) => out.extend_from_slice(format!("{f:.1}").as_bytes()),
                }
            }
            out.push(b'}');
        }
        AccessLogFormat::Text => {
            for (i, (key, value)) in fields.iter().enumerate() {
                let Some(value) = value else { continue };
                if i > 0 {
                    out.push(b' ');
                }
                if *key != "time" {
                    out.extend_from_slice(key.as_bytes());
                    out.push(b'=');
                }
                match value {
                    Value::Str(s) if s.is_empty() || s.contains([' ', '"', '=']) => {
                        json_str(&mut out, s);
                    }
                    Value::Str(s) => out.extend_from_slice(s.as_bytes()),
                    Value::Num(n) => out.extend_from_slice(n.to_string().as_bytes()),
                    Value::Float(f) => out.extend_from_slice(format!("{f:.1}").as_bytes()),
                }
            }
        }
    }
    out
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
            r#"{"time":"2026-11-27T00:00:00.000Z","path":"/a \"b\"\n","status":200,"duration_ms":1.2}"#
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
}
