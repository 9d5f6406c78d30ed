//! JWKS provider faults (DESIGN §5, issue 8 item 3), black-box against the real binary: the
//! provider answers slower than the gateway's client timeout, or serves garbage (not JSON,
//! JSON without keys, an HTML 500). Each time the last good keys stay in use, the secured
//! service keeps accepting valid tokens, one log line marks each state change (failing, back),
//! and the gateway recovers when the provider is fixed — without reloading the same keys.
#![allow(clippy::disallowed_types)] // locks are fine in tests: the rule guards the data plane

#[macro_use]
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use tungstenite::Message;

use common::client::try_ws_connect;
use common::config::{service, Config};
use common::eventually;
use common::gateway::Gateway;
use common::jwks::{bound_source, claims, jwks_document, keys, oauth2_yaml, JwksServer, Mode};
use common::nodes::Node;

const ISS: &str = "https://kc.test/realms/a";
const SECURED: &str = "/capi/secure/dev";
/// The gateway's whole-request timeout for a key source is 10 s (src/control/jwks.rs): the
/// slow provider answers after longer than that.
const SLOWER_THAN_CLIENT_TIMEOUT: Duration = Duration::from_secs(13);
/// Log fragments of the refresh thread's state changes and loads.
const FAILING: &str = "keeping the last good keys";
const BACK: &str = "is back";
const LOADED: &str = "verification keys loaded";

/// Gateway with a secured service on `node`, keys from `jwks`, refreshed every second.
fn gateway(node: SocketAddr, jwks: &JwksServer, driver: &str) -> Gateway {
    let config = Config::new().with(service("secure", "dev", node).meta("secured", "true"));
    let yaml = format!(
        "{}{}",
        config.yaml(),
        oauth2_yaml(
            &[bound_source(&jwks.url("a"), ISS)],
            "capi.oauth2.provider.refresh-interval: 1000\n"
        )
    );
    Gateway::start_with(&yaml, driver, 1, &["--log-level", "info"])
}

/// A valid token (RSA and EC keys of the realm) upgrades and echoes.
fn assert_serves(gw: &Gateway, when: &str) {
    let k = keys();
    for key in [&k.rsa, &k.ec] {
        let auth = format!("Bearer {}", key.token(&claims(ISS, &[])));
        let (mut ws, _) = try_ws_connect(gw.ws_addr(), SECURED, &[("Authorization", &auth)])
            .unwrap_or_else(|e| panic!("{when}: valid {} token refused: {e}", key.alg()));
        ws.send(Message::text(when)).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(when), "{when}");
        let _ = ws.close(None);
    }
}

fn count(gw: &Gateway, fragment: &str) -> usize {
    gw.logs().lines().filter(|l| l.contains(fragment)).count()
}

/// Waits until the provider received `n` more requests than `from` (refresh attempts).
fn wait_attempts(jwks: &JwksServer, from: usize, n: usize, within: Duration, what: &str) {
    eventually(what, within, || jwks.received() >= from + n);
}

fn started(driver: &str) -> (JwksServer, Node, Gateway) {
    let k = keys();
    let jwks = JwksServer::start(jwks_document(&[&k.rsa, &k.ec]));
    let node = Node::ws_echo();
    let gw = gateway(node.addr(), &jwks, driver);
    eventually("keys loaded once", Duration::from_secs(10), || {
        count(&gw, LOADED) == 1
    });
    assert_serves(&gw, "healthy provider");
    (jwks, node, gw)
}

/// Recovery: the provider is fixed; one "back" line, the same keys are not reloaded, and
/// valid tokens still work.
fn assert_recovers(jwks: &JwksServer, gw: &Gateway) {
    jwks.set_mode(Mode::Normal);
    // Back-off is capped at 10 s; a slow request still pending may hold the thread ≤ 10 s more.
    eventually(
        "the gateway logs the source is back",
        Duration::from_secs(25),
        || count(gw, BACK) >= 1,
    );
    let before = jwks.received();
    wait_attempts(
        jwks,
        before,
        2,
        Duration::from_secs(10),
        "refreshes after recovery",
    );
    assert_eq!(
        count(gw, FAILING),
        1,
        "one line for the failing state\n{}",
        gw.logs()
    );
    assert_eq!(count(gw, BACK), 1, "one line for the recovery\n{}", gw.logs());
    assert_eq!(
        count(gw, LOADED),
        1,
        "the unchanged keys were not reloaded\n{}",
        gw.logs()
    );
    assert_serves(gw, "after recovery");
}

fn provider_slower_than_the_client_timeout(driver: &str) {
    // 1. keys loaded; 2. the provider turns slow: the gateway's request times out, it logs
    //    the failure once and keeps serving on the last good keys; 3. fixed: back, once.
    let (jwks, node, gw) = started(driver);
    jwks.set_mode(Mode::Slow(SLOWER_THAN_CLIENT_TIMEOUT));
    let before = jwks.received();
    wait_attempts(
        &jwks,
        before,
        1,
        Duration::from_secs(5),
        "a refresh reached the slow provider",
    );
    assert_serves(&gw, "provider slow, request pending");
    eventually("the timeout is logged", Duration::from_secs(20), || {
        count(&gw, FAILING) >= 1
    });
    assert_serves(&gw, "provider slow, after the timeout");
    // A second slow attempt (after the 250 ms back-off) times out without another line.
    let before = jwks.received();
    wait_attempts(
        &jwks,
        before,
        1,
        Duration::from_secs(15),
        "a retry reached the slow provider",
    );
    assert_eq!(count(&gw, FAILING), 1, "{}", gw.logs());
    assert_recovers(&jwks, &gw);
    node.check();
}

fn provider_serving_garbage(driver: &str) {
    // 1. keys loaded; 2. the provider serves, in turn, text that is not JSON, JSON without
    //    keys, JSON whose keys are all unusable, and an HTML 500 page — a refresh attempt
    //    on each; valid tokens keep working, one failure line in all; 3. fixed: back.
    let (jwks, node, gw) = started(driver);
    let garbage = [
        (200, "application/json", "this is not json {".to_owned()),
        (
            200,
            "application/json",
            r#"{"issuer":"x","realm":"a"}"#.to_owned(),
        ),
        (200, "application/json", r#"{"keys":[]}"#.to_owned()),
        (
            200,
            "application/json",
            r#"{"keys":[{"kid":"enc","kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}]}"#.to_owned(),
        ),
        (
            500,
            "text/html",
            "<html><body><h1>500 Internal Server Error</h1></body></html>".to_owned(),
        ),
    ];
    for (status, content_type, body) in garbage {
        jwks.set_mode(Mode::Garbage {
            status,
            content_type: content_type.to_owned(),
            body: body.clone(),
        });
        let before = jwks.received();
        // Back-off doubles from 250 ms (4 s before the fifth state): one attempt each.
        wait_attempts(
            &jwks,
            before,
            1,
            Duration::from_secs(15),
            &format!("an attempt on {body:?}"),
        );
        assert_serves(&gw, &format!("provider serving {body:?}"));
        assert_eq!(count(&gw, FAILING), 1, "one failure line in all\n{}", gw.logs());
    }
    assert_recovers(&jwks, &gw);
    node.check();
}

drivers!(provider_slower_than_the_client_timeout, provider_serving_garbage);
