//! Consul discovery (DESIGN §7, issue 5), black-box: the real binary against the Consul test
//! double (tests/common/consul.rs, built from shared/consul/fixtures). Registrations become
//! routable and deregistrations 404 within 1 s; established connections survive every change;
//! health, metadata, namespaces, several hosts, ACL tokens, outages and index resets.
//! Data-path scenarios run under both drivers.
#![allow(clippy::disallowed_types)] // locks are fine in tests: the rule guards the data plane

#[macro_use]
mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tungstenite::{Message, WebSocket};

use common::client::try_ws_connect;
use common::config::Config;
use common::consul::{fixture, registration, Consul};
use common::eventually;
use common::gateway::Gateway;
use common::nodes::{closed_port, Node};

/// The bound the issue sets for a registration or deregistration to reach the workers.
const PROPAGATION: Duration = Duration::from_secs(1);
/// Test knobs: health re-read every 300 ms, blocking waits of at most 1 s, back-off ≤ 300 ms.
const INTERVAL_MS: u64 = 300;
const MAX_WAIT_MS: u64 = 1000;

/// Gateway YAML: `base` plus `capi.consul` for the given `(endpoint, token)` hosts.
fn consul_yaml(base: &Config, hosts: &[(String, Option<&str>)], extra: &str) -> String {
    let mut y = base.yaml();
    y.push_str("capi.consul:\n  hosts:\n");
    for (endpoint, token) in hosts {
        match token {
            Some(t) => y.push_str(&format!("    - {{endpoint: \"{endpoint}\", token: \"{t}\"}}\n")),
            None => y.push_str(&format!("    - {{endpoint: \"{endpoint}\"}}\n")),
        }
    }
    y.push_str(&format!(
        "  discovery:\n    enabled: true\n    timer: {{interval: {INTERVAL_MS}}}\n    \
         max-wait-ms: {MAX_WAIT_MS}\n    retry-max-ms: 300\n"
    ));
    y.push_str(extra);
    y
}

/// Starts the gateway on `consul` and waits until every host synced once.
fn gateway_on(consuls: &[&Consul], driver: &str, extra: &str) -> Gateway {
    let hosts: Vec<(String, Option<&str>)> = consuls.iter().map(|c| (c.endpoint(), None)).collect();
    let gw = Gateway::start(&consul_yaml(&Config::new(), &hosts, extra), driver, 2);
    wait_synced(&gw, consuls.len());
    gw
}

fn wait_synced(gw: &Gateway, hosts: usize) {
    eventually("every Consul host synced once", Duration::from_secs(10), || {
        gw.logs().matches("Consul host synced").count() >= hosts
    });
}

/// The status of an upgrade to `path`: 101 or the gateway's refusal.
fn upgrade_status(addr: SocketAddr, path: &str) -> u16 {
    match try_ws_connect(addr, path, &[]) {
        Ok((mut ws, _)) => {
            let _ = ws.close(None);
            101
        }
        Err(e) => e
            .strip_prefix("handshake refused: ")
            .and_then(|r| r.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("upgrade to {path}: {e}")),
    }
}

fn echo(ws: &mut WebSocket<TcpStream>, text: &str) {
    ws.send(Message::Text(text.to_owned())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text(text.to_owned()));
}

