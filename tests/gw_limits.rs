//! Descriptor limits (DESIGN §10, §12; issue 6): under a low hard `RLIMIT_NOFILE` (the gateway
//! raises its soft limit to the hard one, so the test lowers the hard limit with `prlimit`),
//! accept runs out of descriptors, backs off without spinning, and serves again once
//! descriptors are free.
#![allow(clippy::disallowed_types)] // locks are fine in tests: the rule guards the data plane

#[macro_use]
mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::client::{connect, try_ws_connect};
use common::config::{service, Config};
use common::eventually;
use common::gateway::{EchoNode, Gateway};
use tungstenite::Message;

const WAIT: Duration = Duration::from_secs(15);
/// The gateway needs about a dozen descriptors for itself (stdio, runtime, listeners, admin,
/// signal pipe); this leaves room for only a few connections.
const NOFILE: u64 = 28;
/// More idle clients than the limit leaves room for.
const CLIENTS: usize = 40;

/// CPU time (user + system) of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn emfile_is_survived(driver: &str) {
    // 1. hard limit NOFILE; idle clients use up the descriptors -> accept fails (EMFILE),
    //    logged once, with back-off (the process does not burn a core meanwhile);
    // 2. the clients leave -> the gateway accepts again and relays a WebSocket echo.
    let node = EchoNode::start(driver);
    let config = Config {
        handshake_timeout_ms: 60_000,
        ..Config::new().with(service("echo", "dev", node.addr()).meta("type", "websocket"))
    };
    let limit = format!("--nofile={NOFILE}:{NOFILE}");
    let gw = Gateway::try_start_via(&["prlimit", &limit, "--"], &config.yaml(), driver, 1, &[])
        .unwrap_or_else(|e| panic!("gateway did not start under {limit}: {e}"));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", gw.pid())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    assert!(line.contains(&format!("{NOFILE}")), "limit not applied: {line}");

    let clients: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(gw.ws_addr())).collect();
    eventually("accept ran out of descriptors", WAIT, || {
        gw.logs().contains("backing off")
    });
    let before = cpu_ticks(gw.pid());
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_ticks(gw.pid()) - before;
    // 100 ticks = one core for the whole second; back-off keeps it far below.
    assert!(
        spent < 50,
        "the gateway spun while out of descriptors: {spent} ticks in 1 s"
    );

    drop(clients);
    eventually(
        "serves again after descriptors are freed",
        WAIT,
        || match try_ws_connect(gw.ws_addr(), "/capi/echo/dev", &[]) {
            Ok((mut ws, _)) => {
                ws.send(Message::text("back")).unwrap();
                matches!(ws.read(), Ok(Message::Text(t)) if t.as_str() == "back")
            }
            Err(_) => false,
        },
    );
    assert!(gw.logs().contains("accepting again"), "{}", gw.logs());
}

drivers!(emfile_is_survived);
