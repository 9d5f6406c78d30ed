//! Validated settings: what the rest of the gateway reads. Built from the raw file mirror
//! (`file.rs`) plus command-line overrides; every value here has been checked.

use std::collections::BTreeMap;
use std::fmt;

use serde_yaml::Value;

use super::file::{
    describe, entry_fields, keys, quote, read_bool, read_string_map, read_text, read_text_list, read_uint,
    Env, FileConfig,
};

pub const DEFAULT_WS_PORT: u16 = 8382;
pub const DEFAULT_ADMIN_PORT: u16 = 8381;
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 3_000;
pub const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_DRAIN_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_CONTEXT_PATH: &str = "/capi";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Websocket,
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DriverChoice {
    #[default]
    Auto,
    IoUring,
    Epoll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadBalancing {
    #[default]
    RoundRobin,
    LeastConnections,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A service declared in `capi.websocket.services` (same shape as a Consul entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticService {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub meta: BTreeMap<String, String>,
}

/// How worker threads are placed on CPUs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Pinning {
    #[default]
    None,
    /// worker i -> core i
    Sequential,
    /// worker i -> cpus[i]
    List(Vec<usize>),
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    pub namespace: Option<String>,
    pub strict: bool,
    pub host: String,
    pub port: u16,
    /// 0 = one per available core (resolved by the worker module).
    pub workers: usize,
    pub pinning: Pinning,
    pub driver: DriverChoice,
    pub max_header_bytes: usize,
    pub handshake_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub upstream_timeout_ms: u64,
    /// 0 = no idle timeout.
    pub idle_timeout_ms: u64,
    pub drain_timeout_ms: u64,
    pub load_balancing: LoadBalancing,
    /// Gateway-wide default, raw entries as written (normalised when the snapshot is built).
    pub allowed_origins: Vec<String>,
    pub services: Vec<StaticService>,
    /// Route prefix from `camel.servlet.mapping.context-path`, without `/*` and trailing slash.
    pub context_path: String,
    pub admin_port: u16,
    pub log_level: String,
    pub log_format: LogFormat,
    /// `capi.oauth2.*` (JWT authorization, DESIGN §5).
    pub oauth2: super::OAuth2Settings,
    /// Dotted paths of keys present in the file that this gateway does not use.
    pub unknown_keys: Vec<String>,
    /// Operations keys (issue 6): admin address, max-connections, trusted proxies, CORS headers.
    pub ops: super::ops::OpsSettings,
    /// `capi.consul.*` (Consul discovery, DESIGN §7).
    pub consul: super::consul::ConsulSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: Mode::Websocket,
            namespace: None,
            strict: false,
            host: "0.0.0.0".to_string(),
            port: DEFAULT_WS_PORT,
            workers: 0,
            pinning: Pinning::None,
            driver: DriverChoice::Auto,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            handshake_timeout_ms: DEFAULT_HANDSHAKE_TIMEOUT_MS,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            upstream_timeout_ms: DEFAULT_UPSTREAM_TIMEOUT_MS,
            idle_timeout_ms: 0,
            drain_timeout_ms: DEFAULT_DRAIN_TIMEOUT_MS,
            load_balancing: LoadBalancing::RoundRobin,
            allowed_origins: Vec::new(),
            services: Vec::new(),
            context_path: DEFAULT_CONTEXT_PATH.to_string(),
            admin_port: DEFAULT_ADMIN_PORT,
            log_level: "info".to_string(),
            log_format: LogFormat::Text,
            oauth2: super::OAuth2Settings::default(),
            unknown_keys: Vec::new(),
            ops: super::ops::OpsSettings::default(),
            consul: super::consul::ConsulSettings::default(),
        }
    }
}

/// `capi.websocket.max-header-bytes` bounds: below 1 KiB a browser's upgrade request (cookies,
/// `Sec-WebSocket-*`) does not fit; above 1 MiB one slow client could pin a large buffer per
/// connection (nginx `large_client_header_buffers` tops out in the same range).
pub const MIN_MAX_HEADER_BYTES: usize = 1024;
pub const MAX_MAX_HEADER_BYTES: usize = 1024 * 1024;
/// Upper bound for every `*-timeout-ms` key: 7 days. Far beyond any sensible timeout, and small
/// enough that `Instant + Duration` can never overflow.
pub const MAX_TIMEOUT_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// Upper bound for `--workers` / `capi.websocket.workers`: one thread each; more than this is a
/// typo, not a machine.
pub const MAX_WORKERS: usize = 1024;
/// CPU indexes must be below this: the largest `CONFIG_NR_CPUS` Linux accepts on x86_64/arm64.
pub const MAX_CPUS: usize = 8192;

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Websocket => "websocket",
            Mode::Full => "full",
        }
    }
}

