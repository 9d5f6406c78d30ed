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

/// The Ed25519 key the `jwt_claims` target signs with (a throw-away test key, PKCS#8 PEM).
pub const FUZZ_ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
MC4CAQAwBQYDK2VwBCIEIOwkasoywMAUBUyqi2lPcIAOUUmgwWNDETtmy9eOkYIe\n\
-----END PRIVATE KEY-----\n";
/// Its public half as a JWK `x`, published under kid `fz-ed`.
pub const FUZZ_ED25519_X: &str = "yDJPJpsVafRNyfVN9BXxf2fw-t7rc6prGiEV--XQcMk";
/// The issuer the fixed key set binds its source to.
pub const FUZZ_ISSUER: &str = "https://kc.test/realms/fz";

/// A fixed key set the way the control plane builds one from a JWKS: the Ed25519 key above
/// (bound to [`FUZZ_ISSUER`] and audience `web`) plus a kid-less EC P-256 key from a second,
/// unbound source, so tokens without a `kid` have several candidates.
pub fn fixed_key_set() -> capi_ws::keys::KeySet {
    use capi_ws::config::KeySource;
    use capi_ws::keys::{parse_key_document, KeySet};
    use std::sync::Arc;
    let ed = format!(
        r#"{{"keys":[{{"kid":"fz-ed","kty":"OKP","crv":"Ed25519","alg":"EdDSA","use":"sig","x":"{FUZZ_ED25519_X}"}}]}}"#
    );
    let ec = r#"{"keys":[{"kty":"EC","crv":"P-256","use":"sig",
        "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
    let sources = [
        KeySource {
            source: "http://127.0.0.1/fz".into(),
            issuer: Some(FUZZ_ISSUER.into()),
            audience: Some("web".into()),
        },
        KeySource {
            source: "http://127.0.0.1/ec".into(),
            issuer: None,
            audience: None,
        },
    ];
    let loaded = [ed.as_bytes(), ec.as_bytes()]
        .iter()
        .map(|doc| parse_key_document(doc).ok().map(Arc::new))
        .collect::<Vec<_>>();
    assert!(loaded.iter().all(Option::is_some), "fixed JWKS must parse");
    KeySet::build(1, &sources, &loaded)
}

/// What `verify` may answer with: exactly the metric reasons of DESIGN §12.
pub const VERIFY_REASONS: [&str; 7] = [
    "malformed",
    "algorithm",
    "unknown_key",
    "signature",
    "issuer",
    "audience",
    "no_keys",
];

/// The invariants of a verified token's subscriptions: trimmed, sorted, unique, non-empty.
pub fn check_subscriptions(subs: &[String]) {
    for w in subs.windows(2) {
        assert!(w[0] < w[1], "subscriptions not sorted/unique: {subs:?}");
    }
    for s in subs {
        assert!(!s.is_empty(), "empty subscription in {subs:?}");
        assert_eq!(s.trim(), s, "subscription {s:?} not trimmed");
    }
}
