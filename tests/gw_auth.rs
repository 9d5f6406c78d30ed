//! JWT authorization (DESIGN §5, §12; issue 4): secured services need a valid token from the
//! header, the query or the cookie, verified against keys a JWKS double serves in Keycloak's
//! shape. Every 401 reason, 403 subscriptions, key rotation, provider down/up, issuer binding
//! per key source, close-on-expiry. Each test runs under both drivers; the reason of each
//! refusal is read from the access log, and no token may ever show up in the gateway's output.
#![allow(clippy::disallowed_types)] // locks are fine in tests: the rule guards the data plane

#[macro_use]
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use tungstenite::Message;

use common::client::{raw_request, raw_upgrade, try_ws_connect, upgrade, RawResponse};
use common::config::{service, Config};
use common::eventually;
use common::gateway::Gateway;
use common::jwks::{bound_source, claims, jwks_document, keys, now, oauth2_yaml, JwksServer, TestKey};
use common::nodes::{Event, Node};
use common::wire::OP_TEXT;

const ISS_A: &str = "https://kc.test/realms/a";
const ISS_B: &str = "https://kc.test/realms/b";
const SECURED: &str = "/capi/secure/dev";
const OPEN: &str = "/capi/open/dev";

/// The gateway with `secure/dev` (secured, the given `subscription-group`, or none) and
/// `open/dev` (not secured), both on `node`; key sources and extra oauth2 lines as given.
fn gateway(node: SocketAddr, groups: Option<&str>, sources: &[String], extra: &str, driver: &str) -> Gateway {
    let mut secure = service("secure", "dev", node).meta("secured", "true");
    if let Some(g) = groups {
        secure = secure.meta("subscription-group", g);
    }
    let config = Config::new().with(secure).with(service("open", "dev", node));
    let yaml = format!("{}{}", config.yaml(), oauth2_yaml(sources, extra));
    Gateway::start_with(&yaml, driver, 1, &["--log-level", "info,access=debug"])
}

/// Realm A's JWKS (RSA + EC keys) bound to its issuer.
fn realm_a() -> JwksServer {
    let k = keys();
    JwksServer::start(jwks_document(&[&k.rsa, &k.ec]))
}

fn token(key: &TestKey, subs: &[&str]) -> String {
    key.token(&claims(ISS_A, subs))
}

/// An upgrade to `path` with `headers`; the answer.
fn request(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut req = upgrade(path);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    raw_request(gw.ws_addr(), &req.bytes())
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// The access log (JSON lines on stdout) shows a refusal with this status and reason
/// (written after the answer).
fn assert_logged(gw: &Gateway, status: u16, reason: &str) {
    eventually(
        &format!("access log line with status {status} reason {reason}"),
        Duration::from_secs(5),
        || {
            gw.access_log().lines().any(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .is_ok_and(|v| v["status"] == status && v["reason"] == reason)
            })
        },
    );
}

/// A 401 as DESIGN §5 wants it, counted with `reason`.
fn assert_401(gw: &Gateway, resp: &RawResponse, reason: &str) {
    resp.assert_error(401);
    assert_eq!(resp.header("www-authenticate"), Some("Bearer"), "reason {reason}");
    assert_logged(gw, 401, reason);
}

/// Upgrade succeeds and one message echoes through.
fn assert_upgrade(gw: &Gateway, path: &str, headers: &[(&str, &str)]) {
    let (mut ws, _) = try_ws_connect(gw.ws_addr(), path, headers).unwrap_or_else(|e| panic!("{path}: {e}"));
    ws.send(Message::text("ping")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("ping"));
    let _ = ws.close(None);
}

fn assert_no_token_in_output(gw: &Gateway, tokens: &[&str]) {
    let (logs, access) = (gw.logs(), gw.access_log());
    for t in tokens {
        // The signature part is unique to each token.
        let sig = t.rsplit('.').next().unwrap_or(t);
        assert!(
            !logs.contains(sig) && !access.contains(sig),
            "a token leaked into the output"
        );
    }
}

