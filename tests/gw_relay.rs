//! Gateway core, relay (DESIGN §2 steps 9–11): after the 101 the gateway moves bytes both
//! ways unchanged — messages of any size and count, bytes that ride with the handshake,
//! half-close in each direction, close handshakes from either side. Each test runs under
//! both drivers and checks what the client and the node saw. `mod harness` self-checks the
//! test helpers against each other without a gateway.
#![allow(clippy::disallowed_types)] // locks are fine in tests: the rule guards the data plane

#[macro_use]
mod common;

use std::net::SocketAddr;

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Error as WsError, Message};

use common::client::{raw_upgrade, upgrade, ws_connect};
use common::config::{service, Config};
use common::gateway::{EchoNode, Gateway};
use common::nodes::{Event, Node};
use common::wire::{OP_BINARY, OP_TEXT};

const ROUTE: &str = "/capi/echo/dev";

/// A gateway with one service, echo/dev, whose only node is `node`.
fn gateway_for(node: SocketAddr, driver: &str) -> Gateway {
    Gateway::start_config(&Config::new().with(service("echo", "dev", node)), driver, 1)
}

/// Deterministic pseudo-random bytes (xorshift), so a corrupted byte is noticed anywhere.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn expect_message(ev: Event) -> Message {
    match ev {
        Event::Message(m) => m,
        other => panic!("node: expected a message, got {other:?}"),
    }
}

/// Reads until the connection ends after a close handshake; fails on anything else.
fn read_until_closed(ws: &mut tungstenite::WebSocket<std::net::TcpStream>) {
    loop {
        match ws.read() {
            Ok(Message::Close(_)) => {}
            Err(WsError::ConnectionClosed) => return,
            other => panic!("expected the end of the connection, got {other:?}"),
        }
    }
}

