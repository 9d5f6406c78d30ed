//! Black-box tests of `capi-ws echo`: run the real binary on 127.0.0.1 port 0 with each driver,
//! wait for its `listening echo=` line, then speak WebSocket to it — through `tungstenite` for
//! whole messages, and with hand-built frames where fragmentation, masking or exact bytes matter.
#![allow(clippy::disallowed_types)] // locks are fine in tests: the rule guards the data plane

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tungstenite::Message;

/// Every wait in these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(10);

/// A running echo server; killed when dropped.
struct Echo {
    child: Child,
    addr: SocketAddr,
    driver: &'static str,
}

impl Echo {
    /// Two workers, so the `SO_REUSEPORT` port-0 path is exercised.
    fn start(driver: &'static str) -> Echo {
        Echo::start_with(driver, 2)
    }

    fn start_with(driver: &'static str, workers: usize) -> Echo {
        let workers = workers.to_string();
        let args = [
            "echo",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            &workers,
            "--driver",
            driver,
        ];
        let mut child = Command::new(env!("CARGO_BIN_EXE_capi-ws"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn capi-ws echo");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        // Keep draining stderr after the line so the server never blocks on logging.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening echo=") {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        // Built before waiting, so the child is killed even if the wait fails.
        let mut echo = Echo {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            driver,
        };
        let addr = rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("no `listening echo=` line within {WAIT:?} ({driver}): {e}"));
        echo.addr = addr.parse().expect("listening line carries ip:port");
        echo
    }

    fn tcp(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_write_timeout(Some(WAIT)).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    fn ws(&self) -> tungstenite::WebSocket<TcpStream> {
        let url = format!("ws://{}/echo", self.addr);
        match tungstenite::client(url.as_str(), self.tcp()) {
            Ok((ws, resp)) => {
                assert_eq!(resp.status(), 101);
                ws
            }
            Err(e) => panic!("handshake failed: {e}"),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const MASK: [u8; 4] = [0xA1, 0x5B, 0x07, 0xE3];

/// A masked client frame: `b0` is FIN/RSV/opcode.
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b0];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

/// Read one server frame; asserts it is unmasked. Returns (first byte, payload).
fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).expect("frame header");
    assert_eq!(h[1] & 0x80, 0, "server frames must not be masked");
    let len = match h[1] & 0x7F {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).unwrap();
            u16::from_be_bytes(l) as usize
        }
        127 => {
            let mut l = [0u8; 8];
            s.read_exact(&mut l).unwrap();
            u64::from_be_bytes(l) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).expect("frame payload");
    (h[0], payload)
}

/// Read an HTTP response head byte by byte (so no frame bytes are consumed).
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut b).expect("response head"),
            1,
            "EOF inside head: {head:?}"
        );
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

