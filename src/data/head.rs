//! Phase 2 (DESIGN §2): parse the client's request head in place with httparse. In: the bytes
//! read so far and a fixed header array; out: a `RequestHead` of borrowed views, `None` while
//! the head is incomplete, or a `Reject` (400 malformed, 431 too many headers). Pure: the
//! reading (deadline, size cap) is the caller's; nothing here allocates.

use super::reject::Reject;

/// Header slots per head; more headers answer 431 (a browser upgrade sends ~15).
pub const MAX_HEADERS: usize = 100;

/// A parsed request head: views into the request buffer, nothing copied.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'b> {
    pub method: &'b str,
    /// The request target as sent (origin-form expected; checked by `route`).
    pub target: &'b str,
    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub minor_version: u8,
    pub headers: &'b [httparse::Header<'b>],
    /// Bytes of the head including the final CRLF CRLF; anything after it is early client data.
    pub head_len: usize,
}

impl<'b> RequestHead<'b> {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Every header called `name` (case-insensitive), in request order.
    pub fn headers_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'b [u8]> + 's {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// Parse the head at the start of `buf`. `Ok(None)` = incomplete, read more.
/// Errors: malformed → `BadRequest`; more than `MAX_HEADERS` headers → `HeaderTooLarge`.
pub fn parse_request<'b>(
    buf: &'b [u8],
    storage: &'b mut [httparse::Header<'b>; MAX_HEADERS],
) -> Result<Option<RequestHead<'b>>, Reject> {
    let mut req = httparse::Request::new(storage);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Reject::HeaderTooLarge),
        Err(_) => return Err(Reject::BadRequest("malformed request")),
    };
    // A complete parse fills method, path and version; their absence would be an httparse bug,
    // answered as a malformed request rather than a panic.
    match (req.method, req.path, req.version) {
        (Some(method), Some(target), Some(minor_version)) => Ok(Some(RequestHead {
            method,
            target,
            minor_version,
            headers: req.headers,
            head_len,
        })),
        _ => Err(Reject::BadRequest("malformed request")),
    }
}

/// The elements of a comma-separated header value (RFC 9110 §5.6.1), trimmed of spaces and
/// tabs; empty elements are skipped.
pub fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// Whether any of `values` (comma lists) holds `token`, compared case-insensitively.
pub fn list_has_token<'a>(values: impl IntoIterator<Item = &'a [u8]>, token: &str) -> bool {
    values
        .into_iter()
        .any(|v| list_elements(v).any(|e| e.eq_ignore_ascii_case(token.as_bytes())))
}