fn echo_binary_text_ping(driver: &str) {
    // The real `capi-ws echo` behind the gateway; text, binary (every byte value), ping.
    let echo = EchoNode::start(driver);
    let gw = gateway_for(echo.addr(), driver);
    let mut ws = ws_connect(gw.ws_addr(), ROUTE, &[]);

    ws.send(Message::Text("hello, gateway".into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text("hello, gateway".into()));

    let all_bytes: Vec<u8> = (0..=255u8).collect();
    ws.send(Message::Binary(all_bytes.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Binary(all_bytes));

    ws.send(Message::Ping(b"are you there".to_vec())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Pong(b"are you there".to_vec()));

    ws.close(None).unwrap();
    read_until_closed(&mut ws);
}

fn node_sees_each_message(driver: &str) {
    // Same exchange against a recording node: the node got exactly what the client sent.
    let node = Node::ws_echo();
    let gw = gateway_for(node.addr(), driver);
    let mut ws = ws_connect(gw.ws_addr(), ROUTE, &[]);
    let head = node.next_head();
    assert_eq!(head.request_line(), "GET / HTTP/1.1");

    ws.send(Message::Text("t1".into())).unwrap();
    ws.send(Message::Binary(vec![0, 1, 2, 255])).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text("t1".into()));
    assert_eq!(ws.read().unwrap(), Message::Binary(vec![0, 1, 2, 255]));
    assert_eq!(expect_message(node.next_event()), Message::Text("t1".into()));
    assert_eq!(
        expect_message(node.next_event()),
        Message::Binary(vec![0, 1, 2, 255])
    );
    assert_eq!(node.accepted(), 1);
    node.check();
}

fn one_mebibyte_message(driver: &str) {
    let node = Node::ws_echo();
    let gw = gateway_for(node.addr(), driver);
    let mut ws = ws_connect(gw.ws_addr(), ROUTE, &[]);
    let big = pattern(1 << 20, 0x5eed);

    ws.send(Message::Binary(big.clone())).unwrap();
    match ws.read().unwrap() {
        Message::Binary(got) => assert!(got == big, "1 MiB echo differs (len {})", got.len()),
        other => panic!("expected the 1 MiB binary echo, got {other:?}"),
    }
    match expect_message(node.next_event()) {
        Message::Binary(got) => assert!(got == big, "node got a different 1 MiB message"),
        other => panic!("node: expected binary, got {other:?}"),
    }
    node.check();
}

fn ten_thousand_messages_in_order(driver: &str) {
    // Pipelined in batches of 100 (bounded in-flight bytes, no deadlock on full buffers).
    const TOTAL: usize = 10_000;
    const BATCH: usize = 100;
    let node = Node::ws_echo();
    let gw = gateway_for(node.addr(), driver);
    let mut ws = ws_connect(gw.ws_addr(), ROUTE, &[]);

    for start in (0..TOTAL).step_by(BATCH) {
        for i in start..start + BATCH {
            ws.write(Message::Text(format!("message {i}"))).unwrap();
        }
        ws.flush().unwrap();
        for i in start..start + BATCH {
            match ws.read().unwrap() {
                Message::Text(t) => assert_eq!(t, format!("message {i}"), "client order"),
                other => panic!("expected echo {i}, got {other:?}"),
            }
        }
    }
    for i in 0..TOTAL {
        assert_eq!(
            expect_message(node.next_event()),
            Message::Text(format!("message {i}")),
            "node order"
        );
    }
    node.check();
}

fn frame_in_same_write_as_upgrade(driver: &str) {
    // The client's first frame rides in the same write as its upgrade request: the gateway
    // must forward it after the head, before anything else.
    let node = Node::ws_echo();
    let gw = gateway_for(node.addr(), driver);
    let early = common::wire::client_frame(OP_TEXT, b"early bird");
    let mut c = raw_upgrade(gw.ws_addr(), &upgrade(ROUTE), &early);

    let echoed = c.read_frame();
    assert_eq!((echoed.opcode, echoed.masked), (OP_TEXT, false));
    assert_eq!(echoed.payload, b"early bird");
    assert_eq!(
        expect_message(node.next_event()),
        Message::Text("early bird".into())
    );

    c.send(OP_BINARY, b"second");
    assert_eq!(c.read_frame().payload, b"second");
    node.check();
}

fn node_first_frame_with_101(driver: &str) {
    // The node writes its 101 and a first frame in one packet: the client gets both, in order.
    let node = Node::first_frame_with_101("hello from node");
    let gw = gateway_for(node.addr(), driver);
    let mut c = raw_upgrade(gw.ws_addr(), &upgrade(ROUTE), &[]);

    let first = c.read_frame();
    assert_eq!((first.opcode, first.masked), (OP_TEXT, false));
    assert_eq!(first.payload, b"hello from node");

    c.send(OP_TEXT, b"and back");
    assert_eq!(c.read_frame().payload, b"and back");
    assert_eq!(
        expect_message(node.next_event()),
        Message::Text("and back".into())
    );
    node.check();
}

fn half_close_client_first(driver: &str) {
    // 1. raw upgrade; 2. client sends bytes and shuts down its write side;
    // 3. node reads them then EOF; 4. node, its direction still open, replies and closes;
    // 5. the client receives the reply and then EOF. Bytes are not frames: relay is blind.
    let node = Node::read_eof_then_reply(b"reply after your EOF");
    let gw = gateway_for(node.addr(), driver);
    let mut c = raw_upgrade(gw.ws_addr(), &upgrade(ROUTE), &[]);

    c.write_raw(b"client part 1;");
    c.write_raw(b"client part 2");
    c.shutdown_write();

    match node.next_event() {
        Event::Bytes(b) => assert_eq!(b, b"client part 1;client part 2"),
        other => panic!("node: expected the client's bytes, got {other:?}"),
    }
    assert_eq!(c.read_to_eof(), b"reply after your EOF");
    node.check();
}

fn half_close_node_first(driver: &str) {
    // 1. node sends bytes and shuts down its write side; 2. client reads them then EOF;
    // 3. client, its direction still open, sends more and shuts down; 4. node gets them.
    let node = Node::write_eof_then_read(b"node speaks first, then FIN");
    let gw = gateway_for(node.addr(), driver);
    let mut c = raw_upgrade(gw.ws_addr(), &upgrade(ROUTE), &[]);

    assert_eq!(c.read_to_eof(), b"node speaks first, then FIN");
    c.write_raw(b"client still talking");
    c.shutdown_write();

    match node.next_event() {
        Event::Bytes(b) => assert_eq!(b, b"client still talking"),
        other => panic!("node: expected the client's bytes, got {other:?}"),
    }
    node.check();
}

fn client_close_propagates(driver: &str) {
    let node = Node::ws_echo();
    let gw = gateway_for(node.addr(), driver);
    let mut ws = ws_connect(gw.ws_addr(), ROUTE, &[]);
    ws.send(Message::Text("before close".into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text("before close".into()));

    // Client closes: node sees the close frame, answers it, and the connection ends.
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "client done".into(),
    }))
    .unwrap();
    match ws.read() {
        Ok(Message::Close(Some(f))) => {
            assert_eq!((f.code, f.reason.as_ref()), (CloseCode::Normal, "client done"))
        }
        other => panic!("expected the node's close reply, got {other:?}"),
    }
    read_until_closed(&mut ws);

    assert_eq!(
        expect_message(node.next_event()),
        Message::Text("before close".into())
    );
    match node.next_event() {
        Event::Closed(Some(f)) => {
            assert_eq!((f.code, f.reason.as_ref()), (CloseCode::Normal, "client done"))
        }
        other => panic!("node: expected the client's close, got {other:?}"),
    }
    assert!(matches!(node.next_event(), Event::Eof), "node: expected EOF");
    node.check();
}

