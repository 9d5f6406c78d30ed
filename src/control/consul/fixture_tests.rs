//! Table building from the real-shaped Consul fixtures (shared/consul/fixtures): health answers
//! (or catalog answers turned into health answers with a passing `serfHealth`, as the fixtures'
//! README says) -> instances -> snapshot, checked against the README's expected outcome.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde_json::{json, Value};

use super::api::{parse_health, parse_service_names, to_instance};
use crate::config::{Mode, Settings};
use crate::control::table::build_snapshot;
use crate::snapshot::{Instance, Snapshot};

/// `../shared/consul/fixtures` next to the repository (CI layout), `CAPI_WS_CONSUL_FIXTURES`
/// to override, or two levels up (a worktree under `wt/`).
pub fn fixtures_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        std::env::var_os("CAPI_WS_CONSUL_FIXTURES").map(PathBuf::from),
        Some(manifest.join("../shared/consul/fixtures")),
        Some(manifest.join("../../shared/consul/fixtures")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("catalog-services.json").is_file())
        .unwrap_or_else(|| {
            panic!(
                "Consul fixtures not found: expected shared/consul/fixtures next to the \
                 repository ({}/../shared) or CAPI_WS_CONSUL_FIXTURES",
                manifest.display()
            )
        })
}

fn read(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A catalog element as the health element an agent would give (passing `serfHealth`).
fn catalog_to_health(c: &Value) -> Value {
    json!({
        "Node": {"ID": c["ID"], "Node": c["Node"], "Address": c["Address"],
                 "Datacenter": c["Datacenter"], "Meta": c["NodeMeta"],
                 "CreateIndex": c["CreateIndex"], "ModifyIndex": c["ModifyIndex"]},
        "Service": {"ID": c["ServiceID"], "Service": c["ServiceName"], "Tags": c["ServiceTags"],
                    "Address": c["ServiceAddress"], "Meta": c["ServiceMeta"], "Port": c["ServicePort"],
                    "CreateIndex": c["CreateIndex"], "ModifyIndex": c["ModifyIndex"]},
        "Checks": [{"Node": c["Node"], "CheckID": "serfHealth", "Status": "passing", "ServiceID": ""}]
    })
}

/// Every instance of the fixture catalog, as the sync would produce it.
fn fixture_instances() -> Vec<Instance> {
    let names = parse_service_names(&read("catalog-services.json")).unwrap();
    assert!(
        !names.iter().any(|n| n == "consul"),
        "the consul entry is skipped"
    );
    let mut out = Vec::new();
    for name in names {
        let health_file = fixtures_dir().join(format!("health-service-{name}.json"));
        let body = if health_file.is_file() {
            read(&format!("health-service-{name}.json"))
        } else {
            let catalog: Value =
                serde_json::from_slice(&read(&format!("catalog-service-{name}.json"))).unwrap();
            let list: Vec<Value> = catalog
                .as_array()
                .unwrap()
                .iter()
                .map(catalog_to_health)
                .collect();
            serde_json::to_vec(&list).unwrap()
        };
        for entry in parse_health(&body).unwrap() {
            out.push(to_instance(&entry).unwrap());
        }
    }
    out
}

fn any_resolves(host: &str, port: u16) -> Option<SocketAddr> {
    let ip = host.parse().unwrap_or(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    Some(SocketAddr::new(ip, port))
}

fn snapshot(settings: &Settings) -> Snapshot {
    build_snapshot(settings, fixture_instances(), &any_resolves)
}

/// (host:port, healthy) of a routed service.
fn nodes(snap: &Snapshot, key: &str) -> Vec<(String, bool)> {
    let svc = snap.lookup(key).unwrap_or_else(|| panic!("no route {key}"));
    svc.nodes
        .iter()
        .map(|n| (n.host_port.clone(), n.healthy))
        .collect()
}

fn owned(list: &[(&str, bool)]) -> Vec<(String, bool)> {
    list.iter().map(|(h, ok)| (h.to_string(), *ok)).collect()
}

#[test]
fn expected_outcome_in_websocket_mode() {
    let snap = snapshot(&Settings::default());
    let mut routes: Vec<&str> = snap.by_route.keys().map(String::as_str).collect();
    routes.sort();
    assert_eq!(
        routes,
        [
            "/alerts/dev",
            "/chat/dev",
            "/collab/dev",
            "/prices/prod",
            "/prod/trading"
        ],
        "orders (rest) and legacy-feed (no group) have no route"
    );
    assert_eq!(snap.services.len(), 5, "nothing else is listed in websocket mode");

    let chat = snap.lookup("/chat/dev").unwrap();
    assert!(chat.secured && chat.routable);
    assert_eq!(
        chat.subscription_groups,
        [["webapp1".to_string(), "webapp2".to_string()]]
    );
    assert_eq!(chat.root_context, "/ws");
    assert_eq!(
        nodes(&snap, "/chat/dev"),
        owned(&[("10.20.1.11:8080", true), ("10.20.1.12:8080", false)]),
        "chat-2's service check is critical"
    );

    let prices = snap.lookup("/prices/prod").unwrap();
    assert!(prices.keep_group && !prices.secured);
    assert_eq!(
        nodes(&snap, "/prices/prod"),
        owned(&[("10.20.1.13:9100", true)]),
        "empty ServiceAddress falls back to the node Address"
    );

    assert_eq!(
        nodes(&snap, "/alerts/dev"),
        owned(&[
            ("10.20.1.11:8095", true),
            ("10.20.1.12:8095", true),
            ("10.20.1.13:8095", true)
        ])
    );
    assert!(snap.lookup("/alerts/dev").unwrap().conflicts == ["namespace"]);

    let collab = snap.lookup("/collab/dev").unwrap();
    assert_eq!(collab.root_context, "/collab");
    assert_eq!(
        nodes(&snap, "/collab/dev"),
        owned(&[("collab-ingress.example.internal:8080", true)]),
        "ingress replaces 10.20.1.12:8443"
    );

    let trading = snap.lookup("/prod/trading").unwrap();
    assert!(trading.secured && trading.subscription_groups.is_empty());
    assert_eq!(trading.route, "/capi/prod/trading");
    assert_eq!(
        nodes(&snap, "/prod/trading"),
        owned(&[
            ("10.20.1.11:7001", true),
            ("10.20.1.12:7001", false),
            ("10.20.1.14:7001", false)
        ]),
        "warning and node maintenance are not healthy"
    );
}

#[test]
fn full_mode_lists_rest_services_without_routing_them() {
    let settings = Settings {
        mode: Mode::Full,
        ..Settings::default()
    };
    let snap = snapshot(&settings);
    let orders = snap
        .services
        .iter()
        .find(|s| s.name == "orders")
        .expect("orders listed");
    assert!(!orders.routable);
    assert!(orders.reason.as_deref().unwrap_or("").contains("not websocket"));
    assert_eq!(orders.nodes.len(), 2);
    assert!(snap.lookup("/orders/dev").is_none());
    assert!(
        !snap.services.iter().any(|s| s.name == "legacy-feed"),
        "no group: skipped"
    );
}

#[test]
fn namespace_table_of_capi_meta() {
    let cases: &[(&str, Option<&str>, bool, &[&str])] = &[
        (
            "empty",
            None,
            false,
            &["10.20.1.11:8095", "10.20.1.12:8095", "10.20.1.13:8095"],
        ),
        (
            "empty strict ignored",
            None,
            true,
            &["10.20.1.11:8095", "10.20.1.12:8095", "10.20.1.13:8095"],
        ),
        (
            "team-a",
            Some("team-a"),
            false,
            &["10.20.1.11:8095", "10.20.1.13:8095"],
        ),
        ("team-a strict", Some("team-a"), true, &["10.20.1.11:8095"]),
        ("team-c", Some("team-c"), false, &["10.20.1.13:8095"]),
        ("team-c strict", Some("team-c"), true, &[]),
    ];
    for (name, ns, strict, want) in cases {
        let settings = Settings {
            namespace: ns.map(str::to_string),
            strict: *strict,
            ..Settings::default()
        };
        let snap = snapshot(&settings);
        let got: Vec<String> = snap
            .lookup("/alerts/dev")
            .map(|s| s.nodes.iter().map(|n| n.host_port.clone()).collect())
            .unwrap_or_default();
        assert_eq!(got, *want, "case {name}");
    }
}

#[test]
fn passing_filter_fixture_matches_our_health_rule() {
    let all = parse_health(&read("health-service-chat.json")).unwrap();
    let passing = parse_health(&read("health-service-chat-passing.json")).unwrap();
    let ours: Vec<&str> = all
        .iter()
        .filter(|e| e.healthy())
        .map(|e| e.service.id.as_str())
        .collect();
    let consul: Vec<&str> = passing.iter().map(|e| e.service.id.as_str()).collect();
    assert_eq!(ours, consul);
}
