//! Fuzz target: the routing-table builder (src/control/table.rs build_snapshot) on arbitrary
//! instances and metadata, as static config or Consul hands them in. Properties: no panic; the
//! same instances in another order give the same table; every route key points at one
//! routable service with that key; a request to a routable service routes to it and its
//! forwarded head is one sound request (fuzz/src/lib.rs `check_forward`) — metadata such as
//! `root-context` must never split or inject into the head sent to a node.
#![no_main]

use arbitrary::Arbitrary;
use capi_ws::config::{Mode, Settings};
use capi_ws::control::table::build_snapshot;
use capi_ws::data::head::{parse_request, MAX_HEADERS};
use capi_ws::data::route::route;
use capi_ws::snapshot::{Instance, NodeSource, Snapshot};
use capi_ws_fuzz::{check_forward, fake_resolve};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Key {
    Group,
    Type,
    Secured,
    SubscriptionGroup,
    RootContext,
    KeepGroup,
    KeepGroupFirst,
    RouteGroupFirst,
    AllowedOrigins,
    Namespace,
    Ingress,
    Scheme,
    Schema,
    State,
    Other(String),
}

impl Key {
    fn name(&self) -> &str {
        match self {
            Key::Group => "group",
            Key::Type => "type",
            Key::Secured => "secured",
            Key::SubscriptionGroup => "subscription-group",
            Key::RootContext => "root-context",
            Key::KeepGroup => "keep-group",
            Key::KeepGroupFirst => "keep-group-first",
            Key::RouteGroupFirst => "route-group-first",
            Key::AllowedOrigins => "allowed-origins",
            Key::Namespace => "namespace",
            Key::Ingress => "ingress",
            Key::Scheme => "scheme",
            Key::Schema => "schema",
            Key::State => "state",
            Key::Other(s) => s,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Value {
    True,
    False,
    Websocket,
    Raw(String),
}

impl Value {
    fn text(&self) -> &str {
        match self {
            Value::True => "true",
            Value::False => "false",
            Value::Websocket => "websocket",
            Value::Raw(s) => s,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Inst {
    name: String,
    address: String,
    port: u16,
    healthy: bool,
    meta: Vec<(Key, Value)>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    full_mode: bool,
    namespace: Option<String>,
    strict: bool,
    empty_context: bool,
    instances: Vec<Inst>,
}

/// What must not depend on input order: per service, everything a client or `/routes` sees.
fn summary(s: &Snapshot) -> Vec<String> {
    s.services
        .iter()
        .map(|v| {
            let nodes: Vec<(&str, bool)> = v
                .nodes
                .iter()
                .map(|n| (n.host_port.as_str(), n.healthy))
                .collect();
            format!(
                "{}|{}|{}|{}|{}|{:?}|{}|{}|{:?}|{:?}|{:?}|{:?}",
                v.name,
                v.group,
                v.route_key,
                v.routable,
                v.secured,
                v.subscription_groups,
                v.root_context,
                v.keep_group,
                v.allowed_origins,
                v.reason,
                v.conflicts,
                nodes
            )
        })
        .collect()
}

fuzz_target!(|input: Input| {
    let mut settings = Settings::default();
    settings.mode = if input.full_mode {
        Mode::Full
    } else {
        Mode::Websocket
    };
    settings.namespace = input.namespace.clone();
    settings.strict = input.strict;
    if input.empty_context {
        settings.context_path = String::new();
    }
    // Ids are unique (Consul ServiceIDs are), so the documented order-independence applies.
    let instances: Vec<Instance> = input
        .instances
        .iter()
        .enumerate()
        .map(|(i, x)| Instance {
            id: format!("id-{i:04}"),
            name: x.name.clone(),
            address: x.address.clone(),
            port: x.port,
            meta: x
                .meta
                .iter()
                .map(|(k, v)| (k.name().to_string(), v.text().to_string()))
                .collect(),
            healthy: x.healthy,
            source: NodeSource::Consul,
        })
        .collect();
    let mut reversed = instances.clone();
    reversed.reverse();
    let snap = build_snapshot(&settings, instances, &fake_resolve);
    let again = build_snapshot(&settings, reversed, &fake_resolve);
    assert_eq!(summary(&snap), summary(&again), "table depends on instance order");

    for (key, &i) in &snap.by_route {
        let svc = &snap.services[i];
        assert!(svc.routable, "route {key} points at an unroutable service");
        assert_eq!(&svc.route_key, key);
    }
    for (i, svc) in snap.services.iter().enumerate() {
        if !svc.routable {
            continue;
        }
        assert_eq!(snap.by_route.get(&svc.route_key), Some(&i));
        let raw = format!(
            "GET {}{}/x?y=1&access_token=T HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n",
            snap.context_path, svc.route_key
        );
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let Ok(Some(head)) = parse_request(raw.as_bytes(), &mut storage) else {
            continue; // a name no request line can carry: unreachable, harmless
        };
        if let Ok(m) = route(&snap, head.target) {
            assert_eq!(
                m.service, i,
                "route key {} reached another service",
                svc.route_key
            );
            check_forward(&head, &m, &snap);
        }
    }
});