fn node_close_propagates(driver: &str) {
    let node = Node::closer(4000, "node done");
    let gw = gateway_for(node.addr(), driver);
    let mut ws = ws_connect(gw.ws_addr(), ROUTE, &[]);

    // Node closes first: client sees its close frame; its reply reaches the node; both end.
    match ws.read() {
        Ok(Message::Close(Some(f))) => {
            assert_eq!((u16::from(f.code), f.reason.as_ref()), (4000, "node done"))
        }
        other => panic!("expected the node's close frame, got {other:?}"),
    }
    read_until_closed(&mut ws);

    match node.next_event() {
        Event::Closed(Some(f)) => assert_eq!(u16::from(f.code), 4000),
        other => panic!("node: expected the client's close reply, got {other:?}"),
    }
    assert!(matches!(node.next_event(), Event::Eof), "node: expected EOF");
    node.check();
}

drivers!(
    echo_binary_text_ping,
    node_sees_each_message,
    one_mebibyte_message,
    ten_thousand_messages_in_order,
    frame_in_same_write_as_upgrade,
    node_first_frame_with_101,
    half_close_client_first,
    half_close_node_first,
    client_close_propagates,
    node_close_propagates,
);

/// The helpers checked against each other and against tungstenite, with no gateway.
mod harness {
    use std::io::Read;
    use std::net::TcpStream;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::time::Duration;

    use tungstenite::Message;

    use super::common::client::{connect, raw_request, raw_upgrade, try_ws_connect, upgrade, ws_connect};
    use super::common::config::{service, service_at, Config};
    use super::common::eventually;
    use super::common::gateway::{parse_addr_after, EchoNode, Gateway};
    use super::common::nodes::{closed_port, Event, Node};
    use super::common::wire::{self, OP_BINARY, OP_CLOSE, OP_PING, OP_TEXT};
    use super::{expect_message, pattern, read_until_closed};

    #[test]
    fn accept_key_matches_rfc6455_example() {
        assert_eq!(wire::accept_key(wire::SAMPLE_KEY), wire::SAMPLE_ACCEPT);
    }

