//! Hostile clients (issue 8 item 2; DESIGN §2 steps 2–5, §9): slowloris heads, a head one byte
//! over `max-header-bytes`, a thousand silent connections, garbage, half-open sockets, a client
//! that stops reading while its node floods it, and request-smuggling shapes. Each gets its
//! exact status or a close, nothing refused reaches the node, and a normal client is served
//! meanwhile. Real binary, both drivers; every wait bounded.
#![allow(clippy::disallowed_types)] // locks and atomics are fine in tests: the rule guards the data plane

#[macro_use]
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::Message;

use common::client::{
    connect, raw_request, raw_upgrade, set_linger_zero, upgrade, ws_connect, RawResponse, Req,
};
use common::config::{service, Config};
use common::eventually;
use common::gateway::Gateway;
use common::nodes::{Event, Node};
use common::wire::{self, OP_TEXT};

const ROUTE: &str = "/capi/echo/dev";
/// Bound on any "closed by the gateway" wait (handshake timeout is 1 s in these configs).
const CLOSE_BOUND: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(15);

fn gateway_for(node: SocketAddr, driver: &str) -> Gateway {
    Gateway::start_config(&Config::new().with(service("echo", "dev", node)), driver, 1)
}

/// A normal client, served while the hostile ones are connected: one echo round trip.
fn served(gw: &Gateway, text: &str) {
    let mut ws = ws_connect(gw.ws_addr(), ROUTE, &[]);
    ws.send(Message::text(text)).unwrap();
    assert_eq!(
        ws.read().unwrap(),
        Message::text(text),
        "normal client not echoed"
    );
    ws.close(None).unwrap();
    while ws.read().is_ok() {}
}

/// What a raw connection got: the bytes until EOF (or reset), and whether it ended within the
/// bound at all.
struct Ending {
    bytes: Vec<u8>,
    after: Duration,
}

/// Reads until the gateway closes (EOF or reset); panics if it is still open after `bound`.
fn read_until_closed(s: &mut TcpStream, bound: Duration, what: &str) -> Ending {
    let started = Instant::now();
    s.set_read_timeout(Some(bound)).unwrap();
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if wire::is_reset(&e) => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "{what}: not closed within {bound:?} ({e}); got {:?}",
                String::from_utf8_lossy(&bytes)
            ),
        }
        assert!(started.elapsed() < bound, "{what}: still open after {bound:?}");
    }
    Ending {
        bytes,
        after: started.elapsed(),
    }
}

/// The status of the answer in `bytes`, or None for a close without an answer.
fn status_of(bytes: &[u8]) -> Option<u16> {
    let end = wire::find_head_end(bytes)?;
    RawResponse::parse_head(&bytes[..end]).ok().map(|r| r.status)
}

fn slowloris_is_cut_at_the_handshake_timeout(driver: &str) {
    // 1. five clients each send a valid upgrade head one byte every 100 ms (the whole head
    //    would take ~17 s); handshake-timeout-ms is 1000;
    // 2. meanwhile a normal client is served;
    // 3. each slow client is closed (EOF/reset, no answer) within the bound, long before its
    //    head is complete, and the node never sees them.
    let node = Node::ws_echo();
    let gw = gateway_for(node.addr(), driver);
    let head = upgrade(ROUTE).bytes();
    let slow: Vec<_> = (0..5)
        .map(|i| {
            let mut s = connect(gw.ws_addr());
            let mut writer = s.try_clone().unwrap();
            let head = head.clone();
            let done = Arc::new(AtomicBool::new(false));
            let sent = Arc::new(AtomicU64::new(0));
            let (d, n) = (done.clone(), sent.clone());
            let t = thread::spawn(move || {
                for b in head {
                    if d.load(Ordering::SeqCst) || writer.write_all(&[b]).is_err() {
                        return;
                    }
                    n.fetch_add(1, Ordering::SeqCst);
                    // The attack's pace, not synchronisation.
                    thread::sleep(Duration::from_millis(100));
                }
            });
            let reader = thread::spawn(move || {
                let end = read_until_closed(&mut s, CLOSE_BOUND, &format!("slow client {i}"));
                done.store(true, Ordering::SeqCst);
                end
            });
            (reader, t, sent)
        })
        .collect();
    served(&gw, "while slowloris");
    for (reader, writer, sent) in slow {
        let end = reader.join().unwrap();
        writer.join().unwrap();
        assert!(end.bytes.is_empty(), "slow client got an answer: {:?}", end.bytes);
        let sent = sent.load(Ordering::SeqCst) as usize;
        assert!(
            sent < head.len(),
            "slow client sent its whole head ({sent} bytes) before the cut"
        );
    }
    assert_eq!(node.accepted(), 1, "only the normal client reaches the node");
}

