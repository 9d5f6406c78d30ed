//! Phases 9–10 (DESIGN §2, §4 "Forwarding", §12), the pure half: rewrite the client's head for
//! the node (`forward_head`, the one planned allocation, into a caller's buffer), parse the
//! node's response head, check a `101` (`check_switch`) and frame a non-101 body for relaying.
//! No sockets here: connecting and reading with deadlines are the caller's.

use std::io::Write;
use std::net::IpAddr;

use super::head::{list_elements, list_has_token, trim_ows, RequestHead, MAX_HEADERS};
use super::reject::Reject;
use super::route::RouteMatch;
use crate::snapshot::Service;

/// What `forward_head` needs beyond the request and the route.
#[derive(Debug, Clone, Copy)]
pub struct ForwardParams<'a> {
    pub service: &'a Service,
    /// The chosen node's `host:port`: the forwarded `Host`.
    pub node_host_port: &'a str,
    /// The client's address, appended to `X-Forwarded-For`.
    pub client_ip: IpAddr,
}

/// Client headers never forwarded: hop-by-hop (RFC 9110 §7.6.1, plus the non-standard
/// `Keep-Alive`/`Proxy-Connection`), the ones the gateway rewrites, and `capi-group` (no spoofing).
const DROPPED_HEADERS: [&str; 14] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "capi-group",
];

/// Write the rewritten request head for the node into `out` (DESIGN §4 "Forwarding"):
/// `GET <root-context><rest>[?<query without access_token>] HTTP/1.1`, `Host: <node>`, the
/// client's end-to-end headers unchanged and in order (hop-by-hop, `Connection`-named, `Host`,
/// `X-Forwarded-*` and `capi-group` dropped), then `Upgrade: websocket`, `Connection: Upgrade`,
/// `X-Forwarded-For` (appended), `X-Forwarded-Proto: http`, `X-Forwarded-Host` (the client's
/// `Host`, when sent) and `capi-group: /<name>/<group>` when the service keeps its group.
pub fn forward_head(head: &RequestHead, m: &RouteMatch, p: &ForwardParams, out: &mut Vec<u8>) {
    // NOTE: one reservation for the whole head; the client's head bounds the copied part.
    out.reserve(head.head_len + p.node_host_port.len() + 160);
    out.extend_from_slice(b"GET ");
    let root = p.service.root_context.as_bytes();
    if !root.is_empty() && root[0] != b'/' {
        out.push(b'/');
    }
    out.extend_from_slice(root);
    out.extend_from_slice(m.rest.as_bytes());
    if root.is_empty() && m.rest.is_empty() {
        out.push(b'/');
    }
    if let Some(query) = m.query {
        write_query_without_token(query, out);
    }
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(p.node_host_port.as_bytes());
    out.extend_from_slice(b"\r\n");

    for h in head.headers {
        let dropped = DROPPED_HEADERS.iter().any(|d| h.name.eq_ignore_ascii_case(d))
            || list_has_token(head.headers_named("connection"), h.name);
        if !dropped {
            put_header(out, h.name.as_bytes(), h.value);
        }
    }

    out.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\nX-Forwarded-For: ");
    for v in head.headers_named("x-forwarded-for").map(trim_ows) {
        if !v.is_empty() {
            out.extend_from_slice(v);
            out.extend_from_slice(b", ");
        }
    }
    // Writing into a Vec cannot fail. A v4-mapped v6 client shows as its v4 address.
    let _ = write!(out, "{}", p.client_ip.to_canonical());
    out.extend_from_slice(b"\r\nX-Forwarded-Proto: http\r\n");
    if let Some(host) = head.header("host") {
        put_header(out, b"X-Forwarded-Host", host);
    }
    if p.service.keep_group {
        let _ = write!(out, "capi-group: /{}/{}\r\n", p.service.name, p.service.group);
    }
    out.extend_from_slice(b"\r\n");
}

fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `?<query>` minus every `access_token` pair, the other bytes unchanged; nothing when no byte
/// of the query remains.
fn write_query_without_token(query: &str, out: &mut Vec<u8>) {
    let start = out.len();
    out.push(b'?');
    let mut first = true;
    for pair in query.split('&') {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        if is_access_token_key(key.as_bytes()) {
            continue;
        }
        if !first {
            out.push(b'&');
        }
        first = false;
        out.extend_from_slice(pair.as_bytes());
    }
    if out.len() == start + 1 {
        out.truncate(start);
    }
}