impl DriverChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            DriverChoice::Auto => "auto",
            DriverChoice::IoUring => "iouring",
            DriverChoice::Epoll => "epoll",
        }
    }

    /// `auto` | `iouring` (also `io_uring`, `io-uring`) | `epoll`, any case.
    pub fn parse(s: &str) -> Option<DriverChoice> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(DriverChoice::Auto),
            "iouring" | "io_uring" | "io-uring" => Some(DriverChoice::IoUring),
            "epoll" => Some(DriverChoice::Epoll),
            _ => None,
        }
    }
}

impl LoadBalancing {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadBalancing::RoundRobin => "round-robin",
            LoadBalancing::LeastConnections => "least-connections",
        }
    }
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }

    /// `text` | `json`, any case.
    pub fn parse(s: &str) -> Option<LogFormat> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// `camel.servlet.mapping.context-path` -> route prefix: `/capi/*` -> `/capi`, `/capi/` ->
/// `/capi`, `/*` or `/` -> `""` (no prefix). Must start with `/`; no `*` left after that,
/// no whitespace, `?` or `#`.
pub fn normalize_context_path(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    if !t.starts_with('/') {
        return Err(format!(
            "expected a path starting with \"/\" (\"/*\" for no prefix), got {}",
            quote(raw)
        ));
    }
    let path = t.strip_suffix("/*").unwrap_or(t).trim_end_matches('/');
    if path.contains(['*', '?', '#']) || path.contains(char::is_whitespace) {
        return Err(format!(
            "expected a plain path such as \"/capi/*\" (no wildcard inside, no spaces, '?' or '#'), got {}",
            quote(raw)
        ));
    }
    Ok(path.to_string())
}