    #[test]
    fn frame_codec_round_trips() {
        // (case, payload length, masked, expected header length)
        let cases = [
            ("empty", 0, false, 2),
            ("one byte masked", 1, true, 6),
            ("largest 7-bit", 125, false, 2),
            ("smallest 16-bit", 126, true, 8),
            ("largest 16-bit", 65535, false, 4),
            ("smallest 64-bit", 65536, true, 14),
        ];
        for (name, len, masked, header) in cases {
            let payload = pattern(len, len as u64 + 7);
            let bytes = if masked {
                wire::client_frame(OP_BINARY, &payload)
            } else {
                wire::server_frame(OP_BINARY, &payload)
            };
            assert_eq!(bytes.len(), header + len, "{name}: encoded length");
            assert!(wire::decode_frame(&bytes[..bytes.len() - 1]).is_none() || len == 0);
            let (frame, used) = wire::decode_frame(&bytes).unwrap();
            assert_eq!(used, bytes.len(), "{name}: consumed");
            assert!(frame.fin, "{name}: fin");
            assert_eq!(frame.masked, masked, "{name}: mask bit");
            assert_eq!(frame.opcode, OP_BINARY, "{name}: opcode");
            assert!(frame.payload == payload, "{name}: payload");
        }
    }

    #[test]
    fn raw_frames_interoperate_with_tungstenite_node() {
        // My masked frames are read by tungstenite (server) and its frames by my decoder;
        // also proves raw_upgrade's accept check and a frame riding with the head.
        let node = Node::ws_echo();
        let early = wire::client_frame(OP_TEXT, b"early");
        let mut c = raw_upgrade(node.addr(), &upgrade("/direct"), &early);
        assert_eq!(c.read_frame().payload, b"early");
        let big = pattern(70_000, 3);
        c.send(OP_BINARY, &big);
        let back = c.read_frame();
        assert_eq!((back.opcode, back.masked), (OP_BINARY, false));
        assert!(back.payload == big);
        c.send(OP_PING, b"p");
        assert_eq!(c.read_frame().opcode, wire::OP_PONG);
        c.send(OP_CLOSE, &1000u16.to_be_bytes());
        assert_eq!(c.read_frame().opcode, OP_CLOSE);
        assert!(c.read_to_eof().is_empty());
        assert_eq!(node.next_head().request_line(), "GET /direct HTTP/1.1");
        assert_eq!(expect_message(node.next_event()), Message::Text("early".into()));
        assert_eq!(expect_message(node.next_event()), Message::Binary(big));
    }

    #[test]
    fn ws_connect_reaches_recording_node() {
        let node = Node::ws_echo();
        let mut ws = ws_connect(node.addr(), "/direct/x?q=1", &[("X-Test", "yes")]);
        ws.send(Message::Text("hi".into())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::Text("hi".into()));
        let head = node.next_head();
        assert_eq!(head.request_line(), "GET /direct/x?q=1 HTTP/1.1");
        assert_eq!(head.header("x-test"), Some("yes"));
        assert_eq!(head.header("host"), Some(node.addr().to_string().as_str()));
        ws.close(None).unwrap();
        read_until_closed(&mut ws);
        assert_eq!(node.accepted(), 1);
    }

    #[test]
    fn status_node_answer_is_read_whole() {
        let node = Node::status(403, "Forbidden", "node says no");
        let resp = raw_request(node.addr(), &upgrade("/x").bytes());
        assert_eq!(resp.status, 403);
        assert_eq!(resp.body_text(), "node says no");
        assert_eq!(resp.header("x-node"), Some("scripted"));
        assert!(resp.closed);
        assert!(matches!(node.next_event(), Event::Eof));
    }

