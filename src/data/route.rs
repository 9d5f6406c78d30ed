//! Phases 5–6 (DESIGN §2, §4, §12): path hygiene, route lookup, `Origin` check, and the CORS
//! preflight answer. In: the request target / `Origin` and the `Snapshot`; out: the service
//! index with borrowed path rest and query, or a `Reject` (400 bad path, 404, 403 origin).
//! Pure and allocation-free on the upgrade path; `parse_allowed_origin` is for snapshot builds.

use super::head::RequestHead;
use super::reject::Reject;
use crate::snapshot::{AllowedOrigin, Snapshot};

/// Where an upgrade goes: the service and the parts of the target forwarded to its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch<'b> {
    /// Index into `snap.services`.
    pub service: usize,
    /// The path after the route key: `""` or starting with `/`.
    pub rest: &'b str,
    /// The query without `?`; `None` when the target has no `?`.
    pub query: Option<&'b str>,
}

/// Path hygiene (400), then the route (404), DESIGN §2 step 5.
///
/// Hygiene: the target is origin-form (starts with `/`; absolute-form and `*` are refused); no
/// path segment is `.` or `..`, also percent-encoded (`%2e`, `.%2E`), where `%2f` counts as a
/// segment separator too; no backslash (raw or `%5c`), no control character (raw or `%00`–`%1f`,
/// `%7f`), no malformed `%` escape. Empty segments (`//`) are allowed. The query is not checked
/// here: it is forwarded byte for byte.
///
/// Route: strip `snap.context_path` (it must be followed by `/`); the next two segments form
/// the key `/<a>/<b>`, followed by the end of the path or `/`; the key is looked up as a slice of
/// the target. Unknown keys and services that are not `routable` → 404.
pub fn route<'b>(snap: &Snapshot, target: &'b str) -> Result<RouteMatch<'b>, Reject> {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    check_path(path)?;

    let after_context = path
        .strip_prefix(snap.context_path.as_str())
        .filter(|p| p.starts_with('/'))
        .ok_or(Reject::NotFound)?;
    let key_len = route_key_len(after_context).ok_or(Reject::NotFound)?;
    let (key, rest) = after_context.split_at(key_len);
    let service = *snap.by_route.get(key).ok_or(Reject::NotFound)?;
    match snap.services.get(service) {
        Some(s) if s.routable => Ok(RouteMatch { service, rest, query }),
        _ => Err(Reject::NotFound),
    }
}

/// Length of `/<a>/<b>` at the start of `p` (which starts with `/`), both segments non-empty.
fn route_key_len(p: &str) -> Option<usize> {
    let bytes = p.as_bytes();
    let first_end = 1 + bytes[1..].iter().position(|&b| b == b'/')?;
    let second_end = bytes[first_end + 1..]
        .iter()
        .position(|&b| b == b'/')
        .map_or(bytes.len(), |i| first_end + 1 + i);
    let first_empty = first_end == 1;
    let second_empty = second_end == first_end + 1;
    (!first_empty && !second_empty).then_some(second_end)
}

/// The hygiene rules of `route` on the path part of the target.
fn check_path(path: &str) -> Result<(), Reject> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(Reject::BadRequest("target not origin-form"));
    }
    // Dots in the current segment, or None once it holds anything else.
    let mut dots: Option<u8> = Some(0);
    let mut i = 0;
    while i <= bytes.len() {
        // Decode one character: raw byte or %XX escape; the end of the path closes a segment.
        let (ch, encoded_len) = match bytes.get(i) {
            None => (b'/', 1),
            Some(&b'%') => match (bytes.get(i + 1), bytes.get(i + 2)) {
                (Some(&h), Some(&l)) => match (hex_val(h), hex_val(l)) {
                    (Some(h), Some(l)) => (h << 4 | l, 3),
                    _ => return Err(Reject::BadRequest("bad percent-encoding")),
                },
                _ => return Err(Reject::BadRequest("bad percent-encoding")),
            },
            Some(&b) => (b, 1),
        };
        match ch {
            b'\\' => return Err(Reject::BadRequest("backslash in path")),
            0..=0x1f | 0x7f => return Err(Reject::BadRequest("control character in path")),
            b'/' => {
                if matches!(dots, Some(1 | 2)) {
                    return Err(Reject::BadRequest("dot segment in path"));
                }
                dots = Some(0);
            }
            b'.' => dots = dots.map(|d| d.saturating_add(1)),
            _ => dots = None,
        }
        i += encoded_len;
    }
    Ok(())
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// One origin split into parts, borrowed: scheme and host as written, port filled in
/// (0 = a scheme without a known default port, given without one).
struct OriginParts<'a> {
    scheme: &'a str,
    host: &'a str,
    port: u16,
}