impl Settings {
    /// Validate the raw file: every problem is collected (each naming its dotted key) so that one
    /// `capi-ws check` run shows them all. Missing keys keep their [`Default`].
    pub fn from_file(file: &FileConfig, env: Env<'_>) -> Result<Settings, Vec<String>> {
        let mut v = Validator {
            file,
            env,
            problems: Vec::new(),
        };
        let mut s = Settings::default();
        let mut unknown = file.unknown_keys.clone();

        if let Some(mode) = v.text(keys::MODE) {
            match mode.trim().to_ascii_lowercase().as_str() {
                "websocket" => s.mode = Mode::Websocket,
                "full" => s.mode = Mode::Full,
                _ => v.problem(
                    keys::MODE,
                    format!(
                        "{} is not supported: capi-ws runs only in websocket or full mode",
                        quote(&mode)
                    ),
                ),
            }
        }
        if let Some(ns) = v.text(keys::NAMESPACE) {
            let ns = ns.trim();
            s.namespace = (!ns.is_empty()).then(|| ns.to_string());
        }
        if let Some(strict) = v.boolean(keys::STRICT) {
            s.strict = strict;
        }
        if v.boolean(keys::WS_ENABLED) == Some(false) {
            v.problem(
                keys::WS_ENABLED,
                "false: the WebSocket gateway is disabled, so capi-ws refuses to start \
                 (set it to true or remove the key)"
                    .to_string(),
            );
        }
        if let Some(host) = v.text(keys::HOST) {
            let h = host.trim();
            if h.is_empty() || h.contains(char::is_whitespace) {
                v.problem(
                    keys::HOST,
                    format!("expected a host name or IP address, got {}", quote(&host)),
                );
            } else {
                s.host = h.to_string();
            }
        }
        if let Some(port) = v.uint(keys::PORT, 0, u16::MAX as u64, "an integer 0..=65535") {
            s.port = port as u16;
        }
        if let Some(w) = v.uint(keys::WORKERS, 0, MAX_WORKERS as u64, "an integer 0..=1024") {
            s.workers = w as usize;
        }
        if let Some(cpus) = v.cpus(keys::CPUS) {
            if !cpus.is_empty() {
                s.pinning = Pinning::List(cpus);
            }
        }
        let header_what = "a number of bytes 1024..=1048576";
        if let Some(n) = v.uint(
            keys::MAX_HEADER_BYTES,
            MIN_MAX_HEADER_BYTES as u64,
            MAX_MAX_HEADER_BYTES as u64,
            header_what,
        ) {
            s.max_header_bytes = n as usize;
        }
        let positive_ms = "a number of milliseconds 1..=604800000";
        let any_ms = "a number of milliseconds 0..=604800000";
        if let Some(n) = v.uint(keys::HANDSHAKE_TIMEOUT_MS, 1, MAX_TIMEOUT_MS, positive_ms) {
            s.handshake_timeout_ms = n;
        }
        if let Some(n) = v.uint(keys::CONNECT_TIMEOUT_MS, 1, MAX_TIMEOUT_MS, positive_ms) {
            s.connect_timeout_ms = n;
        }
        if let Some(n) = v.uint(keys::UPSTREAM_TIMEOUT_MS, 1, MAX_TIMEOUT_MS, positive_ms) {
            s.upstream_timeout_ms = n;
        }
        if let Some(n) = v.uint(keys::IDLE_TIMEOUT_MS, 0, MAX_TIMEOUT_MS, any_ms) {
            s.idle_timeout_ms = n;
        }
        if let Some(n) = v.uint(keys::DRAIN_TIMEOUT_MS, 0, MAX_TIMEOUT_MS, any_ms) {
            s.drain_timeout_ms = n;
        }
        if let Some(lb) = v.text(keys::LOAD_BALANCING) {
            match lb.trim().to_ascii_lowercase().as_str() {
                "round-robin" => s.load_balancing = LoadBalancing::RoundRobin,
                "least-connections" => s.load_balancing = LoadBalancing::LeastConnections,
                _ => v.problem(
                    keys::LOAD_BALANCING,
                    format!("expected round-robin or least-connections, got {}", quote(&lb)),
                ),
            }
        }
        if let Some(raw) = file.get(keys::ALLOWED_ORIGINS) {
            match read_text_list(raw, env) {
                Ok(list) => s.allowed_origins = list,
                Err(e) => v.problem(keys::ALLOWED_ORIGINS, e),
            }
        }
        if let Some(raw) = file.get(keys::SERVICES) {
            s.services = read_services(raw, env, &mut unknown, &mut v.problems);
        }
        if let Some(cp) = v.text(keys::CONTEXT_PATH) {
            match normalize_context_path(&cp) {
                Ok(p) => s.context_path = p,
                Err(e) => v.problem(keys::CONTEXT_PATH, e),
            }
        }
        if let Some(port) = v.uint(keys::ADMIN_PORT, 0, u16::MAX as u64, "an integer 0..=65535") {
            s.admin_port = port as u16;
        }
        if let Err(e) = s.settle_workers(keys::CPUS, keys::WORKERS) {
            v.problems.push(e);
        }
        s.ops = super::ops::OpsSettings::from_file(file, env, &mut v.problems);
        s.oauth2 = super::OAuth2Settings::from_file(file, env, &mut unknown, &mut v.problems);
        s.consul = super::consul::ConsulSettings::from_file(file, env, &mut unknown, &mut v.problems);

        unknown.sort();
        s.unknown_keys = unknown;
        if v.problems.is_empty() {
            Ok(s)
        } else {
            Err(v.problems)
        }
    }

    /// With a CPU list, one worker per listed CPU unless a smaller count was asked for:
    /// workers 0 -> list length; more workers than CPUs -> error naming `cpus_origin`.
    pub fn settle_workers(&mut self, cpus_origin: &str, workers_origin: &str) -> Result<(), String> {
        if let Pinning::List(cpus) = &self.pinning {
            if self.workers == 0 {
                self.workers = cpus.len();
            } else if self.workers > cpus.len() {
                return Err(format!(
                    "{cpus_origin}: lists {} CPU(s) but {workers_origin} asks for {} workers; \
                     list one CPU per worker",
                    cpus.len(),
                    self.workers
                ));
            }
        }
        Ok(())
    }
}

/// Reads the used keys of one [`FileConfig`], recording each problem under its dotted key.
struct Validator<'a> {
    file: &'a FileConfig,
    env: Env<'a>,
    problems: Vec<String>,
}