fn upgrade_request(extra: &str) -> String {
    format!(
        "GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A raw upgraded connection; `first` is sent in the same write as the request head.
fn raw_ws(echo: &Echo, first: &[u8]) -> TcpStream {
    let mut s = echo.tcp();
    let mut out = upgrade_request("").into_bytes();
    out.extend_from_slice(first);
    s.write_all(&out).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    s
}

fn assert_eof(s: &mut TcpStream) {
    let mut b = [0u8; 16];
    assert_eq!(
        s.read(&mut b).expect("read after close"),
        0,
        "server should close the socket"
    );
}

fn text_echo(echo: &Echo) {
    let mut ws = echo.ws();
    ws.send(Message::Text("hello, echo ✓".into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text("hello, echo ✓".into()));
}

fn binary_echo_all_length_forms(echo: &Echo) {
    let mut ws = echo.ws();
    for len in [0usize, 1, 125, 126, 300, 65_535, 65_536, 200_000] {
        let msg: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
        ws.send(Message::Binary(msg.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::Binary(msg), "length {len}");
    }
}

fn one_mib_binary(echo: &Echo) {
    let mut ws = echo.ws();
    let msg: Vec<u8> = (0..1usize << 20)
        .map(|i| (i ^ (i >> 8) ^ (i >> 16)) as u8)
        .collect();
    ws.send(Message::Binary(msg.clone())).unwrap();
    let got = ws.read().unwrap().into_data();
    assert_eq!(got.len(), msg.len());
    assert!(got == msg, "1 MiB payload differs");
}

fn thousand_messages_in_order(echo: &Echo) {
    let mut ws = echo.ws();
    // Queue all 1,000 before reading, so the server sees them pipelined.
    for i in 0..1000 {
        ws.write(Message::Text(format!("message {i}"))).unwrap();
    }
    ws.flush().unwrap();
    for i in 0..1000 {
        assert_eq!(
            ws.read().unwrap(),
            Message::Text(format!("message {i}")),
            "message {i}"
        );
    }
}

fn fragmented_message_with_ping_between(echo: &Echo) {
    // 1. The first fragment travels in the same packet as the request head.
    let mut s = raw_ws(echo, &client_frame(0x01, b"Hel"));
    // 2. A ping between fragments, then the rest of the message in two continuations.
    let mut rest = client_frame(0x89, b"mid");
    rest.extend(client_frame(0x00, b"lo, "));
    rest.extend(client_frame(0x80, b"world"));
    s.write_all(&rest).unwrap();
    // 3. Echoed fragment by fragment, same opcodes and FIN bits, pong in place.
    let want: &[(u8, &[u8])] = &[(0x01, b"Hel"), (0x8A, b"mid"), (0x00, b"lo, "), (0x80, b"world")];
    for (i, (b0, payload)) in want.iter().enumerate() {
        assert_eq!(read_frame(&mut s), (*b0, payload.to_vec()), "frame {i}");
    }
}

fn ping_gets_pong(echo: &Echo) {
    let mut ws = echo.ws();
    ws.send(Message::Ping(b"are you there".to_vec())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Pong(b"are you there".to_vec()));
    // A pong from the client is ignored: the next reply is the text echo.
    ws.send(Message::Pong(b"unsolicited".to_vec())).unwrap();
    ws.send(Message::Text("after pong".into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text("after pong".into()));
}

fn close_handshake(echo: &Echo) {
    let cases: &[(&str, &[u8], &[u8])] = &[
        ("code and reason", b"\x03\xE8bye", &[0x03, 0xE8]),
        ("application code", &[0x0F, 0xA0], &[0x0F, 0xA0]),
        ("empty", b"", b""),
    ];
    for &(name, payload, reply) in cases {
        let mut s = raw_ws(echo, b"");
        s.write_all(&client_frame(0x88, payload)).unwrap();
        assert_eq!(read_frame(&mut s), (0x88, reply.to_vec()), "{name}");
        assert_eof(&mut s);
    }
    // The same through tungstenite: it sees our close reply and a clean end.
    let mut ws = echo.ws();
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(_)) => continue,
            Ok(other) => panic!("unexpected message {other:?}"),
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("unclean close: {e}"),
        }
    }
}

fn protocol_errors_close_1002(echo: &Echo) {
    let cases: &[(&str, Vec<u8>)] = &[
        ("unmasked text", vec![0x81, 0x02, b'h', b'i']),
        ("reserved bit", client_frame(0xC1, b"x")),
        ("ping over 125", client_frame(0x89, &[7u8; 126])),
        ("fragmented ping", client_frame(0x09, b"x")),
        ("lone continuation", client_frame(0x80, b"x")),
    ];
    for (name, bytes) in cases {
        let mut s = raw_ws(echo, b"");
        s.write_all(bytes).unwrap();
        assert_eq!(read_frame(&mut s), (0x88, vec![0x03, 0xEA]), "{name}");
        assert_eof(&mut s);
    }
}

fn health_and_bad_requests(echo: &Echo) {
    let cases: &[(&str, String, &str)] = &[
        (
            "health",
            "GET /health HTTP/1.1\r\nHost: t\r\n\r\n".into(),
            "HTTP/1.1 200 ",
        ),
        (
            "plain GET",
            "GET / HTTP/1.1\r\nHost: t\r\n\r\n".into(),
            "HTTP/1.1 400 ",
        ),
        (
            "no key",
            upgrade_request("").replace("Sec-WebSocket-Key", "X-Key"),
            "HTTP/1.1 400 ",
        ),
        (
            "version 8",
            upgrade_request("").replace("Version: 13", "Version: 8"),
            "HTTP/1.1 400 ",
        ),
    ];
    for (name, req, want) in cases {
        let mut s = echo.tcp();
        s.write_all(req.as_bytes()).unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("response, then EOF");
        assert!(resp.starts_with(want), "{name}: {resp}");
    }
}

fn first_subprotocol_is_selected(echo: &Echo) {
    let mut s = echo.tcp();
    s.write_all(upgrade_request("Sec-WebSocket-Protocol: chat.v2, chat.v1\r\n").as_bytes())
        .unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains("\r\nSec-WebSocket-Protocol: chat.v2\r\n"), "{head}");
}

fn disconnect_mid_frame_keeps_serving(echo: &Echo) {
    // 1. One worker, so every connection below reaches the same runtime (a panic would end it).
    let mut echo = Echo::start_with(echo.driver, 1);
    let echo = &mut echo;
    // 2. Half a 100,000-byte frame, then EOF: the server has already streamed back what it got
    //    (header + 4,986 payload bytes), then closes — it does not wait for the whole message.
    let big = client_frame(0x82, &vec![9u8; 100_000]);
    let mut s = raw_ws(echo, &big[..5000]);
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("partial echo, then EOF");
    let mut want = vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0x86, 0xA0];
    want.extend_from_slice(&[9u8; 5000 - 14]);
    assert!(got == want, "partial echo: {} bytes", got.len());
    // 3. EOF inside a frame header and inside the request head: just closed.
    let mut s = raw_ws(echo, &big[..3]);
    s.shutdown(Shutdown::Write).unwrap();
    assert_eof(&mut s);
    let mut s = echo.tcp();
    s.write_all(b"GET /echo HTTP/1.1\r\nUpgr").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eof(&mut s);
    // 4. A client that resets mid-payload.
    let s = raw_ws(echo, &big[..20_000]);
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
    // 5. The server is still up and still echoes.
    text_echo(echo);
    assert!(echo.child.try_wait().unwrap().is_none(), "server exited");
}

/// Each case runs against its own server, once per driver.
macro_rules! both_drivers {
    ($($case:ident),* $(,)?) => {
        mod iouring {
            $(#[test] fn $case() { super::$case(&super::Echo::start("iouring")); })*
        }
        mod epoll {
            $(#[test] fn $case() { super::$case(&super::Echo::start("epoll")); })*
        }
    };
}

both_drivers!(
    text_echo,
    binary_echo_all_length_forms,
    one_mib_binary,
    thousand_messages_in_order,
    fragmented_message_with_ping_between,
    ping_gets_pong,
    close_handshake,
    protocol_errors_close_1002,
    health_and_bad_requests,
    first_subprotocol_is_selected,
    disconnect_mid_frame_keeps_serving,
);