fn head_one_byte_over_the_limit_is_431(driver: &str) {
    // max-header-bytes 4096: a valid upgrade head of exactly 4096 bytes is relayed; the same
    // head one byte longer gets 431 and never reaches the node.
    let node = Node::ws_echo();
    let gw = gateway_for(node.addr(), driver);
    let sized = |len: usize| {
        let base = upgrade(ROUTE).add("X-Pad", "").bytes().len();
        upgrade(ROUTE).add("X-Pad", &"p".repeat(len - base))
    };
    let at_limit = sized(4096);
    assert_eq!(at_limit.bytes().len(), 4096);
    let mut ws = raw_upgrade(gw.ws_addr(), &at_limit, &[]);
    ws.send(OP_TEXT, b"fits");
    assert_eq!(ws.read_frame().payload, b"fits");
    let pad = at_limit.headers.last().map(|(_, v)| v.len());
    assert_eq!(
        node.next_head().header("x-pad").map(str::len),
        pad,
        "the padded head arrives whole"
    );

    let over = sized(4097);
    assert_eq!(over.bytes().len(), 4097);
    raw_request(gw.ws_addr(), &over.bytes()).assert_error(431);
    // Far over, sent in one write: 431 too (the gateway stops reading at the limit).
    let huge = sized(32 * 1024);
    raw_request(gw.ws_addr(), &huge.bytes()).assert_error(431);
    // A request line alone longer than the limit, never ending.
    let line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(5000));
    raw_request(gw.ws_addr(), line.as_bytes()).assert_error(431);
    assert_eq!(node.accepted(), 1, "an oversized head reached the node");
}

fn thousand_silent_connections(driver: &str) {
    // 1. baseline descriptor count of the gateway;
    // 2. 1,000 connections that never send a byte; a normal client is served meanwhile;
    // 3. every silent one is closed (no answer) within the bound after the 1 s handshake
    //    timeout; the descriptor count returns to its baseline.
    const SILENT: usize = 1000;
    let node = Node::ws_echo();
    let gw = gateway_for(node.addr(), driver);
    served(&gw, "warm-up");
    let baseline = gw.process.fd_count();
    let mut silent: Vec<TcpStream> = (0..SILENT).map(|_| connect(gw.ws_addr())).collect();
    served(&gw, "among the silent");
    for (i, s) in silent.iter_mut().enumerate() {
        let end = read_until_closed(s, CLOSE_BOUND, &format!("silent #{i}"));
        assert!(end.bytes.is_empty(), "silent #{i} got {:?}", end.bytes);
    }
    drop(silent);
    eventually("gateway descriptors back to baseline", WAIT, || {
        gw.process.fd_count() <= baseline
    });
    served(&gw, "after");
    assert_eq!(node.accepted(), 3);
}

/// What a refused shape must get: an exact status, or a close without an answer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Status(u16),
    Close,
}

/// Sends `bytes` on a fresh connection, half-closes nothing, reads until the gateway closes.
fn answer_to(addr: SocketAddr, bytes: &[u8], what: &str) -> (Expect, Vec<u8>) {
    let mut s = connect(addr);
    wire::write_all(&mut s, bytes).unwrap();
    let end = read_until_closed(&mut s, CLOSE_BOUND, what);
    let got = match status_of(&end.bytes) {
        Some(code) => Expect::Status(code),
        None if end.bytes.is_empty() => Expect::Close,
        None => panic!(
            "{what}: unparsable answer {:?}",
            String::from_utf8_lossy(&end.bytes)
        ),
    };
    (got, end.bytes)
}

