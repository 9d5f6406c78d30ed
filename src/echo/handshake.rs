//! Handshake phase of the echo server: validate an HTTP/1.1 upgrade head (RFC 6455 §4.2.1)
//! and write the answer — 101 with the accept key (and the first offered subprotocol),
//! 200 for `GET /health`, else 400. Pure: bytes in, bytes out; no I/O, never panics on input.

use base64::Engine;
use sha1::{Digest, Sha1};

/// Request head cap, as the gateway's default `max_header_bytes` (DESIGN §4).
pub const MAX_HEAD_BYTES: usize = crate::config::DEFAULT_MAX_HEADER_BYTES;
/// Header slots for httparse; more headers than this is a 400.
const MAX_HEADERS: usize = 64;
/// RFC 6455 §1.3.
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What the request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Head<'a> {
    Partial,
    Upgrade {
        head_len: usize,
        accept: [u8; 28],
        protocol: Option<&'a [u8]>,
    },
    Health,
    Bad {
        reason: &'static str,
        version_hint: bool,
    },
}

/// Validate a request head (RFC 6455 §4.2.1). Pure: bytes in, decision out.
pub fn parse_head(buf: &[u8]) -> Head<'_> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD_BYTES => n,
        Ok(httparse::Status::Complete(_)) => return bad("request head too large"),
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => return Head::Partial,
        Ok(httparse::Status::Partial) => return bad("request head too large"),
        Err(_) => return bad("malformed request head"),
    };
    let (mut upgrade, mut connection, mut version, mut key, mut protocol) = (false, false, None, None, None);
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(h.value, b"websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= has_token(h.value, b"upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            version = Some(h.value.trim_ascii());
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            key = Some(h.value.trim_ascii());
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") && protocol.is_none() {
            protocol = h
                .value
                .split(|&b| b == b',')
                .next()
                .map(<[u8]>::trim_ascii)
                .filter(|p| !p.is_empty());
        }
    }
    if !upgrade && !connection && req.method == Some("GET") && req.path == Some("/health") {
        return Head::Health;
    }
    if req.method != Some("GET") {
        return bad("WebSocket upgrade needs GET");
    }
    if req.version != Some(1) {
        return bad("WebSocket upgrade needs HTTP/1.1");
    }
    if !upgrade || !connection {
        return bad("not a WebSocket upgrade (Upgrade: websocket, Connection: upgrade)");
    }
    if version != Some(b"13".as_slice()) {
        return Head::Bad {
            reason: "unsupported Sec-WebSocket-Version (need 13)",
            version_hint: true,
        };
    }
    let key = match key {
        Some(k) if is_valid_key(k) => k,
        _ => return bad("missing or invalid Sec-WebSocket-Key"),
    };
    Head::Upgrade {
        head_len,
        accept: accept_key(key),
        protocol,
    }
}

