//! In-process scripted backend nodes: a std `TcpListener` on 127.0.0.1:0 (bound before
//! `start` returns, so it is ready) and one thread per accepted connection running a script.
//! Nodes record what they saw (request heads, messages, bytes, EOF) on channels the test
//! reads with bounded waits; a failed script is reported by `check()`, by the `next_*`
//! readers and on drop, so it fails the test.

use std::io::Read;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocket};
use tungstenite::Message;

use super::wire::{self, OP_TEXT};

/// Bound on a node's scripted reads (a script step that never completes fails).
pub const NODE_IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound on the test's waits for node events.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed request head, with the exact bytes received.
#[derive(Debug, Clone)]
pub struct Head {
    pub raw: Vec<u8>,
    pub method: String,
    pub target: String,
    /// Minor HTTP version (1 for HTTP/1.1).
    pub version: u8,
    /// Header names and values in received order, as received (values lossily decoded).
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn parse(raw: &[u8]) -> Result<Head, String> {
        let mut storage = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut storage);
        match req.parse(raw) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err("partial head".into()),
            Err(e) => {
                return Err(format!(
                    "unparsable head ({e}): {:?}",
                    String::from_utf8_lossy(raw)
                ))
            }
        }
        Ok(Head {
            raw: raw.to_vec(),
            method: req.method.unwrap_or_default().to_owned(),
            target: req.path.unwrap_or_default().to_owned(),
            version: req.version.unwrap_or_default(),
            headers: req
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
                .collect(),
        })
    }

    /// The request line, without CRLF.
    pub fn request_line(&self) -> String {
        let text = String::from_utf8_lossy(&self.raw);
        text.split("\r\n").next().unwrap_or_default().to_owned()
    }

    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

/// What a node's connection saw, in order.
#[derive(Debug, Clone)]
pub enum Event {
    /// A text/binary/ping message read by a WebSocket script.
    Message(Message),
    /// A close frame read (None: close without payload).
    Closed(Option<CloseFrame<'static>>),
    /// Raw bytes a script collected (e.g. everything until EOF).
    Bytes(Vec<u8>),
    /// The gateway closed (FIN or reset) the node's connection.
    Eof,
}

/// One accepted connection, handed to the script.
pub struct Conn {
    pub stream: TcpStream,
    /// 0-based accept order on this node.
    pub index: usize,
    events: Sender<Event>,
    heads: Sender<Head>,
}

impl Conn {
    /// Reads and records the request head; returns it and the bytes that followed it.
    pub fn read_request(&mut self) -> Result<(Head, Vec<u8>), String> {
        let (raw, rest) = wire::read_head(&mut self.stream)?;
        let head = Head::parse(&raw)?;
        let _ = self.heads.send(head.clone());
        Ok((head, rest))
    }