impl Validator<'_> {
    fn problem(&mut self, key: &str, msg: String) {
        self.problems.push(format!("{key}: {msg}"));
    }

    fn text(&mut self, key: &str) -> Option<String> {
        match read_text(self.file.get(key)?, self.env) {
            Ok(t) => t,
            Err(e) => {
                self.problem(key, e);
                None
            }
        }
    }

    fn boolean(&mut self, key: &str) -> Option<bool> {
        match read_bool(self.file.get(key)?, self.env) {
            Ok(b) => b,
            Err(e) => {
                self.problem(key, e);
                None
            }
        }
    }

    /// An integer in `lo..=hi`; `what` describes the range in the message.
    fn uint(&mut self, key: &str, lo: u64, hi: u64, what: &str) -> Option<u64> {
        match read_uint(self.file.get(key)?, self.env, what) {
            Ok(Some(n)) if (lo..=hi).contains(&n) => Some(n),
            Ok(Some(n)) => {
                self.problem(key, format!("expected {what}, got {n}"));
                None
            }
            Ok(None) => None,
            Err(e) => {
                self.problem(key, e);
                None
            }
        }
    }

    /// A list of CPU indexes or ranges (`[0, 2, "4-5"]`) or one `"0,2-3"` string.
    fn cpus(&mut self, key: &str) -> Option<Vec<usize>> {
        let raw = self.file.get(key)?;
        let joined = match read_text_list(raw, self.env) {
            Ok(items) => items.join(","),
            Err(e) => {
                self.problem(key, e);
                return None;
            }
        };
        if joined.is_empty() {
            return Some(Vec::new());
        }
        match super::parse_cpu_list(&joined) {
            Ok(list) => Some(list),
            Err(e) => {
                self.problem(key, e);
                None
            }
        }
    }
}

const SERVICE_FIELDS: [&str; 4] = ["name", "address", "port", "meta"];

/// `capi.websocket.services`: a list of `{name, address, port, meta}` (a Consul catalog entry).
fn read_services(
    raw: &Value,
    env: Env<'_>,
    unknown: &mut Vec<String>,
    problems: &mut Vec<String>,
) -> Vec<StaticService> {
    let Value::Sequence(items) = raw else {
        problems.push(format!(
            "{}: expected a list of {{name, address, port, meta}}, got {}",
            keys::SERVICES,
            describe(raw)
        ));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}[{i}]", keys::SERVICES);
        let Value::Mapping(map) = item else {
            problems.push(format!(
                "{path}: expected a map {{name, address, port, meta}}, got {}",
                describe(item)
            ));
            continue;
        };
        let before = problems.len();
        let fields = entry_fields(map, &path, &SERVICE_FIELDS, unknown, problems);
        let required_text = |field: &str, problems: &mut Vec<String>| -> Option<String> {
            let Some(v) = fields.get(field) else {
                problems.push(format!("{path}.{field}: missing (required)"));
                return None;
            };
            match read_text(v, env) {
                Ok(Some(t)) if !t.trim().is_empty() => Some(t.trim().to_string()),
                Ok(_) => {
                    problems.push(format!("{path}.{field}: must not be empty"));
                    None
                }
                Err(e) => {
                    problems.push(format!("{path}.{field}: {e}"));
                    None
                }
            }
        };
        let name = required_text("name", problems);
        if let Some(n) = &name {
            if n.contains('/') || n.contains(char::is_whitespace) {
                problems.push(format!(
                    "{path}.name: must not contain '/' or spaces (it is a route segment), got {}",
                    quote(n)
                ));
            }
        }
        let address = required_text("address", problems);
        let port_what = "a port 1..=65535";
        let port = match fields.get("port") {
            None => {
                problems.push(format!("{path}.port: missing (required)"));
                None
            }
            Some(v) => match read_uint(v, env, port_what) {
                Ok(Some(p)) if (1..=u16::MAX as u64).contains(&p) => Some(p as u16),
                Ok(Some(p)) => {
                    problems.push(format!("{path}.port: expected {port_what}, got {p}"));
                    None
                }
                Ok(None) => {
                    problems.push(format!("{path}.port: must not be empty"));
                    None
                }
                Err(e) => {
                    problems.push(format!("{path}.port: {e}"));
                    None
                }
            },
        };
        let meta = match fields.get("meta") {
            Some(v) => read_string_map(v, &format!("{path}.meta"), env, problems),
            None => BTreeMap::new(),
        };
        if let (Some(name), Some(address), Some(port), true) = (name, address, port, problems.len() == before)
        {
            out.push(StaticService {
                name,
                address,
                port,
                meta,
            });
        }
    }
    out
}