/// Split `scheme://host[:port][/]`. Refuses user info, paths, queries, fragments, empty hosts
/// and ports outside 1–65535. IPv6 hosts are bracketed (`[::1]`).
fn split_origin(s: &str) -> Option<OriginParts<'_>> {
    let (scheme, authority) = s.split_once("://")?;
    let scheme_ok = scheme.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return None;
    }
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']')?;
        let host = &authority[..=close];
        let inner_ok = host[1..close]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
        if !inner_ok || close == 1 {
            return None;
        }
        match &authority[close + 1..] {
            "" => (host, None),
            after => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host_ok = !host.is_empty()
        && (host.starts_with('[')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')));
    if !host_ok {
        return None;
    }
    let port = match port {
        None => default_port(scheme),
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            match p.parse::<u16>() {
                Ok(0) | Err(_) => return None,
                Ok(n) => n,
            }
        }
        Some(_) => return None,
    };
    Some(OriginParts { scheme, host, port })
}

/// Default ports (DESIGN §12: 80 for http, 443 for https; ws and wss alike). 0 = none known.
fn default_port(scheme: &str) -> u16 {
    if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("ws") {
        80
    } else if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss") {
        443
    } else {
        0
    }
}

/// Parse one configured `allowed-origins` entry (DESIGN §12): `*` → `Any`, `null` → `Null`,
/// `scheme://host[:port]` (trailing `/` ignored) → `Exact` with lower-case scheme and host and
/// the default port filled in.
pub fn parse_allowed_origin(entry: &str) -> Result<AllowedOrigin, String> {
    let e = entry.trim();
    if e == "*" {
        return Ok(AllowedOrigin::Any);
    }
    if e.eq_ignore_ascii_case("null") {
        return Ok(AllowedOrigin::Null);
    }
    let parts = split_origin(e)
        .ok_or_else(|| format!("allowed-origins entry {e:?} is not *, null or scheme://host[:port]"))?;
    Ok(AllowedOrigin::Exact {
        scheme: parts.scheme.to_ascii_lowercase(),
        host: parts.host.to_ascii_lowercase(),
        port: parts.port,
    })
}

/// Step 6: with a non-empty `allowed` list, a present `Origin` must match an entry (DESIGN
/// §12): `*` allows every origin but `null`; `null` matches only a `Null` entry; otherwise scheme
/// and host compare case-insensitively and a default port equals its absence. No `Origin` passes.
pub fn check_origin(origin: Option<&[u8]>, allowed: &[AllowedOrigin]) -> Result<(), Reject> {
    let Some(origin) = origin else {
        return Ok(());
    };
    if allowed.is_empty() {
        return Ok(());
    }
    if origin == b"null" {
        return match allowed.contains(&AllowedOrigin::Null) {
            true => Ok(()),
            false => Err(Reject::Forbidden("origin")),
        };
    }
    if allowed.contains(&AllowedOrigin::Any) {
        return Ok(());
    }
    let parts = std::str::from_utf8(origin).ok().and_then(split_origin);
    let Some(parts) = parts else {
        return Err(Reject::Forbidden("origin"));
    };
    let matches = allowed.iter().any(|a| match a {
        AllowedOrigin::Exact { scheme, host, port } => {
            *port == parts.port
                && scheme.eq_ignore_ascii_case(parts.scheme)
                && host.eq_ignore_ascii_case(parts.host)
        }
        AllowedOrigin::Any | AllowedOrigin::Null => false,
    });
    if matches {
        Ok(())
    } else {
        Err(Reject::Forbidden("origin"))
    }
}

/// `Access-Control-Allow-Headers` when the preflight names none.
const DEFAULT_ALLOW_HEADERS: &str = "Origin, Authorization, Content-Type, Sec-WebSocket-Protocol, \
     Sec-WebSocket-Key, Sec-WebSocket-Version, Sec-WebSocket-Extensions";

