//! `Reject`: every answer the gateway gives instead of an upgrade (DESIGN §9), and the one
//! writer of those responses: status line, `Connection: close`, CAPI's JSON error body.
//! Blame is visible: 4xx = the client's request, 502/503/504 = the node side.

use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// 400: malformed request, bad upgrade headers, a body, bad path. The label says which.
    BadRequest(&'static str),
    /// 401 with `WWW-Authenticate: Bearer`; the label is the auth-failure reason (§12).
    Unauthenticated(&'static str),
    /// 403: subscription or origin; the label says which.
    Forbidden(&'static str),
    /// 404: unknown route.
    NotFound,
    /// 405: not GET (or OPTIONS).
    MethodNotAllowed,
    /// 426 with `Sec-WebSocket-Version: 13`.
    UpgradeRequired,
    /// 431: head larger than `max-header-bytes` (or too many headers).
    HeaderTooLarge,
    /// 502: no node reachable, or a bad upstream handshake.
    BadGateway(&'static str),
    /// 503: the service has no healthy node.
    Unavailable,
    /// 504: the node did not answer in time.
    GatewayTimeout,
    /// 503: this worker is at `capi.websocket.max-connections` (issue 6).
    Busy,
}

impl Reject {
    pub fn status(&self) -> u16 {
        match self {
            Reject::BadRequest(_) => 400,
            Reject::Unauthenticated(_) => 401,
            Reject::Forbidden(_) => 403,
            Reject::NotFound => 404,
            Reject::MethodNotAllowed => 405,
            Reject::UpgradeRequired => 426,
            Reject::HeaderTooLarge => 431,
            Reject::BadGateway(_) => 502,
            Reject::Unavailable => 503,
            Reject::GatewayTimeout => 504,
            Reject::Busy => 503,
        }
    }

    fn reason_phrase(&self) -> &'static str {
        match self {
            Reject::BadRequest(_) => "Bad Request",
            Reject::Unauthenticated(_) => "Unauthorized",
            Reject::Forbidden(_) => "Forbidden",
            Reject::NotFound => "Not Found",
            Reject::MethodNotAllowed => "Method Not Allowed",
            Reject::UpgradeRequired => "Upgrade Required",
            Reject::HeaderTooLarge => "Request Header Fields Too Large",
            Reject::BadGateway(_) => "Bad Gateway",
            Reject::Unavailable => "Service Unavailable",
            Reject::GatewayTimeout => "Gateway Timeout",
            Reject::Busy => "Service Unavailable",
        }
    }

    /// Static label (for logs and metrics): never carries request data.
    pub fn label(&self) -> &'static str {
        match self {
            Reject::BadRequest(l)
            | Reject::Unauthenticated(l)
            | Reject::Forbidden(l)
            | Reject::BadGateway(l) => l,
            Reject::NotFound => "unknown route",
            Reject::MethodNotAllowed => "method not allowed",
            Reject::UpgradeRequired => "unsupported websocket version",
            Reject::HeaderTooLarge => "request head too large",
            Reject::Unavailable => "no healthy node",
            Reject::GatewayTimeout => "node did not answer in time",
            Reject::Busy => "gateway at max-connections",
        }
    }

    /// The text of `errorMessage`.
    pub fn message(&self) -> &'static str {
        match self {
            Reject::Unauthenticated(_) => "a valid access token is required",
            Reject::Forbidden("origin") => "origin not allowed",
            Reject::Forbidden(_) => "not subscribed to this service",
            _ => self.label(),
        }
    }

    /// Serialise the whole response (head and body) into `out`.
    pub fn write_response(&self, out: &mut Vec<u8>) {
        let status = self.status();
        // The message is a static string without quotes or backslashes, so no escaping is needed;
        // serde_json keeps that true should a message ever change.
        let body = serde_json::json!({ "errorCode": status, "errorMessage": self.message() }).to_string();
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            status,
            self.reason_phrase(),
            body.len()
        );
        match self {
            Reject::Unauthenticated(_) => out.extend_from_slice(b"WWW-Authenticate: Bearer\r\n"),
            Reject::UpgradeRequired => out.extend_from_slice(b"Sec-WebSocket-Version: 13\r\n"),
            _ => {}
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(r: Reject) -> String {
        let mut out = Vec::new();
        r.write_response(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn not_found_has_capi_body_and_close() {
        let s = render(Reject::NotFound);
        assert!(s.starts_with("HTTP/1.1 404 Not Found\r\n"), "{s}");
        assert!(s.contains("Connection: close\r\n"));
        let body = s.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["errorCode"], 404);
        assert_eq!(v["errorMessage"], "unknown route");
        assert!(s.contains(&format!("Content-Length: {}\r\n", body.len())));
    }

    #[test]
    fn special_headers() {
        assert!(render(Reject::Unauthenticated("missing")).contains("WWW-Authenticate: Bearer\r\n"));
        assert!(render(Reject::UpgradeRequired).contains("Sec-WebSocket-Version: 13\r\n"));
        assert!(!render(Reject::NotFound).contains("WWW-Authenticate"));
    }

    #[test]
    fn every_status() {
        let all = [
            (Reject::BadRequest("x"), 400),
            (Reject::Unauthenticated("x"), 401),
            (Reject::Forbidden("origin"), 403),
            (Reject::NotFound, 404),
            (Reject::MethodNotAllowed, 405),
            (Reject::UpgradeRequired, 426),
            (Reject::HeaderTooLarge, 431),
            (Reject::BadGateway("x"), 502),
            (Reject::Unavailable, 503),
            (Reject::GatewayTimeout, 504),
        ];
        for (r, code) in all {
            assert!(render(r).starts_with(&format!("HTTP/1.1 {code} ")), "{r:?}");
        }
    }
}
