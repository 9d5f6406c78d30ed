//! Gateway core, handshake (DESIGN §2 steps 2–10, §4 forwarding, §9 errors, §12): every
//! error status from a real request with its exact JSON shape, health and preflight, origin
//! and secured checks, what the node receives for a rich request, upstream failures (refused,
//! wrong accept, non-101, stall, unresolvable) and the handshake timeout. Both drivers.
#![allow(clippy::disallowed_types)] // locks are fine in tests: the rule guards the data plane

#[macro_use]
mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tungstenite::Message;

use common::client::{connect, raw_request, raw_upgrade, try_ws_connect, upgrade, ws_connect, Req};
use common::config::{service, service_at, Config};
use common::gateway::Gateway;
use common::nodes::{closed_port, Event, Node};
use common::wire::{self, OP_TEXT};

const ROUTE: &str = "/capi/echo/dev";

fn gateway_for(node: SocketAddr, driver: &str) -> Gateway {
    Gateway::start_config(&Config::new().with(service("echo", "dev", node)), driver, 1)
}

fn rejects_malformed_requests(driver: &str) {
    // One gateway, one healthy node; none of these requests may reach the node.
    let node = Node::ws_echo();
    let gw = gateway_for(node.addr(), driver);
    let big = "x".repeat(5000);
    let cases: Vec<(&str, Req, u16)> = vec![
        (
            "plain GET, no upgrade headers",
            upgrade(ROUTE).remove("Upgrade").remove("Connection"),
            400,
        ),
        (
            "plain GET on an unknown path is 400 first",
            upgrade("/capi/nope/dev").remove("Upgrade").remove("Connection"),
            400,
        ),
        (
            "Upgrade is not websocket",
            upgrade(ROUTE).set("Upgrade", "h2c"),
            400,
        ),
        (
            "Connection lacks upgrade",
            upgrade(ROUTE).set("Connection", "keep-alive"),
            400,
        ),
        ("no key", upgrade(ROUTE).remove("Sec-WebSocket-Key"), 400),
        (
            "key not base64",
            upgrade(ROUTE).set("Sec-WebSocket-Key", "not base64!!"),
            400,
        ),
        (
            "key of 15 bytes",
            upgrade(ROUTE).set("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAA"),
            400,
        ),
        (
            "body by Content-Length",
            upgrade(ROUTE).set("Content-Length", "5").body(b"hello"),
            400,
        ),
        (
            "body by Transfer-Encoding",
            upgrade(ROUTE)
                .set("Transfer-Encoding", "chunked")
                .body(b"0\r\n\r\n"),
            400,
        ),
        ("dot-dot segment", upgrade("/capi/echo/dev/a/../b"), 400),
        ("encoded dot-dot", upgrade("/capi/echo/dev/%2e%2e/b"), 400),
        (
            "upper-case encoded dot-dot",
            upgrade("/capi/echo/dev/%2E%2E/b"),
            400,
        ),
        ("dot segment", upgrade("/capi/echo/dev/./b"), 400),
        ("unknown service", upgrade("/capi/nope/dev"), 404),
        ("unknown group", upgrade("/capi/echo/prod"), 404),
        ("name without group", upgrade("/capi/echo"), 404),
        ("outside the context path", upgrade("/other/echo/dev"), 404),
        ("POST", upgrade(ROUTE).method("POST"), 405),
        ("PUT", upgrade(ROUTE).method("PUT"), 405),
        ("DELETE", upgrade(ROUTE).method("DELETE"), 405),
        ("version 8", upgrade(ROUTE).set("Sec-WebSocket-Version", "8"), 426),
        (
            "version 14",
            upgrade(ROUTE).set("Sec-WebSocket-Version", "14"),
            426,
        ),
        (
            "head over max-header-bytes",
            upgrade(ROUTE).add("X-Pad", &big),
            431,
        ),
    ];
    for (name, req, code) in cases {
        let resp = raw_request(gw.ws_addr(), &req.bytes());
        let result = std::panic::catch_unwind(|| resp.assert_error(code));
        if let Err(e) = result {
            panic!("case {name:?}: {}", panic_text(&e));
        }
        if code == 426 {
            assert_eq!(
                resp.header("sec-websocket-version"),
                Some("13"),
                "case {name:?}: 426 names the version"
            );
        }
    }
    assert_eq!(node.accepted(), 0, "a refused request reached the node");
    // Still serving after all that.
    let mut ws = ws_connect(gw.ws_addr(), ROUTE, &[]);
    ws.send(Message::Text("ok".into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text("ok".into()));
    node.check();
}

fn panic_text(e: &Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn health_and_preflight(driver: &str) {
    let node = Node::ws_echo();
    let gw = gateway_for(node.addr(), driver);

    let health = raw_request(gw.ws_addr(), b"GET /health HTTP/1.1\r\nHost: gw.test\r\n\r\n");
    assert_eq!(health.status, 200, "GET /health: {}", health.body_text());

    let preflight = |target: &str| {
        let req = format!(
            "OPTIONS {target} HTTP/1.1\r\nHost: gw.test\r\nOrigin: http://app.example\r\n\
             Access-Control-Request-Method: GET\r\n\r\n"
        );
        raw_request(gw.ws_addr(), req.as_bytes())
    };
    let known = preflight(ROUTE);
    assert_eq!(known.status, 202, "OPTIONS on a route: {known:?}");
    assert!(
        known
            .headers
            .iter()
            .any(|(n, _)| n.to_ascii_lowercase().starts_with("access-control-")),
        "no Access-Control-* header: {known:?}"
    );
    preflight("/capi/nope/dev").assert_error(404);
    assert_eq!(node.accepted(), 0, "health/preflight reached the node");
}

fn secured_service_fails_closed(driver: &str) {
    // No keys exist in this capability: every request to a secured service is 401.
    let node = Node::ws_echo();
    let config = Config::new().with(service("vault", "dev", node.addr()).meta("secured", "true"));
    let gw = Gateway::start_config(&config, driver, 1);
    let cases = [
        ("no token", upgrade("/capi/vault/dev")),
        (
            "bearer header",
            upgrade("/capi/vault/dev").set("Authorization", "Bearer abc.def.ghi"),
        ),
        ("query token", upgrade("/capi/vault/dev?access_token=abc.def.ghi")),
    ];
    for (name, req) in cases {
        let resp = raw_request(gw.ws_addr(), &req.bytes());
        resp.assert_error(401);
        let auth = resp.header("www-authenticate").unwrap_or_default();
        assert!(
            auth.to_ascii_lowercase().starts_with("bearer"),
            "{name}: WWW-Authenticate {auth:?}"
        );
    }
    assert_eq!(node.accepted(), 0, "an unauthenticated request reached the node");
}

fn origin_check(driver: &str) {
    let node = Node::ws_echo();
    let mut config = Config::new()
        .with(
            service("own", "dev", node.addr())
                .meta("allowed-origins", "http://good.example,https://also.example:8443"),
        )
        .with(service("open", "dev", node.addr()));
    config.allowed_origins = vec!["http://gateway-wide.example".into()];
    let gw = Gateway::start_config(&config, driver, 1);

    // (case, route, Origin header or none, allowed)
    let cases = [
        (
            "service list, listed",
            "/capi/own/dev",
            Some("http://good.example"),
            true,
        ),
        (
            "service list, second entry",
            "/capi/own/dev",
            Some("https://also.example:8443"),
            true,
        ),
        (
            "service list, not listed",
            "/capi/own/dev",
            Some("http://evil.example"),
            false,
        ),
        (
            "service list, other port",
            "/capi/own/dev",
            Some("http://good.example:8080"),
            false,
        ),
        (
            "service list beats gateway list",
            "/capi/own/dev",
            Some("http://gateway-wide.example"),
            false,
        ),
        ("no Origin header passes", "/capi/own/dev", None, true),
        (
            "gateway list, listed",
            "/capi/open/dev",
            Some("http://gateway-wide.example"),
            true,
        ),
        (
            "gateway list, not listed",
            "/capi/open/dev",
            Some("http://evil.example"),
            false,
        ),
    ];
    let mut admitted = 0;
    for (name, route, origin, allowed) in cases {
        let mut req = upgrade(route);
        if let Some(o) = origin {
            req = req.set("Origin", o);
        }
        if allowed {
            let mut c = raw_upgrade(gw.ws_addr(), &req, &[]);
            admitted += 1;
            let head = node.next_head();
            assert_eq!(head.header("origin"), origin, "{name}: Origin forwarded as sent");
            c.send(OP_TEXT, name.as_bytes());
            assert_eq!(c.read_frame().payload, name.as_bytes(), "{name}: relay works");
        } else {
            let resp = raw_request(gw.ws_addr(), &req.bytes());
            if std::panic::catch_unwind(|| resp.assert_error(403)).is_err() {
                panic!("{name}: want 403, got {} {}", resp.status, resp.body_text());
            }
        }
    }
    assert_eq!(node.accepted(), admitted, "only admitted requests reach the node");
    node.check();
}

fn upstream_failures(driver: &str) {
    // 502: every node refuses; 502: wrong accept; 503: no usable node; 504: node stalls;
    // a node's non-101 answer is relayed as is.
    let wrong = Node::wrong_accept();
    let stall = Node::stall();
    let denied = Node::status(403, "Forbidden", "node says no");
    let config = Config::new()
        .with(service("refused", "dev", closed_port()))
        .with(service("refused", "dev", closed_port()))
        .with(service("wrong", "dev", wrong.addr()))
        .with(service_at("ghost", "dev", "unresolvable.invalid", 9))
        .with(service("stall", "dev", stall.addr()))
        .with(service("denied", "dev", denied.addr()));
    let gw = Gateway::start_config(&config, driver, 1);

    raw_request(gw.ws_addr(), &upgrade("/capi/refused/dev").bytes()).assert_error(502);

    raw_request(gw.ws_addr(), &upgrade("/capi/wrong/dev").bytes()).assert_error(502);
    assert_eq!(
        wrong.next_head().header("sec-websocket-key"),
        Some(wire::SAMPLE_KEY)
    );
    assert!(
        matches!(wrong.next_event(), Event::Eof),
        "gateway must close the node with the wrong accept"
    );

    raw_request(gw.ws_addr(), &upgrade("/capi/ghost/dev").bytes()).assert_error(503);

    let started = Instant::now();
    raw_request(gw.ws_addr(), &upgrade("/capi/stall/dev").bytes()).assert_error(504);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "504 after {waited:?} with upstream-timeout-ms 1000"
    );
    stall.next_head();
    assert!(matches!(
        stall.next_event_within(Duration::from_secs(5)),
        Event::Eof
    ));

    let resp = raw_request(gw.ws_addr(), &upgrade("/capi/denied/dev").bytes());
    assert_eq!(resp.status, 403, "node's answer relayed: {resp:?}");
    assert_eq!(resp.body_text(), "node says no");
    assert_eq!(resp.header("x-node"), Some("scripted"));
    assert!(resp.closed, "connection closed after a relayed non-101");
    assert_eq!(denied.next_head().request_line(), "GET / HTTP/1.1");
    assert!(matches!(denied.next_event(), Event::Eof));

    wrong.check();
    stall.check();
    denied.check();
}

fn forwarded_head_is_exact(driver: &str) {
    // A rich request: the node must see the rewritten target, proxy headers set, hop-by-hop
    // headers gone, Sec-WebSocket-* unchanged, the token nowhere.
    let node = Node::ws_echo();
    let config = Config::new().with(
        service("rich", "dev", node.addr())
            .meta("root-context", "/root")
            .meta("keep-group", "true"),
    );
    let gw = Gateway::start_config(&config, driver, 1);
    let req = upgrade("/capi/rich/dev/a/b?x=1&access_token=T0K3N&y=%20z&x=2")
        .set("Host", "gw.example:8382")
        .add("X-Forwarded-For", "10.0.0.1")
        .add("Sec-WebSocket-Protocol", "chat, superchat")
        .add(
            "Sec-WebSocket-Extensions",
            "permessage-deflate; client_max_window_bits",
        )
        .add("X-Custom", "keep-me")
        .add("Keep-Alive", "timeout=5")
        .add("TE", "trailers")
        .add("Proxy-Authorization", "Basic dXNlcjpwYXNz");
    let mut c = raw_upgrade(gw.ws_addr(), &req, &[]);
    assert_eq!(
        c.response.header("sec-websocket-accept"),
        Some(wire::SAMPLE_ACCEPT)
    );
    assert_eq!(c.response.header("sec-websocket-protocol"), Some("chat"));

    let head = node.next_head();
    let text = head.text();
    assert_eq!(
        head.request_line(),
        "GET /root/a/b?x=1&y=%20z&x=2 HTTP/1.1",
        "{text}"
    );
    let node_addr = node.addr().to_string();
    let exactly_one = |name: &str| -> String {
        let all = head.header_all(name);
        assert_eq!(all.len(), 1, "want one {name} header:\n{text}");
        all[0].to_owned()
    };
    assert_eq!(exactly_one("host"), node_addr);
    let xff: Vec<String> = exactly_one("x-forwarded-for")
        .split(',')
        .map(|s| s.trim().to_owned())
        .collect();
    assert_eq!(xff, ["10.0.0.1", "127.0.0.1"], "{text}");
    assert_eq!(exactly_one("x-forwarded-proto"), "http");
    assert_eq!(exactly_one("x-forwarded-host"), "gw.example:8382");
    assert!(exactly_one("upgrade").eq_ignore_ascii_case("websocket"));
    assert!(exactly_one("connection").eq_ignore_ascii_case("upgrade"));
    assert_eq!(exactly_one("sec-websocket-key"), wire::SAMPLE_KEY);
    assert_eq!(exactly_one("sec-websocket-version"), "13");
    assert_eq!(exactly_one("sec-websocket-protocol"), "chat, superchat");
    assert_eq!(
        exactly_one("sec-websocket-extensions"),
        "permessage-deflate; client_max_window_bits"
    );
    assert_eq!(exactly_one("capi-group"), "/rich/dev");
    assert_eq!(exactly_one("x-custom"), "keep-me");
    for hop in ["keep-alive", "te", "proxy-authorization"] {
        assert!(head.header(hop).is_none(), "hop-by-hop {hop} forwarded:\n{text}");
    }
    assert!(!text.contains("T0K3N"), "token forwarded:\n{text}");

    c.send(OP_TEXT, b"live");
    assert_eq!(c.read_frame().payload, b"live");
    node.check();
}

fn forwarded_targets(driver: &str) {
    // (client target, target the node must receive)
    let node = Node::ws_echo();
    let config = Config::new()
        .with(service("plain", "dev", node.addr()))
        .with(service("rooted", "dev", node.addr()).meta("root-context", "/root"))
        .with(service("first", "dev", node.addr()).meta("keep-group-first", "true"));
    let gw = Gateway::start_config(&config, driver, 1);
    let cases = [
        ("/capi/plain/dev", "/"),
        ("/capi/plain/dev/a/b?x=1&access_token=T", "/a/b?x=1"),
        ("/capi/plain/dev/q?access_token=T", "/q"),
        ("/capi/plain/dev/q?access_token=T&x=1&y=2", "/q?x=1&y=2"),
        (
            "/capi/plain/dev/q?x=1&access_token=T&x=2&z=%2F",
            "/q?x=1&x=2&z=%2F",
        ),
        ("/capi/plain/dev/q?b=2&a=1", "/q?b=2&a=1"),
        ("/capi/rooted/dev", "/root"),
        ("/capi/rooted/dev/a?b=1", "/root/a?b=1"),
        ("/capi/dev/first/a", "/a"),
    ];
    for (client, want) in cases {
        let c = raw_upgrade(gw.ws_addr(), &upgrade(client), &[]);
        let head = node.next_head();
        assert_eq!(head.target, want, "client target {client}");
        drop(c);
    }
    // keep-group-first: the name-first route does not exist.
    raw_request(gw.ws_addr(), &upgrade("/capi/first/dev/a").bytes()).assert_error(404);
    node.check();
}

fn ingress_replaces_node_address(driver: &str) {
    // The instance address refuses; meta ingress points at the real node.
    let node = Node::ws_echo();
    let config = Config::new()
        .with(service("ing", "dev", closed_port()).meta("ingress", &format!("http://{}", node.addr())));
    let gw = Gateway::start_config(&config, driver, 1);
    let mut ws = ws_connect(gw.ws_addr(), "/capi/ing/dev/x", &[]);
    ws.send(Message::Text("via ingress".into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text("via ingress".into()));
    let head = node.next_head();
    assert_eq!(head.header("host"), Some(node.addr().to_string().as_str()));
    assert_eq!(head.target, "/x");
    node.check();
}

fn slow_client_is_closed(driver: &str) {
    // handshake-timeout-ms 1000: silence, or half a head, is cut off — EOF or a 4xx within
    // 5 s — and nothing reaches the node.
    let node = Node::ws_echo();
    let gw = gateway_for(node.addr(), driver);
    let partial = b"GET /capi/echo/dev HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\n";
    for (name, sent) in [("silent", &b""[..]), ("partial head", &partial[..])] {
        let mut s = connect(gw.ws_addr());
        wire::write_all(&mut s, sent).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        let outcome = s.read_to_end(&mut got);
        match outcome {
            Ok(_) => {}
            Err(e) if wire::is_reset(&e) => {}
            Err(e) => panic!("{name}: not closed within 5 s ({e}); got {got:?}"),
        }
        let text = String::from_utf8_lossy(&got);
        assert!(
            got.is_empty() || text.starts_with("HTTP/1.1 4"),
            "{name}: expected EOF or a 4xx, got {text:?}"
        );
    }
    assert_eq!(node.accepted(), 0);
}

fn tungstenite_sees_gateway_errors(driver: &str) {
    // A standard client gets the status too (not just a dropped connection).
    let node = Node::ws_echo();
    let gw = gateway_for(node.addr(), driver);
    let err = match try_ws_connect(gw.ws_addr(), "/capi/nope/dev", &[]) {
        Ok(_) => panic!("upgrade to an unknown route succeeded"),
        Err(e) => e,
    };
    assert!(err.contains("404"), "{err}");
}

drivers!(
    rejects_malformed_requests,
    health_and_preflight,
    secured_service_fails_closed,
    origin_check,
    upstream_failures,
    forwarded_head_is_exact,
    forwarded_targets,
    ingress_replaces_node_address,
    slow_client_is_closed,
    tungstenite_sees_gateway_errors,
);
