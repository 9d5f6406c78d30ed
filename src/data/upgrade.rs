//! Phases 3–4 (DESIGN §2): classify the request (health probe, CORS preflight, upgrade, 405) and
//! validate the WebSocket upgrade (RFC 6455 §4.2.1) including the body refusal that keeps
//! anything from being smuggled past the gateway. In: a parsed `RequestHead`; out: the client's
//! key or a `Reject`. Also `accept_key`, the expected `Sec-WebSocket-Accept`. Pure, no I/O.

use base64::Engine as _;
use sha1::{Digest, Sha1};

use super::head::{list_has_token, RequestHead};
use super::reject::Reject;

/// What the request is, from its method and target (DESIGN §2 step 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preflight {
    /// `GET /health` (any query): the load-balancer probe, answered 200.
    Health,
    /// `OPTIONS`: the CORS preflight, answered on a known route.
    Options,
    /// `GET` anything else: a WebSocket upgrade to validate.
    Upgrade,
}

/// `GET /health` (exact path, any query) → `Health`; `OPTIONS` → `Options`; `GET` → `Upgrade`;
/// any other method → `MethodNotAllowed`. Methods are case-sensitive (RFC 9110 §9.1).
pub fn classify(head: &RequestHead) -> Result<Preflight, Reject> {
    match head.method {
        "GET" => {
            let path = head.target.split_once('?').map_or(head.target, |(p, _)| p);
            if path == "/health" {
                Ok(Preflight::Health)
            } else {
                Ok(Preflight::Upgrade)
            }
        }
        "OPTIONS" => Ok(Preflight::Options),
        _ => Err(Reject::MethodNotAllowed),
    }
}

/// What a valid upgrade carries forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpgradeRequest<'b> {
    /// `Sec-WebSocket-Key` as sent (24 base64 characters).
    pub key: &'b [u8],
}

/// Step 4, checks in this order: HTTP/1.1; `Upgrade` holds the token `websocket`; `Connection`
/// holds the token `upgrade`; `Sec-WebSocket-Version` exactly `13` (else 426); exactly one
/// `Sec-WebSocket-Key`, the base64 of 16 bytes; no body: any `Transfer-Encoding`, a
/// `Content-Length` other than 0, or more than one `Content-Length` header → 400.
pub fn validate_upgrade<'b>(head: &RequestHead<'b>) -> Result<UpgradeRequest<'b>, Reject> {
    if head.minor_version != 1 {
        return Err(Reject::BadRequest("http version"));
    }
    if !list_has_token(head.headers_named("upgrade"), "websocket") {
        return Err(Reject::BadRequest("missing upgrade: websocket"));
    }
    if !list_has_token(head.headers_named("connection"), "upgrade") {
        return Err(Reject::BadRequest("missing connection: upgrade"));
    }
    let mut versions = head.headers_named("sec-websocket-version");
    match (versions.next(), versions.next()) {
        (Some(b"13"), None) => {}
        _ => return Err(Reject::UpgradeRequired),
    }
    let mut keys = head.headers_named("sec-websocket-key");
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) => key,
        (None, _) => return Err(Reject::BadRequest("missing sec-websocket-key")),
        (Some(_), Some(_)) => return Err(Reject::BadRequest("duplicate sec-websocket-key")),
    };
    if !is_valid_key(key) {
        return Err(Reject::BadRequest("bad sec-websocket-key"));
    }
    if head.header("transfer-encoding").is_some() {
        return Err(Reject::BadRequest("request body"));
    }
    let mut lengths = head.headers_named("content-length");
    match (lengths.next(), lengths.next()) {
        (None, _) => {}
        (Some(len), None) if is_zero_length(len) => {}
        (Some(_), None) => return Err(Reject::BadRequest("request body")),
        (Some(_), Some(_)) => return Err(Reject::BadRequest("duplicate content-length")),
    }
    Ok(UpgradeRequest { key })
}

/// RFC 6455 §4.1: the key is the base64 of 16 random bytes — 24 characters, canonical padding.
fn is_valid_key(key: &[u8]) -> bool {
    let mut raw = [0u8; 18];
    key.len() == 24
        && matches!(
            base64::engine::general_purpose::STANDARD.decode_slice(key, &mut raw),
            Ok(16)
        )
}

