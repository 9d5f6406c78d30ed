//! Operations settings (issue 6): admin bind address, per-worker connection cap, trusted
//! proxies for the access log's remote address, and CAPI's CORS allowed-headers list. Read from
//! the raw file mirror like every other key; each problem names its dotted key.

use std::fmt;
use std::net::IpAddr;

use super::file::{keys, quote, read_bool, read_text, read_text_list, read_uint, Env, FileConfig};

/// Default admin bind address (DESIGN §8).
pub const DEFAULT_ADMIN_ADDRESS: &str = "0.0.0.0";
/// Upper bound of `capi.websocket.max-connections` (per worker): far above what one core relays.
pub const MAX_MAX_CONNECTIONS: u64 = 10_000_000;

/// A trusted proxy: one address or a CIDR block (`10.0.0.0/8`, `::1/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedProxy {
    pub net: IpAddr,
    pub prefix: u8,
}

impl TrustedProxy {
    /// `1.2.3.4`, `1.2.3.0/24`, `::1`, `fd00::/8`.
    pub fn parse(text: &str) -> Result<TrustedProxy, String> {
        let t = text.trim();
        let (addr, prefix) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("expected an IP address or CIDR block, got {}", quote(text)))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("prefix length must be 0..={max}, got {}", quote(text))),
            },
        };
        Ok(TrustedProxy { net, prefix })
    }

    /// Whether `ip` lies in this block (IPv4-mapped IPv6 peers compare as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let bits = bits as usize;
    let full = bits / 8;
    if a[..full] != b[..full] {
        return false;
    }
    let rest = bits % 8;
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

impl fmt::Display for TrustedProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// The operations part of [`super::Settings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsSettings {
    /// `management.server.address`: where the admin server binds.
    pub admin_address: String,
    /// `capi.websocket.max-connections`: per worker; 0 = no cap. Beyond it new connections get
    /// 503 and established ones are untouched.
    pub max_connections: u64,
    /// `capi.websocket.trusted-proxies`: peers whose first `X-Forwarded-For` entry is logged as
    /// the remote address.
    pub trusted_proxies: Vec<TrustedProxy>,
    /// `capi.websocket.access-log`: one JSON line per connection on stdout (default true).
    pub access_log: bool,
    /// `capi.gateway.cors.management.allowed-headers`: `Access-Control-Allow-Headers` of the
    /// preflight answer (CAPI joins them with `,`); empty = echo the requested headers.
    pub cors_allowed_headers: Vec<String>,
}

impl Default for OpsSettings {
    fn default() -> Self {
        OpsSettings {
            admin_address: DEFAULT_ADMIN_ADDRESS.to_string(),
            max_connections: 0,
            trusted_proxies: Vec::new(),
            access_log: true,
            cors_allowed_headers: Vec::new(),
        }
    }
}

impl OpsSettings {
    /// Read the operations keys; problems are appended, each naming its key.
    pub fn from_file(file: &FileConfig, env: Env<'_>, problems: &mut Vec<String>) -> OpsSettings {
        let mut s = OpsSettings::default();
        if let Some(raw) = file.get(keys::ADMIN_ADDRESS) {
            match read_text(raw, env) {
                Ok(Some(a)) if valid_host(&a) => s.admin_address = a.trim().to_string(),
                Ok(Some(a)) => problems.push(format!(
                    "{}: expected a host name or IP address, got {}",
                    keys::ADMIN_ADDRESS,
                    quote(&a)
                )),
                Ok(None) => {}
                Err(e) => problems.push(format!("{}: {e}", keys::ADMIN_ADDRESS)),
            }
        }
        if let Some(raw) = file.get(keys::MAX_CONNECTIONS) {
            let what = "a number of connections per worker 0..=10000000 (0 = no cap)";
            match read_uint(raw, env, what) {
                Ok(Some(n)) if n <= MAX_MAX_CONNECTIONS => s.max_connections = n,
                Ok(Some(n)) => problems.push(format!("{}: expected {what}, got {n}", keys::MAX_CONNECTIONS)),
                Ok(None) => {}
                Err(e) => problems.push(format!("{}: {e}", keys::MAX_CONNECTIONS)),
            }
        }
        if let Some(raw) = file.get(keys::TRUSTED_PROXIES) {
            match read_text_list(raw, env) {
                Ok(list) => {
                    for item in list {
                        match TrustedProxy::parse(&item) {
                            Ok(p) => s.trusted_proxies.push(p),
                            Err(e) => problems.push(format!("{}: {e}", keys::TRUSTED_PROXIES)),
                        }
                    }
                }
                Err(e) => problems.push(format!("{}: {e}", keys::TRUSTED_PROXIES)),
            }
        }
        if let Some(raw) = file.get(keys::ACCESS_LOG) {
            match read_bool(raw, env) {
                Ok(Some(on)) => s.access_log = on,
                Ok(None) => {}
                Err(e) => problems.push(format!("{}: {e}", keys::ACCESS_LOG)),
            }
        }
        if let Some(raw) = file.get(keys::CORS_ALLOWED_HEADERS) {
            match read_text_list(raw, env) {
                Ok(list) => {
                    for h in &list {
                        if !h.bytes().all(is_token_byte) {
                            problems.push(format!(
                                "{}: expected header names, got {}",
                                keys::CORS_ALLOWED_HEADERS,
                                quote(h)
                            ));
                        }
                    }
                    s.cors_allowed_headers = list;
                }
                Err(e) => problems.push(format!("{}: {e}", keys::CORS_ALLOWED_HEADERS)),
            }
        }
        s
    }

