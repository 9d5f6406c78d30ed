//! Black-box tests of the operator's view (DESIGN §8, §10; issue 6): every admin endpoint and
//! its content type, metrics that move after traffic, the access log (JSON, token redacted,
//! remote address behind a trusted proxy), the configured CORS allowed-headers, and the
//! per-worker connection cap.
#![allow(clippy::disallowed_types)] // locks are fine in tests: the rule guards the data plane

#[macro_use]
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::client::{echo_once, raw_request, try_ws_connect, upgrade, ws_connect, RawResponse};
use common::config::{service, Config};
use common::eventually;
use common::gateway::{with_loopback_admin, EchoNode, Gateway, TempDir};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

fn get(admin: SocketAddr, path: &str) -> RawResponse {
    raw_request(
        admin,
        format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").as_bytes(),
    )
}

fn metrics(gw: &Gateway) -> String {
    get(gw.admin_addr(), "/metrics").body_text()
}

/// The value of the sample line that starts with `series` (exactly, up to the space).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

fn access_lines(gw: &Gateway) -> Vec<Value> {
    gw.access_log()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("access line {l:?} is not JSON: {e}")))
        .collect()
}

fn endpoints(driver: &str) {
    let node = EchoNode::start(driver);
    let config = Config::new()
        .with(service("echo", "dev", node.addr()).meta("type", "websocket"))
        .with(service("api", "dev", node.addr()).meta("type", "rest"));
    let gw = Gateway::start(&config.yaml().replace("mode: websocket", "mode: full"), driver, 2);
    let admin = gw.admin_addr();
    // (path, status, content type prefix)
    let cases: &[(&str, u16, &str)] = &[
        ("/health", 200, "application/json"),
        ("/metrics/health", 200, "application/json"),
        ("/ready", 200, "application/json"),
        ("/metrics", 200, "text/plain; version=0.0.4"),
        ("/metrics/prometheus", 200, "text/plain; version=0.0.4"),
        ("/routes", 200, "application/json"),
        ("/metrics/wsroutes", 200, "application/json"),
        ("/nope", 404, "application/json"),
        ("/health/x", 404, "application/json"),
    ];
    for (path, status, ct) in cases {
        let r = get(admin, path);
        assert_eq!(r.status, *status, "{path}: {}", r.body_text());
        let got = r.header("content-type").unwrap_or("");
        assert!(got.starts_with(ct), "{path}: content-type {got:?}");
    }
    assert_eq!(get(admin, "/health").json(), serde_json::json!({"status": "UP"}));
    for method in ["POST", "PUT", "DELETE"] {
        let r = raw_request(
            admin,
            format!("{method} /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 405, "{method}");
    }

    // /routes: one object per service with the fields of DESIGN §8.
    let routes = get(admin, "/routes").json();
    let list = routes.as_array().expect("an array");
    assert_eq!(list.len(), 2, "{routes}");
    let echo = list.iter().find(|s| s["service"] == "echo").expect("echo listed");
    assert_eq!(echo["group"], "dev");
    assert_eq!(echo["route"], "/capi/echo/dev");
    assert_eq!(echo["type"], "websocket");
    assert_eq!(echo["secured"], false);
    assert_eq!(echo["routable"], true);
    assert_eq!(echo["reason"], Value::Null);
    assert_eq!(echo["subscriptionGroups"], serde_json::json!([]));
    assert_eq!(echo["conflicts"], serde_json::json!([]));
    let n = &echo["nodes"][0];
    assert_eq!(n["address"], "127.0.0.1");
    assert_eq!(n["port"], node.addr().port());
    assert_eq!(
        (n["healthy"].as_bool(), n["source"].as_str()),
        (Some(true), Some("static"))
    );
    let api = list.iter().find(|s| s["service"] == "api").expect("api listed");
    assert_eq!(api["routable"], false);
    assert!(
        api["reason"].as_str().is_some_and(|r| r.contains("websocket")),
        "{api}"
    );
    assert_eq!(get(admin, "/metrics/wsroutes").json(), routes);
}

fn metrics_move_after_traffic(driver: &str) {
    // 1. a relayed connection shows as active on its service and node;
    // 2. after it closes: connections_total{101}, bytes both ways, a session observed;
    // 3. an unknown route and a secured service without a token count 404 and an auth failure (missing).
    let node = EchoNode::start(driver);
    let config = Config::new()
        .with(service("echo", "dev", node.addr()).meta("type", "websocket"))
        .with(
            service("vault", "dev", node.addr())
                .meta("type", "websocket")
                .meta("secured", "true"),
        );
    let gw = Gateway::start_config(&config, driver, 2);
    let svc = "service=\"echo/dev\"";
    let node_label = format!("node=\"{}\"", node.addr());
    let before = metrics(&gw);
    assert_eq!(sample(&before, "capi_ws_routes"), Some(2.0), "{before}");
    assert_eq!(
        sample(&before, &format!("capi_ws_connections_active{{{svc}}}")),
        Some(0.0)
    );

    let mut ws = ws_connect(gw.ws_addr(), "/capi/echo/dev/x", &[]);
    echo_once(&mut ws, "hello metrics");
    let open = metrics(&gw);
    assert_eq!(
        sample(&open, &format!("capi_ws_connections_active{{{svc}}}")),
        Some(1.0),
        "{open}"
    );
    assert_eq!(
        sample(
            &open,
            &format!("capi_ws_node_connections_active{{{svc},{node_label}}}")
        ),
        Some(1.0),
        "{open}"
    );
    assert_eq!(sample(&open, "capi_ws_open_connections"), Some(1.0));
    ws.close(None).unwrap();
    while ws.read().is_ok() {}
    drop(ws);

    assert_eq!(
        raw_request(gw.ws_addr(), &upgrade("/capi/nothing/here").bytes()).status,
        404
    );
    assert_eq!(
        raw_request(gw.ws_addr(), &upgrade("/capi/vault/dev").bytes()).status,
        401
    );

    eventually("counters after traffic", WAIT, || {
        let m = metrics(&gw);
        sample(&m, &format!("capi_ws_connections_total{{{svc},status=\"101\"}}")) == Some(1.0)
            && sample(&m, &format!("capi_ws_connections_active{{{svc}}}")) == Some(0.0)
            && sample(&m, "capi_ws_connections_total{service=\"\",status=\"404\"}") == Some(1.0)
            && sample(
                &m,
                "capi_ws_connections_total{service=\"vault/dev\",status=\"401\"}",
            ) == Some(1.0)
            && sample(&m, "capi_ws_auth_failures_total{reason=\"missing\"}") == Some(1.0)
            && sample(&m, &format!("capi_ws_bytes_total{{{svc},direction=\"up\"}}")).unwrap_or(0.0) > 13.0
            && sample(&m, &format!("capi_ws_bytes_total{{{svc},direction=\"down\"}}")).unwrap_or(0.0) > 13.0
            && sample(&m, "capi_ws_session_duration_seconds_count") == Some(1.0)
            && sample(&m, "capi_ws_handshake_duration_seconds_count") == Some(1.0)
            && sample(&m, "capi_ws_open_connections") == Some(0.0)
    });
    let m = metrics(&gw);
    assert!(sample(&m, "capi_ws_snapshot_age_seconds").is_some(), "{m}");
    for line in m.lines().filter(|l| !l.starts_with('#')) {
        assert!(!line.contains("/capi/"), "no raw paths in labels: {line}");
    }
}

fn access_log(driver: &str) {
    // 1. an upgrade with a token in the query through a trusted proxy, relayed and closed;
    // 2. one refused handshake (404);
    // 3. each gives one JSON line with every field; the token appears nowhere.
    let node = EchoNode::start(driver);
    let config = Config::new().with(service("echo", "dev", node.addr()).meta("type", "websocket"));
    let yaml = format!("{}capi.websocket.trusted-proxies: [127.0.0.1]\n", config.yaml());
    let gw = Gateway::start(&yaml, driver, 1);
    let secret = "SeCrEtToKeN.abc.def";
    let path = format!("/capi/echo/dev/room?x=1&access_token={secret}");
    let mut ws = ws_connect(
        gw.ws_addr(),
        &path,
        &[("X-Forwarded-For", "203.0.113.9, 10.0.0.1")],
    );
    echo_once(&mut ws, "logged");
    ws.close(None).unwrap();
    while ws.read().is_ok() {}
    drop(ws);
    assert_eq!(
        raw_request(gw.ws_addr(), &upgrade("/capi/nope/dev").bytes()).status,
        404
    );

    eventually("two access lines", WAIT, || access_lines(&gw).len() >= 2);
    let lines = access_lines(&gw);
    let relayed = lines.iter().find(|l| l["status"] == 101).expect("a 101 line");
    assert_eq!(
        relayed["remote"], "203.0.113.9",
        "first X-Forwarded-For entry behind a trusted proxy"
    );
    assert_eq!(relayed["method"], "GET");
    assert_eq!(relayed["path"], "/capi/echo/dev/room?x=1&access_token=REDACTED");
    assert_eq!(relayed["service"], "echo/dev");
    assert_eq!(relayed["node"], node.addr().to_string());
    assert!(relayed["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(relayed["duration_ms"].is_u64());
    assert!(relayed["bytes_up"].as_u64().unwrap() > 6);
    assert!(relayed["bytes_down"].as_u64().unwrap() > 6);
    let refused = lines.iter().find(|l| l["status"] == 404).expect("a 404 line");
    assert_eq!(
        (refused["service"].as_str(), refused["node"].as_str()),
        (Some(""), Some(""))
    );
    assert_eq!(refused["path"], "/capi/nope/dev");
    assert!(!gw.access_log().contains(secret), "token in the access log");
    assert!(!gw.logs().contains(secret), "token in the other logs");
}

fn access_log_can_be_turned_off_and_on_by_reload(driver: &str) {
    // 1. `access-log: false`: a refused handshake is counted (metrics) but logs no line;
    // 2. the file turns it on; SIGHUP; a second refused handshake logs the only line, so the
    //    first one was not merely late (stdout is one ordered stream).
    let node = EchoNode::start(driver);
    let config = Config::new().with(service("echo", "dev", node.addr()).meta("type", "websocket"));
    let gw = Gateway::start(
        &format!("{}capi.websocket.access-log: false\n", config.yaml()),
        driver,
        1,
    );
    assert_eq!(
        raw_request(gw.ws_addr(), &upgrade("/capi/first/dev").bytes()).status,
        404
    );
    let unrouted = "capi_ws_connections_total{service=\"\",status=\"404\"}";
    eventually("the first 404 counted", WAIT, || {
        sample(&metrics(&gw), unrouted) == Some(1.0)
    });

    std::fs::write(gw.config_path(), with_loopback_admin(&config.yaml())).unwrap();
    gw.process.signal(libc::SIGHUP);
    eventually("reloaded", WAIT, || gw.logs().contains("configuration reloaded"));
    assert_eq!(
        raw_request(gw.ws_addr(), &upgrade("/capi/second/dev").bytes()).status,
        404
    );
    eventually("one access line", WAIT, || !access_lines(&gw).is_empty());
    eventually("the second 404 counted", WAIT, || {
        sample(&metrics(&gw), unrouted) == Some(2.0)
    });
    let lines = access_lines(&gw);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["path"], "/capi/second/dev");
}

fn stalled_stdout_reader_costs_lines_not_connections(driver: &str) {
    // 1. The gateway's stdout is a FIFO the test holds open but does not read, so the pipe
    //    (64 KiB) fills after a few dozen ~1.1 KB access lines.
    // 2. 200 refused handshakes (404) on one worker are all answered within the client's
    //    timeout: a blocking write(2) of a line would stall the worker at the first full pipe.
    // 3. Then the FIFO is read: every line is whole JSON of one of those requests, and lines
    //    read + capi_ws_access_log_dropped_total == requests, with some dropped.
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    const REQUESTS: usize = 200;
    let dir = TempDir::new();
    let fifo = dir.path().join("stdout");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
    // Opened before the gateway so its `> fifo` does not wait for a reader; not read until 3.
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let node = EchoNode::start(driver);
    let config = Config::new().with(service("echo", "dev", node.addr()).meta("type", "websocket"));
    let script = format!("exec \"$0\" \"$@\" > '{}'", fifo.display());
    let gw = Gateway::try_start_via(&["sh", "-c", &script], &config.yaml(), driver, 1, &[])
        .unwrap_or_else(|e| panic!("gateway did not start: {e}"));
    let path = format!("/capi/nope/dev/{}", "x".repeat(900));
    for i in 0..REQUESTS {
        let r = common::client::try_raw_request(gw.ws_addr(), &upgrade(&path).bytes())
            .unwrap_or_else(|e| panic!("request {i} of {REQUESTS} not answered: {e}\n{}", gw.logs()));
        assert_eq!(r.status, 404);
    }

    let mut text = Vec::new();
    let mut lines = 0usize;
    let mut dropped = 0usize;
    eventually("every line read or counted as dropped", WAIT, || {
        let mut chunk = [0u8; 65536];
        while let Ok(n) = reader.read(&mut chunk) {
            if n == 0 {
                break;
            }
            text.extend_from_slice(&chunk[..n]);
        }
        lines = text.iter().filter(|&&b| b == b'\n').count();
        let counted = "capi_ws_access_log_dropped_total";
        dropped = sample(&metrics(&gw), counted).unwrap_or(0.0) as usize;
        lines + dropped >= REQUESTS
    });
    assert_eq!(lines + dropped, REQUESTS, "{lines} lines read, {dropped} dropped");
    assert!(dropped > 0, "the pipe never filled: {lines} lines read");
    assert!(lines > 0, "no line got through");
    for line in String::from_utf8(text).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert_eq!(v["status"], 404);
        assert_eq!(v["path"], path.as_str());
    }
}

fn untrusted_forwarded_for_is_ignored(driver: &str) {
    let node = EchoNode::start(driver);
    let config = Config::new().with(service("echo", "dev", node.addr()).meta("type", "websocket"));
    let gw = Gateway::start_config(&config, driver, 1);
    let r = raw_request(
        gw.ws_addr(),
        &upgrade("/capi/nope/x")
            .set("X-Forwarded-For", "198.51.100.1")
            .bytes(),
    );
    assert_eq!(r.status, 404);
    eventually("one access line", WAIT, || !access_lines(&gw).is_empty());
    assert_eq!(access_lines(&gw)[0]["remote"], "127.0.0.1");
}

fn preflight_allowed_headers(driver: &str) {
    let node = EchoNode::start(driver);
    let config = Config::new().with(service("echo", "dev", node.addr()).meta("type", "websocket"));
    let yaml = format!(
        "{}capi.gateway.cors.management.allowed-headers: [Origin, Authorization, X-Custom]\n",
        config.yaml()
    );
    let gw = Gateway::start(&yaml, driver, 1);
    let r = raw_request(
        gw.ws_addr(),
        b"OPTIONS /capi/echo/dev HTTP/1.1\r\nHost: gw\r\nOrigin: http://app.example\r\n\
          Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: x-other\r\n\r\n",
    );
    assert_eq!(r.status, 202);
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("Origin,Authorization,X-Custom")
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://app.example")
    );
}

fn max_connections_per_worker(driver: &str) {
    // 1. one worker capped at one connection: the first is relayed;
    // 2. a second gets 503 at once; the first keeps echoing;
    // 3. when the first closes, a new one is accepted.
    let node = EchoNode::start(driver);
    let config = Config::new().with(service("echo", "dev", node.addr()).meta("type", "websocket"));
    let yaml = format!("{}capi.websocket.max-connections: 1\n", config.yaml());
    let gw = Gateway::start(&yaml, driver, 1);
    let mut first = ws_connect(gw.ws_addr(), "/capi/echo/dev", &[]);
    echo_once(&mut first, "one");
    let err = match try_ws_connect(gw.ws_addr(), "/capi/echo/dev", &[]) {
        Ok(_) => panic!("a second connection got through the cap"),
        Err(e) => e,
    };
    assert!(err.contains("503"), "{err}");
    echo_once(&mut first, "still here");
    first.close(None).unwrap();
    while first.read().is_ok() {}
    drop(first);
    eventually("a new connection is accepted again", WAIT, || {
        try_ws_connect(gw.ws_addr(), "/capi/echo/dev", &[]).is_ok()
    });
}

drivers!(
    endpoints,
    metrics_move_after_traffic,
    access_log,
    access_log_can_be_turned_off_and_on_by_reload,
    stalled_stdout_reader_costs_lines_not_connections,
    untrusted_forwarded_for_is_ignored,
    preflight_allowed_headers,
    max_connections_per_worker,
);