/// Whether `key`, percent-decoded, is `access_token` (so `access%5Ftoken` is one too).
/// A malformed escape stands for itself.
pub(crate) fn is_access_token_key(key: &[u8]) -> bool {
    const TOKEN: &[u8] = b"access_token";
    let mut decoded = 0;
    let mut i = 0;
    while i < key.len() {
        let (b, len) = match (key[i], key.get(i + 1), key.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => match (hex_val(h), hex_val(l)) {
                (Some(h), Some(l)) => (h << 4 | l, 3),
                _ => (b'%', 1),
            },
            (b, _, _) => (b, 1),
        };
        if TOKEN.get(decoded) != Some(&b) {
            return false;
        }
        decoded += 1;
        i += len;
    }
    decoded == TOKEN.len()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A parsed response head from a node: views into the response buffer.
#[derive(Debug, Clone, Copy)]
pub struct ResponseHead<'b> {
    pub status: u16,
    pub headers: &'b [httparse::Header<'b>],
    /// Bytes of the head including the final CRLF CRLF; what follows is body or frames.
    pub head_len: usize,
}

impl<'b> ResponseHead<'b> {
    /// Every header called `name` (case-insensitive), in response order.
    pub fn headers_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'b [u8]> + 's {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// Parse the node's response head. `Ok(None)` = incomplete, read more.
/// Malformed (or more than `MAX_HEADERS` headers) → `BadGateway`.
pub fn parse_response<'b>(
    buf: &'b [u8],
    storage: &'b mut [httparse::Header<'b>; MAX_HEADERS],
) -> Result<Option<ResponseHead<'b>>, Reject> {
    const MALFORMED: Reject = Reject::BadGateway("malformed upstream response");
    let mut resp = httparse::Response::new(storage);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(MALFORMED),
    };
    let status = resp.code.ok_or(MALFORMED)?;
    Ok(Some(ResponseHead {
        status,
        headers: resp.headers,
        head_len,
    }))
}

/// A `101` from the node must carry `Upgrade: websocket` and exactly one `Sec-WebSocket-Accept`
/// equal to `accept_key(client key)` (DESIGN §2 step 10); else 502.
pub fn check_switch(resp: &ResponseHead, expected_accept: &[u8; 28]) -> Result<(), Reject> {
    if resp.status != 101 {
        return Err(Reject::BadGateway("not switching protocols"));
    }
    if !list_has_token(resp.headers_named("upgrade"), "websocket") {
        return Err(Reject::BadGateway("bad upgrade header"));
    }
    let mut accepts = resp.headers_named("sec-websocket-accept");
    match (accepts.next(), accepts.next()) {
        (Some(a), None) if a == expected_accept => Ok(()),
        _ => Err(Reject::BadGateway("bad Sec-WebSocket-Accept")),
    }
}

/// DESIGN §12: at most this much of a non-101 body is relayed to the client.
pub const MAX_RELAYED_BODY: usize = 64 * 1024;

/// How the body of a non-101 answer ends (RFC 9112 §6.3), for relaying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: 1xx, 204, 304, or `Content-Length: 0`.
    None,
    /// `Content-Length`, capped at `MAX_RELAYED_BODY`.
    Length(usize),
    /// `Transfer-Encoding` ending in `chunked`: see `chunked_body_len`.
    Chunked,
    /// Read until the node closes (or the cap / deadline).
    UntilClose,
}

/// The framing of a non-101 response body. A `Transfer-Encoding` wins over `Content-Length`; an
/// invalid or conflicting `Content-Length` is treated as "until close" (the connection is closed
/// after the relay anyway).
pub fn body_framing(resp: &ResponseHead) -> BodyFraming {
    if matches!(resp.status, 100..=199 | 204 | 304) {
        return BodyFraming::None;
    }
    let mut codings = resp.headers_named("transfer-encoding").peekable();
    if codings.peek().is_some() {
        let last = codings.flat_map(list_elements).last();
        return match last {
            Some(c) if c.eq_ignore_ascii_case(b"chunked") => BodyFraming::Chunked,
            _ => BodyFraming::UntilClose,
        };
    }
    let mut length: Option<&[u8]> = None;
    for value in resp.headers_named("content-length").flat_map(list_elements) {
        let digits = !value.is_empty() && value.iter().all(u8::is_ascii_digit);
        if !digits || length.is_some_and(|l| l != value) {
            return BodyFraming::UntilClose;
        }
        length = Some(value);
    }
    let Some(length) = length else {
        return BodyFraming::UntilClose;
    };
    // Digits only: saturate instead of overflowing, the cap applies anyway.
    let n = length.iter().fold(0usize, |n, d| {
        n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
    });
    match n {
        0 => BodyFraming::None,
        n => BodyFraming::Length(n.min(MAX_RELAYED_BODY)),
    }
}

