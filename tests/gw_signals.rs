//! Signal tests (DESIGN §10; issue 6), in their own file (STYLE §6): SIGHUP reload (a new
//! static service appears while an open connection keeps echoing; a bad file keeps the old
//! config), SIGTERM drain (listeners close, open connections run on, exit 0 when the last one
//! closes; the drain timeout closes a connection that never ends; a second signal exits 1),
//! and a zero-downtime restart with a second process on the same port.
#![allow(clippy::disallowed_types)] // locks are fine in tests: the rule guards the data plane

#[macro_use]
mod common;

use std::ffi::OsString;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::client::{echo_once, raw_request, try_ws_connect, upgrade, ws_connect};
use common::config::{service, Config};
use common::eventually;
use common::gateway::{parse_addr_after, with_loopback_admin, EchoNode, Gateway, Process};
use tungstenite::{Message, WebSocket};

const WAIT: Duration = Duration::from_secs(10);

fn close(mut ws: WebSocket<TcpStream>) {
    ws.close(None).unwrap();
    while ws.read().is_ok() {}
}

fn refused(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        Ok(_) => false,
    }
}

fn rewrite(gw: &Gateway, yaml: &str) {
    std::fs::write(gw.config_path(), with_loopback_admin(yaml)).unwrap();
}

fn sighup_adds_a_service_while_open_connection_echoes(driver: &str) {
    // 1. gateway with echo/dev; a connection is relayed;
    // 2. the file gains second/dev; SIGHUP;
    // 3. second/dev routes, and the open connection still echoes.
    let node = EchoNode::start(driver);
    let one = Config::new().with(service("echo", "dev", node.addr()).meta("type", "websocket"));
    let gw = Gateway::start_config(&one, driver, 2);
    let mut ws = ws_connect(gw.ws_addr(), "/capi/echo/dev", &[]);
    echo_once(&mut ws, "before");
    assert_eq!(
        raw_request(gw.ws_addr(), &upgrade("/capi/second/dev").bytes()).status,
        404
    );

    let two = one
        .clone()
        .with(service("second", "dev", node.addr()).meta("type", "websocket"));
    rewrite(&gw, &two.yaml());
    gw.process.signal(libc::SIGHUP);
    eventually("second/dev routes after SIGHUP", WAIT, || {
        try_ws_connect(gw.ws_addr(), "/capi/second/dev", &[]).is_ok()
    });
    echo_once(&mut ws, "after the reload");
    assert!(gw.logs().contains("configuration reloaded"), "{}", gw.logs());
    close(ws);
}

fn sighup_with_a_bad_file_keeps_the_old_config(driver: &str) {
    let node = EchoNode::start(driver);
    let config = Config::new().with(service("echo", "dev", node.addr()).meta("type", "websocket"));
    let gw = Gateway::start_config(&config, driver, 1);
    rewrite(
        &gw,
        &format!("{}capi.websocket.connect-timeout-ms: soon\n", config.yaml()),
    );
    gw.process.signal(libc::SIGHUP);
    eventually("the rejection is logged", WAIT, || gw.logs().contains("rejected"));
    let logs = gw.logs();
    let line = logs.lines().find(|l| l.contains("rejected")).unwrap();
    assert!(
        line.contains("capi.websocket.connect-timeout-ms"),
        "names the key: {line}"
    );
    let mut ws = ws_connect(gw.ws_addr(), "/capi/echo/dev", &[]);
    echo_once(&mut ws, "old config still serves");
    let m = raw_request(gw.admin_addr(), b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n").body_text();
    assert!(m.contains("capi_ws_reloads_total{result=\"error\"} 1"), "{m}");
    close(ws);
}

fn sigterm_drains_then_exits_zero(driver: &str) {
    // 1. an open connection; SIGTERM;
    // 2. the port refuses new connections while the open one keeps echoing;
    // 3. it closes -> the process exits 0 at once (long drain timeout not awaited).
    let node = EchoNode::start(driver);
    let config = Config::new().with(service("echo", "dev", node.addr()).meta("type", "websocket"));
    let yaml = format!("{}capi.websocket.drain-timeout-ms: 60000\n", config.yaml());
    let mut gw = Gateway::start(&yaml, driver, 2);
    let mut ws = ws_connect(gw.ws_addr(), "/capi/echo/dev", &[]);
    echo_once(&mut ws, "before");
    gw.process.signal(libc::SIGTERM);
    eventually("the WebSocket port refuses connections", WAIT, || {
        refused(gw.ws_addr())
    });
    echo_once(&mut ws, "during the drain");
    let closed_at = Instant::now();
    close(ws);
    let status = gw
        .process
        .wait_exit(WAIT)
        .expect("exits after the last connection");
    assert_eq!(status.code(), Some(0), "{}", gw.logs());
    assert!(
        closed_at.elapsed() < Duration::from_secs(5),
        "exit did not wait for the timeout"
    );
    assert!(gw.logs().contains("drained"), "{}", gw.logs());
}

fn drain_timeout_closes_a_connection_that_never_ends(driver: &str) {
    let node = EchoNode::start(driver);
    let config = Config::new().with(service("echo", "dev", node.addr()).meta("type", "websocket"));
    let yaml = format!("{}capi.websocket.drain-timeout-ms: 300\n", config.yaml());
    let mut gw = Gateway::start(&yaml, driver, 1);
    let mut ws = ws_connect(gw.ws_addr(), "/capi/echo/dev", &[]);
    echo_once(&mut ws, "idle from now on");
    let started = Instant::now();
    gw.process.signal(libc::SIGINT);
    // The client never closes: the gateway must, after the timeout (plus the close window).
    let end = loop {
        match ws.read() {
            Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => break e,
        }
    };
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(250),
        "closed before the drain timeout: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(8),
        "closed too late: {elapsed:?} ({end})"
    );
    let status = gw.process.wait_exit(WAIT).expect("exits after closing");
    assert_eq!(status.code(), Some(0), "{}", gw.logs());
}