    /// Lines for `capi-ws check`.
    pub fn write_lines(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {}", keys::ADMIN_ADDRESS, self.admin_address)?;
        if self.max_connections == 0 {
            writeln!(f, "{}: 0 (no cap)", keys::MAX_CONNECTIONS)?;
        } else {
            writeln!(
                f,
                "{}: {} per worker",
                keys::MAX_CONNECTIONS,
                self.max_connections
            )?;
        }
        let proxies: Vec<String> = self.trusted_proxies.iter().map(|p| p.to_string()).collect();
        writeln!(f, "{}: [{}]", keys::TRUSTED_PROXIES, proxies.join(", "))?;
        writeln!(f, "{}: {}", keys::ACCESS_LOG, self.access_log)?;
        writeln!(
            f,
            "{}: [{}]",
            keys::CORS_ALLOWED_HEADERS,
            self.cors_allowed_headers.join(", ")
        )
    }
}

fn valid_host(s: &str) -> bool {
    let t = s.trim();
    !t.is_empty() && !t.contains(char::is_whitespace)
}

/// RFC 9110 token characters (header names).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> (OpsSettings, Vec<String>) {
        let raw = FileConfig::parse(text).unwrap();
        let mut problems = Vec::new();
        let s = OpsSettings::from_file(&raw, &|_| None, &mut problems);
        (s, problems)
    }

    #[test]
    fn keys_are_read() {
        type Check = fn(&OpsSettings) -> bool;
        let cases: &[(&str, &str, Check)] = &[
            ("defaults", "", |s| *s == OpsSettings::default()),
            ("admin_address", "management.server.address: 127.0.0.1", |s| {
                s.admin_address == "127.0.0.1"
            }),
            ("max_connections", "capi.websocket.max-connections: 5", |s| {
                s.max_connections == 5
            }),
            (
                "max_connections_camel",
                "capi.websocket.maxConnections: \"7\"",
                |s| s.max_connections == 7,
            ),
            (
                "proxies",
                "capi.websocket.trusted-proxies: [127.0.0.1, \"10.0.0.0/8\", \"::1\"]",
                |s| s.trusted_proxies.len() == 3 && s.trusted_proxies[1].prefix == 8,
            ),
            (
                "proxies_comma",
                "capi.websocket.trusted-proxies: \"1.1.1.1, 2.2.2.2\"",
                |s| s.trusted_proxies.len() == 2,
            ),
            ("access_log_off", "capi.websocket.access-log: false", |s| {
                !s.access_log
            }),
            ("access_log_on", "capi.websocket.access-log: \"true\"", |s| {
                s.access_log
            }),
            (
                "cors",
                "capi.gateway.cors.management.allowed-headers: [Origin, Authorization]",
                |s| s.cors_allowed_headers == ["Origin", "Authorization"],
            ),
        ];
        for (name, text, check) in cases {
            let (s, problems) = load(text);
            assert!(problems.is_empty(), "case {name}: {problems:?}");
            assert!(check(&s), "case {name}: {s:?}");
        }
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "address_blank",
                "management.server.address: \" a b\"",
                "management.server.address:",
            ),
            (
                "max_big",
                "capi.websocket.max-connections: 99999999999",
                "capi.websocket.max-connections:",
            ),
            (
                "max_word",
                "capi.websocket.max-connections: many",
                "capi.websocket.max-connections:",
            ),
            (
                "proxy_word",
                "capi.websocket.trusted-proxies: [proxy]",
                "capi.websocket.trusted-proxies:",
            ),
            (
                "proxy_prefix",
                "capi.websocket.trusted-proxies: [\"1.2.3.4/33\"]",
                "capi.websocket.trusted-proxies:",
            ),
            (
                "access_log_word",
                "capi.websocket.access-log: maybe",
                "capi.websocket.access-log:",
            ),
            (
                "cors_bad",
                "capi.gateway.cors.management.allowed-headers: [\"a b\"]",
                "capi.gateway.cors.management.allowed-headers:",
            ),
        ];
        for (name, text, want) in cases {
            let (_, problems) = load(text);
            assert_eq!(problems.len(), 1, "case {name}: {problems:?}");
            assert!(problems[0].starts_with(want), "case {name}: {problems:?}");
        }
    }

    #[test]
    fn trusted_proxy_matching() {
        let cases: &[(&str, &str, bool)] = &[
            ("exact", "127.0.0.1", true),
            ("other", "127.0.0.2", false),
            ("block", "10.1.2.3", true),
            ("outside_block", "11.0.0.1", false),
            ("v6_loopback", "::1", true),
            ("mapped_v4", "::ffff:10.9.9.9", true),
        ];
        let list: Vec<TrustedProxy> = ["127.0.0.1", "10.0.0.0/8", "::1"]
            .iter()
            .map(|t| TrustedProxy::parse(t).unwrap())
            .collect();
        for (name, ip, want) in cases {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(list.iter().any(|p| p.contains(ip)), *want, "case {name}");
        }
        assert!(TrustedProxy::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(TrustedProxy::parse("10.0.0.0/9")
            .unwrap()
            .contains("10.127.0.1".parse().unwrap()));
        assert!(!TrustedProxy::parse("10.0.0.0/9")
            .unwrap()
            .contains("10.128.0.1".parse().unwrap()));
    }
}