/// `value` without leading and trailing spaces and tabs.
pub fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    &value[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage<'b>() -> [httparse::Header<'b>; MAX_HEADERS] {
        [httparse::EMPTY_HEADER; MAX_HEADERS]
    }

    #[test]
    fn parse_complete_head() {
        let buf = b"GET /capi/echo/dev?x=1 HTTP/1.1\r\nHost: gw\r\nupgrade: websocket\r\n\r\nEARLY";
        let mut st = storage();
        let head = parse_request(buf, &mut st).unwrap().unwrap();
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "/capi/echo/dev?x=1");
        assert_eq!(head.minor_version, 1);
        assert_eq!(head.headers.len(), 2);
        assert_eq!(head.head_len, buf.len() - "EARLY".len());
        assert_eq!(head.header("HOST"), Some(&b"gw"[..]));
        assert_eq!(head.header("Upgrade"), Some(&b"websocket"[..]));
        assert_eq!(head.header("Origin"), None);
    }

    #[test]
    fn parse_outcomes() {
        let many: String = (0..MAX_HEADERS + 1).map(|i| format!("X-{i}: v\r\n")).collect();
        let too_many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        let exactly: String = (0..MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        let at_limit = format!("GET / HTTP/1.1\r\n{exactly}\r\n");
        // (name, input, expected: Ok(Some(_)) → "complete", Ok(None) → "partial", Err)
        let cases: Vec<(&str, Vec<u8>, Result<&str, Reject>)> = vec![
            ("empty", b"".to_vec(), Ok("partial")),
            ("request line only", b"GET / HTTP/1.1\r\n".to_vec(), Ok("partial")),
            (
                "half header",
                b"GET / HTTP/1.1\r\nHost: a".to_vec(),
                Ok("partial"),
            ),
            ("http/1.0", b"GET / HTTP/1.0\r\n\r\n".to_vec(), Ok("complete")),
            ("at header limit", at_limit.into_bytes(), Ok("complete")),
            (
                "too many headers",
                too_many.into_bytes(),
                Err(Reject::HeaderTooLarge),
            ),
            (
                "garbage",
                b"\x16\x03\x01\x02\x00\r\n\r\n".to_vec(),
                Err(Reject::BadRequest("malformed request")),
            ),
            (
                "http/2 preface",
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
                Err(Reject::BadRequest("malformed request")),
            ),
            (
                "space in header name",
                b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n".to_vec(),
                Err(Reject::BadRequest("malformed request")),
            ),
            (
                "obs-fold",
                b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n".to_vec(),
                Err(Reject::BadRequest("malformed request")),
            ),
            (
                "control char in target",
                b"GET /a\x01b HTTP/1.1\r\n\r\n".to_vec(),
                Err(Reject::BadRequest("malformed request")),
            ),
            (
                "invalid utf-8 target",
                b"GET /a\xffb HTTP/1.1\r\n\r\n".to_vec(),
                Err(Reject::BadRequest("malformed request")),
            ),
        ];
        for (name, input, want) in cases {
            let mut st = storage();
            let got =
                parse_request(&input, &mut st).map(|h| if h.is_some() { "complete" } else { "partial" });
            assert_eq!(got, want, "case {name}");
        }
    }

    #[test]
    fn headers_named_in_order() {
        let buf = b"GET / HTTP/1.1\r\nX-Forwarded-For: a\r\nHost: h\r\nx-forwarded-for: b\r\n\r\n";
        let mut st = storage();
        let head = parse_request(buf, &mut st).unwrap().unwrap();
        let all: Vec<&[u8]> = head.headers_named("X-FORWARDED-FOR").collect();
        assert_eq!(all, vec![&b"a"[..], &b"b"[..]]);
        assert_eq!(head.headers_named("cookie").count(), 0);
    }

    #[test]
    fn token_lists() {
        let cases: &[(&str, &[&[u8]], &str, bool)] = &[
            ("single", &[b"Upgrade"], "upgrade", true),
            ("in list", &[b"keep-alive, Upgrade"], "upgrade", true),
            (
                "tabs and empties",
                &[b" ,\tkeep-alive ,, UPGRADE\t"],
                "upgrade",
                true,
            ),
            ("second header", &[b"keep-alive", b"upgrade"], "upgrade", true),
            ("substring is no token", &[b"upgrade-insecure"], "upgrade", false),
            ("absent", &[b"close"], "upgrade", false),
            ("no headers", &[], "upgrade", false),
        ];
        for (name, values, token, want) in cases {
            assert_eq!(
                list_has_token(values.iter().copied(), token),
                *want,
                "case {name}"
            );
        }
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b" \t "), b"");
    }

    #[test]
    fn parse_in_a_read_loop() {
        // 1. The head arrives in pieces; each partial parse answers None.
        // 2. The storage's lifetime is the buffer borrow's, so the pattern that compiles is: fresh
        //    storage per attempt, the complete head used inside the arm (it cannot outlive the
        //    iteration while the buffer keeps growing).
        let pieces: [&[u8]; 3] = [b"GET /capi/echo/dev HT", b"TP/1.1\r\nHost: gw\r", b"\n\r\nrest"];
        let mut buf = Vec::new();
        let mut partials = 0;
        let mut pieces = pieces.iter();
        let (host, early) = loop {
            buf.extend_from_slice(pieces.next().unwrap());
            let mut st = storage();
            match parse_request(&buf, &mut st) {
                Ok(Some(head)) => {
                    break (
                        head.header("host").map(<[u8]>::to_vec),
                        buf[head.head_len..].to_vec(),
                    )
                }
                Ok(None) => partials += 1,
                Err(e) => panic!("{e:?}"),
            }
        };
        assert_eq!(partials, 2);
        assert_eq!(host.as_deref(), Some(&b"gw"[..]));
        assert_eq!(early, b"rest");
    }
}