fn second_signal_exits_one_at_once(driver: &str) {
    let node = EchoNode::start(driver);
    let config = Config::new().with(service("echo", "dev", node.addr()).meta("type", "websocket"));
    let yaml = format!("{}capi.websocket.drain-timeout-ms: 60000\n", config.yaml());
    let mut gw = Gateway::start(&yaml, driver, 1);
    let mut ws = ws_connect(gw.ws_addr(), "/capi/echo/dev", &[]);
    echo_once(&mut ws, "hold");
    gw.process.signal(libc::SIGTERM);
    eventually("the drain started", WAIT, || gw.logs().contains("draining"));
    gw.process.signal(libc::SIGTERM);
    let status = gw.process.wait_exit(WAIT).expect("exits at once");
    assert_eq!(status.code(), Some(1), "{}", gw.logs());
}

fn zero_downtime_restart(driver: &str) {
    // 1. old gateway on port P with an open connection;
    // 2. a new gateway binds P too (SO_REUSEPORT) and announces itself;
    // 3. SIGTERM the old one: new connections keep succeeding (served by the new one), the
    //    old connection keeps echoing until it closes, then the old process exits 0.
    let node = EchoNode::start(driver);
    let config = Config::new().with(service("echo", "dev", node.addr()).meta("type", "websocket"));
    let mut old = Gateway::start_config(&config, driver, 1);
    let port = old.ws_addr().port();
    let mut ws = ws_connect(old.ws_addr(), "/capi/echo/dev", &[]);
    echo_once(&mut ws, "old");

    let args: Vec<OsString> = [
        "--config",
        old.config_path().to_str().unwrap(),
        "--port",
        &port.to_string(),
        "--admin-port",
        "0",
        "--driver",
        driver,
        "--workers",
        "1",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    let (new, line) = Process::spawn("new gateway", args, "listening ws=").expect("new gateway starts");
    assert_eq!(parse_addr_after(&line, "ws=").map(|a| a.port()), Some(port));

    old.process.signal(libc::SIGTERM);
    eventually("the old process closed its listener", WAIT, || {
        old.logs().contains("listener closed")
    });
    for i in 0..20 {
        let mut c = try_ws_connect(old.ws_addr(), "/capi/echo/dev", &[])
            .unwrap_or_else(|e| panic!("connection {i} during the restart: {e}"))
            .0;
        echo_once(&mut c, "new");
        close(c);
    }
    echo_once(&mut ws, "old still relays");
    close(ws);
    let status = old.process.wait_exit(WAIT).expect("old exits");
    assert_eq!(status.code(), Some(0));
    assert!(
        new.stdout().contains("\"status\":101"),
        "the new process served: {}",
        new.stdout()
    );
}

drivers!(
    sighup_adds_a_service_while_open_connection_echoes,
    sighup_with_a_bad_file_keeps_the_old_config,
    sigterm_drains_then_exits_zero,
    drain_timeout_closes_a_connection_that_never_ends,
    second_signal_exits_one_at_once,
    zero_downtime_restart,
);