/// For a chunked body: the length of the complete chunked body (through the last chunk,
/// trailers and the final CRLF) once all of it is in `body`; `None` while incomplete.
/// Malformed chunk syntax → `BadGateway`.
pub fn chunked_body_len(body: &[u8]) -> Result<Option<usize>, Reject> {
    const MALFORMED: Reject = Reject::BadGateway("malformed chunked body");
    let mut pos = 0;
    loop {
        let rest = &body[pos..];
        match rest.first() {
            None => return Ok(None),
            // httparse accepts a size line without digits as 0; a chunk size needs one.
            Some(b) if !b.is_ascii_hexdigit() => return Err(MALFORMED),
            Some(_) => {}
        }
        let (line_len, size) = match httparse::parse_chunk_size(rest) {
            Ok(httparse::Status::Complete(v)) => v,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(MALFORMED),
        };
        pos += line_len;
        if size == 0 {
            return Ok(trailers_end(body, pos));
        }
        // A size beyond the address space can never be complete in memory.
        let Some(data_end) = usize::try_from(size).ok().and_then(|s| pos.checked_add(s)) else {
            return Ok(None);
        };
        match body.get(data_end..data_end.saturating_add(2)) {
            Some(b"\r\n") => pos = data_end + 2,
            Some(_) => return Err(MALFORMED),
            None if body.len() > data_end && body[data_end] != b'\r' => return Err(MALFORMED),
            None => return Ok(None),
        }
    }
}