fn valid_token_sources(driver: &str) {
    let jwks = realm_a();
    let node = Node::ws_echo();
    let src = bound_source(&jwks.url("a"), ISS_A);
    let gw = gateway(
        node.addr(),
        None,
        &[src],
        "capi.oauth2.cookieName: KC_TOKEN\n",
        driver,
    );
    let k = keys();
    let rsa = token(&k.rsa, &[]);
    let ec = token(&k.ec, &[]);

    // 1. Authorization: Bearer, with an RSA and an EC key; `bearer` in lower case works.
    assert_upgrade(&gw, SECURED, &[("Authorization", &bearer(&rsa))]);
    assert_upgrade(&gw, SECURED, &[("Authorization", &format!("bearer {ec}"))]);
    // 2. The query parameter; the node never sees it, the rest of the query is kept.
    while node.try_head().is_some() {}
    let mut ws = raw_upgrade(
        gw.ws_addr(),
        &upgrade(&format!("{SECURED}/x?a=1&access_token={rsa}&b=2")),
        &[],
    );
    let line = node.next_head().request_line();
    assert!(line.starts_with("GET /x?a=1&b=2 "), "node saw {line:?}");
    assert!(
        !line.contains("access_token") && !line.contains(&rsa),
        "node saw {line:?}"
    );
    ws.send(OP_TEXT, b"q");
    assert_eq!(ws.read_frame().payload, b"q");
    // 3. The configured cookie.
    assert_upgrade(&gw, SECURED, &[("Cookie", &format!("theme=dark; KC_TOKEN={ec}"))]);
    // 4. Another Authorization scheme is not a token source: the query is tried next.
    assert_upgrade(
        &gw,
        &format!("{SECURED}?access_token={ec}"),
        &[("Authorization", "Basic dXNlcjpwdw==")],
    );
    node.check();
    assert_no_token_in_output(&gw, &[&rsa, &ec]);
}

fn each_401_reason(driver: &str) {
    let jwks = realm_a();
    let node = Node::ws_echo();
    let gw = gateway(
        node.addr(),
        None,
        &[bound_source(&jwks.url("a"), ISS_A)],
        "capi.oauth2.leeway-ms: 0\n",
        driver,
    );
    let k = keys();
    let good = token(&k.rsa, &[]);
    let mut parts = good.split('.');
    let (head, body) = (parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned());
    let other_sig = token(&k.ec, &[]).rsplit('.').next().unwrap().to_owned();
    let with = |c: serde_json::Value| k.rsa.token(&c);
    let mut c_expired = claims(ISS_A, &[]);
    c_expired["exp"] = json!(now() - 60);
    let mut c_nbf = claims(ISS_A, &[]);
    c_nbf["nbf"] = json!(now() + 600);
    let mut c_no_exp = claims(ISS_A, &[]);
    c_no_exp.as_object_mut().unwrap().remove("exp");
    let unknown_kid = k
        .rsa
        .token_with_header(&json!({"alg": "RS256", "kid": "nope"}), &claims(ISS_A, &[]));
    let alg_none = format!(
        "{}.{body}.",
        common::jwks::b64(json!({"alg": "none", "typ": "JWT"}).to_string())
    );
    // HS256 keyed with the RSA public key (the classic key-confusion forgery).
    let hs_input = format!(
        "{}.{body}",
        common::jwks::b64(json!({"alg": "HS256", "kid": k.rsa.kid()}).to_string())
    );
    let hs_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &k.rsa.public_bytes());
    let hs = format!(
        "{hs_input}.{}",
        common::jwks::b64(aws_lc_rs::hmac::sign(&hs_key, hs_input.as_bytes()))
    );
    // An RS384 token against a key published as RS256 (the JWK's alg binds).
    let rs384 = k
        .rsa
        .token_with_header(&json!({"alg": "RS384", "kid": k.rsa.kid()}), &claims(ISS_A, &[]));

    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        ("no token", vec![], "missing"),
        (
            "empty bearer",
            vec![("Authorization", "Bearer ".into())],
            "missing",
        ),
        ("garbage", vec![("Authorization", bearer("garbage"))], "malformed"),
        (
            "bad signature",
            vec![("Authorization", bearer(&format!("{head}.{body}.{other_sig}")))],
            "signature",
        ),
        (
            "expired",
            vec![("Authorization", bearer(&with(c_expired)))],
            "expired",
        ),
        (
            "not yet valid",
            vec![("Authorization", bearer(&with(c_nbf)))],
            "not_yet_valid",
        ),
        (
            "missing exp",
            vec![("Authorization", bearer(&with(c_no_exp)))],
            "malformed",
        ),
        (
            "unknown kid",
            vec![("Authorization", bearer(&unknown_kid))],
            "unknown_key",
        ),
        (
            "alg none",
            vec![("Authorization", bearer(&alg_none))],
            "algorithm",
        ),
        (
            "hs256 with the public key",
            vec![("Authorization", bearer(&hs))],
            "algorithm",
        ),
        (
            "rs384 on an rs256 key",
            vec![("Authorization", bearer(&rs384))],
            "algorithm",
        ),
    ];
    for (name, headers, reason) in &cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let resp = request(&gw, SECURED, &h);
        assert_eq!(resp.status, 401, "case {name}: {}", resp.body_text());
        assert_401(&gw, &resp, reason);
    }
    assert_eq!(node.accepted(), 0, "no refused request reached the node");
    // The same good token passes, and an unsecured service ignores tokens entirely.
    assert_upgrade(&gw, SECURED, &[("Authorization", &bearer(&good))]);
    assert_upgrade(&gw, OPEN, &[("Authorization", "Bearer garbage")]);
    assert_upgrade(&gw, &format!("{OPEN}?access_token=garbage"), &[]);
    assert_no_token_in_output(&gw, &[&good, &hs, &unknown_kid]);
}