fn garbage_gets_400_or_a_close(driver: &str) {
    let node = Node::ws_echo();
    let gw = gateway_for(node.addr(), driver);
    let binary: Vec<u8> = (0..2048u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    // (name, bytes, expected)
    #[rustfmt::skip]
    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        ("pseudo-random binary", binary, Expect::Status(400)),
        ("TLS ClientHello", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03".to_vec(), Expect::Status(400)),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), Expect::Status(400)),
        // Leading empty lines are skipped (RFC 9112 §2.2), so this is an unfinished head.
        ("blank lines only", b"\r\n\r\n\r\n\r\n".to_vec(), Expect::Close),
        ("NUL bytes", vec![0u8; 64], Expect::Status(400)),
        ("SSH banner", b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec(), Expect::Status(400)),
        ("request line without version", b"GET /capi/echo/dev\r\n\r\n".to_vec(), Expect::Status(400)),
        ("lower-case version", b"GET /capi/echo/dev http/1.1\r\n\r\n".to_vec(), Expect::Status(400)),
        ("invalid UTF-8 target", b"GET /capi/\xff\xfe HTTP/1.1\r\n\r\n".to_vec(), Expect::Status(400)),
        ("header without colon", b"GET /capi/echo/dev HTTP/1.1\r\nHost gw\r\n\r\n".to_vec(), Expect::Status(400)),
        ("partial head then FIN", b"GET /capi/echo/dev HTTP/1.1\r\nHo".to_vec(), Expect::Close),
    ];
    for (name, bytes, want) in cases {
        let mut s = connect(gw.ws_addr());
        wire::write_all(&mut s, &bytes).unwrap();
        // A client that sends garbage may also stop sending: the gateway must still answer.
        s.shutdown(Shutdown::Write).unwrap();
        let end = read_until_closed(&mut s, CLOSE_BOUND, name);
        let got = match status_of(&end.bytes) {
            Some(code) => Expect::Status(code),
            None if end.bytes.is_empty() => Expect::Close,
            None => panic!(
                "{name}: unparsable answer {:?}",
                String::from_utf8_lossy(&end.bytes)
            ),
        };
        assert_eq!(
            got,
            want,
            "case {name}: {:?}",
            String::from_utf8_lossy(&end.bytes)
        );
    }
    served(&gw, "after garbage");
    assert_eq!(node.accepted(), 1, "garbage reached the node");
}

fn half_open_sockets(driver: &str) {
    // 1. half a head, then the client's write side shut: closed at once, no answer, nothing
    //    reaches the node;
    // 2. a whole upgrade, then the write side shut at once: still relayed — 101, the node sees
    //    the client's EOF and ends its side, the client sees EOF;
    // 3. an upgraded client resets mid-relay: the node sees its connection end, and another
    //    relayed client keeps echoing.
    let node = Node::raw_echo();
    // A long handshake timeout: the half head must be closed on EOF, not at the timeout.
    let config = Config {
        handshake_timeout_ms: 10_000,
        ..Config::new().with(service("echo", "dev", node.addr()))
    };
    let gw = Gateway::start_config(&config, driver, 1);

    let mut s = connect(gw.ws_addr());
    wire::write_all(&mut s, b"GET /capi/echo/dev HTTP/1.1\r\nHost: gw\r\n").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let end = read_until_closed(&mut s, CLOSE_BOUND, "half head then FIN");
    assert!(end.bytes.is_empty(), "answered a half head: {:?}", end.bytes);
    assert!(end.after < CLOSE_BOUND, "waited for the timeout: {:?}", end.after);
    assert_eq!(node.accepted(), 0);

    let mut ws = raw_upgrade(
        gw.ws_addr(),
        &upgrade(ROUTE),
        &wire::client_frame(OP_TEXT, b"last"),
    );
    ws.shutdown_write();
    let echoed = ws.read_to_eof();
    assert_eq!(
        wire::decode_frame(&echoed).map(|(f, _)| f.payload),
        Some(b"last".to_vec())
    );
    assert!(matches!(node.next_event(), Event::Eof));

    let mut other = raw_upgrade(gw.ws_addr(), &upgrade(ROUTE), &[]);
    let resetter = raw_upgrade(gw.ws_addr(), &upgrade(ROUTE), &[]);
    set_linger_zero(&resetter.stream).unwrap();
    drop(resetter);
    assert!(
        matches!(node.next_event(), Event::Eof),
        "node side of the reset client not closed"
    );
    other.send(OP_TEXT, b"unaffected");
    assert_eq!(other.read_frame().payload, b"unaffected");
    node.check();
}

/// VmRSS of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Byte `i` of the flood: a pattern the reader checks, so loss or reordering shows.
fn flood_byte(i: u64) -> u8 {
    (i % 251) as u8
}

fn client_that_stops_reading(driver: &str) {
    // 1. the node floods its client with a byte pattern as fast as it can; the client reads
    //    nothing; the node's writes stall once the kernel buffers are full (backpressure
    //    through the gateway: no userspace queue);
    // 2. gateway RSS grew by less than 4 MiB meanwhile, and a normal client is served;
    // 3. the client then reads everything: exactly the bytes the node wrote, in order.
    let written = Arc::new(AtomicU64::new(0));
    let stalled = Arc::new(AtomicBool::new(false));
    let (w, st) = (written.clone(), stalled.clone());
    let flood = Node::start(move |mut conn| {
        conn.handshake()?;
        conn.stream
            .set_write_timeout(Some(Duration::from_millis(500)))
            .map_err(|e| e.to_string())?;
        let mut chunk = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            for (k, b) in chunk.iter_mut().enumerate() {
                *b = flood_byte(total + k as u64);
            }
            match conn.stream.write(&chunk) {
                Ok(n) => {
                    total += n as u64;
                    w.store(total, Ordering::SeqCst);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => return Err(format!("flood write: {e}")),
            }
            if total > 256 * 1024 * 1024 {
                return Err("256 MiB went into a client that reads nothing".into());
            }
        }
        st.store(true, Ordering::SeqCst);
        conn.stream.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
        conn.emit(Event::Eof);
        Ok(())
    });
    let echo = Node::ws_echo();
    let config = Config::new()
        .with(service("flood", "dev", flood.addr()))
        .with(service("echo", "dev", echo.addr()));
    let gw = Gateway::start_config(&config, driver, 1);
    served(&gw, "warm-up");
    let before = rss_kib(gw.pid());

    let mut sink = raw_upgrade(gw.ws_addr(), &upgrade("/capi/flood/dev"), &[]);
    eventually("the node's writes stall", WAIT, || stalled.load(Ordering::SeqCst));
    let total = written.load(Ordering::SeqCst);
    let grown = rss_kib(gw.pid()).saturating_sub(before);
    eprintln!("flood: node wrote {total} bytes before stalling; gateway RSS {before} KiB, +{grown} KiB");
    assert!(
        grown < 4 * 1024,
        "gateway RSS grew {grown} KiB while relaying into a stalled client"
    );
    assert!(
        total < 128 * 1024 * 1024,
        "{total} bytes buffered for a client that reads nothing"
    );
    served(&gw, "during the flood");

    let got = sink.read_to_eof();
    assert_eq!(got.len() as u64, total, "bytes lost or invented");
    if let Some(i) = got
        .iter()
        .enumerate()
        .position(|(i, &b)| b != flood_byte(i as u64))
    {
        panic!("byte {i} of the flood is wrong");
    }
    assert!(matches!(flood.next_event(), Event::Eof));
}

fn smuggling_shapes(driver: &str) {
    // Each shape: its exact status (or a close) and nothing reaches the node.
    let node = Node::ws_echo();
    let gw = gateway_for(node.addr(), driver);
    let raw = |head: &str| head.replace('\n', "\r\n").into_bytes();
    let ws = "Upgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n\
              Sec-WebSocket-Version: 13\n";
    // (name, request bytes, expected)
    #[rustfmt::skip]
    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        ("duplicate Content-Length 0", upgrade(ROUTE).add("Content-Length", "0").add("Content-Length", "0").bytes(), Expect::Status(400)),
        ("conflicting Content-Length", upgrade(ROUTE).add("Content-Length", "0").add("Content-Length", "5").body(b"GET /").bytes(), Expect::Status(400)),
        ("Content-Length list", upgrade(ROUTE).add("Content-Length", "0, 5").bytes(), Expect::Status(400)),
        ("Content-Length with sign", upgrade(ROUTE).add("Content-Length", "+0").bytes(), Expect::Status(400)),
        ("Content-Length carrying a request", upgrade(ROUTE).add("Content-Length", "24").body(b"GET /admin HTTP/1.1\r\n\r\n").bytes(), Expect::Status(400)),
        ("Transfer-Encoding chunked", upgrade(ROUTE).add("Transfer-Encoding", "chunked").body(b"0\r\n\r\n").bytes(), Expect::Status(400)),
        ("Transfer-Encoding identity", upgrade(ROUTE).add("Transfer-Encoding", "identity").bytes(), Expect::Status(400)),
        ("Transfer-Encoding and Content-Length 0", upgrade(ROUTE).add("Content-Length", "0").add("Transfer-Encoding", "chunked").bytes(), Expect::Status(400)),
        ("Transfer-Encoding empty", upgrade(ROUTE).add("Transfer-Encoding", "").bytes(), Expect::Status(400)),
        ("transfer-encoding lower-case, tab", raw(&format!("GET {ROUTE} HTTP/1.1\n{ws}transfer-encoding:\tchunked\n\n")), Expect::Status(400)),
        ("space before the colon", raw(&format!("GET {ROUTE} HTTP/1.1\n{ws}Transfer-Encoding : chunked\n\n")), Expect::Status(400)),
        ("obs-fold continuation", raw(&format!("GET {ROUTE} HTTP/1.1\n{ws}X-A: b\n c\n\n")), Expect::Status(400)),
        ("obs-fold hiding Transfer-Encoding", raw(&format!("GET {ROUTE} HTTP/1.1\n{ws}X-A: b\n Transfer-Encoding: chunked\n\n")), Expect::Status(400)),
        ("NUL in a header value", format!("GET {ROUTE} HTTP/1.1\r\n{}X-A: a\0b\r\n\r\n", ws.replace('\n', "\r\n")).into_bytes(), Expect::Status(400)),
        ("bare CR in a header value", format!("GET {ROUTE} HTTP/1.1\r\n{}X-A: a\rTransfer-Encoding: chunked\r\n\r\n", ws.replace('\n', "\r\n")).into_bytes(), Expect::Status(400)),
        ("absolute-form target", upgrade("http://gw.test/capi/echo/dev").bytes(), Expect::Status(400)),
        ("absolute-form to another host", upgrade("http://127.0.0.1:1/capi/echo/dev").bytes(), Expect::Status(400)),
        ("asterisk target", upgrade("*").bytes(), Expect::Status(400)),
        ("OPTIONS asterisk", upgrade("*").method("OPTIONS").bytes(), Expect::Status(400)),
        ("authority-form", upgrade("gw.test:8382").bytes(), Expect::Status(400)),
        ("CONNECT", upgrade("127.0.0.1:22").method("CONNECT").bytes(), Expect::Status(405)),
        ("encoded dot-dot", upgrade("/capi/echo/dev/%2e%2e/%2e%2e/admin").bytes(), Expect::Status(400)),
        ("mixed-case encoded dot-dot", upgrade("/capi/echo/dev/%2E%2e/x").bytes(), Expect::Status(400)),
        ("half-encoded dot-dot", upgrade("/capi/echo/dev/.%2e/x").bytes(), Expect::Status(400)),
        ("dot-dot behind an encoded slash", upgrade("/capi/echo/dev/x%2f..%2fadmin").bytes(), Expect::Status(400)),
        ("dot-dot out of the context path", upgrade("/capi/../capi/echo/dev").bytes(), Expect::Status(400)),
        ("encoded backslash", upgrade("/capi/echo/dev/..%5cadmin").bytes(), Expect::Status(400)),
        ("encoded CR LF in the path", upgrade("/capi/echo/dev/a%0d%0aX-Injected:%201").bytes(), Expect::Status(400)),
        ("encoded NUL in the path", upgrade("/capi/echo/dev/a%00b").bytes(), Expect::Status(400)),
        ("malformed escape", upgrade("/capi/echo/dev/%zz").bytes(), Expect::Status(400)),
        ("HTTP/1.0 upgrade", { let mut r: Req = upgrade(ROUTE); r.version = "HTTP/1.0".into(); r.bytes() }, Expect::Status(400)),
        ("two keys", upgrade(ROUTE).add("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA==").bytes(), Expect::Status(400)),
    ];
    for (name, bytes, want) in cases {
        let (got, answer) = answer_to(gw.ws_addr(), &bytes, name);
        assert_eq!(got, want, "case {name}: {:?}", String::from_utf8_lossy(&answer));
        if let Expect::Status(code) = want {
            let end = wire::find_head_end(&answer).unwrap();
            let mut resp = RawResponse::parse_head(&answer[..end]).unwrap();
            resp.body = answer[end..].to_vec();
            resp.closed = true;
            resp.assert_error(code);
        }
    }
    served(&gw, "after smuggling attempts");
    assert_eq!(node.accepted(), 1, "a smuggling shape reached the node");
}

drivers!(
    slowloris_is_cut_at_the_handshake_timeout,
    head_one_byte_over_the_limit_is_431,
    thousand_silent_connections,
    garbage_gets_400_or_a_close,
    half_open_sockets,
    client_that_stops_reading,
    smuggling_shapes,
);
