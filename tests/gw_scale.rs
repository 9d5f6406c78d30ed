//! Gateway core at scale (DESIGN §2 "How to splice", §12 descriptor limits): 1,000 concurrent
//! relayed connections all echo; 5,000 idle relayed connections park no io-wq (`iou-wrk`)
//! thread and cost the gateway ≤ 2 descriptors each; closing them gives the descriptors back.
//! Both drivers, `--workers 2`, the real echo node; the tests of this file run one at a time.
#![allow(clippy::disallowed_types)] // locks are fine in tests: the rule guards the data plane

#[macro_use]
mod common;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tungstenite::{Error as WsError, Message};

use common::client::{raw_upgrade, upgrade, ws_connect};
use common::config::{service, Config};
use common::eventually;
use common::gateway::{EchoNode, Gateway};
use common::wire::OP_TEXT;

const ROUTE: &str = "/capi/echo/dev";
/// Descriptors the gateway may hold beyond its idle baseline after every client left: room
/// for a per-worker pipe pool (DESIGN §2), far below one leaked socket per connection.
const FD_SLACK: usize = 200;

/// Serializes the heavy tests: descriptors, ephemeral ports and 2 shared cores.
fn heavy() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn start(driver: &str) -> (EchoNode, Gateway) {
    let echo = EchoNode::start(driver);
    let gw = Gateway::start_config(
        &Config::new().with(service("echo", "dev", echo.addr())),
        driver,
        2,
    );
    (echo, gw)
}

fn thousand_concurrent_connections(driver: &str) {
    const N: usize = 1_000;
    let _serial = heavy();
    let (_echo, gw) = start(driver);
    let baseline = gw.process.fd_count();

    // 1. open all; 2. one message on each while all are open; 3. close all; 4. fds return.
    let mut conns: Vec<_> = (0..N).map(|_| ws_connect(gw.ws_addr(), ROUTE, &[])).collect();
    for (i, ws) in conns.iter_mut().enumerate() {
        ws.send(Message::Text(format!("connection {i}"))).unwrap();
    }
    for (i, ws) in conns.iter_mut().enumerate() {
        assert_eq!(ws.read().unwrap(), Message::Text(format!("connection {i}")));
    }
    for ws in conns.iter_mut() {
        ws.close(None).unwrap();
    }
    for (i, ws) in conns.iter_mut().enumerate() {
        loop {
            match ws.read() {
                Ok(Message::Close(_)) => {}
                Err(WsError::ConnectionClosed) => break,
                other => panic!("connection {i}: expected its end, got {other:?}"),
            }
        }
    }
    drop(conns);
    eventually(
        &format!("gateway fds back near baseline {baseline}"),
        Duration::from_secs(10),
        || gw.process.fd_count() <= baseline + FD_SLACK,
    );
}

fn five_thousand_idle_connections(driver: &str) {
    const N: usize = 5_000;
    let _serial = heavy();
    let (_echo, gw) = start(driver);
    let baseline = gw.process.fd_count();

    let mut conns: Vec<_> = (0..N)
        .map(|_| raw_upgrade(gw.ws_addr(), &upgrade(ROUTE), &[]))
        .collect();
    // Every 100th connection does a round trip: the relays are live, not just accepted.
    for (i, c) in conns.iter_mut().enumerate().step_by(100) {
        let text = format!("idle {i}");
        c.send(OP_TEXT, text.as_bytes());
        assert_eq!(c.read_frame().payload, text.as_bytes(), "connection {i}");
    }

    // Idle relays must not park kernel io-wq workers (no io_uring SPLICE on quiet sockets).
    let names = gw.process.thread_names();
    let iou: Vec<&String> = names.iter().filter(|n| n.starts_with("iou-wrk")).collect();
    assert!(
        iou.is_empty(),
        "{} iou-wrk threads under {N} idle connections ({} threads in all)",
        iou.len(),
        names.len()
    );
    // Two sockets per relayed connection, pipes only while data moves.
    let fds = gw.process.fd_count();
    assert!(
        fds <= 2 * N + 100,
        "{fds} descriptors for {N} idle connections (baseline {baseline})"
    );

    drop(conns);
    eventually(
        &format!("gateway fds back near baseline {baseline}"),
        Duration::from_secs(15),
        || gw.process.fd_count() <= baseline + FD_SLACK,
    );
}

drivers!(thousand_concurrent_connections, five_thousand_idle_connections);