fn subscriptions(driver: &str) {
    let jwks = realm_a();
    let node = Node::ws_echo();
    // Two instances would give two lists; one instance with a comma list and a leading `/`.
    let gw = gateway(
        node.addr(),
        Some("/gold, silver"),
        &[bound_source(&jwks.url("a"), ISS_A)],
        "",
        driver,
    );
    let k = keys();
    let cases: &[(&str, serde_json::Value, u16)] = &[
        ("match", json!(["silver"]), 101),
        ("leading slash in claim", json!(["/gold"]), 101),
        ("string claim", json!("/silver"), 101),
        ("one of many", json!(["bronze", "gold"]), 101),
        ("wrong", json!(["bronze"]), 403),
        ("empty", json!([]), 403),
        ("number", json!(7), 403),
        ("missing", serde_json::Value::Null, 403),
    ];
    for (name, subs, want) in cases {
        let mut c = claims(ISS_A, &[]);
        if subs.is_null() {
            c.as_object_mut().unwrap().remove("subscriptions");
        } else {
            c["subscriptions"] = subs.clone();
        }
        let t = k.rsa.token(&c);
        if *want == 101 {
            assert_upgrade(&gw, SECURED, &[("Authorization", &bearer(&t))]);
        } else {
            let resp = request(&gw, SECURED, &[("Authorization", &bearer(&t))]);
            resp.assert_error(403);
            assert!(resp.header("www-authenticate").is_none(), "case {name}");
            assert_logged(&gw, 403, "subscription");
        }
    }
}

/// Several instances with different `subscription-group` lists: a token must match each list.
fn several_subscription_groups(driver: &str) {
    let jwks = realm_a();
    let node = Node::ws_echo();
    let mut config = Config::new();
    for g in ["a, b", "c"] {
        config = config.with(
            service("secure", "dev", node.addr())
                .meta("secured", "true")
                .meta("subscription-group", g),
        );
    }
    let yaml = format!(
        "{}{}",
        config.yaml(),
        oauth2_yaml(&[bound_source(&jwks.url("a"), ISS_A)], "")
    );
    let gw = Gateway::start_with(&yaml, driver, 1, &["--log-level", "info,access=debug"]);
    let k = keys();
    assert_upgrade(
        &gw,
        SECURED,
        &[("Authorization", &bearer(&token(&k.rsa, &["b", "c"])))],
    );
    let resp = request(
        &gw,
        SECURED,
        &[("Authorization", &bearer(&token(&k.rsa, &["a", "b"])))],
    );
    resp.assert_error(403);
}

fn key_rotation(driver: &str) {
    let k = keys();
    let jwks = realm_a();
    let node = Node::ws_echo();
    let gw = gateway(
        node.addr(),
        None,
        &[bound_source(&jwks.url("a"), ISS_A)],
        "",
        driver,
    );
    let rotated = token(&k.rotated, &[]);
    // 1. The new kid is unknown: 401 unknown_key (and an early refresh is signalled).
    let resp = request(&gw, SECURED, &[("Authorization", &bearer(&rotated))]);
    assert_401(&gw, &resp, "unknown_key");
    // 2. The realm rotates its keys (old key kept, as Keycloak does during a rotation).
    jwks.set_body(jwks_document(&[&k.rsa, &k.rotated]));
    // 3. Within 2 s (the early-refresh rate limit) plus a margin the new kid is accepted,
    //    without a restart.
    let started = Instant::now();
    eventually("the rotated key is accepted", Duration::from_secs(4), || {
        request(&gw, SECURED, &[("Authorization", &bearer(&rotated))]).status != 401
    });
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_upgrade(&gw, SECURED, &[("Authorization", &bearer(&rotated))]);
    assert_upgrade(&gw, SECURED, &[("Authorization", &bearer(&token(&k.rsa, &[])))]);
}