/// A `Content-Length` value that is a decimal zero (`0`, `00`); anything else, including a
/// list such as `0, 0`, counts as a body.
fn is_zero_length(value: &[u8]) -> bool {
    !value.is_empty() && value.iter().all(|&b| b == b'0')
}

/// RFC 6455 §1.3: the GUID appended to the client key before hashing.
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `base64(SHA-1(key ++ GUID))`: the `Sec-WebSocket-Accept` a node must answer with.
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WS_GUID);
    let digest = sha.finalize();
    let mut out = [0u8; 28];
    // 20 bytes encode to exactly 28 base64 characters, so the slice always fits.
    let written = base64::engine::general_purpose::STANDARD.encode_slice(digest, &mut out);
    debug_assert_eq!(written, Ok(28));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::head::{parse_request, MAX_HEADERS};

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn with_head<R>(raw: &str, f: impl FnOnce(&RequestHead) -> R) -> R {
        let mut st = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = parse_request(raw.as_bytes(), &mut st).unwrap().unwrap();
        f(&head)
    }

    #[test]
    fn classify_cases() {
        #[rustfmt::skip]
        let cases = [
            ("health", "GET /health HTTP/1.1", Ok(Preflight::Health)),
            ("health with query", "GET /health?probe=1 HTTP/1.1", Ok(Preflight::Health)),
            ("health subpath is an upgrade", "GET /health/x HTTP/1.1", Ok(Preflight::Upgrade)),
            ("health prefix is an upgrade", "GET /healthz HTTP/1.1", Ok(Preflight::Upgrade)),
            ("route", "GET /capi/echo/dev HTTP/1.1", Ok(Preflight::Upgrade)),
            ("options", "OPTIONS /capi/echo/dev HTTP/1.1", Ok(Preflight::Options)),
            ("options health", "OPTIONS /health HTTP/1.1", Ok(Preflight::Options)),
            ("post", "POST /capi/echo/dev HTTP/1.1", Err(Reject::MethodNotAllowed)),
            ("head health", "HEAD /health HTTP/1.1", Err(Reject::MethodNotAllowed)),
            ("lower-case get", "get /health HTTP/1.1", Err(Reject::MethodNotAllowed)),
            ("connect", "CONNECT gw:80 HTTP/1.1", Err(Reject::MethodNotAllowed)),
        ];
        for (name, line, want) in cases {
            let got = with_head(&format!("{line}\r\n\r\n"), classify);
            assert_eq!(got, want, "case {name}");
        }
    }

    fn upgrade_head(version: &str, headers: &[&str]) -> String {
        let mut s = format!("GET /capi/echo/dev HTTP/1.{version}\r\nHost: gw\r\n");
        for h in headers {
            s.push_str(h);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        s
    }

    /// (name, HTTP minor version, headers, expected)
    type UpgradeCase<'a> = (&'a str, &'a str, Vec<&'a str>, Result<(), Reject>);

    #[test]
    fn validate_upgrade_cases() {
        let bad = Reject::BadRequest;
        let up = "Upgrade: websocket";
        let conn = "Connection: Upgrade";
        let ver = "Sec-WebSocket-Version: 13";
        let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";
        #[rustfmt::skip]
        let cases: Vec<UpgradeCase> = vec![
            ("minimal valid", "1", vec![up, conn, ver, key], Ok(())),
            ("lower-case names and values", "1", vec!["upgrade: WebSocket", "connection: upgrade", "sec-websocket-version: 13", "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ=="], Ok(())),
            ("connection list", "1", vec![up, "Connection: keep-alive, Upgrade", ver, key], Ok(())),
            ("connection split over headers", "1", vec![up, "Connection: keep-alive", "Connection: upgrade", ver, key], Ok(())),
            ("upgrade list", "1", vec!["Upgrade: h2c, websocket", conn, ver, key], Ok(())),
            ("content-length 0", "1", vec![up, conn, ver, key, "Content-Length: 0"], Ok(())),
            ("http/1.0", "0", vec![up, conn, ver, key], Err(bad("http version"))),
            ("http/1.0 with nothing", "0", vec![], Err(bad("http version"))),
            ("plain get", "1", vec![], Err(bad("missing upgrade: websocket"))),
            ("upgrade other protocol", "1", vec!["Upgrade: h2c", conn, ver, key], Err(bad("missing upgrade: websocket"))),
            ("upgrade substring", "1", vec!["Upgrade: websockets", conn, ver, key], Err(bad("missing upgrade: websocket"))),
            ("no connection", "1", vec![up, ver, key], Err(bad("missing connection: upgrade"))),
            ("connection keep-alive only", "1", vec![up, "Connection: keep-alive", ver, key], Err(bad("missing connection: upgrade"))),
            ("no version", "1", vec![up, conn, key], Err(Reject::UpgradeRequired)),
            ("version 8", "1", vec![up, conn, "Sec-WebSocket-Version: 8", key], Err(Reject::UpgradeRequired)),
            ("version list", "1", vec![up, conn, "Sec-WebSocket-Version: 13, 8", key], Err(Reject::UpgradeRequired)),
            ("two versions", "1", vec![up, conn, ver, ver, key], Err(Reject::UpgradeRequired)),
            ("version before key check", "1", vec![up, conn, "Sec-WebSocket-Version: 12"], Err(Reject::UpgradeRequired)),
            ("no key", "1", vec![up, conn, ver], Err(bad("missing sec-websocket-key"))),
            ("two keys", "1", vec![up, conn, ver, key, key], Err(bad("duplicate sec-websocket-key"))),
            // base64 of 15 and 17 bytes.
            ("key of 15 bytes", "1", vec![up, conn, ver, "Sec-WebSocket-Key: AAECAwQFBgcICQoLDA0O"], Err(bad("bad sec-websocket-key"))),
            ("key of 17 bytes", "1", vec![up, conn, ver, "Sec-WebSocket-Key: AAECAwQFBgcICQoLDA0ODxA="], Err(bad("bad sec-websocket-key"))),
            ("key not base64", "1", vec![up, conn, ver, "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!=="], Err(bad("bad sec-websocket-key"))),
            ("key non-canonical bits", "1", vec![up, conn, ver, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR=="], Err(bad("bad sec-websocket-key"))),
            ("key empty", "1", vec![up, conn, ver, "Sec-WebSocket-Key:"], Err(bad("bad sec-websocket-key"))),
            ("content-length 5", "1", vec![up, conn, ver, key, "Content-Length: 5"], Err(bad("request body"))),
            ("content-length not a number", "1", vec![up, conn, ver, key, "Content-Length: x"], Err(bad("request body"))),
            ("content-length list", "1", vec![up, conn, ver, key, "Content-Length: 0, 0"], Err(bad("request body"))),
            ("two content-lengths", "1", vec![up, conn, ver, key, "Content-Length: 0", "Content-Length: 0"], Err(bad("duplicate content-length"))),
            ("te chunked", "1", vec![up, conn, ver, key, "Transfer-Encoding: chunked"], Err(bad("request body"))),
            ("te identity", "1", vec![up, conn, ver, key, "Transfer-Encoding: identity"], Err(bad("request body"))),
            ("te and cl 0", "1", vec![up, conn, ver, key, "Content-Length: 0", "Transfer-Encoding: chunked"], Err(bad("request body"))),
        ];
        for (name, version, headers, want) in cases {
            let raw = upgrade_head(version, &headers);
            let got = with_head(&raw, |h| validate_upgrade(h).map(|u| assert_eq!(u.key.len(), 24)));
            assert_eq!(got, want, "case {name}");
        }
    }

    #[test]
    fn key_is_borrowed_from_the_request() {
        let key_header = format!("Sec-WebSocket-Key: {KEY}");
        let headers = [
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Version: 13",
            key_header.as_str(),
        ];
        let key = with_head(&upgrade_head("1", &headers), |h| {
            validate_upgrade(h).unwrap().key.to_vec()
        });
        assert_eq!(key, KEY.as_bytes());
    }

    #[test]
    fn accept_key_rfc_example() {
        // RFC 6455 §1.3 worked example.
        assert_eq!(&accept_key(KEY.as_bytes()), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        // Another key gives another answer (the function is not a constant).
        assert_ne!(
            &accept_key(b"AAAAAAAAAAAAAAAAAAAAAA=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