fn open(gw: &Gateway, path: &str) -> WebSocket<TcpStream> {
    try_ws_connect(gw.ws_addr(), path, &[])
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

fn registered_routable_then_deregistered_404(driver: &str) {
    // 1. an empty catalog: the route is unknown;
    // 2. registration → routable within 1 s, and the relay echoes;
    // 3. deregistration → 404 within 1 s.
    let consul = Consul::start();
    let node = Node::ws_echo();
    let gw = gateway_on(&[&consul], driver, "");
    assert_eq!(upgrade_status(gw.ws_addr(), "/capi/chat/dev"), 404);

    consul.register(&registration("chat", "chat-1", "dev", node.addr()));
    eventually("registered service routable", PROPAGATION, || {
        upgrade_status(gw.ws_addr(), "/capi/chat/dev") == 101
    });
    while node.try_head().is_some() {} // the probes' heads
    let mut ws = open(&gw, "/capi/chat/dev/room");
    echo(&mut ws, "hello");
    assert_eq!(node.next_head().target, "/room");

    consul.deregister("chat-1");
    eventually("deregistered service gone", PROPAGATION, || {
        upgrade_status(gw.ws_addr(), "/capi/chat/dev") == 404
    });
    // Step 3 did not touch the connection opened in step 2.
    echo(&mut ws, "still here");
    node.check();
}

fn established_connection_survives_changes(driver: &str) {
    // 1. two nodes of one service; a connection goes through one of them;
    // 2. other services come and go, that node turns critical, then it is deregistered;
    // 3. the open connection still echoes after every step; new connections use the other node.
    let consul = Consul::start();
    let (a, b) = (Node::ws_echo(), Node::ws_echo());
    consul.register(&registration("feed", "feed-a", "dev", a.addr()));
    consul.register(&registration("feed", "feed-b", "dev", b.addr()));
    let gw = gateway_on(&[&consul], driver, "");
    let mut ws = open(&gw, "/capi/feed/dev");
    echo(&mut ws, "first");
    let (held, held_id, held_node, other) = if a.accepted() == 1 {
        (&a, "feed-a", "node-feed-a", &b)
    } else {
        (&b, "feed-b", "node-feed-b", &a)
    };
    // Round of `n` new connections: how many went to `node`.
    let round = |node: &Node, n: usize| -> usize {
        let before = node.accepted();
        for _ in 0..n {
            assert_eq!(upgrade_status(gw.ws_addr(), "/capi/feed/dev"), 101);
        }
        node.accepted() - before
    };

    let extra = Node::ws_echo();
    consul.register(&registration("other", "other-1", "dev", extra.addr()));
    eventually("other service routable", PROPAGATION, || {
        upgrade_status(gw.ws_addr(), "/capi/other/dev") == 101
    });
    echo(&mut ws, "after another service appeared");
    consul.deregister("other-1");
    eventually("other service gone", PROPAGATION, || {
        upgrade_status(gw.ws_addr(), "/capi/other/dev") == 404
    });
    echo(&mut ws, "after another service left");

    consul.set_check(held_id, "critical");
    eventually("critical node no longer chosen", Duration::from_secs(3), || {
        round(other, 4) == 4
    });
    echo(&mut ws, "after my node turned critical");
    consul.set_check(held_id, "passing");
    eventually("node passing again is chosen", Duration::from_secs(3), || {
        round(held, 4) > 0
    });

    consul.deregister_node(held_node);
    eventually("deregistered node no longer chosen", PROPAGATION, || {
        round(other, 4) == 4
    });
    echo(&mut ws, "after my node was deregistered");
    ws.close(None).unwrap();
}

fn critical_not_used_then_used_again(driver: &str) {
    // 1. a and b passing: both get connections;
    // 2. a critical (a service check; the catalog index does not move): only b within the
    //    health interval;
    // 3. a passing again: a is used again; a node-level check (serfHealth) counts the same.
    let consul = Consul::start();
    let (a, b) = (Node::ws_echo(), Node::ws_echo());
    consul.register(&registration("px", "px-a", "dev", a.addr()));
    consul.register(&registration("px", "px-b", "dev", b.addr()));
    let gw = gateway_on(&[&consul], driver, "");
    let route = "/capi/px/dev";
    for _ in 0..4 {
        assert_eq!(upgrade_status(gw.ws_addr(), route), 101);
    }
    assert!(a.accepted() > 0 && b.accepted() > 0);

    for (what, flip_off, flip_on) in [
        (
            "service check",
            Box::new(|| consul.set_check("px-a", "critical")) as Box<dyn Fn()>,
            Box::new(|| consul.set_check("px-a", "passing")) as Box<dyn Fn()>,
        ),
        (
            "node check",
            Box::new(|| consul.set_node_check("node-px-a", "critical")),
            Box::new(|| consul.set_node_check("node-px-a", "passing")),
        ),
    ] {
        flip_off();
        eventually(
            &format!("{what}: critical a not used"),
            Duration::from_secs(3),
            || {
                let n = a.accepted();
                (0..4).all(|_| upgrade_status(gw.ws_addr(), route) == 101) && a.accepted() == n
            },
        );
        flip_on();
        eventually(&format!("{what}: a used again"), Duration::from_secs(3), || {
            let n = a.accepted();
            (0..4).all(|_| upgrade_status(gw.ws_addr(), route) == 101) && a.accepted() > n
        });
    }
    // Both critical: the service exists but has no healthy node → 503.
    consul.set_check("px-a", "critical");
    consul.set_check("px-b", "warning");
    eventually("no healthy node → 503", Duration::from_secs(3), || {
        upgrade_status(gw.ws_addr(), route) == 503
    });
}

fn metadata_is_honoured(driver: &str) {
    // REST and group-less services are ignored; keep-group-first, keep-group, root-context and
    // ingress shape the route and the forwarded request; ServiceAddress "" uses the node address.
    let consul = Consul::start();
    let node = Node::ws_echo();
    let ingress = Node::ws_echo();
    consul.register(&registration("orders", "orders-1", "dev", node.addr()).meta("type", "rest"));
    consul.register(&registration("legacy", "legacy-1", "dev", node.addr()).without_meta("group"));
    consul.register(
        &registration("trading", "trading-1", "prod", node.addr()).meta("keep-group-first", "true"),
    );
    consul.register(
        &registration("prices", "prices-1", "prod", node.addr())
            .meta("keep-group", "true")
            .meta("root-context", "/ws")
            .address(""),
    );
    let dead = closed_port();
    consul.register(
        &registration("collab", "collab-1", "dev", dead)
            .meta("ingress", &format!("http://{}", ingress.addr())),
    );
    let gw = gateway_on(&[&consul], driver, "");
    let addr = gw.ws_addr();
    assert_eq!(
        upgrade_status(addr, "/capi/orders/dev"),
        404,
        "rest ignored in websocket mode"
    );
    assert_eq!(upgrade_status(addr, "/capi/legacy/dev"), 404, "no group: skipped");
    assert_eq!(
        upgrade_status(addr, "/capi/trading/prod"),
        404,
        "group-first route only"
    );
    assert_eq!(upgrade_status(addr, "/capi/prod/trading"), 101);
    let _ = node.next_head();

    let mut ws = open(&gw, "/capi/prices/prod/live?x=1");
    echo(&mut ws, "p");
    let head = node.next_head();
    assert_eq!(head.target, "/ws/live?x=1");
    assert_eq!(head.header("capi-group"), Some("/prices/prod"));
    assert_eq!(
        head.header("host"),
        Some(&*node.addr().to_string()),
        "node Address used"
    );

    let mut ws2 = open(&gw, "/capi/collab/dev");
    echo(&mut ws2, "c");
    let head = ingress.next_head();
    assert_eq!(head.header("host"), Some(&*ingress.addr().to_string()));
    node.check();
    ingress.check();
}

fn full_mode_lists_rest_but_routes_websocket_only(driver: &str) {
    let consul = Consul::start();
    let node = Node::ws_echo();
    consul.register(&registration("orders", "orders-1", "dev", node.addr()).meta("type", "rest"));
    consul.register(&registration("chat", "chat-1", "dev", node.addr()));
    let yaml = consul_yaml(&Config::new(), &[(consul.endpoint(), None)], "")
        .replace("  mode: websocket\n", "  mode: full\n");
    let gw = Gateway::start(&yaml, driver, 2);
    wait_synced(&gw, 1);
    assert_eq!(upgrade_status(gw.ws_addr(), "/capi/chat/dev"), 101);
    assert_eq!(upgrade_status(gw.ws_addr(), "/capi/orders/dev"), 404);
    assert_eq!(node.accepted(), 1, "the rest service's node is never connected");
}

fn namespace_strict_and_permissive(driver: &str) {
    let consul = Consul::start();
    let node = Node::ws_echo();
    consul.register(&registration("a", "a-1", "dev", node.addr()).meta("namespace", "team-a"));
    consul.register(&registration("b", "b-1", "dev", node.addr()));
    consul.register(&registration("c", "c-1", "dev", node.addr()).meta("namespace", "team-b"));
    consul.register(
        &registration("d", "d-1", "dev", node.addr())
            .meta("capi-instance", "team-a")
            .meta("namespace", "x"),
    );
    for (strict, want) in [(false, [101, 101, 404, 101]), (true, [101, 404, 404, 101])] {
        let gw = gateway_on(
            &[&consul],
            driver,
            &format!("capi.namespace: team-a\ncapi.strict: {strict}\n"),
        );
        let got: Vec<u16> = ["a", "b", "c", "d"]
            .iter()
            .map(|s| upgrade_status(gw.ws_addr(), &format!("/capi/{s}/dev")))
            .collect();
        assert_eq!(got, want, "strict {strict}");
    }
}

fn capi_instance_overrides_for_our_namespace(driver: &str) {
    // CAPI-META `capi-instance-<ns>-<prop>` with `capi.namespace: edge`: the override secures
    // "s" (401 without a token), puts "g" group first (/capi/dev/g), and "o", which carries
    // overrides for another namespace only, gets no route (CAPI creates none); "p" is plain.
    let consul = Consul::start();
    let node = Node::ws_echo();
    consul.register(&registration("s", "s-1", "dev", node.addr()).meta("capi-instance-edge-secured", "true"));
    consul.register(
        &registration("g", "g-1", "dev", node.addr()).meta("capi-instance-edge-route-group-first", "true"),
    );
    consul
        .register(&registration("o", "o-1", "dev", node.addr()).meta("capi-instance-core-secured", "false"));
    consul.register(&registration("p", "p-1", "dev", node.addr()));
    let gw = gateway_on(&[&consul], driver, "capi.namespace: edge\n");
    let got: Vec<u16> = [
        "/capi/s/dev",
        "/capi/dev/g",
        "/capi/g/dev",
        "/capi/o/dev",
        "/capi/p/dev",
    ]
    .iter()
    .map(|p| upgrade_status(gw.ws_addr(), p))
    .collect();
    assert_eq!(got, [401, 101, 404, 404, 101]);
}

fn two_hosts_are_merged(driver: &str) {
    let (c1, c2) = (Consul::start(), Consul::start());
    let (a, b, only) = (Node::ws_echo(), Node::ws_echo(), Node::ws_echo());
    c1.register(&registration("shared", "shared-a", "dev", a.addr()));
    c2.register(&registration("shared", "shared-b", "dev", b.addr()));
    c2.register(&registration("solo", "solo-1", "dev", only.addr()));
    let gw = gateway_on(&[&c1, &c2], driver, "");
    for _ in 0..4 {
        assert_eq!(upgrade_status(gw.ws_addr(), "/capi/shared/dev"), 101);
    }
    assert!(a.accepted() > 0 && b.accepted() > 0, "nodes from both hosts used");
    assert_eq!(upgrade_status(gw.ws_addr(), "/capi/solo/dev"), 101);
    // A change on one host leaves the other host's part alone.
    c1.deregister("shared-a");
    eventually("host 1's node gone, host 2's kept", PROPAGATION, || {
        let n = a.accepted();
        (0..3).all(|_| upgrade_status(gw.ws_addr(), "/capi/shared/dev") == 101) && a.accepted() == n
    });
}

/// Waits until the gateway holds a blocking catalog query at the double's current index (it
/// has seen everything and waits for the next change).
fn wait_holding(consul: &Consul) {
    let idx = consul.index().to_string();
    eventually(
        "gateway holding a query at the current index",
        Duration::from_secs(5),
        || {
            consul
                .requests()
                .iter()
                .rev()
                .find(|r| r.path == "/v1/catalog/services")
                .is_some_and(|r| r.param("index") == Some(idx.as_str()))
        },
    );
}

/// Registration → first successful upgrade, 20 trials; `idle`: each registration meets a
/// gateway holding its blocking query; else back to back (then the pacing bucket shows).
fn propagation_trials(consul: &Consul, gw: &Gateway, node: &Node, tag: &str, idle: bool) -> Vec<Duration> {
    let mut samples = Vec::new();
    for i in 0..20 {
        let name = format!("{tag}{i}");
        let route = format!("/capi/{name}/dev");
        if idle {
            wait_holding(consul);
        }
        let t0 = Instant::now();
        consul.register(&registration(&name, &format!("{name}-1"), "dev", node.addr()));
        // Polling is the measurement here (the first success is the event measured).
        while upgrade_status(gw.ws_addr(), &route) != 101 {
            assert!(
                t0.elapsed() < PROPAGATION,
                "trial {i}: not routable within {PROPAGATION:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        samples.push(t0.elapsed());
    }
    samples.sort();
    samples
}

fn propagation_time_over_20_trials(driver: &str) {
    let consul = Consul::start();
    let node = Node::ws_echo();
    let gw = gateway_on(&[&consul], driver, "");
    for (tag, idle) in [("idle", true), ("burst", false)] {
        let s = propagation_trials(&consul, &gw, &node, tag, idle);
        eprintln!(
            "consul propagation ({driver}, {tag}): median {:?}, max {:?} over 20 trials",
            (s[9] + s[10]) / 2,
            s[19]
        );
    }
}

drivers!(
    registered_routable_then_deregistered_404,
    established_connection_survives_changes,
    critical_not_used_then_used_again,
    metadata_is_honoured,
    full_mode_lists_rest_but_routes_websocket_only,
    namespace_strict_and_permissive,
    capi_instance_overrides_for_our_namespace,
    two_hosts_are_merged,
    propagation_time_over_20_trials,
);

// ---- control plane only (one driver is enough: the data path is not what is tested) ----

const DRIVER: &str = "epoll";

#[test]
fn acl_token_is_sent_and_required() {
    // 1. with the right token: synced, every request carried X-Consul-Token, never `token=`;
    // 2. with a wrong token: 403 ACL not found → failing, nothing routable;
    // 3. without a token: Consul's anonymous answer (empty) plus a warning about deny.
    let consul = Consul::start();
    let node = Node::ws_echo();
    consul.register(&registration("chat", "chat-1", "dev", node.addr()));
    consul.require_tokens(&["s3cret"]);

    let yaml = consul_yaml(&Config::new(), &[(consul.endpoint(), Some("s3cret"))], "");
    let gw = Gateway::start(&yaml, DRIVER, 1);
    wait_synced(&gw, 1);
    assert_eq!(upgrade_status(gw.ws_addr(), "/capi/chat/dev"), 101);
    let reqs = consul.requests();
    assert!(!reqs.is_empty());
    for r in &reqs {
        assert_eq!(
            r.header("X-Consul-Token"),
            Some("s3cret"),
            "{} {:?}",
            r.path,
            r.query
        );
        assert!(r.param("token").is_none() && r.param("ns").is_none());
    }
    assert!(!gw.logs().contains("s3cret"), "the token never appears in logs");
    drop(gw);

    let wrong = consul_yaml(&Config::new(), &[(consul.endpoint(), Some("typo"))], "");
    let gw = Gateway::start(&wrong, DRIVER, 1);
    eventually("403 reported", Duration::from_secs(5), || {
        gw.logs().contains("Consul sync failing") && gw.logs().contains("HTTP 403: ACL not found")
    });
    assert_eq!(upgrade_status(gw.ws_addr(), "/capi/chat/dev"), 404);
    drop(gw);

    let none = consul_yaml(&Config::new(), &[(consul.endpoint(), None)], "");
    let gw = Gateway::start(&none, DRIVER, 1);
    wait_synced(&gw, 1);
    assert!(gw
        .logs()
        .contains("default policy is deny and no token is configured"));
    assert_eq!(upgrade_status(gw.ws_addr(), "/capi/chat/dev"), 404);
}

/// Catalog requests (`/v1/catalog/services`) recorded after `since`.
fn catalog_requests_since(consul: &Consul, since: Instant) -> usize {
    consul
        .requests()
        .iter()
        .filter(|r| r.at >= since && r.path == "/v1/catalog/services")
        .count()
}

#[test]
fn outages_keep_the_last_table_and_recover() {
    // For each fault (500, garbage JSON, missing index, hang, down):
    // 1. the existing route keeps working while the fault lasts, and a registration made
    //    meanwhile is not half-applied;
    // 2. one "failing" line per outage, one "recovered" line when it ends;
    // 3. after recovery the registration made during the outage shows up.
    let consul = Consul::start();
    let node = Node::ws_echo();
    consul.register(&registration("chat", "chat-1", "dev", node.addr()));
    let gw = gateway_on(&[&consul], DRIVER, "");
    assert_eq!(upgrade_status(gw.ws_addr(), "/capi/chat/dev"), 101);

    type Fault<'a> = (&'a str, Box<dyn Fn(&Consul) + 'a>, Box<dyn Fn(&Consul) + 'a>);
    let faults: Vec<Fault> = vec![
        (
            "500",
            Box::new(|c| c.fail_next(1_000_000, 500, "No cluster leader")),
            Box::new(|c| c.fail_next(0, 500, "")),
        ),
        (
            "garbage",
            Box::new(|c| c.garbage_next(1_000_000)),
            Box::new(|c| c.garbage_next(0)),
        ),
        (
            "no index",
            Box::new(|c| c.no_index_next(1_000_000)),
            Box::new(|c| c.no_index_next(0)),
        ),
        (
            "hang",
            Box::new(|c| c.set_hang(true)),
            Box::new(|c| c.set_hang(false)),
        ),
        ("down", Box::new(|c| c.go_down()), Box::new(|c| c.come_up())),
    ];
    for (i, (what, start, stop)) in faults.iter().enumerate() {
        let failing_before = gw.logs().matches("Consul sync failing").count();
        let recovered_before = gw.logs().matches("Consul sync recovered").count();
        start(&consul);
        // Wake the held query so the fault is met now (a registration moves the index).
        let svc = format!("late{i}");
        consul.register(&registration(&svc, &format!("{svc}-1"), "dev", node.addr()));
        if *what != "hang" {
            eventually(&format!("{what}: failure logged"), Duration::from_secs(5), || {
                gw.logs().matches("Consul sync failing").count() == failing_before + 1
            });
        } else {
            // A held request is cut by its read timeout (W + W/16 + 2 s).
            eventually("hang: failure logged", Duration::from_secs(8), || {
                gw.logs().matches("Consul sync failing").count() == failing_before + 1
            });
        }
        if *what == "500" {
            let t0 = Instant::now();
            std::thread::sleep(Duration::from_secs(2));
            let n = catalog_requests_since(&consul, t0);
            assert!(n <= 20, "500: {n} catalog requests in 2 s: back-off too weak");
        }
        assert_eq!(
            upgrade_status(gw.ws_addr(), "/capi/chat/dev"),
            101,
            "{what}: last table kept"
        );
        assert_eq!(
            upgrade_status(gw.ws_addr(), &format!("/capi/{svc}/dev")),
            404,
            "{what}: nothing half-applied during the outage"
        );
        stop(&consul);
        eventually(&format!("{what}: recovered"), Duration::from_secs(10), || {
            gw.logs().matches("Consul sync recovered").count() == recovered_before + 1
        });
        eventually(
            &format!("{what}: registration during the outage applied"),
            PROPAGATION,
            || upgrade_status(gw.ws_addr(), &format!("/capi/{svc}/dev")) == 101,
        );
        assert_eq!(
            gw.logs().matches("Consul sync failing").count(),
            failing_before + 1,
            "{what}: one log line per state change"
        );
    }
}

#[test]
fn index_going_backwards_is_handled() {
    // 1. the gateway holds a query at index N; the double is "restored" to index 5;
    // 2. a registration moves the index to 6 < N: the held query sees nothing until its wait
    //    ends, then gets 6 < N, applies the body and starts over from index 0;
    // 3. the new service is routable within the wait plus the propagation bound.
    let consul = Consul::start();
    let node = Node::ws_echo();
    for i in 0..20 {
        consul.register(&registration("churn", &format!("churn-{i}"), "dev", node.addr()));
    }
    let gw = gateway_on(&[&consul], DRIVER, "");
    let held = consul.index();
    assert!(held > 10);
    consul.reset_index(5);
    consul.clear_requests();
    let t0 = Instant::now();
    consul.register(&registration("fresh", "fresh-1", "dev", node.addr()));
    eventually(
        "routable after the restore",
        Duration::from_millis(MAX_WAIT_MS) * 2 + PROPAGATION,
        || upgrade_status(gw.ws_addr(), "/capi/fresh/dev") == 101,
    );
    let reqs = consul.requests();
    let restart = reqs
        .iter()
        .position(|r| r.path == "/v1/catalog/services" && r.param("index").is_none());
    assert!(
        restart.is_some(),
        "a fresh read (no index) after the index went backwards"
    );
    assert!(
        reqs.iter()
            .filter(|r| r.path == "/v1/catalog/services" && r.at >= t0)
            .all(|r| r.param("index") != Some("0")),
        "index=0 is never sent"
    );
    assert!(gw.logs().contains("Consul index went backwards"));
    // Later blocking queries use the restored (small) index again.
    eventually("blocking again on the new index", Duration::from_secs(3), || {
        consul.requests().iter().any(|r| {
            r.path == "/v1/catalog/services"
                && r.param("index")
                    .and_then(|i| i.parse::<u64>().ok())
                    .is_some_and(|i| (5..held).contains(&i))
        })
    });
}

#[test]
fn index_zero_never_loops_tight() {
    // A server reporting index 0 makes every answer look like a reset: the pacing bucket keeps
    // the gateway at a few requests per second instead of a busy loop.
    let consul = Consul::start();
    let node = Node::ws_echo();
    consul.register(&registration("chat", "chat-1", "dev", node.addr()));
    let gw = gateway_on(&[&consul], DRIVER, "");
    consul.set_index_zero(true);
    consul.register(&registration("chat", "chat-2", "dev", node.addr()));
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let n = catalog_requests_since(&consul, t0);
    assert!(n <= 18, "{n} catalog requests in 2 s");
    assert_eq!(upgrade_status(gw.ws_addr(), "/capi/chat/dev"), 101);
}

// ---- the double itself answers like Consul ----

fn get(consul: &Consul, target: &str, headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, String) {
    let mut req = ureq::get(&format!("{}{target}", consul.endpoint())).timeout(Duration::from_secs(10));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{target}: {e}"),
    };
    let status = resp.status();
    let hdrs = resp
        .headers_names()
        .into_iter()
        .map(|n| {
            let v = resp.header(&n).unwrap_or_default().to_owned();
            (n, v)
        })
        .collect();
    (status, hdrs, resp.into_string().unwrap())
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn double_answers_like_consul() {
    let consul = Consul::from_fixtures();
    let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();

    // Real shapes: the catalog view equals the fixture; health and ?passing too.
    let (status, h, body) = get(&consul, "/v1/catalog/service/chat", &[]);
    assert_eq!(status, 200);
    assert_eq!(json(&body), fixture("catalog-service-chat.json"));
    assert_eq!(header(&h, "x-consul-index"), Some("131"));
    for name in [
        "Content-Type",
        "X-Consul-Knownleader",
        "X-Consul-Lastcontact",
        "X-Consul-Effective-Consistency",
        "X-Consul-Default-Acl-Policy",
    ] {
        assert!(header(&h, name).is_some(), "{name} missing");
    }
    let (_, h, body) = get(&consul, "/v1/health/service/chat", &[]);
    assert_eq!(json(&body), fixture("health-service-chat.json"));
    assert_eq!(header(&h, "x-consul-index"), Some("175"));
    let (_, _, body) = get(&consul, "/v1/health/service/chat?passing", &[]);
    assert_eq!(json(&body), fixture("health-service-chat-passing.json"));
    let (_, _, body) = get(&consul, "/v1/catalog/service/prices", &[]);
    assert_eq!(json(&body), fixture("catalog-service-prices.json"));
    let (_, h, body) = get(&consul, "/v1/catalog/services", &[]);
    assert_eq!(header(&h, "x-consul-index"), Some("162"));
    assert!(json(&body).get("consul").is_some());
    let (_, h, body) = get(&consul, "/v1/catalog/service/CHAT", &[]);
    assert_eq!(
        json(&body).as_array().unwrap().len(),
        2,
        "case-insensitive lookup"
    );
    assert_eq!(header(&h, "x-consul-index"), Some("131"));
    let (status, h, body) = get(&consul, "/v1/health/service/nope", &[]);
    assert_eq!((status, body.as_str()), (200, "[]"));
    assert_eq!(header(&h, "x-consul-index"), Some("162"));

    // Errors as Consul gives them.
    for (target, want) in [
        ("/v1/catalog/service/", (400, "Missing service name")),
        ("/v1/catalog/services?index=x", (400, "Invalid index")),
        ("/v1/catalog/services?index=1&wait=5", (400, "Invalid wait time")),
        (
            "/v1/health/service/chat?passing=maybe",
            (400, "Invalid value for ?passing"),
        ),
        ("/v1/agent/self", (404, "")),
    ] {
        let (status, _, body) = get(&consul, target, &[]);
        assert_eq!((status, body.as_str()), want, "{target}");
    }
    let (status, _, _) = get(&consul, "/v1/catalog/services?ns=x", &[]);
    assert_eq!(status, 400, "ns is Enterprise only");

    // Blocking: returns at the wait without a change, early on a change.
    let t0 = Instant::now();
    let (_, h, _) = get(&consul, "/v1/catalog/services?index=162&wait=300ms", &[]);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(header(&h, "x-consul-index"), Some("162"));
    let t0 = Instant::now();
    let waiter = std::thread::spawn({
        let endpoint = consul.endpoint();
        move || {
            let resp = ureq::get(&format!("{endpoint}/v1/health/service/chat?index=175&wait=10s"))
                .call()
                .unwrap();
            resp.header("X-Consul-Index").unwrap().to_owned()
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    consul.set_check("chat-2", "passing");
    let idx: u64 = waiter.join().unwrap().parse().unwrap();
    assert!(idx > 175 && t0.elapsed() < Duration::from_secs(5));
    let (_, h, _) = get(&consul, "/v1/catalog/services", &[]);
    assert_eq!(
        header(&h, "x-consul-index"),
        Some("162"),
        "check changes do not move the catalog index"
    );

    // ACL: unknown token 403, known token via either header, anonymous filtered.
    consul.require_tokens(&["t1"]);
    let (status, _, body) = get(&consul, "/v1/catalog/services", &[("X-Consul-Token", "bad")]);
    assert_eq!((status, body.as_str()), (403, "ACL not found"));
    let (status, _, body) = get(&consul, "/v1/catalog/services", &[("Authorization", "Bearer t1")]);
    assert_eq!(status, 200);
    assert!(json(&body).get("chat").is_some());
    let (status, h, body) = get(&consul, "/v1/catalog/services", &[]);
    assert_eq!((status, body.as_str()), (200, "{}"));
    assert_eq!(header(&h, "X-Consul-Default-Acl-Policy"), Some("deny"));
}
