//! Shared pieces of the capi-ws fuzz targets (issue 8): a fixed routing snapshot built the way
//! the control plane builds it, and the soundness check every forwarded head must pass (one
//! complete request, nothing smuggled after it). Targets assert properties, not just "no panic".

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use capi_ws::config::Settings;
use capi_ws::control::table::build_snapshot;
use capi_ws::data::head::RequestHead;
use capi_ws::data::route::RouteMatch;
use capi_ws::data::upstream::{forward_head, ForwardParams};
use capi_ws::snapshot::{Instance, NodeSource, Snapshot};

/// A resolver that never touches the network: literal IPs as written, any name that is not
/// `*.invalid` to 10.0.0.1.
pub fn fake_resolve(host: &str, port: u16) -> Option<SocketAddr> {
    if host.ends_with(".invalid") || host.is_empty() {
        return None;
    }
    let ip = host.parse().unwrap_or(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    Some(SocketAddr::new(ip, port))
}

/// One instance with the given meta pairs.
pub fn instance(id: &str, name: &str, meta: &[(&str, &str)]) -> Instance {
    Instance {
        id: id.to_string(),
        name: name.to_string(),
        address: "10.0.0.7".to_string(),
        port: 9001,
        meta: meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        healthy: true,
        source: NodeSource::Static,
    }
}

/// The routing table the request targets run against: plain, group-first, root-context with
/// keep-group, an origin-restricted service, and a non-websocket one (not routable).
pub fn fixed_snapshot() -> Snapshot {
    let ws = ("type", "websocket");
    let instances = vec![
        instance("a", "echo", &[("group", "dev"), ws]),
        instance(
            "b",
            "chat",
            &[("group", "prod"), ws, ("keep-group-first", "true")],
        ),
        instance(
            "c",
            "rich",
            &[
                ("group", "dev"),
                ws,
                ("root-context", "/root"),
                ("keep-group", "true"),
            ],
        ),
        instance(
            "d",
            "web",
            &[
                ("group", "dev"),
                ws,
                ("allowed-origins", "https://app.example, null"),
            ],
        ),
        instance("e", "rest", &[("group", "dev"), ("type", "rest")]),
    ];
    let mut settings = Settings::default();
    settings.mode = capi_ws::config::Mode::Full;
    build_snapshot(&settings, instances, &fake_resolve)
}

/// Forward `head` for `m` and check the result is sound: it parses as exactly one complete
/// HTTP/1.1 `GET` whose head is the whole output (nothing smuggled after it), with one `Host`
/// (the node), no `Transfer-Encoding`, no `Content-Length` but zero, one `Upgrade: websocket`, and a target
/// that starts with `/` and keeps no `access_token` pair. Panics (= a fuzz finding) otherwise.
pub fn check_forward(head: &RequestHead, m: &RouteMatch, snap: &Snapshot) {
    let service = &snap.services[m.service];
    let params = ForwardParams {
        service,
        node_host_port: "10.0.0.7:9001",
        client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
    };
    let mut out = Vec::new();
    forward_head(head, m, &params, &mut out);
    let mut storage = [httparse::EMPTY_HEADER; 256];
    let mut req = httparse::Request::new(&mut storage);
    let parsed = req.parse(&out);
    let text = String::from_utf8_lossy(&out);
    match parsed {
        Ok(httparse::Status::Complete(n)) => {
            assert_eq!(n, out.len(), "bytes after the forwarded head: {text:?}")
        }
        other => panic!("forwarded head does not parse ({other:?}): {text:?}"),
    }
    assert_eq!(req.method, Some("GET"), "{text:?}");
    assert_eq!(req.version, Some(1), "{text:?}");
    let target = req.path.unwrap_or_default();
    assert!(target.starts_with('/'), "target {target:?}");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    for pair in query.split('&') {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        assert_ne!(key, "access_token", "token forwarded: {text:?}");
    }
    let count = |name: &str| {
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .count()
    };
    assert_eq!(count("host"), 1, "{text:?}");
    assert_eq!(count("transfer-encoding"), 0, "{text:?}");
    // validate_upgrade lets only `Content-Length: 0` through; it is forwarded as sent.
    let lengths = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"));
    for h in lengths {
        assert!(h.value.iter().all(|&b| b == b'0'), "{text:?}");
    }
    assert_eq!(count("upgrade"), 1, "{text:?}");
    let host = req.headers.iter().find(|h| h.name.eq_ignore_ascii_case("host"));
    assert_eq!(host.map(|h| h.value), Some(&b"10.0.0.7:9001"[..]), "{text:?}");
}
