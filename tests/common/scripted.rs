//! [`ScriptedBackend`]: an upstream whose every connection is scripted by
//! the test, at the byte level, for what a hyper server would hide: it logs
//! every byte each connection received (so a test sees exactly what ferry
//! sent, and on which connection), and its script can answer half a
//! response or close after reading a request.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What one accepted connection received.
#[derive(Debug, Clone, Default)]
pub struct ConnLog {
    /// Every byte read from ferry, in order.
    pub received: Vec<u8>,
    /// Ferry closed its side (EOF or a reset) while the handler was reading.
    pub peer_closed: bool,
}

impl ConnLog {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }

    /// How many request heads with this request line start (`"POST /up"`) it received.
    pub fn requests(&self, start: &str) -> usize {
        self.text()
            .matches(&format!("{start} HTTP/1.1\r\n"))
            .count()
    }
}

type Log = Arc<Mutex<Vec<ConnLog>>>;

/// An upstream that hands each connection to a handler of the test's.
pub struct ScriptedBackend {
    pub addr: SocketAddr,
    log: Log,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptedBackend {
    /// Runs `handler` on every accepted connection (numbered from 0).
    pub async fn start<F, Fut>(handler: F) -> ScriptedBackend
    where
        F: Fn(ScriptedConn) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log: Log = Arc::default();
        let conns = log.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let id = {
                    let mut log = conns.lock().unwrap();
                    log.push(ConnLog::default());
                    log.len() - 1
                };
                let handler = handler.clone();
                let log = conns.clone();
                tokio::spawn(handler(ScriptedConn {
                    id,
                    stream,
                    buf: Vec::new(),
                    log,
                }));
            }
        });
        ScriptedBackend { addr, log, task }
    }

    /// Every connection so far, in accept order.
    pub fn connections(&self) -> Vec<ConnLog> {
        self.log.lock().unwrap().clone()
    }
}

/// One accepted connection; reads are logged in the backend's [`ConnLog`].
pub struct ScriptedConn {
    /// The connection's number, in accept order.
    pub id: usize,
    stream: TcpStream,
    /// Read but not yet consumed.
    buf: Vec<u8>,
    log: Log,
}

impl ScriptedConn {
    /// Reads more; false at EOF or on an error (logged as the peer closing).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await.unwrap_or(0);
        let mut log = self.log.lock().unwrap();
        if n == 0 {
            log[self.id].peer_closed = true;
            return false;
        }
        log[self.id].received.extend_from_slice(&chunk[..n]);
        self.buf.extend_from_slice(&chunk[..n]);
        true
    }

    /// Consumes through the first `delimiter`; `None` if the connection ends first.
    async fn take_through(&mut self, delimiter: &[u8]) -> Option<Vec<u8>> {
        loop {
            if let Some(at) = self
                .buf
                .windows(delimiter.len())
                .position(|w| w == delimiter)
            {
                return Some(self.buf.drain(..at + delimiter.len()).collect());
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    async fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// The next request head, through its blank line; `None` at EOF.
    pub async fn read_head(&mut self) -> Option<String> {
        let head = self.take_through(b"\r\n\r\n").await?;
        Some(String::from_utf8_lossy(&head).into_owned())
    }

    /// The body of the request whose `head` was just read (Content-Length or
    /// chunked, de-chunked); `None` if the connection ended before its end or
    /// the chunking is broken.
    pub async fn read_body(&mut self, head: &str) -> Option<Vec<u8>> {
        let lower = head.to_ascii_lowercase();
        let field = |name: &str| {
            lower.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|v| v.strip_prefix(':'))
                    .map(|v| v.trim().to_owned())
            })
        };
        if field("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
            let mut body = Vec::new();
            loop {
                let line = self.take_through(b"\r\n").await?;
                let line = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
                let size = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size, 16).ok()?;
                if size == 0 {
                    // Trailers, then the blank line.
                    while self.take_through(b"\r\n").await?.len() > 2 {}
                    return Some(body);
                }
                body.extend(self.take(size).await?);
                if self.take(2).await? != b"\r\n" {
                    return None;
                }
            }
        }
        let length = field("content-length").map_or(Some(0), |v| v.parse().ok())?;
        self.take(length).await
    }

    /// The next whole request: head and body.
    pub async fn read_request(&mut self) -> Option<(String, Vec<u8>)> {
        let head = self.read_head().await?;
        let body = self.read_body(&head).await?;
        Some((head, body))
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// `200` with `body`, kept alive.
    pub async fn respond(&mut self, body: &str) {
        let res = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        self.write(res.as_bytes()).await;
    }

    /// Waits until ferry closes its side (or `WAIT` passes: the caller
    /// checks [`ConnLog::peer_closed`]).
    pub async fn wait_for_close(&mut self) {
        let _ = tokio::time::timeout(super::WAIT, async { while self.fill().await {} }).await;
    }
}
