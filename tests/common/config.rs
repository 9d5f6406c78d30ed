//! Gateway config files for the black-box tests (DESIGN §4): a small builder that writes the
//! YAML a test needs — short timeouts, a static service catalog pointing at local nodes.
//! Values are quoted as JSON strings (valid YAML), so any meta value is passed verbatim.

use std::fmt::Write as _;
use std::net::SocketAddr;

/// One static catalog entry (`capi.websocket.services[]`).
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub address: String,
    pub port: u16,
    /// Meta in insertion order; `group` and `type` are added by the constructors.
    pub meta: Vec<(String, String)>,
}

/// A websocket service `name`/`group` with one node at `addr`.
pub fn service(name: &str, group: &str, addr: SocketAddr) -> Service {
    service_at(name, group, &addr.ip().to_string(), addr.port())
}

/// Same, with a host name that need not resolve (e.g. `unresolvable.invalid`).
pub fn service_at(name: &str, group: &str, host: &str, port: u16) -> Service {
    Service {
        name: name.to_owned(),
        address: host.to_owned(),
        port,
        meta: vec![
            ("group".to_owned(), group.to_owned()),
            ("type".to_owned(), "websocket".to_owned()),
        ],
    }
}

impl Service {
    /// Adds or replaces one meta key.
    pub fn meta(mut self, key: &str, value: &str) -> Self {
        self.meta.retain(|(k, _)| k != key);
        self.meta.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// The gateway settings the tests vary; `Config::default()` is fast-failing and local.
#[derive(Debug, Clone)]
pub struct Config {
    pub max_header_bytes: usize,
    pub handshake_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub upstream_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub load_balancing: String,
    pub allowed_origins: Vec<String>,
    pub services: Vec<Service>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_header_bytes: 4096,
            handshake_timeout_ms: 1000,
            connect_timeout_ms: 500,
            upstream_timeout_ms: 1000,
            idle_timeout_ms: 0,
            load_balancing: "round-robin".to_owned(),
            allowed_origins: Vec::new(),
            services: Vec::new(),
        }
    }
}

fn q(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

impl Config {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, service: Service) -> Self {
        self.services.push(service);
        self
    }

    pub fn yaml(&self) -> String {
        let mut y = String::new();
        y.push_str("capi:\n  mode: websocket\n  websocket:\n");
        y.push_str("    server: { host: 127.0.0.1, port: 0 }\n");
        let _ = writeln!(y, "    max-header-bytes: {}", self.max_header_bytes);
        let _ = writeln!(y, "    handshake-timeout-ms: {}", self.handshake_timeout_ms);
        let _ = writeln!(y, "    connect-timeout-ms: {}", self.connect_timeout_ms);
        let _ = writeln!(y, "    upstream-timeout-ms: {}", self.upstream_timeout_ms);
        let _ = writeln!(y, "    idle-timeout-ms: {}", self.idle_timeout_ms);
        let _ = writeln!(y, "    load-balancing: {}", self.load_balancing);
        let origins: Vec<String> = self.allowed_origins.iter().map(|o| q(o)).collect();
        let _ = writeln!(y, "    allowed-origins: [{}]", origins.join(", "));
        if self.services.is_empty() {
            y.push_str("    services: []\n");
        } else {
            y.push_str("    services:\n");
        }
        for s in &self.services {
            let meta: Vec<String> = s
                .meta
                .iter()
                .map(|(k, v)| format!("{}: {}", q(k), q(v)))
                .collect();
            let _ = writeln!(
                y,
                "      - {{ name: {}, address: {}, port: {}, meta: {{ {} }} }}",
                q(&s.name),
                q(&s.address),
                s.port,
                meta.join(", ")
            );
        }
        y.push_str("camel: { servlet: { mapping: { context-path: /capi/* } } }\n");
        y
    }
}