fn bad(reason: &'static str) -> Head<'static> {
    Head::Bad {
        reason,
        version_hint: false,
    }
}

/// A comma-separated header value contains `token` (case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// The key must be base64 of 16 bytes (RFC 6455 §4.1).
fn is_valid_key(key: &[u8]) -> bool {
    let mut raw = [0u8; 18];
    key.len() == 24 && base64::engine::general_purpose::STANDARD.decode_slice(key, &mut raw) == Ok(16)
}

/// `Sec-WebSocket-Accept`: base64(SHA-1(key + GUID)) (RFC 6455 §4.2.2).
fn accept_key(key: &[u8]) -> [u8; 28] {
    let digest = Sha1::new().chain_update(key).chain_update(WS_GUID).finalize();
    let mut out = [0u8; 28];
    // 20 bytes always encode to exactly 28 base64 characters, so this cannot fail.
    let _ = base64::engine::general_purpose::STANDARD.encode_slice(digest, &mut out);
    out
}

/// Write the HTTP answer for `head` into `out`; returns true when the connection upgrades.
pub fn push_response(out: &mut Vec<u8>, head: &Head<'_>) -> bool {
    match head {
        Head::Upgrade { accept, protocol, .. } => {
            out.extend_from_slice(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
            );
            out.extend_from_slice(accept);
            if let Some(p) = protocol {
                out.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
                out.extend_from_slice(p);
            }
            out.extend_from_slice(b"\r\n\r\n");
            true
        }
        Head::Health => {
            push_plain(out, "200 OK", "", "ok");
            false
        }
        Head::Bad { reason, version_hint } => {
            let extra = if *version_hint {
                "Sec-WebSocket-Version: 13\r\n"
            } else {
                ""
            };
            push_plain(out, "400 Bad Request", extra, reason);
            false
        }
        Head::Partial => false,
    }
}

fn push_plain(out: &mut Vec<u8>, status: &str, extra_headers: &str, body: &str) {
    use std::io::Write;
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n{body}\n",
        body.len() + 1
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn upgrade_request(extra: &str) -> String {
        format!(
            "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(&accept_key(KEY.as_bytes()), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn validates_request_heads() {
        let ok = upgrade_request("");
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD_BYTES));
        let cases: &[(&str, String, &str)] = &[
            ("upgrade", ok.clone(), "upgrade"),
            (
                "upgrade case-insensitive",
                ok.replace("Upgrade: websocket", "upgrade: WebSocket"),
                "upgrade",
            ),
            ("partial", ok[..ok.len() - 2].to_string(), "partial"),
            (
                "health",
                "GET /health HTTP/1.1\r\nHost: x\r\n\r\n".into(),
                "health",
            ),
            ("plain GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n".into(), "bad"),
            ("POST", ok.replace("GET", "POST"), "bad"),
            ("HTTP/1.0", ok.replace("HTTP/1.1", "HTTP/1.0"), "bad"),
            (
                "no upgrade header",
                ok.replace("Upgrade: websocket\r\n", ""),
                "bad",
            ),
            (
                "no connection upgrade",
                ok.replace("keep-alive, Upgrade", "keep-alive"),
                "bad",
            ),
            (
                "version 8",
                ok.replace("Version: 13", "Version: 8"),
                "bad-version",
            ),
            (
                "no key",
                ok.replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""),
                "bad",
            ),
            ("short key", ok.replace(KEY, "c2hvcnQ="), "bad"),
            ("garbage", "\x01\x02 nonsense\r\n\r\n".into(), "bad"),
            ("too large", long, "bad"),
        ];
        for (name, req, want) in cases {
            let got = match parse_head(req.as_bytes()) {
                Head::Upgrade { head_len, .. } => {
                    assert_eq!(head_len, req.len(), "{name}: head length");
                    "upgrade"
                }
                Head::Partial => "partial",
                Head::Health => "health",
                Head::Bad {
                    version_hint: true, ..
                } => "bad-version",
                Head::Bad { .. } => "bad",
            };
            assert_eq!(got, *want, "{name}");
        }
    }

    #[test]
    fn bytes_after_the_head_are_left_for_frames() {
        let mut req = upgrade_request("").into_bytes();
        let head = req.len();
        req.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]);
        assert!(matches!(parse_head(&req), Head::Upgrade { head_len, .. } if head_len == head));
    }

    #[test]
    fn selects_first_offered_subprotocol() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("none", "", None),
            ("one", "Sec-WebSocket-Protocol: chat\r\n", Some("chat")),
            (
                "list",
                "Sec-WebSocket-Protocol: v2.chat , v1.chat\r\n",
                Some("v2.chat"),
            ),
            (
                "two headers",
                "Sec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: b\r\n",
                Some("a"),
            ),
            ("empty", "Sec-WebSocket-Protocol: \r\n", None),
        ];
        for &(name, extra, want) in cases {
            let req = upgrade_request(extra);
            let head = parse_head(req.as_bytes());
            let Head::Upgrade { protocol, .. } = head else {
                panic!("{name}: not an upgrade: {head:?}");
            };
            assert_eq!(protocol, want.map(str::as_bytes), "{name}");
            let mut out = Vec::new();
            assert!(push_response(&mut out, &head), "{name}: upgrades");
            let text = String::from_utf8(out).unwrap();
            assert!(text.starts_with("HTTP/1.1 101 "), "{name}: {text}");
            assert!(
                text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
                "{name}: {text}"
            );
            match want {
                Some(p) => assert!(
                    text.contains(&format!("Sec-WebSocket-Protocol: {p}\r\n")),
                    "{name}: {text}"
                ),
                None => assert!(!text.contains("Sec-WebSocket-Protocol"), "{name}: {text}"),
            }
            assert!(text.ends_with("\r\n\r\n"), "{name}");
        }
    }

    #[test]
    fn error_responses_close_the_connection() {
        let cases: &[(&str, Head<'static>, &str)] = &[
            ("health", Head::Health, "HTTP/1.1 200 OK\r\n"),
            ("bad", bad("nope"), "HTTP/1.1 400 Bad Request\r\n"),
            (
                "version",
                Head::Bad {
                    reason: "v",
                    version_hint: true,
                },
                "Sec-WebSocket-Version: 13\r\n",
            ),
        ];
        for (name, head, want) in cases {
            let mut out = Vec::new();
            assert!(!push_response(&mut out, head), "{name}: no upgrade");
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains(want), "{name}: {text}");
            assert!(text.contains("Connection: close\r\n"), "{name}: {text}");
            let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
            assert!(
                text.contains(&format!("Content-Length: {}\r\n", body.len())),
                "{name}: {text}"
            );
        }
    }
}