    /// Writes a correct `101` for `head`, followed by `extra` in the same write.
    pub fn answer_101(&mut self, head: &Head, extra: &[u8]) -> Result<(), String> {
        let key = head
            .header("sec-websocket-key")
            .ok_or("request without Sec-WebSocket-Key")?;
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n",
            wire::accept_key(key)
        );
        if let Some(proto) = head.header("sec-websocket-protocol") {
            let first = proto.split(',').next().unwrap_or_default().trim();
            out.push_str(&format!("Sec-WebSocket-Protocol: {first}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(extra);
        wire::write_all(&mut self.stream, &bytes)
    }

    /// Server side of the handshake; returns the bytes the client sent after its head.
    pub fn handshake(&mut self) -> Result<Vec<u8>, String> {
        let (head, rest) = self.read_request()?;
        self.answer_101(&head, &[])?;
        Ok(rest)
    }

    pub fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    /// Wraps the stream as a server WebSocket, `leftover` being bytes already read.
    pub fn into_ws(self, leftover: Vec<u8>) -> (WebSocket<TcpStream>, Sender<Event>) {
        let ws = WebSocket::from_partially_read(self.stream, leftover, Role::Server, None);
        (ws, self.events)
    }
}

/// Echoes messages until the peer closes; records every message and the close.
/// EOF or reset without a close handshake ends the loop normally (emitting `Eof`);
/// protocol errors (corrupted bytes) fail the script.
pub fn ws_echo_loop(ws: &mut WebSocket<TcpStream>, events: &Sender<Event>) -> Result<(), String> {
    use tungstenite::error::{Error, ProtocolError};
    loop {
        match ws.read() {
            Ok(msg @ (Message::Text(_) | Message::Binary(_))) => {
                let _ = events.send(Event::Message(msg.clone()));
                ws.send(msg).map_err(|e| format!("echo send: {e}"))?;
            }
            Ok(Message::Close(frame)) => {
                let _ = events.send(Event::Closed(frame.map(CloseFrame::into_owned)));
            }
            Ok(msg) => {
                let _ = events.send(Event::Message(msg));
            }
            Err(Error::ConnectionClosed) | Err(Error::AlreadyClosed) => {
                let _ = events.send(Event::Eof);
                return Ok(());
            }
            Err(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => {
                let _ = events.send(Event::Eof);
                return Ok(());
            }
            Err(Error::Io(e)) if wire::is_reset(&e) => {
                let _ = events.send(Event::Eof);
                return Ok(());
            }
            Err(e) => return Err(format!("echo read: {e}")),
        }
    }
}

type Script = dyn Fn(Conn) -> Result<(), String> + Send + Sync + 'static;

struct Shared {
    accepted: AtomicUsize,
    stop: AtomicBool,
    failures: Mutex<Vec<String>>,
}

/// A scripted node. Drop stops accepting (open connections run on, detached).
pub struct Node {
    addr: SocketAddr,
    shared: Arc<Shared>,
    heads: Receiver<Head>,
    events: Receiver<Event>,
    acceptor: Option<JoinHandle<()>>,
}

impl Node {
    /// Binds 127.0.0.1:0 and runs `script` on a thread for every accepted connection.
    pub fn start<F>(script: F) -> Node
    where
        F: Fn(Conn) -> Result<(), String> + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            accepted: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            failures: Mutex::new(Vec::new()),
        });
        let (head_tx, heads) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let script: Arc<Script> = Arc::new(script);
        let sh = shared.clone();
        let acceptor = thread::Builder::new()
            .name(format!("node-{}", addr.port()))
            .spawn(move || {
                for stream in listener.incoming() {
                    if sh.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let stream = match stream {
                        Ok(s) => s,
                        Err(e) => {
                            sh.failures.lock().unwrap().push(format!("accept: {e}"));
                            continue;
                        }
                    };
                    let index = sh.accepted.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.set_nodelay(true);
                    let _ = stream.set_read_timeout(Some(NODE_IO_TIMEOUT));
                    let _ = stream.set_write_timeout(Some(NODE_IO_TIMEOUT));
                    let conn = Conn {
                        stream,
                        index,
                        events: event_tx.clone(),
                        heads: head_tx.clone(),
                    };
                    let script = script.clone();
                    let sh2 = sh.clone();
                    let spawned = thread::Builder::new()
                        .name(format!("node-{}-{index}", addr.port()))
                        .stack_size(256 * 1024)
                        .spawn(move || {
                            let outcome = catch_unwind(AssertUnwindSafe(|| script(conn)));
                            let failure = match outcome {
                                Ok(Ok(())) => return,
                                Ok(Err(e)) => e,
                                Err(_) => "script panicked".to_owned(),
                            };
                            sh2.failures
                                .lock()
                                .unwrap()
                                .push(format!("node {addr} conn #{index}: {failure}"));
                        });
                    if let Err(e) = spawned {
                        sh.failures.lock().unwrap().push(format!("spawn: {e}"));
                    }
                }
            })
            .unwrap();
        Node {
            addr,
            shared,
            heads,
            events,
            acceptor: Some(acceptor),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Script failures so far.
    pub fn failures(&self) -> Vec<String> {
        self.shared.failures.lock().unwrap().clone()
    }

    /// Panics if any script failed.
    pub fn check(&self) {
        let failures = self.failures();
        assert!(failures.is_empty(), "node {} failed: {failures:#?}", self.addr);
    }

    /// The next request head this node received (waits ≤ `EVENT_TIMEOUT`).
    pub fn next_head(&self) -> Head {
        self.check();
        match self.heads.recv_timeout(EVENT_TIMEOUT) {
            Ok(h) => h,
            Err(e) => panic!(
                "node {} received no request head within {EVENT_TIMEOUT:?} ({e}); accepted {}; \
                 failures {:?}",
                self.addr,
                self.accepted(),
                self.failures()
            ),
        }
    }

    /// A head received without waiting, if any.
    pub fn try_head(&self) -> Option<Head> {
        self.heads.try_recv().ok()
    }

    /// The next event (waits ≤ `timeout`).
    pub fn next_event_within(&self, timeout: Duration) -> Event {
        self.check();
        match self.events.recv_timeout(timeout) {
            Ok(ev) => ev,
            Err(e) => {
                self.check();
                panic!("node {} saw no event within {timeout:?} ({e})", self.addr)
            }
        }
    }

    pub fn next_event(&self) -> Event {
        self.next_event_within(EVENT_TIMEOUT)
    }

    /// Events available without waiting.
    pub fn drain_events(&self) -> Vec<Event> {
        self.events.try_iter().collect()
    }

    // ---- ready-made scripts ----

    /// Correct handshake, then echoes WebSocket messages, recording each (`Event::Message`),
    /// the close (`Event::Closed`) and the end (`Event::Eof`).
    pub fn ws_echo() -> Node {
        Node::start(|mut conn| {
            let rest = conn.handshake()?;
            conn.stream.set_read_timeout(None).map_err(|e| e.to_string())?;
            let (mut ws, events) = conn.into_ws(rest);
            ws_echo_loop(&mut ws, &events)
        })
    }

    /// Correct handshake, then echoes raw bytes until EOF, then shuts down its write side.
    pub fn raw_echo() -> Node {
        Node::start(|mut conn| {
            let rest = conn.handshake()?;
            conn.stream.set_read_timeout(None).map_err(|e| e.to_string())?;
            wire::write_all(&mut conn.stream, &rest)?;
            let mut buf = [0u8; 16 * 1024];
            loop {
                match conn.stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => wire::write_all(&mut conn.stream, &buf[..n])?,
                    Err(e) if wire::is_reset(&e) => break,
                    Err(e) => return Err(format!("raw echo read: {e}")),
                }
            }
            let _ = conn.stream.shutdown(Shutdown::Write);
            conn.emit(Event::Eof);
            Ok(())
        })
    }

    /// Answers 101 with a wrong `Sec-WebSocket-Accept`, then waits for the gateway to close
    /// (`Event::Eof`).
    pub fn wrong_accept() -> Node {
        Node::start(|mut conn| {
            let (_head, _) = conn.read_request()?;
            wire::write_all(
                &mut conn.stream,
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
            )?;
            wire::read_to_eof(&mut conn.stream, true)?;
            conn.emit(Event::Eof);
            Ok(())
        })
    }

    /// Answers `status reason` with a text body (Content-Length), then closes.
    pub fn status(status: u16, reason: &str, body: &str) -> Node {
        let answer = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             X-Node: scripted\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        Node::start(move |mut conn| {
            conn.read_request()?;
            wire::write_all(&mut conn.stream, answer.as_bytes())?;
            let _ = conn.stream.shutdown(Shutdown::Write);
            wire::read_to_eof(&mut conn.stream, true)?;
            conn.emit(Event::Eof);
            Ok(())
        })
    }

    /// Accepts and reads the head but never answers; records `Event::Eof` when the gateway
    /// gives up and closes.
    pub fn stall() -> Node {
        Node::start(|mut conn| {
            conn.read_request()?;
            conn.stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .map_err(|e| e.to_string())?;
            wire::read_to_eof(&mut conn.stream, true)?;
            conn.emit(Event::Eof);
            Ok(())
        })
    }

    /// Writes its 101 and a text frame `text` in one write, then echoes like `ws_echo`.
    pub fn first_frame_with_101(text: &str) -> Node {
        let frame = wire::server_frame(OP_TEXT, text.as_bytes());
        Node::start(move |mut conn| {
            let (head, rest) = conn.read_request()?;
            conn.answer_101(&head, &frame)?;
            conn.stream.set_read_timeout(None).map_err(|e| e.to_string())?;
            let (mut ws, events) = conn.into_ws(rest);
            ws_echo_loop(&mut ws, &events)
        })
    }

    /// Half-close, client first: after the handshake reads every byte until EOF
    /// (`Event::Bytes`), then — its own direction still open — writes `reply` and shuts
    /// down its write side.
    pub fn read_eof_then_reply(reply: &[u8]) -> Node {
        let reply = reply.to_vec();
        Node::start(move |mut conn| {
            let mut got = conn.handshake()?;
            got.extend(wire::read_to_eof(&mut conn.stream, false)?);
            conn.emit(Event::Bytes(got));
            wire::write_all(&mut conn.stream, &reply)?;
            conn.stream
                .shutdown(Shutdown::Write)
                .map_err(|e| format!("shutdown: {e}"))?;
            Ok(())
        })
    }

    /// Half-close, node first: after the handshake writes `first` and shuts down its write
    /// side, then reads every byte the client still sends until EOF (`Event::Bytes`).
    pub fn write_eof_then_read(first: &[u8]) -> Node {
        let first = first.to_vec();
        Node::start(move |mut conn| {
            let mut got = conn.handshake()?;
            wire::write_all(&mut conn.stream, &first)?;
            conn.stream
                .shutdown(Shutdown::Write)
                .map_err(|e| format!("shutdown: {e}"))?;
            got.extend(wire::read_to_eof(&mut conn.stream, false)?);
            conn.emit(Event::Bytes(got));
            Ok(())
        })
    }

    /// After the handshake sends a close frame (`code`, `reason`), waits for the client's
    /// close reply (`Event::Closed`) and the end of the connection (`Event::Eof`).
    pub fn closer(code: u16, reason: &str) -> Node {
        let reason = reason.to_owned();
        Node::start(move |mut conn| {
            let rest = conn.handshake()?;
            let (mut ws, events) = conn.into_ws(rest);
            ws.close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: reason.clone().into(),
            }))
            .map_err(|e| format!("sending close: {e}"))?;
            use tungstenite::error::Error;
            loop {
                match ws.read() {
                    Ok(Message::Close(frame)) => {
                        let _ = events.send(Event::Closed(frame.map(CloseFrame::into_owned)));
                    }
                    Ok(other) => return Err(format!("expected a close reply, got {other:?}")),
                    Err(Error::ConnectionClosed) => {
                        let _ = events.send(Event::Eof);
                        return Ok(());
                    }
                    Err(e) => return Err(format!("waiting for the close reply: {e}")),
                }
            }
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the acceptor sees `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        if !thread::panicking() {
            self.check();
        }
    }
}

/// A port on 127.0.0.1 that refuses connections: bound, then released.
pub fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}