/// End of the trailer section starting at `pos` (lines up to an empty one), if all there.
fn trailers_end(body: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let line_len = body[pos..].windows(2).position(|w| w == b"\r\n")?;
        pos += line_len + 2;
        if line_len == 0 {
            return Some(pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::head::parse_request;

    fn service(root_context: &str, keep_group: bool) -> Service {
        Service {
            root_context: root_context.into(),
            keep_group,
            ..Service::for_test("echo", "dev")
        }
    }

    /// Forward a client head with the given headers; the route is given by hand (rest, query)
    /// so this test depends on `forward_head` alone.
    fn forward(rest: &str, query: Option<&str>, headers: &str, svc: &Service, ip: &str) -> String {
        let raw = format!("GET /capi/echo/dev HTTP/1.1\r\n{headers}\r\n");
        let mut st = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = parse_request(raw.as_bytes(), &mut st).unwrap().unwrap();
        let m = RouteMatch {
            service: 0,
            rest,
            query,
        };
        let p = ForwardParams {
            service: svc,
            node_host_port: "10.0.0.7:9001",
            client_ip: ip.parse().unwrap(),
        };
        let mut out = b"KEEP".to_vec();
        forward_head(&head, &m, &p, &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("KEEP"), "appends to out");
        s[4..].to_string()
    }

    #[test]
    fn request_line_cases() {
        let none = service("", false);
        let ws = service("/ws", false);
        let bare = service("ws", false);
        // (name, service, rest, query, expected target)
        #[rustfmt::skip]
        let cases = [
            ("no root, no rest", &none, "", None, "/"),
            ("no root, rest", &none, "/a/b", None, "/a/b"),
            ("no root, rest slash", &none, "/", None, "/"),
            ("root, no rest", &ws, "", None, "/ws"),
            ("root, rest", &ws, "/a/b", None, "/ws/a/b"),
            ("root, rest slash", &ws, "/", None, "/ws/"),
            ("root without slash", &bare, "/a", None, "/ws/a"),
            ("query kept", &ws, "/a", Some("x=1&y=%20z&x=2"), "/ws/a?x=1&y=%20z&x=2"),
            ("empty pairs kept", &none, "", Some("a=1&&b&"), "/?a=1&&b&"),
            ("token first", &none, "", Some("access_token=T&x=1"), "/?x=1"),
            ("token middle", &none, "", Some("x=1&access_token=T&y=2"), "/?x=1&y=2"),
            ("token last", &none, "", Some("x=1&access_token=T"), "/?x=1"),
            ("token only", &ws, "", Some("access_token=T"), "/ws"),
            ("token repeated", &none, "", Some("access_token=a&x=1&access_token=b"), "/?x=1"),
            ("token without value", &none, "", Some("access_token&x"), "/?x"),
            ("token empty value", &none, "", Some("access_token=&x"), "/?x"),
            ("token encoded", &none, "", Some("access%5Ftoken=T&x=1&%61ccess_token=U"), "/?x=1"),
            ("token fully encoded", &none, "", Some("%61%63%63%65%73%73%5f%74%6f%6b%65%6e=T"), "/"),
            ("similar keys kept", &none, "", Some("access_tokens=1&my_access_token=2&Access_Token=3&access_token%3d=4"),
             "/?access_tokens=1&my_access_token=2&Access_Token=3&access_token%3d=4"),
            ("value named token kept", &none, "", Some("x=access_token"), "/?x=access_token"),
            ("bad escape kept", &none, "", Some("access%zztoken=1"), "/?access%zztoken=1"),
            ("empty query", &none, "/a", Some(""), "/a"),
            ("empty pair after token", &none, "", Some("access_token=T&"), "/"),
        ];
        for (name, svc, rest, query, want) in cases {
            let s = forward(rest, query, "Host: gw\r\n", svc, "192.0.2.1");
            let line = s.split("\r\n").next().unwrap();
            assert_eq!(line, format!("GET {want} HTTP/1.1"), "case {name}");
        }
    }

    const WS: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    const KEY_VER: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    const START: &str = "GET / HTTP/1.1\r\nHost: 10.0.0.7:9001\r\n";
    const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n";
    const PROTO: &str = "X-Forwarded-Proto: http\r\n";

    #[test]
    fn head_exact_bytes() {
        let plain = service("", false);
        let kept = service("/ws", true);
        // (name, service, client ip, client headers, expected head)
        #[rustfmt::skip]
        let cases: [(&str, &Service, &str, String, String); 7] = [
            ("minimal", &plain, "192.0.2.1", format!("Host: gw:8382\r\n{WS}"),
             format!("{START}{KEY_VER}{UPGRADE}X-Forwarded-For: 192.0.2.1\r\n{PROTO}X-Forwarded-Host: gw:8382\r\n\r\n")),
            ("no host, ipv6 client", &plain, "2001:db8::1", WS.into(),
             format!("{START}{KEY_VER}{UPGRADE}X-Forwarded-For: 2001:db8::1\r\n{PROTO}\r\n")),
            ("v4-mapped client", &plain, "::ffff:192.0.2.9", WS.into(),
             format!("{START}{KEY_VER}{UPGRADE}X-Forwarded-For: 192.0.2.9\r\n{PROTO}\r\n")),
            ("xff appended, forwarded kept, spoofed headers dropped", &plain, "192.0.2.1",
             format!("{WS}X-Forwarded-For: 1.1.1.1, 2.2.2.2\r\nx-forwarded-for: 3.3.3.3\r\nX-Forwarded-For:  \r\n\
                      X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nForwarded: for=1.1.1.1\r\n\
                      capi-group: /admin/all\r\nCAPI-GROUP: /x/y\r\nHost: gw\r\n"),
             format!("{START}{KEY_VER}Forwarded: for=1.1.1.1\r\n{UPGRADE}\
                      X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 192.0.2.1\r\n{PROTO}X-Forwarded-Host: gw\r\n\r\n")),
            ("keep-group and root context", &kept, "192.0.2.1", format!("Host: gw\r\n{WS}capi-group: /spoof/x\r\n"),
             format!("GET /ws HTTP/1.1\r\nHost: 10.0.0.7:9001\r\n{KEY_VER}{UPGRADE}X-Forwarded-For: 192.0.2.1\r\n{PROTO}\
                      X-Forwarded-Host: gw\r\ncapi-group: /echo/dev\r\n\r\n")),
            ("hop-by-hop and connection-named dropped", &plain, "192.0.2.1",
             "Host: gw\r\nConnection: keep-alive, Upgrade, X-Secret\r\nconnection: x-other\r\nKeep-Alive: 5\r\n\
              Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X\r\nUpgrade: websocket\r\n\
              Proxy-Authorization: Basic x\r\nProxy-Authenticate: Basic\r\nX-Secret: 1\r\nX-Other: 2\r\nX-Public: 3\r\n".into(),
             format!("{START}X-Public: 3\r\n{UPGRADE}X-Forwarded-For: 192.0.2.1\r\n{PROTO}X-Forwarded-Host: gw\r\n\r\n")),
            ("end-to-end headers byte for byte in order", &plain, "192.0.2.1",
             format!("Host: gw\r\nsec-websocket-protocol: chat, superchat\r\n\
                      Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\nOrigin: https://App.example\r\n\
                      Cookie: a=1; b=2\r\nAuthorization: Bearer abc.def.ghi\r\nUser-Agent: t/1.0\r\n{KEY_VER}{UPGRADE}"),
             format!("{START}sec-websocket-protocol: chat, superchat\r\n\
                      Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\nOrigin: https://App.example\r\n\
                      Cookie: a=1; b=2\r\nAuthorization: Bearer abc.def.ghi\r\nUser-Agent: t/1.0\r\n{KEY_VER}\
                      {UPGRADE}X-Forwarded-For: 192.0.2.1\r\n{PROTO}X-Forwarded-Host: gw\r\n\r\n")),
        ];
        for (name, svc, ip, headers, want) in cases {
            assert_eq!(forward("", None, &headers, svc, ip), want, "case {name}");
        }
    }

    type Parsed = Result<Option<(u16, usize, usize)>, Reject>;

    fn parse_resp(raw: &[u8]) -> Parsed {
        let mut st = [httparse::EMPTY_HEADER; MAX_HEADERS];
        parse_response(raw, &mut st).map(|r| r.map(|r| (r.status, r.headers.len(), r.head_len)))
    }

    #[test]
    fn parse_response_cases() {
        let bad = Err(Reject::BadGateway("malformed upstream response"));
        let switch: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                              Connection: Upgrade\r\n\r\n\x81\x02hi";
        #[rustfmt::skip]
        let cases: [(&str, &[u8], Parsed); 9] = [
            ("101 with early frame", switch, Ok(Some((101, 2, switch.len() - 4)))),
            ("404 no headers", b"HTTP/1.1 404 Not Found\r\n\r\n", Ok(Some((404, 0, 26)))),
            ("http/1.0", b"HTTP/1.0 200 OK\r\n\r\n", Ok(Some((200, 0, 19)))),
            ("empty", b"", Ok(None)),
            ("partial status", b"HTTP/1.1 10", Ok(None)),
            ("partial headers", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: web", Ok(None)),
            ("not http", b"SSH-2.0-OpenSSH_9.6\r\n\r\n", bad),
            ("bad status", b"HTTP/1.1 1x1 Nope\r\n\r\n", bad),
            ("bad header", b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n", bad),
        ];
        for (name, raw, want) in cases {
            assert_eq!(parse_resp(raw), want, "case {name}");
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            parse_resp(format!("HTTP/1.1 200 OK\r\n{many}\r\n").as_bytes()),
            bad
        );
    }

    fn with_resp<R>(raw: &str, f: impl FnOnce(&ResponseHead) -> R) -> R {
        let mut st = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let resp = parse_response(raw.as_bytes(), &mut st).unwrap().unwrap();
        f(&resp)
    }

    #[test]
    fn check_switch_cases() {
        let expected = crate::data::upgrade::accept_key(b"dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(&expected, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let good = "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
        let bad_accept = Err(Reject::BadGateway("bad Sec-WebSocket-Accept"));
        let bad_upgrade = Err(Reject::BadGateway("bad upgrade header"));
        // (name, status, headers, expected)
        #[rustfmt::skip]
        let cases = [
            ("valid", "101", vec!["Upgrade: websocket", "Connection: Upgrade", good], Ok(())),
            ("lower-case names", "101", vec!["upgrade: WebSocket", "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="], Ok(())),
            ("not 101", "200", vec!["Upgrade: websocket", good], Err(Reject::BadGateway("not switching protocols"))),
            ("no upgrade", "101", vec!["Connection: Upgrade", good], bad_upgrade),
            ("other upgrade", "101", vec!["Upgrade: h2c", good], bad_upgrade),
            ("no accept", "101", vec!["Upgrade: websocket"], bad_accept),
            ("wrong accept", "101", vec!["Upgrade: websocket", "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA="], bad_accept),
            ("accept case differs", "101", vec!["Upgrade: websocket", "Sec-WebSocket-Accept: S3PPLMBITXAQ9KYGZZHZRBK+XOO="], bad_accept),
            ("two accepts", "101", vec!["Upgrade: websocket", good, good], bad_accept),
        ];
        for (name, status, headers, want) in cases {
            let headers: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
            let raw = format!("HTTP/1.1 {status} X\r\n{headers}\r\n");
            assert_eq!(
                with_resp(&raw, |r| check_switch(r, &expected)),
                want,
                "case {name}"
            );
        }
    }

    #[test]
    fn body_framing_cases() {
        use BodyFraming::{Chunked, Length, UntilClose};
        // (name, status, headers, expected)
        #[rustfmt::skip]
        let cases = [
            ("no framing headers", "200", "", UntilClose),
            ("length", "404", "Content-Length: 42\r\n", Length(42)),
            ("length capped", "500", "Content-Length: 1000000\r\n", Length(MAX_RELAYED_BODY)),
            ("length at cap", "500", "Content-Length: 65536\r\n", Length(65536)),
            ("length huge", "500", "Content-Length: 99999999999999999999999999\r\n", Length(MAX_RELAYED_BODY)),
            ("length zero", "403", "Content-Length: 0\r\n", BodyFraming::None),
            ("equal duplicates", "400", "Content-Length: 7\r\ncontent-length: 7, 7\r\n", Length(7)),
            ("conflicting lengths", "400", "Content-Length: 7\r\nContent-Length: 8\r\n", UntilClose),
            ("bad length", "400", "Content-Length: -1\r\n", UntilClose),
            ("empty length", "400", "Content-Length: \r\n", UntilClose),
            ("chunked", "502", "Transfer-Encoding: chunked\r\n", Chunked),
            ("chunked upper, wins over length", "502", "Content-Length: 5\r\nTransfer-Encoding: gzip, CHUNKED\r\n", Chunked),
            ("chunked not last", "502", "Transfer-Encoding: chunked, gzip\r\n", UntilClose),
            ("chunked in first header only", "502", "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n", UntilClose),
            ("te not chunked", "502", "Transfer-Encoding: gzip\r\nContent-Length: 5\r\n", UntilClose),
            ("204", "204", "Content-Length: 10\r\n", BodyFraming::None),
            ("304", "304", "Transfer-Encoding: chunked\r\n", BodyFraming::None),
            ("1xx", "103", "", BodyFraming::None),
        ];
        for (name, status, headers, want) in cases {
            let raw = format!("HTTP/1.1 {status} X\r\n{headers}\r\n");
            assert_eq!(with_resp(&raw, body_framing), want, "case {name}");
        }
    }

    type ChunkedLen = Result<Option<usize>, Reject>;

    #[test]
    fn chunked_body_len_cases() {
        let bad = Err(Reject::BadGateway("malformed chunked body"));
        let full: &[u8] = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\n\r\n";
        #[rustfmt::skip]
        let cases: [(&str, &[u8], ChunkedLen); 19] = [
            ("complete", full, Ok(Some(full.len()))),
            ("complete then more", b"3\r\nabc\r\n0\r\n\r\nHTTP/1.1", Ok(Some(13))),
            ("only last chunk", b"0\r\n\r\n", Ok(Some(5))),
            ("trailers", b"1\r\na\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n", Ok(Some(25))),
            ("upper hex", b"A\r\n0123456789\r\n0\r\n\r\n", Ok(Some(20))),
            ("empty", b"", Ok(None)),
            ("partial size", b"4", Ok(None)),
            ("partial data", b"4\r\nWi", Ok(None)),
            ("data without crlf yet", b"4\r\nWiki", Ok(None)),
            ("data then cr", b"4\r\nWiki\r", Ok(None)),
            ("no final crlf", b"0\r\n", Ok(None)),
            ("trailer partial", b"0\r\nX-T: 1\r\n", Ok(None)),
            ("huge size", b"fffffffffffffff\r\nab", Ok(None)),
            ("no digits", b"\r\n\r\n", bad),
            ("not hex", b"zz\r\n", bad),
            ("data too long", b"2\r\nabc\r\n0\r\n\r\n", bad),
            ("data too long at end", b"2\r\nabc", bad),
            ("size overflow", b"10000000000000000\r\n", bad),
            ("bad size line end", b"4\rWiki", bad),
        ];
        for (name, body, want) in cases {
            assert_eq!(chunked_body_len(body), want, "case {name}");
        }
        // Every strict prefix of a complete body is incomplete, never an error.
        for n in 0..full.len() {
            assert_eq!(chunked_body_len(&full[..n]), Ok(None), "prefix {n}");
        }
    }
}