fn provider_down_then_up(driver: &str) {
    let k = keys();
    let jwks = realm_a();
    jwks.set_up(false);
    let node = Node::ws_echo();
    let gw = gateway(
        node.addr(),
        None,
        &[bound_source(&jwks.url("a"), ISS_A)],
        "",
        driver,
    );
    let t = token(&k.rsa, &[]);
    // 1. No keys yet: the secured service fails closed, the open one works.
    let resp = request(&gw, SECURED, &[("Authorization", &bearer(&t))]);
    assert_401(&gw, &resp, "no_keys");
    assert_upgrade(&gw, OPEN, &[]);
    // 2. The provider comes up: the retry back-off (≤ 10 s) brings the keys.
    jwks.set_up(true);
    eventually(
        "keys loaded after the provider came up",
        Duration::from_secs(15),
        || request(&gw, SECURED, &[("Authorization", &bearer(&t))]).status != 401,
    );
    assert_upgrade(&gw, SECURED, &[("Authorization", &bearer(&t))]);
    // 3. Down again: the last good keys stay in use.
    jwks.set_up(false);
    let before = jwks.requests();
    assert_upgrade(&gw, SECURED, &[("Authorization", &bearer(&t))]);
    assert_eq!(jwks.requests(), before);
}

fn issuer_bound_per_source(driver: &str) {
    let k = keys();
    let a = realm_a();
    let b = JwksServer::start(jwks_document(&[&k.other]));
    let node = Node::ws_echo();
    let sources = [bound_source(&a.url("a"), ISS_A), bound_source(&b.url("b"), ISS_B)];
    let gw = gateway(node.addr(), None, &sources, "", driver);
    // Realm B's own token works; realm B's key with realm A's issuer does not.
    assert_upgrade(
        &gw,
        SECURED,
        &[("Authorization", &bearer(&k.other.token(&claims(ISS_B, &[]))))],
    );
    let forged = k.other.token(&claims(ISS_A, &[]));
    let resp = request(&gw, SECURED, &[("Authorization", &bearer(&forged))]);
    assert_401(&gw, &resp, "issuer");
    assert_upgrade(&gw, SECURED, &[("Authorization", &bearer(&token(&k.rsa, &[])))]);
}

fn close_on_expiry(driver: &str) {
    let k = keys();
    let jwks = realm_a();
    let node = Node::ws_echo();
    let src = [bound_source(&jwks.url("a"), ISS_A)];
    let on = gateway(
        node.addr(),
        None,
        &src,
        "capi.oauth2.close-on-expiry: true\n",
        driver,
    );
    let off = gateway(node.addr(), None, &src, "", driver);
    let mut c = claims(ISS_A, &[]);
    c["exp"] = json!(now() + 2);
    let t = k.rsa.token(&c);
    let h = bearer(&t);
    let started = Instant::now();
    let (mut closing, _) = try_ws_connect(on.ws_addr(), SECURED, &[("Authorization", &h)]).unwrap();
    let (mut staying, _) = try_ws_connect(off.ws_addr(), SECURED, &[("Authorization", &h)]).unwrap();
    // 1. Both relay before the expiry.
    for ws in [&mut closing, &mut staying] {
        ws.send(Message::text("before")).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text("before"));
    }
    // 2. With close-on-expiry the gateway closes at exp (≤ 2 s from the start, plus slack).
    if let Ok(m) = closing.read() {
        panic!("unexpected message {m:?}");
    }
    let closed_after = started.elapsed();
    assert!(
        closed_after < Duration::from_secs(6),
        "closed after {closed_after:?}"
    );
    assert_logged(&on, 101, "token_expired");
    // 3. Without the option the other connection still relays after the expiry.
    staying.send(Message::text("after")).unwrap();
    assert_eq!(staying.read().unwrap(), Message::text("after"));
    // 4. The node saw its side of the expired connection end.
    eventually(
        "node saw the expired connection end",
        Duration::from_secs(5),
        || {
            node.drain_events()
                .iter()
                .any(|e| matches!(e, Event::Eof | Event::Closed(_)))
        },
    );
}

drivers!(
    valid_token_sources,
    each_401_reason,
    subscriptions,
    several_subscription_groups,
    key_rotation,
    provider_down_then_up,
    issuer_bound_per_source,
    close_on_expiry,
);
