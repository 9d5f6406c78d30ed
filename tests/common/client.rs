//! Test clients on loopback: a tungstenite WebSocket client, a raw HTTP request/response
//! reader (for the gateway's error answers) and a raw upgraded socket for byte-level tests
//! (frames in the same write as the head, half-close). Every socket has 10 s read/write
//! timeouts, so a missing answer fails the test instead of hanging it.

use std::io::Read;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::Response;
use tungstenite::http::{HeaderName, HeaderValue};
use tungstenite::{HandshakeError, WebSocket};

use super::wire::{self, Frame};

/// Bound on every client read and write.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects with timeouts set and `TCP_NODELAY` on.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT)
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    s.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// WebSocket handshake to `ws://addr{path}`; `Err` describes a refused handshake (status and
/// body when the server answered).
pub fn try_ws_connect(
    addr: SocketAddr,
    path: &str,
    extra_headers: &[(&str, &str)],
) -> Result<(WebSocket<TcpStream>, Response), String> {
    let mut req = format!("ws://{addr}{path}")
        .into_client_request()
        .map_err(|e| format!("building request for {path}: {e}"))?;
    for (k, v) in extra_headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?;
        let value = HeaderValue::from_str(v).map_err(|e| e.to_string())?;
        req.headers_mut().append(name, value);
    }
    let stream = TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT)
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    match tungstenite::client::client(req, stream) {
        Ok(pair) => Ok(pair),
        Err(HandshakeError::Failure(tungstenite::Error::Http(resp))) => Err(format!(
            "handshake refused: {} body {:?}",
            resp.status(),
            resp.body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
        )),
        Err(e) => Err(format!("handshake to {addr}{path} failed: {e}")),
    }
}

/// WebSocket handshake that must succeed.
pub fn ws_connect(addr: SocketAddr, path: &str, extra_headers: &[(&str, &str)]) -> WebSocket<TcpStream> {
    ws_connect_full(addr, path, extra_headers).0
}

/// Same, also returning the 101 response.
pub fn ws_connect_full(
    addr: SocketAddr,
    path: &str,
    extra_headers: &[(&str, &str)],
) -> (WebSocket<TcpStream>, Response) {
    try_ws_connect(addr, path, extra_headers).unwrap_or_else(|e| panic!("{e}"))
}

/// A hand-written request (for malformed and unusual upgrades).
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A valid upgrade request for `target` with `Host: gw.test` and [`wire::SAMPLE_KEY`].
pub fn upgrade(target: &str) -> Req {
    Req {
        method: "GET".into(),
        target: target.into(),
        version: "HTTP/1.1".into(),
        headers: vec![
            ("Host".into(), "gw.test".into()),
            ("Upgrade".into(), "websocket".into()),
            ("Connection".into(), "Upgrade".into()),
            ("Sec-WebSocket-Key".into(), wire::SAMPLE_KEY.into()),
            ("Sec-WebSocket-Version".into(), "13".into()),
        ],
        body: Vec::new(),
    }
}

impl Req {
    pub fn method(mut self, m: &str) -> Self {
        self.method = m.into();
        self
    }

    /// Sets a header, replacing every header of that name (case-insensitive).
    pub fn set(mut self, name: &str, value: &str) -> Self {
        match self
            .headers
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(i) => {
                self.headers[i].1 = value.into();
                let mut seen = 0;
                self.headers.retain(|(n, _)| {
                    if n.eq_ignore_ascii_case(name) {
                        seen += 1;
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => self.headers.push((name.into(), value.into())),
        }
        self
    }

    /// Appends a header (repeats allowed).
    pub fn add(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn remove(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    pub fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} {}\r\n", self.method, self.target, self.version);
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// A response as the client saw it.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub head: Vec<u8>,
    pub body: Vec<u8>,
    /// The server closed the connection after the response (FIN or reset).
    pub closed: bool,
}

impl RawResponse {
    pub fn parse_head(head: &[u8]) -> Result<RawResponse, String> {
        let mut storage = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut storage);
        match resp.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            other => {
                return Err(format!(
                    "unparsable response head ({other:?}): {:?}",
                    String::from_utf8_lossy(head)
                ))
            }
        }
        Ok(RawResponse {
            status: resp.code.unwrap_or_default(),
            reason: resp.reason.unwrap_or_default().to_owned(),
            headers: resp
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
                .collect(),
            head: head.to_vec(),
            body: Vec::new(),
            closed: false,
        })
    }

    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body_text()))
    }

    /// The gateway's error answer (DESIGN §9): status `code`, `Connection: close`, the
    /// connection closed, body `{"errorCode": code, "errorMessage": "<non-empty>"}`.
    pub fn assert_error(&self, code: u16) {
        let ctx = || format!("{}\n{}", String::from_utf8_lossy(&self.head), self.body_text());
        assert_eq!(self.status, code, "status; response:\n{}", ctx());
        let conn = self.header("connection").unwrap_or_default();
        assert!(
            conn.eq_ignore_ascii_case("close"),
            "want Connection: close, got {conn:?}; response:\n{}",
            ctx()
        );
        assert!(self.closed, "connection left open after {code}:\n{}", ctx());
        let v = self.json();
        assert_eq!(v["errorCode"], serde_json::json!(code), "body {v}");
        let msg = v["errorMessage"].as_str().unwrap_or_default();
        assert!(!msg.is_empty(), "errorMessage must be a non-empty string: {v}");
    }
}