    #[test]
    fn error_shape_assertion_accepts_and_refuses() {
        let good = Node::status(404, "Not Found", r#"{"errorCode":404,"errorMessage":"no route"}"#);
        raw_request(good.addr(), &upgrade("/x").bytes()).assert_error(404);
        let bad = Node::status(404, "Not Found", r#"{"errorCode":403,"errorMessage":""}"#);
        let resp = raw_request(bad.addr(), &upgrade("/x").bytes());
        assert!(catch_unwind(AssertUnwindSafe(|| resp.assert_error(404))).is_err());
    }

    #[test]
    fn wrong_accept_node_is_refused_by_tungstenite() {
        let node = Node::wrong_accept();
        assert!(try_ws_connect(node.addr(), "/x", &[]).is_err());
        node.next_head();
        assert!(matches!(node.next_event(), Event::Eof));
    }

    #[test]
    fn first_frame_node_sends_frame_with_101() {
        let node = Node::first_frame_with_101("hello");
        let mut ws = ws_connect(node.addr(), "/x", &[]);
        assert_eq!(ws.read().unwrap(), Message::Text("hello".into()));
    }

    #[test]
    fn half_close_scripts_behave() {
        let a = Node::read_eof_then_reply(b"reply");
        let mut c = raw_upgrade(a.addr(), &upgrade("/x"), b"pre-");
        c.write_raw(b"post");
        c.shutdown_write();
        assert!(matches!(a.next_event(), Event::Bytes(b) if b == b"pre-post"));
        assert_eq!(c.read_to_eof(), b"reply");

        let b = Node::write_eof_then_read(b"first");
        let mut c = raw_upgrade(b.addr(), &upgrade("/x"), &[]);
        assert_eq!(c.read_to_eof(), b"first");
        c.write_raw(b"later");
        c.shutdown_write();
        assert!(matches!(b.next_event(), Event::Bytes(x) if x == b"later"));
    }

    #[test]
    fn closer_node_closes_first() {
        let node = Node::closer(4000, "bye");
        let mut ws = ws_connect(node.addr(), "/x", &[]);
        assert!(matches!(ws.read(), Ok(Message::Close(Some(f))) if u16::from(f.code) == 4000));
        read_until_closed(&mut ws);
        assert!(matches!(node.next_event(), Event::Closed(Some(_))));
        assert!(matches!(node.next_event(), Event::Eof));
    }

    #[test]
    fn stall_node_reports_eof_when_dropped() {
        let node = Node::stall();
        let mut s = connect(node.addr());
        wire::write_all(&mut s, &upgrade("/x").bytes()).unwrap();
        node.next_head();
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut buf = [0u8; 1];
        assert!(s.read(&mut buf).is_err(), "stall node must not answer");
        drop(s);
        assert!(matches!(node.next_event(), Event::Eof));
    }

    #[test]
    fn failing_script_fails_the_test() {
        let node = Node::start(|_conn| Err("scripted failure".to_owned()));
        let _s = connect(node.addr());
        eventually("node records the failure", Duration::from_secs(5), || {
            !node.failures().is_empty()
        });
        assert!(node.failures()[0].contains("scripted failure"));
        assert!(catch_unwind(AssertUnwindSafe(|| node.check())).is_err());
        assert!(catch_unwind(AssertUnwindSafe(move || drop(node))).is_err());
    }

    #[test]
    fn closed_port_refuses() {
        let addr = closed_port();
        let err = TcpStream::connect(addr).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn eventually_returns_when_true() {
        let mut n = 0;
        eventually("third attempt", Duration::from_secs(5), || {
            n += 1;
            n >= 3
        });
        assert_eq!(n, 3);
    }

    #[test]
    #[should_panic(expected = "attempts")]
    fn eventually_reports_attempts_on_timeout() {
        eventually("never", Duration::from_millis(50), || false);
    }

    #[test]
    fn listening_line_parsing() {
        let cases = [
            (
                "plain",
                "INFO listening ws=127.0.0.1:8382 admin=off",
                Some("127.0.0.1:8382"),
            ),
            (
                "fields",
                "2024 INFO capi_ws: listening ws=127.0.0.1:40000 admin=127.0.0.1:40001",
                Some("127.0.0.1:40000"),
            ),
            (
                "quoted",
                "listening ws=\"127.0.0.1:1\" admin=off",
                Some("127.0.0.1:1"),
            ),
            (
                "ansi",
                "listening \u{1b}[3mws\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:2 admin=off",
                Some("127.0.0.1:2"),
            ),
            ("ipv6", "listening ws=[::1]:3 admin=off", Some("[::1]:3")),
            ("missing", "starting workers", None),
        ];
        for (name, line, want) in cases {
            let want = want.map(|w| w.parse().unwrap());
            assert_eq!(parse_addr_after(line, "ws="), want, "{name}");
        }
    }

    #[test]
    fn config_yaml_has_contract_shape() {
        let yaml = Config::new()
            .with(service("echo", "dev", "127.0.0.1:9001".parse().unwrap()))
            .with(
                service_at("ghost", "dev", "unresolvable.invalid", 9)
                    .meta("keep-group", "true")
                    .meta("allowed-origins", "http://a.example, http://b.example"),
            )
            .yaml();
        let v: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        let ws = &v["capi"]["websocket"];
        assert_eq!(v["capi"]["mode"].as_str(), Some("websocket"));
        assert_eq!(ws["server"]["port"].as_u64(), Some(0));
        assert_eq!(ws["handshake-timeout-ms"].as_u64(), Some(1000));
        assert_eq!(ws["load-balancing"].as_str(), Some("round-robin"));
        assert_eq!(ws["services"][0]["port"].as_u64(), Some(9001));
        assert_eq!(ws["services"][0]["meta"]["type"].as_str(), Some("websocket"));
        assert_eq!(
            ws["services"][1]["address"].as_str(),
            Some("unresolvable.invalid")
        );
        assert_eq!(ws["services"][1]["meta"]["keep-group"].as_str(), Some("true"));
        assert_eq!(
            ws["services"][1]["meta"]["allowed-origins"].as_str(),
            Some("http://a.example, http://b.example")
        );
        assert_eq!(
            v["camel"]["servlet"]["mapping"]["context-path"].as_str(),
            Some("/capi/*")
        );
    }

    #[test]
    fn request_builder_edits_headers() {
        let req = upgrade("/p")
            .set("sec-websocket-version", "8")
            .remove("Upgrade")
            .add("X-A", "1")
            .add("X-A", "2")
            .method("POST")
            .body(b"xy");
        let text = String::from_utf8(req.bytes()).unwrap();
        assert!(
            text.starts_with("POST /p HTTP/1.1\r\nHost: gw.test\r\n"),
            "{text}"
        );
        assert!(text.contains("Sec-WebSocket-Version: 8\r\n"));
        assert!(!text.contains("Upgrade: websocket"));
        assert!(text.contains("X-A: 1\r\nX-A: 2\r\n"));
        assert!(text.ends_with("\r\n\r\nxy"));
    }

    #[test]
    fn echo_node_binary_echoes_directly() {
        // The real `capi-ws echo` with no gateway: EchoNode start-up, text, 1 MiB, close.
        for driver in ["iouring", "epoll"] {
            let echo = EchoNode::start(driver);
            let mut ws = ws_connect(echo.addr(), "/", &[]);
            ws.send(Message::Text(driver.into())).unwrap();
            assert_eq!(ws.read().unwrap(), Message::Text(driver.into()));
            let big = pattern(1 << 20, 11);
            ws.send(Message::Binary(big.clone())).unwrap();
            assert_eq!(ws.read().unwrap(), Message::Binary(big));
            ws.close(None).unwrap();
            read_until_closed(&mut ws);
        }
    }

    #[test]
    fn gateway_start_reports_a_failed_start() {
        // A config the gateway must refuse (DESIGN §3: exit 2) — the harness reports the exit
        // instead of waiting 15 s.
        let started = std::time::Instant::now();
        let err = match Gateway::try_start("capi:\n  mode: nonsense\n", "epoll", 1, &[]) {
            Ok(_) => panic!("a gateway with mode: nonsense must not start"),
            Err(e) => e,
        };
        assert!(err.contains("exit"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
    }
}
