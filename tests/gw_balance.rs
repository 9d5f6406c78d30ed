//! Gateway core, load balancing (DESIGN §6): round-robin per worker spreads sequential
//! connections exactly evenly; a refusing node is skipped with no client error;
//! least-connections keeps held connections even. Counts are what each node accepted.
//! Both drivers; `--workers 1` so one worker's balancer sees every connection.
#![allow(clippy::disallowed_types)] // locks are fine in tests: the rule guards the data plane

#[macro_use]
mod common;

use std::net::TcpStream;

use tungstenite::{Error as WsError, Message, WebSocket};

use common::client::ws_connect;
use common::config::{service, Config};
use common::gateway::Gateway;
use common::nodes::{closed_port, Node};

const ROUTE: &str = "/capi/echo/dev";

/// One message round trip, then a clean close handshake until the connection ends.
fn echo_once_and_close(mut ws: WebSocket<TcpStream>, text: String) {
    ws.send(Message::Text(text.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text(text));
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(_)) => {}
            Err(WsError::ConnectionClosed) => return,
            other => panic!("expected the end of the connection, got {other:?}"),
        }
    }
}

fn round_robin_is_exact(driver: &str) {
    // 300 sequential connections over 3 nodes, one worker → exactly 100 each.
    let nodes = [Node::ws_echo(), Node::ws_echo(), Node::ws_echo()];
    let mut config = Config::new();
    for n in &nodes {
        config = config.with(service("echo", "dev", n.addr()));
    }
    let gw = Gateway::start_config(&config, driver, 1);
    for i in 0..300 {
        let ws = ws_connect(gw.ws_addr(), ROUTE, &[]);
        echo_once_and_close(ws, format!("conn {i}"));
    }
    let counts: Vec<usize> = nodes.iter().map(Node::accepted).collect();
    assert_eq!(counts, [100, 100, 100]);
    for n in &nodes {
        n.check();
    }
}

fn dead_node_is_skipped(driver: &str) {
    // One of three nodes refuses connections: 20 clients all succeed (failover), and the two
    // live nodes share them.
    let a = Node::ws_echo();
    let b = Node::ws_echo();
    let config = Config::new()
        .with(service("echo", "dev", a.addr()))
        .with(service("echo", "dev", closed_port()))
        .with(service("echo", "dev", b.addr()));
    let gw = Gateway::start_config(&config, driver, 1);
    for i in 0..20 {
        let ws = ws_connect(gw.ws_addr(), ROUTE, &[]);
        echo_once_and_close(ws, format!("conn {i}"));
    }
    assert_eq!(a.accepted() + b.accepted(), 20);
    assert!(
        a.accepted() > 0 && b.accepted() > 0,
        "both live nodes used: {} / {}",
        a.accepted(),
        b.accepted()
    );
    a.check();
    b.check();
}

fn least_connections_balances_held(driver: &str) {
    // 10 connections held open over 2 nodes with least-connections → 5 and 5.
    let a = Node::ws_echo();
    let b = Node::ws_echo();
    let mut config =
        Config::new()
            .with(service("echo", "dev", a.addr()))
            .with(service("echo", "dev", b.addr()));
    config.load_balancing = "least-connections".into();
    let gw = Gateway::start_config(&config, driver, 1);
    let mut held = Vec::new();
    for i in 0..10 {
        let mut ws = ws_connect(gw.ws_addr(), ROUTE, &[]);
        ws.send(Message::Text(format!("held {i}"))).unwrap();
        assert_eq!(ws.read().unwrap(), Message::Text(format!("held {i}")));
        held.push(ws);
    }
    assert_eq!((a.accepted(), b.accepted()), (5, 5));
    for (i, ws) in held.into_iter().enumerate() {
        echo_once_and_close(ws, format!("bye {i}"));
    }
    a.check();
    b.check();
}

drivers!(
    round_robin_is_exact,
    dead_node_is_skipped,
    least_connections_balances_held,
);