/// Readable and stable: one `key: value` line per setting, in DESIGN §4 order, then the
/// flag-only settings and the ignored keys. Used by `capi-ws check`.
impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {}", keys::MODE, self.mode.as_str())?;
        writeln!(
            f,
            "{}: {}",
            keys::NAMESPACE,
            self.namespace.as_deref().unwrap_or("(none)")
        )?;
        writeln!(f, "{}: {}", keys::STRICT, self.strict)?;
        writeln!(f, "{}: true", keys::WS_ENABLED)?;
        writeln!(f, "{}: {}", keys::HOST, self.host)?;
        writeln!(f, "{}: {}", keys::PORT, port_text(self.port))?;
        if self.workers == 0 {
            writeln!(f, "{}: 0 (one per available core)", keys::WORKERS)?;
        } else {
            writeln!(f, "{}: {}", keys::WORKERS, self.workers)?;
        }
        match &self.pinning {
            Pinning::None => writeln!(f, "{}: [] (not pinned)", keys::CPUS)?,
            Pinning::Sequential => writeln!(f, "{}: (--pin: worker i on core i)", keys::CPUS)?,
            Pinning::List(cpus) => writeln!(f, "{}: {}", keys::CPUS, list_text(cpus))?,
        }
        writeln!(f, "{}: {}", keys::MAX_HEADER_BYTES, self.max_header_bytes)?;
        writeln!(f, "{}: {}", keys::HANDSHAKE_TIMEOUT_MS, self.handshake_timeout_ms)?;
        writeln!(f, "{}: {}", keys::CONNECT_TIMEOUT_MS, self.connect_timeout_ms)?;
        writeln!(f, "{}: {}", keys::UPSTREAM_TIMEOUT_MS, self.upstream_timeout_ms)?;
        if self.idle_timeout_ms == 0 {
            writeln!(f, "{}: 0 (off)", keys::IDLE_TIMEOUT_MS)?;
        } else {
            writeln!(f, "{}: {}", keys::IDLE_TIMEOUT_MS, self.idle_timeout_ms)?;
        }
        writeln!(f, "{}: {}", keys::DRAIN_TIMEOUT_MS, self.drain_timeout_ms)?;
        writeln!(f, "{}: {}", keys::LOAD_BALANCING, self.load_balancing.as_str())?;
        writeln!(
            f,
            "{}: {}",
            keys::ALLOWED_ORIGINS,
            list_text(&self.allowed_origins)
        )?;
        writeln!(f, "{}: {} static", keys::SERVICES, self.services.len())?;
        for svc in &self.services {
            let meta: Vec<String> = svc.meta.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            writeln!(
                f,
                "  - {} {}:{} {{{}}}",
                svc.name,
                svc.address,
                svc.port,
                meta.join(", ")
            )?;
        }
        if self.context_path.is_empty() {
            writeln!(f, "{}: \"\" (no prefix)", keys::CONTEXT_PATH)?;
        } else {
            writeln!(f, "{}: {}", keys::CONTEXT_PATH, self.context_path)?;
        }
        writeln!(f, "{}: {}", keys::ADMIN_PORT, port_text(self.admin_port))?;
        self.ops.write_lines(f)?;
        write!(f, "{}", self.oauth2)?;
        self.consul.write_lines(f)?;
        writeln!(f, "--driver: {}", self.driver.as_str())?;
        writeln!(f, "--log-level: {}", self.log_level)?;
        writeln!(f, "--log-format: {}", self.log_format.as_str())?;
        writeln!(f, "unknown keys (ignored): {}", self.unknown_keys.len())?;
        for key in &self.unknown_keys {
            writeln!(f, "  {key}")?;
        }
        Ok(())
    }
}

fn port_text(port: u16) -> String {
    if port == 0 {
        "0 (pick a free port)".to_string()
    } else {
        port.to_string()
    }
}

fn list_text<T: fmt::Display>(items: &[T]) -> String {
    let parts: Vec<String> = items.iter().map(|i| i.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
#[path = "settings_tests.rs"]
mod tests;