/// The CORS preflight answer for `OPTIONS` on a known route, as CAPI gives it (DESIGN §2 step 3):
/// `202` echoing the allowed `Origin` (`*` without one) and the requested headers. An `Origin`
/// refused by `allowed` → `Forbidden("origin")`. Header values echoed here were validated by
/// httparse (no CR/LF), so they cannot split the response.
/// `allow_headers`: `capi.gateway.cors.management.allowed-headers` pre-joined (as CAPI sends
/// it); None = echo the requested headers (or the default list).
pub fn write_preflight(
    head: &RequestHead,
    allowed: &[AllowedOrigin],
    allow_headers: Option<&str>,
    out: &mut Vec<u8>,
) -> Result<(), Reject> {
    let origin = head.header("origin");
    check_origin(origin, allowed)?;
    out.extend_from_slice(b"HTTP/1.1 202 Accepted\r\nAccess-Control-Allow-Origin: ");
    match origin {
        Some(o) => {
            out.extend_from_slice(o);
            out.extend_from_slice(b"\r\nVary: Origin");
        }
        None => out.push(b'*'),
    }
    out.extend_from_slice(
        b"\r\nAccess-Control-Allow-Methods: GET, OPTIONS\r\nAccess-Control-Allow-Headers: ",
    );
    let mut requested = head.headers_named("access-control-request-headers").peekable();
    if let Some(configured) = allow_headers {
        out.extend_from_slice(configured.as_bytes());
    } else if requested.peek().is_none() {
        out.extend_from_slice(DEFAULT_ALLOW_HEADERS.as_bytes());
    } else {
        for (i, v) in requested.enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(v);
        }
    }
    out.extend_from_slice(
        b"\r\nAccess-Control-Allow-Credentials: true\r\nAccess-Control-Max-Age: 1728000\r\n\
          Content-Length: 0\r\nConnection: close\r\n\r\n",
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::data::head::{parse_request, MAX_HEADERS};
    use crate::snapshot::Service;

    fn service(name: &str, group: &str, route_key: &str, routable: bool) -> Service {
        Service {
            route_key: route_key.into(),
            route: format!("/capi{route_key}"),
            routable,
            ..Service::for_test(name, group)
        }
    }

    fn snapshot(context_path: &str) -> Snapshot {
        let services = vec![
            service("echo", "dev", "/echo/dev", true),
            // group-first: the key is /<group>/<name>.
            service("chat", "prod", "/prod/chat", true),
            // mode full: a rest service is listed but not routable.
            service("orders", "dev", "/orders/dev", false),
        ];
        let by_route: HashMap<String, usize> = services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.route_key.clone(), i))
            .collect();
        Snapshot {
            generation: 1,
            context_path: context_path.into(),
            allowed_origins: vec![],
            services,
            by_route,
            limits: Default::default(),
            stats: Vec::new(),
            auth: Default::default(),
        }
    }

    type Routed = Result<(usize, String, Option<String>), Reject>;

    fn ok(service: usize, rest: &str, query: Option<&str>) -> Routed {
        Ok((service, rest.to_string(), query.map(str::to_string)))
    }

    #[test]
    fn route_cases() {
        let bad = Reject::BadRequest;
        // (name, context path, target, expected)
        #[rustfmt::skip]
        let cases = [
            ("key at end", "/capi", "/capi/echo/dev", ok(0, "", None)),
            ("key then slash", "/capi", "/capi/echo/dev/", ok(0, "/", None)),
            ("key then rest", "/capi", "/capi/echo/dev/a/b", ok(0, "/a/b", None)),
            ("key then query", "/capi", "/capi/echo/dev?x=1&y", ok(0, "", Some("x=1&y"))),
            ("key then empty query", "/capi", "/capi/echo/dev?", ok(0, "", Some(""))),
            ("rest and query", "/capi", "/capi/echo/dev/a?x=/../", ok(0, "/a", Some("x=/../"))),
            ("double slash in rest", "/capi", "/capi/echo/dev//a", ok(0, "//a", None)),
            ("group-first key", "/capi", "/capi/prod/chat/x", ok(1, "/x", None)),
            ("empty context path", "", "/echo/dev/x", ok(0, "/x", None)),
            ("empty context, query", "", "/echo/dev?q", ok(0, "", Some("q"))),
            ("longer segment", "/capi", "/capi/echo/devX", Err(Reject::NotFound)),
            ("context glued to name", "/capi", "/capiecho/dev", Err(Reject::NotFound)),
            ("context only", "/capi", "/capi", Err(Reject::NotFound)),
            ("context slash", "/capi", "/capi/", Err(Reject::NotFound)),
            ("one segment", "/capi", "/capi/echo", Err(Reject::NotFound)),
            ("one segment slash", "/capi", "/capi/echo/", Err(Reject::NotFound)),
            ("empty first segment", "/capi", "/capi//dev", Err(Reject::NotFound)),
            ("no context", "/capi", "/echo/dev", Err(Reject::NotFound)),
            ("context case differs", "/capi", "/CAPI/echo/dev", Err(Reject::NotFound)),
            ("key case differs", "/capi", "/capi/Echo/dev", Err(Reject::NotFound)),
            ("swapped segments", "/capi", "/capi/dev/echo", Err(Reject::NotFound)),
            ("not routable", "/capi", "/capi/orders/dev", Err(Reject::NotFound)),
            ("encoded key", "/capi", "/capi/ech%6f/dev", Err(Reject::NotFound)),
            ("root path", "/capi", "/", Err(Reject::NotFound)),
            ("dot-dot", "/capi", "/capi/a/b/../c", Err(bad("dot segment in path"))),
            ("dot", "/capi", "/capi/echo/dev/./c", Err(bad("dot segment in path"))),
            ("trailing dot-dot", "/capi", "/capi/echo/dev/..", Err(bad("dot segment in path"))),
            ("encoded dot-dot", "/capi", "/capi/a/b/%2e%2E/c", Err(bad("dot segment in path"))),
            ("half-encoded dot-dot at end", "/capi", "/capi/a/b/.%2e", Err(bad("dot segment in path"))),
            ("encoded dot", "/capi", "/capi/echo/dev/%2E", Err(bad("dot segment in path"))),
            ("dot-dot behind encoded slash", "/capi", "/capi/echo/dev/x%2f..%2Fy", Err(bad("dot segment in path"))),
            ("dot-dot in context", "/capi", "/capi/../echo/dev", Err(bad("dot segment in path"))),
            ("dot-dot before unknown route", "/capi", "/x/../capi/echo/dev", Err(bad("dot segment in path"))),
            ("three dots are a name", "/capi", "/capi/echo/dev/...", ok(0, "/...", None)),
            ("dotted names", "/capi", "/capi/echo/dev/.well-known/a..b", ok(0, "/.well-known/a..b", None)),
            ("backslash", "/capi", "/capi/echo/dev/x\\y", Err(bad("backslash in path"))),
            ("lone backslash", "/capi", "\\", Err(bad("target not origin-form"))),
            ("slash backslash", "/capi", "/\\", Err(bad("backslash in path"))),
            ("encoded backslash", "/capi", "/capi/a/b/x%5cy", Err(bad("backslash in path"))),
            ("encoded backslash upper", "/capi", "/capi/a/b/x%5Cy", Err(bad("backslash in path"))),
            ("encoded nul", "/capi", "/capi/echo/dev/%00", Err(bad("control character in path"))),
            ("encoded newline", "/capi", "/capi/echo/dev/a%0d%0aX: y", Err(bad("control character in path"))),
            ("encoded del", "/capi", "/capi/echo/dev/%7F", Err(bad("control character in path"))),
            ("raw tab", "/capi", "/capi/echo/dev/a\tb", Err(bad("control character in path"))),
            ("raw nul", "/capi", "/capi/echo/dev/\0", Err(bad("control character in path"))),
            ("bad escape", "/capi", "/capi/echo/dev/%zz", Err(bad("bad percent-encoding"))),
            ("truncated escape", "/capi", "/capi/echo/dev/%2", Err(bad("bad percent-encoding"))),
            ("encoded controls in query pass", "/capi", "/capi/echo/dev?m=a%0Ab%00", ok(0, "", Some("m=a%0Ab%00"))),
            ("absolute-form", "/capi", "http://gw/capi/echo/dev", Err(bad("target not origin-form"))),
            ("asterisk", "/capi", "*", Err(bad("target not origin-form"))),
            ("authority-form", "/capi", "gw:8382", Err(bad("target not origin-form"))),
            ("query only", "/capi", "?x", Err(bad("target not origin-form"))),
        ];
        for (name, ctx, target, want) in cases {
            let snap = snapshot(ctx);
            let got =
                route(&snap, target).map(|m| (m.service, m.rest.to_string(), m.query.map(str::to_string)));
            assert_eq!(got, want, "case {name}");
        }
    }

    #[test]
    fn route_borrows_from_target() {
        let snap = snapshot("/capi");
        let target = String::from("/capi/echo/dev/a?b");
        let m = route(&snap, &target).unwrap();
        let range = target.as_bytes().as_ptr_range();
        assert!(range.contains(&m.rest.as_ptr()));
        assert!(range.contains(&m.query.unwrap().as_ptr()));
    }

    fn exact(scheme: &str, host: &str, port: u16) -> AllowedOrigin {
        AllowedOrigin::Exact {
            scheme: scheme.into(),
            host: host.into(),
            port,
        }
    }

    #[test]
    fn parse_allowed_origin_cases() {
        #[rustfmt::skip]
        let cases = [
            ("any", "*", Ok(AllowedOrigin::Any)),
            ("null", "null", Ok(AllowedOrigin::Null)),
            ("null upper", "NULL", Ok(AllowedOrigin::Null)),
            ("http default", "http://app.example.com", Ok(exact("http", "app.example.com", 80))),
            ("https default", "https://app.example.com", Ok(exact("https", "app.example.com", 443))),
            ("ws default", "ws://a", Ok(exact("ws", "a", 80))),
            ("wss default", "wss://a", Ok(exact("wss", "a", 443))),
            ("explicit port", "http://a:8080", Ok(exact("http", "a", 8080))),
            ("explicit default port", "https://a:443", Ok(exact("https", "a", 443))),
            ("trailing slash", "https://App.Example.COM/", Ok(exact("https", "app.example.com", 443))),
            ("upper-case scheme", "HTTPS://a", Ok(exact("https", "a", 443))),
            ("surrounding spaces", "  http://a  ", Ok(exact("http", "a", 80))),
            ("ipv6", "http://[::1]:3000", Ok(exact("http", "[::1]", 3000))),
            ("ipv6 default", "http://[::1]", Ok(exact("http", "[::1]", 80))),
            ("other scheme", "chrome-extension://abc", Ok(exact("chrome-extension", "abc", 0))),
        ];
        for (name, entry, want) in cases {
            assert_eq!(parse_allowed_origin(entry), want, "case {name}");
        }
        #[rustfmt::skip]
        let garbage = [
            "", "app.example.com", "http://", "http://a/path", "http://a//", "http://a?x", "http://a#f",
            "http://u@a", "http://a:", "http://a:0", "http://a:65536", "http://a:80x", "http://a:+80",
            "1http://a", "http://[::1", "http://[]", "http://[zz]", "http://a b", "://a", "http://a:8080:1",
        ];
        for entry in garbage {
            assert!(parse_allowed_origin(entry).is_err(), "garbage {entry:?} accepted");
        }
    }

    #[test]
    fn check_origin_cases() {
        let list = |entries: &[&str]| -> Vec<AllowedOrigin> {
            entries.iter().map(|e| parse_allowed_origin(e).unwrap()).collect()
        };
        let forbidden = Err(Reject::Forbidden("origin"));
        // (name, Origin header, allowed list, expected)
        #[rustfmt::skip]
        let cases = [
            ("no list", Some("http://evil"), vec![], Ok(())),
            ("no list, null", Some("null"), vec![], Ok(())),
            ("no origin", None, list(&["https://app.com"]), Ok(())),
            ("exact", Some("https://app.com"), list(&["https://app.com"]), Ok(())),
            ("case-insensitive", Some("HTTPS://APP.com"), list(&["https://app.COM"]), Ok(())),
            ("default port in header", Some("https://app.com:443"), list(&["https://app.com"]), Ok(())),
            ("default port in entry", Some("http://app.com"), list(&["http://app.com:80"]), Ok(())),
            ("entry trailing slash", Some("https://app.com"), list(&["https://app.com/"]), Ok(())),
            ("second entry", Some("http://b:81"), list(&["http://a", "http://b:81"]), Ok(())),
            ("other host", Some("https://evil.com"), list(&["https://app.com"]), forbidden),
            ("suffix host", Some("https://app.com.evil.com"), list(&["https://app.com"]), forbidden),
            ("other scheme", Some("http://app.com"), list(&["https://app.com"]), forbidden),
            ("other port", Some("https://app.com:8443"), list(&["https://app.com"]), forbidden),
            ("https default is not http default", Some("https://app.com:80"), list(&["http://app.com"]), forbidden),
            ("garbage origin", Some("app.com"), list(&["https://app.com"]), forbidden),
            ("origin with path", Some("https://app.com/x"), list(&["https://app.com"]), forbidden),
            ("any", Some("https://whatever.example"), list(&["*"]), Ok(())),
            ("any allows garbage", Some("not an origin"), list(&["*"]), Ok(())),
            ("any refuses null", Some("null"), list(&["*"]), forbidden),
            ("null entry", Some("null"), list(&["null"]), Ok(())),
            ("null entry only null", Some("https://app.com"), list(&["null"]), forbidden),
            ("null against exact", Some("null"), list(&["https://app.com"]), forbidden),
            ("null and any", Some("null"), list(&["*", "null"]), Ok(())),
        ];
        for (name, origin, allowed, want) in cases {
            assert_eq!(
                check_origin(origin.map(str::as_bytes), &allowed),
                want,
                "case {name}"
            );
        }
        assert_eq!(
            check_origin(Some(b"https://\xff"), &list(&["https://app.com"])),
            forbidden
        );
    }

    fn preflight(headers: &str, allowed: &[AllowedOrigin]) -> Result<String, Reject> {
        let raw = format!("OPTIONS /capi/echo/dev HTTP/1.1\r\nHost: gw\r\n{headers}\r\n");
        let mut st = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = parse_request(raw.as_bytes(), &mut st).unwrap().unwrap();
        let mut out = Vec::new();
        write_preflight(&head, allowed, None, &mut out).map(|()| String::from_utf8(out).unwrap())
    }

    #[test]
    fn preflight_uses_configured_allowed_headers() {
        let raw =
            "OPTIONS /capi/echo/dev HTTP/1.1\r\nHost: gw\r\nAccess-Control-Request-Headers: x-other\r\n\r\n";
        let mut st = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = parse_request(raw.as_bytes(), &mut st).unwrap().unwrap();
        let mut out = Vec::new();
        write_preflight(&head, &[], Some("Origin,Authorization"), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("\r\nAccess-Control-Allow-Headers: Origin,Authorization\r\n"),
            "{text}"
        );
        assert!(!text.contains("x-other"), "{text}");
    }

    #[test]
    fn preflight_cases() {
        let allowed = [parse_allowed_origin("https://app.com").unwrap()];
        let start = "HTTP/1.1 202 Accepted\r\nAccess-Control-Allow-Origin:";
        let methods = "Access-Control-Allow-Methods: GET, OPTIONS\r\n";
        let end = "Access-Control-Allow-Credentials: true\r\nAccess-Control-Max-Age: 1728000\r\n\
                   Content-Length: 0\r\nConnection: close\r\n\r\n";
        // (name, request headers, allowed list, expected)
        #[rustfmt::skip]
        let cases = [
            ("no origin, no list", "", &[][..],
             Ok(format!("{start} *\r\n{methods}Access-Control-Allow-Headers: {DEFAULT_ALLOW_HEADERS}\r\n{end}"))),
            ("allowed origin echoed, requested headers echoed",
             "Origin: https://app.com\r\nAccess-Control-Request-Headers: sec-websocket-protocol, authorization\r\n", &allowed[..],
             Ok(format!("{start} https://app.com\r\nVary: Origin\r\n{methods}Access-Control-Allow-Headers: sec-websocket-protocol, authorization\r\n{end}"))),
            ("origin echoed without list, request headers joined",
             "Origin: http://x\r\nAccess-Control-Request-Headers: a\r\nAccess-Control-Request-Headers: b\r\n", &[][..],
             Ok(format!("{start} http://x\r\nVary: Origin\r\n{methods}Access-Control-Allow-Headers: a, b\r\n{end}"))),
            ("refused origin", "Origin: https://evil.com\r\n", &allowed[..], Err(Reject::Forbidden("origin"))),
        ];
        for (name, headers, allowed, want) in cases {
            assert_eq!(preflight(headers, allowed), want, "case {name}");
        }
    }
}