/// Reads one response (head, then a Content-Length body or, with `Connection: close` or no
/// length, everything until EOF) from `stream`, starting with `pending` bytes already read.
pub fn read_response(stream: &mut TcpStream, pending: Vec<u8>) -> Result<RawResponse, String> {
    let mut chain = std::io::Cursor::new(pending).chain(&mut *stream);
    let (head, mut rest) = wire::read_head(&mut chain)?;
    drop(chain);
    let mut resp = RawResponse::parse_head(&head)?;
    if resp.status == 101 {
        resp.body = rest;
        return Ok(resp);
    }
    let length = resp
        .header("content-length")
        .map(|v| v.trim().parse::<usize>())
        .transpose()
        .map_err(|e| format!("bad Content-Length: {e}"))?;
    let close = resp
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    match length {
        Some(n) => {
            resp.body = wire::read_exact_buffered(stream, &mut rest, n)?;
            if close {
                let after = wire::read_to_eof(stream, true)?;
                rest.extend(after);
                if !rest.is_empty() {
                    return Err(format!(
                        "{} bytes after the body: {:?}",
                        rest.len(),
                        String::from_utf8_lossy(&rest)
                    ));
                }
                resp.closed = true;
            }
        }
        None => {
            rest.extend(wire::read_to_eof(stream, true)?);
            resp.body = rest;
            resp.closed = true;
        }
    }
    Ok(resp)
}

pub fn try_raw_request(addr: SocketAddr, bytes: &[u8]) -> Result<RawResponse, String> {
    let mut s = connect(addr);
    wire::write_all(&mut s, bytes)?;
    read_response(&mut s, Vec::new())
}

/// Sends `bytes` in one write on a fresh connection and reads the answer.
pub fn raw_request(addr: SocketAddr, bytes: &[u8]) -> RawResponse {
    try_raw_request(addr, bytes).unwrap_or_else(|e| {
        panic!(
            "request {:?} to {addr}: {e}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        )
    })
}

/// An upgraded connection driven byte by byte.
pub struct RawWs {
    pub stream: TcpStream,
    pub response: RawResponse,
    /// Bytes received after the 101 head and not consumed yet.
    pub pending: Vec<u8>,
}

/// Writes `request` and `trailing` in one write, reads the answer head and requires a
/// `101` with the accept value of the request's key.
pub fn raw_upgrade(addr: SocketAddr, request: &Req, trailing: &[u8]) -> RawWs {
    let mut stream = connect(addr);
    let mut bytes = request.bytes();
    bytes.extend_from_slice(trailing);
    wire::write_all(&mut stream, &bytes).unwrap();
    let (head, pending) = wire::read_head(&mut stream)
        .unwrap_or_else(|e| panic!("no upgrade answer from {addr} for {}: {e}", request.target));
    let response = RawResponse::parse_head(&head).unwrap();
    assert_eq!(
        response.status,
        101,
        "upgrade refused: {}",
        String::from_utf8_lossy(&head)
    );
    let key = request
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-key"))
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    assert_eq!(
        response.header("sec-websocket-accept"),
        Some(wire::accept_key(key).as_str()),
        "accept value in {}",
        String::from_utf8_lossy(&head)
    );
    RawWs {
        stream,
        response,
        pending,
    }
}

impl RawWs {
    /// Sends one masked client frame.
    pub fn send(&mut self, opcode: u8, payload: &[u8]) {
        wire::write_all(&mut self.stream, &wire::client_frame(opcode, payload)).unwrap();
    }

    pub fn write_raw(&mut self, bytes: &[u8]) {
        wire::write_all(&mut self.stream, bytes).unwrap();
    }

    pub fn read_frame(&mut self) -> Frame {
        wire::read_frame(&mut self.stream, &mut self.pending).unwrap()
    }

    /// Exactly `n` raw bytes.
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        wire::read_exact_buffered(&mut self.stream, &mut self.pending, n).unwrap()
    }

    /// Everything until EOF (pending bytes first); a timeout panics.
    pub fn read_to_eof(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.pending);
        out.extend(wire::read_to_eof(&mut self.stream, false).unwrap());
        out
    }

    pub fn shutdown_write(&mut self) {
        self.stream.shutdown(Shutdown::Write).unwrap();
    }
}

/// SO_LINGER 0: closing `s` then sends a reset instead of a FIN (abortive close).
pub fn set_linger_zero(s: &std::net::TcpStream) -> Result<(), String> {
    socket2::SockRef::from(s)
        .set_linger(Some(Duration::ZERO))
        .map_err(|e| format!("SO_LINGER: {e}"))
}

/// Send one text message and wait for its echo (pings and pongs in between are skipped).
pub fn echo_once(ws: &mut WebSocket<TcpStream>, text: &str) {
    ws.send(tungstenite::Message::text(text)).unwrap();
    loop {
        match ws.read().unwrap() {
            tungstenite::Message::Text(t) => {
                assert_eq!(t.as_str(), text, "echo of {text:?}");
                return;
            }
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => continue,
            other => panic!("unexpected {other:?} instead of the echo of {text:?}"),
        }
    }
}
