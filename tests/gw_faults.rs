//! Faults on the gateway core (issue 8 item 3; DESIGN §2 steps 8–11, §9, §10): a node that
//! resets mid-stream (its client sees the close, other connections go on), a node that accepts
//! but never answers 101 (504 within `upstream-timeout-ms`, the worker serving others
//! meanwhile), and a worker at `capi.websocket.max-connections` held by silent clients (503 at
//! once, slots freed at the handshake timeout). Real binary, both drivers, bounded waits.
//! Consul and JWKS faults come with those capabilities.
#![allow(clippy::disallowed_types)] // locks are fine in tests: the rule guards the data plane

#[macro_use]
mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use tungstenite::Message;

use common::client::{connect, echo_once, raw_request, set_linger_zero, try_ws_connect, upgrade, ws_connect};
use common::config::{service, Config};
use common::eventually;
use common::gateway::{EchoNode, Gateway};
use common::nodes::{ws_echo_loop, Event, Node};
use common::wire;

const WAIT: Duration = Duration::from_secs(15);

fn node_reset_mid_stream(driver: &str) {
    // 1. two clients relayed to one node: connection #0 echoes one message, and on the next
    //    the node resets it (RST, not FIN); connection #1 is a plain echo;
    // 2. client #0 sees its connection end (close or error, within the bound);
    // 3. client #1 keeps echoing, and a new client is served.
    let node = Node::start(|mut conn| {
        let rest = conn.handshake()?;
        conn.stream.set_read_timeout(None).map_err(|e| e.to_string())?;
        if conn.index == 0 {
            let mut pending = rest;
            let frame = wire::read_frame(&mut conn.stream, &mut pending)?;
            wire::write_all(
                &mut conn.stream,
                &wire::server_frame(frame.opcode, &frame.payload),
            )?;
            // The echo is out; the client's next frame triggers the reset.
            wire::read_frame(&mut conn.stream, &mut pending)?;
            set_linger_zero(&conn.stream)?;
            conn.emit(Event::Eof);
            return Ok(()); // dropping the stream sends the reset
        }
        let (mut ws, events) = conn.into_ws(rest);
        ws_echo_loop(&mut ws, &events)
    });
    let gw = Gateway::start_config(
        &Config::new().with(service("echo", "dev", node.addr())),
        driver,
        1,
    );

    let mut doomed = ws_connect(gw.ws_addr(), "/capi/echo/dev", &[]);
    let mut other = ws_connect(gw.ws_addr(), "/capi/echo/dev", &[]);
    echo_once(&mut other, "before");
    echo_once(&mut doomed, "last words");
    doomed.send(Message::text("reset me")).unwrap();
    assert!(
        matches!(node.next_event(), Event::Message(_)),
        "other's message seen"
    );
    assert!(
        matches!(node.next_event(), Event::Eof),
        "node reset its first connection"
    );

    let started = Instant::now();
    match doomed.read() {
        Ok(Message::Close(_)) | Err(_) => {}
        Ok(m) => panic!("unexpected message after the reset: {m:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5), "reset not propagated");
    echo_once(&mut other, "after the reset");
    let mut fresh = ws_connect(gw.ws_addr(), "/capi/echo/dev", &[]);
    echo_once(&mut fresh, "new");
    node.check();
}

fn node_never_answers_101(driver: &str) {
    // 1. upstream-timeout-ms 500; the node accepts and reads the head but never answers;
    // 2. while that handshake waits, the same (single) worker relays another client;
    // 3. the client gets 504 after the timeout and within the bound; the node's connection
    //    is closed by the gateway.
    let stall = Node::stall();
    let echo = EchoNode::start(driver);
    let config = Config {
        upstream_timeout_ms: 500,
        ..Config::new()
            .with(service("stall", "dev", stall.addr()))
            .with(service("echo", "dev", echo.addr()))
    };
    let gw = Gateway::start_config(&config, driver, 1);
    let started = Instant::now();
    let waiting = std::thread::spawn({
        let addr = gw.ws_addr();
        move || raw_request(addr, &upgrade("/capi/stall/dev").bytes())
    });
    stall.next_head();
    let mut ws = ws_connect(gw.ws_addr(), "/capi/echo/dev", &[]);
    echo_once(&mut ws, "served during the stall");
    let resp = waiting.join().unwrap();
    let waited = started.elapsed();
    resp.assert_error(504);
    assert!(
        waited >= Duration::from_millis(500),
        "504 before the timeout: {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "504 after {waited:?}");
    assert!(matches!(
        stall.next_event_within(Duration::from_secs(5)),
        Event::Eof
    ));
    stall.check();
}

fn worker_at_max_connections(driver: &str) {
    // 1. one worker, capped at 2; two silent clients take both slots;
    // 2. a third connection gets 503 at once (before the handshake timeout of 2 s);
    // 3. the silent ones are cut at the handshake timeout, the slots free up, and a client is
    //    relayed; with one relayed and one slot left, the next silent one fills the cap again.
    let echo = EchoNode::start(driver);
    let config = Config {
        handshake_timeout_ms: 2000,
        ..Config::new().with(service("echo", "dev", echo.addr()))
    };
    let yaml = format!("{}capi.websocket.max-connections: 2\n", config.yaml());
    let gw = Gateway::start(&yaml, driver, 1);

    let mut silent: Vec<TcpStream> = (0..2).map(|_| connect(gw.ws_addr())).collect();
    // The gateway counts a connection when its task starts: wait until both are counted by
    // watching a third get 503 (bounded).
    let started = Instant::now();
    eventually("a third connection is refused at the cap", WAIT, || {
        let r = raw_request(gw.ws_addr(), &upgrade("/capi/echo/dev").bytes());
        r.status == 503
    });
    let r = raw_request(gw.ws_addr(), &upgrade("/capi/echo/dev").bytes());
    r.assert_error(503);
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "503 only after the silent ones left"
    );

    for s in &mut silent {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        match s.read_to_end(&mut got) {
            Ok(_) => {}
            Err(e) if wire::is_reset(&e) => {}
            Err(e) => panic!("silent client not cut at the handshake timeout: {e}"),
        }
        assert!(got.is_empty(), "silent client got {got:?}");
    }
    let mut ws = ws_connect(gw.ws_addr(), "/capi/echo/dev", &[]);
    echo_once(&mut ws, "slot freed");
    let _filler = connect(gw.ws_addr());
    eventually(
        "the cap holds again with one relayed and one silent",
        WAIT,
        || matches!(try_ws_connect(gw.ws_addr(), "/capi/echo/dev", &[]), Err(e) if e.contains("503")),
    );
    echo_once(&mut ws, "relayed one unaffected");
}

drivers!(
    node_reset_mid_stream,
    node_never_answers_101,
    worker_at_max_connections
);
