//! Bytes exactly as written on both sides of ferry: [`RawBackend`] records
//! every request it receives byte for byte; [`raw_h1`] writes a request as
//! given (over TLS or plain TCP) and reads the answer; [`RawH2`] speaks
//! HTTP/2 from hand-built frames, for requests no HTTP/2 library would send
//! (no `:authority`, two `host` fields).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::ca::TestCa;
use super::within;

/// An upstream that records the bytes of each request (head and body) and
/// answers `200 ok` on a kept-alive connection.
pub struct RawBackend {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawBackend {
    pub async fn start() -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(Self::serve(stream, log.clone()));
            }
        });
        RawBackend {
            addr,
            received,
            task,
        }
    }

    async fn serve(mut stream: TcpStream, log: Arc<Mutex<Vec<Vec<u8>>>>) {
        let mut buf = Vec::new();
        loop {
            let Some(end) = read_until_head_end(&mut stream, &mut buf).await else {
                return;
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = content_length(&head).unwrap_or(0);
            while buf.len() < end + length {
                let mut chunk = [0u8; 8192];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let request: Vec<u8> = buf.drain(..end + length).collect();
            log.lock().unwrap().push(request);
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
            if stream.write_all(answer).await.is_err() {
                return;
            }
        }
    }

    /// Every request received so far, in order, as bytes.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().unwrap().clone()
    }

    /// The heads received so far, as text (CRLF kept).
    pub fn heads(&self) -> Vec<String> {
        self.received()
            .iter()
            .map(|r| {
                let end = find(r, b"\r\n\r\n").map_or(r.len(), |i| i + 4);
                String::from_utf8_lossy(&r[..end]).into_owned()
            })
            .collect()
    }

    /// The one request received since `before` requests had been: panics
    /// unless exactly one arrived.
    pub fn only_head_since(&self, before: usize) -> String {
        let heads = self.heads();
        assert_eq!(heads.len(), before + 1, "requests received: {heads:#?}");
        heads[before].clone()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads into `buf` until it holds a whole head; its length with the blank line.
async fn read_until_head_end<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            return Some(i + 4);
        }
        let mut chunk = [0u8; 8192];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn content_length(lower_head: &str) -> Option<usize> {
    lower_head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
}

/// A response as read off the socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// The status line and headers, as text.
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Writes `request` as given to `addr` (over TLS with ALPN `http/1.1` when
/// `ca` is given) and reads one response.
pub async fn raw_h1(addr: SocketAddr, ca: Option<&TestCa>, request: &[u8]) -> RawResponse {
    let tcp = within(TcpStream::connect(addr)).await.unwrap();
    match ca {
        Some(ca) => {
            let connector = tokio_rustls::TlsConnector::from(ca.client_config(&[b"http/1.1"]));
            let name = ServerName::try_from("localhost").unwrap();
            let mut tls = within(connector.connect(name, tcp)).await.unwrap();
            exchange(&mut tls, request).await
        }
        None => {
            let mut tcp = tcp;
            exchange(&mut tcp, request).await
        }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, request: &[u8]) -> RawResponse {
    // The server may answer (431) and close before reading it all: a failed
    // write is then expected, and the answer is still there to read.
    let _ = within(s.write_all(request)).await;
    let _ = within(s.flush()).await;
    let mut buf = Vec::new();
    let end = within(read_until_head_end(s, &mut buf))
        .await
        .unwrap_or_else(|| panic!("no response head; got {:?}", String::from_utf8_lossy(&buf)));
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let length = content_length(&head.to_ascii_lowercase()).unwrap_or(0);
    while buf.len() < end + length {
        let mut chunk = [0u8; 8192];
        match within(s.read(&mut chunk)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    RawResponse {
        status,
        head,
        body: buf[end..].to_vec(),
    }
}

/// An HTTP/2 connection over TLS whose requests are hand-built HEADERS
/// frames (HPACK literals without indexing or Huffman coding).
pub struct RawH2 {
    tls: tokio_rustls::client::TlsStream<TcpStream>,
    next_stream: u32,
}

/// What became of a stream.
#[derive(Debug, PartialEq, Eq)]
pub enum H2Outcome {
    /// The response's `:status`.
    Status(u16),
    /// The server reset the stream with this error code.
    Reset(u32),
}

impl RawH2 {
    pub async fn connect(addr: SocketAddr, ca: &TestCa) -> RawH2 {
        let tcp = within(TcpStream::connect(addr)).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(ca.client_config(&[b"h2"]));
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = within(connector.connect(name, tcp)).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        within(tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
            .await
            .unwrap();
        // SETTINGS_HEADER_TABLE_SIZE = 0: the server's HPACK encoder may not
        // index, so every response's :status can be read on its own.
        let settings = [0, 1, 0, 0, 0, 0];
        within(tls.write_all(&frame(4, 0, 0, &settings)))
            .await
            .unwrap();
        RawH2 {
            tls,
            next_stream: 1,
        }
    }

    /// Sends one request with exactly these fields (pseudo-headers included,
    /// in order) and no body; returns its `:status` or its reset.
    pub async fn request(&mut self, fields: &[(&str, &str)]) -> H2Outcome {
        let id = self.next_stream;
        self.next_stream += 2;
        let mut block = Vec::new();
        for (name, value) in fields {
            block.push(0x00); // literal, not indexed, new name
            hpack_int(&mut block, 0, 7, name.len());
            block.extend_from_slice(name.as_bytes());
            hpack_int(&mut block, 0, 7, value.len());
            block.extend_from_slice(value.as_bytes());
        }
        // HEADERS with END_STREAM, then CONTINUATION frames; the last of
        // them has END_HEADERS. 16 KiB: the default SETTINGS_MAX_FRAME_SIZE.
        let chunks: Vec<&[u8]> = block.chunks(16_384).collect();
        let mut frames = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let (kind, mut flags) = if i == 0 { (1, 0x1) } else { (9, 0) };
            if i + 1 == chunks.len() {
                flags |= 0x4;
            }
            frames.extend_from_slice(&frame(kind, flags, id, chunk));
        }
        if chunks.is_empty() {
            frames = frame(1, 0x5, id, &[]);
        }
        within(self.tls.write_all(&frames)).await.unwrap();
        within(self.outcome(id)).await
    }

    async fn outcome(&mut self, id: u32) -> H2Outcome {
        loop {
            let mut header = [0u8; 9];
            self.tls.read_exact(&mut header).await.expect("a frame");
            let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let (kind, flags) = (header[3], header[4]);
            let stream =
                u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & !(1 << 31);
            let mut payload = vec![0u8; len];
            self.tls.read_exact(&mut payload).await.expect("a payload");
            match kind {
                // SETTINGS, not an ACK: acknowledge.
                4 if flags & 1 == 0 => {
                    self.tls.write_all(&frame(4, 1, 0, &[])).await.unwrap();
                }
                1 if stream == id => return H2Outcome::Status(first_status(&payload, flags)),
                3 if stream == id => {
                    let code = u32::from_be_bytes(payload[..4].try_into().unwrap());
                    return H2Outcome::Reset(code);
                }
                7 => panic!("GOAWAY: {payload:?}"),
                _ => {}
            }
        }
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `n`-bit prefix after the `high` bits.
fn hpack_int(out: &mut Vec<u8>, high: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(high | value as u8);
        return;
    }
    out.push(high | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

fn read_int(block: &[u8], pos: &mut usize, n: u32) -> usize {
    let max = (1usize << n) - 1;
    let mut value = (block[*pos] as usize) & max;
    *pos += 1;
    if value < max {
        return value;
    }
    let mut shift = 0;
    loop {
        let b = block[*pos];
        *pos += 1;
        value += ((b & 0x7f) as usize) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return value;
        }
    }
}

/// The `:status` of a response HEADERS payload: the first field, which a
/// server encodes as a static-table entry or a literal with the static
/// `:status` name (its value maybe Huffman-coded; only digits are decoded).
fn first_status(payload: &[u8], flags: u8) -> u16 {
    let mut pos = 0;
    if flags & 0x8 != 0 {
        pos += 1 + payload[0] as usize; // PADDED
    }
    if flags & 0x20 != 0 {
        pos += 5; // PRIORITY
    }
    const STATIC: [u16; 7] = [200, 204, 206, 304, 400, 404, 500];
    loop {
        let b = payload[pos];
        if b & 0xe0 == 0x20 {
            read_int(payload, &mut pos, 5); // dynamic table size update
            continue;
        }
        if b & 0x80 != 0 {
            let index = read_int(payload, &mut pos, 7);
            return STATIC[index - 8];
        }
        let prefix = if b & 0x40 != 0 { 6 } else { 4 };
        let name = read_int(payload, &mut pos, prefix);
        assert!((8..=14).contains(&name), "first field is not :status");
        let huffman = payload[pos] & 0x80 != 0;
        let len = read_int(payload, &mut pos, 7);
        let value = &payload[pos..pos + len];
        let digits = if huffman {
            huffman_digits(value)
        } else {
            String::from_utf8(value.to_vec()).unwrap()
        };
        return digits.parse().unwrap();
    }
}

/// RFC 7541 Appendix B, digits only: `0`–`2` are 5 bits, `3`–`9` 6 bits.
fn huffman_digits(bytes: &[u8]) -> String {
    let mut bits: Vec<u8> = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let mut out = String::new();
    while bits.len() >= 5 {
        if bits.len() < 8 && bits.iter().all(|&b| b == 1) {
            break; // padding: the most significant bits of EOS
        }
        let code5 = bits[..5].iter().fold(0u8, |acc, b| acc << 1 | b);
        if code5 <= 2 {
            out.push((b'0' + code5) as char);
            bits.drain(..5);
            continue;
        }
        let code6 = bits[..6].iter().fold(0u8, |acc, b| acc << 1 | b);
        assert!((0x19..=0x1f).contains(&code6), "not a digit: {code6:#x}");
        out.push((b'3' + code6 - 0x19) as char);
        bits.drain(..6);
    }
    out
}
