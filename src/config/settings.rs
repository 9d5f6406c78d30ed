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
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "WS_PORT" => Some("9100".to_string()),
            "NS" => Some("team-a".to_string()),
            _ => None,
        }
    }

    fn load(text: &str) -> Result<Settings, Vec<String>> {
        let raw = FileConfig::parse(text)?;
        Settings::from_file(&raw, &env)
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        for (name, text) in [
            ("empty", ""),
            ("comment", "# x\n"),
            ("empty_sections", "capi:\n  websocket: {}\ncamel:\n"),
        ] {
            let s = load(text).unwrap();
            assert_eq!(
                format!("{s:?}"),
                format!("{:?}", Settings::default()),
                "case {name}"
            );
        }
        let d = Settings::default();
        assert_eq!((d.mode, d.port, d.admin_port), (Mode::Websocket, 8382, 8381));
        assert_eq!(d.context_path, "/capi");
    }

    #[test]
    fn every_used_key_is_read() {
        type Check = fn(&Settings) -> bool;
        let cases: &[(&str, &str, Check)] = &[
            ("mode_full", "capi: {mode: full}", |s| s.mode == Mode::Full),
            ("mode_any_case", "capi: {mode: WebSocket}", |s| {
                s.mode == Mode::Websocket
            }),
            ("namespace", "capi: {namespace: team-a}", |s| {
                s.namespace.as_deref() == Some("team-a")
            }),
            ("namespace_empty", "capi: {namespace: \"\"}", |s| {
                s.namespace.is_none()
            }),
            ("strict", "capi: {strict: true}", |s| s.strict),
            ("strict_string", "capi: {strict: \"TRUE\"}", |s| s.strict),
            ("enabled_true", "capi: {websocket: {enabled: true}}", |s| {
                s.port == 8382
            }),
            ("host", "capi.websocket.server.host: 127.0.0.1", |s| {
                s.host == "127.0.0.1"
            }),
            ("port", "capi.websocket.server.port: 9000", |s| s.port == 9000),
            ("port_string", "capi.websocket.server.port: \"9001\"", |s| {
                s.port == 9001
            }),
            ("port_zero", "capi.websocket.server.port: 0", |s| s.port == 0),
            ("workers", "capi.websocket.workers: 3", |s| s.workers == 3),
            ("cpus_list", "capi.websocket.cpus: [0, 2]", |s| {
                s.pinning == Pinning::List(vec![0, 2]) && s.workers == 2
            }),
            ("cpus_string", "capi.websocket.cpus: \"0,2-3\"", |s| {
                s.pinning == Pinning::List(vec![0, 2, 3]) && s.workers == 3
            }),
            ("cpus_list_with_range", "capi.websocket.cpus: [0, \"2-3\"]", |s| {
                s.pinning == Pinning::List(vec![0, 2, 3])
            }),
            ("cpus_single_int", "capi.websocket.cpus: 1", |s| {
                s.pinning == Pinning::List(vec![1])
            }),
            ("cpus_empty", "capi.websocket.cpus: []", |s| {
                s.pinning == Pinning::None && s.workers == 0
            }),
            (
                "cpus_fewer_workers",
                "capi.websocket: {cpus: [0, 1, 2], workers: 2}",
                |s| s.workers == 2,
            ),
            ("max_header_bytes", "capi.websocket.max-header-bytes: 1024", |s| {
                s.max_header_bytes == 1024
            }),
            (
                "max_header_bytes_top",
                "capi.websocket.max-header-bytes: 1048576",
                |s| s.max_header_bytes == 1 << 20,
            ),
            ("handshake", "capi.websocket.handshake-timeout-ms: 1", |s| {
                s.handshake_timeout_ms == 1
            }),
            ("connect", "capi.websocket.connect-timeout-ms: 250", |s| {
                s.connect_timeout_ms == 250
            }),
            ("upstream", "capi.websocket.upstream-timeout-ms: 7000", |s| {
                s.upstream_timeout_ms == 7000
            }),
            ("idle_off", "capi.websocket.idle-timeout-ms: 0", |s| {
                s.idle_timeout_ms == 0
            }),
            ("idle", "capi.websocket.idle-timeout-ms: 60000", |s| {
                s.idle_timeout_ms == 60000
            }),
            ("drain_zero", "capi.websocket.drain-timeout-ms: 0", |s| {
                s.drain_timeout_ms == 0
            }),
            ("lb", "capi.websocket.load-balancing: least-connections", |s| {
                s.load_balancing == LoadBalancing::LeastConnections
            }),
            (
                "origins_list",
                "capi.websocket.allowed-origins: [\"https://a\", \"*\"]",
                |s| s.allowed_origins == ["https://a", "*"],
            ),
            (
                "origins_comma",
                "capi.websocket.allowed-origins: \"https://a, https://b\"",
                |s| s.allowed_origins == ["https://a", "https://b"],
            ),
            (
                "context_default_form",
                "camel.servlet.mapping.context-path: /capi/*",
                |s| s.context_path == "/capi",
            ),
            (
                "context_other",
                "camel.servlet.mapping.context-path: /gw/ws/",
                |s| s.context_path == "/gw/ws",
            ),
            ("context_none", "camel.servlet.mapping.context-path: /*", |s| {
                s.context_path.is_empty()
            }),
            ("context_root", "camel.servlet.mapping.context-path: /", |s| {
                s.context_path.is_empty()
            }),
            ("admin_port", "management.server.port: \"0\"", |s| {
                s.admin_port == 0
            }),
            (
                "placeholder_set",
                "capi.websocket.server.port: ${WS_PORT:1}",
                |s| s.port == 9100,
            ),
            (
                "placeholder_default",
                "capi.websocket.server.port: ${NOPE:8500}",
                |s| s.port == 8500,
            ),
            ("placeholder_text", "capi.namespace: ${NS}", |s| {
                s.namespace.as_deref() == Some("team-a")
            }),
            (
                "unknown_listed",
                "capi: {consul: {kv: {enabled: false}}, oauth2: {realm: c}}\nserver.port: 1",
                |s| s.unknown_keys == ["capi.consul.kv.enabled", "capi.oauth2.realm", "server.port"],
            ),
        ];
        for (name, text, check) in cases {
            match load(text) {
                Ok(s) => assert!(check(&s), "case {name}: {s:?}"),
                Err(e) => panic!("case {name}: {e:?}"),
            }
        }
    }

    #[test]
    fn services_are_read_with_meta_as_strings() {
        let text = "
capi:
  websocket:
    services:
      - name: echo
        address: 127.0.0.1
        port: \"9001\"
        meta: {group: dev, type: websocket, secured: true, weight: 3, note: }
        tags: [x]
      - name: echo
        address: ${NOPE:127.0.0.2}
        port: 9002
";
        let s = load(text).unwrap();
        assert_eq!(s.services.len(), 2);
        let first = &s.services[0];
        assert_eq!(
            (first.name.as_str(), first.address.as_str(), first.port),
            ("echo", "127.0.0.1", 9001)
        );
        let meta: Vec<(&str, &str)> = first.meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            meta,
            [
                ("group", "dev"),
                ("note", ""),
                ("secured", "true"),
                ("type", "websocket"),
                ("weight", "3")
            ]
        );
        assert_eq!(s.services[1].address, "127.0.0.2");
        assert!(s.services[1].meta.is_empty());
        assert_eq!(s.unknown_keys, ["capi.websocket.services[0].tags"]);
    }

    #[test]
    fn every_error_names_its_key() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "mode_rest",
                "capi.mode: rest",
                "capi.mode: \"rest\" is not supported: capi-ws runs only in websocket or full mode",
            ),
            ("mode_list", "capi.mode: [a]", "capi.mode: expected a text value"),
            (
                "disabled",
                "capi.websocket.enabled: false",
                "capi.websocket.enabled: false: the WebSocket gateway is disabled",
            ),
            (
                "disabled_string",
                "capi.websocket.enabled: \"FALSE\"",
                "capi.websocket.enabled: false",
            ),
            (
                "enabled_yes",
                "capi.websocket.enabled: yes",
                "capi.websocket.enabled: expected true or false, got \"yes\"",
            ),
            (
                "strict_number",
                "capi.strict: 1",
                "capi.strict: expected true or false, got 1",
            ),
            (
                "host_empty",
                "capi.websocket.server.host: \"\"",
                "capi.websocket.server.host: expected a host",
            ),
            (
                "port_word",
                "capi.websocket.server.port: abc",
                "capi.websocket.server.port: expected an integer 0..=65535, got \"abc\"",
            ),
            (
                "port_big",
                "capi.websocket.server.port: 70000",
                "capi.websocket.server.port: expected an integer 0..=65535, got 70000",
            ),
            (
                "port_negative",
                "capi.websocket.server.port: -1",
                "capi.websocket.server.port: expected an integer 0..=65535, got -1",
            ),
            (
                "workers_big",
                "capi.websocket.workers: 5000",
                "capi.websocket.workers: expected an integer 0..=1024",
            ),
            (
                "cpus_reversed",
                "capi.websocket.cpus: \"3-1\"",
                "capi.websocket.cpus: range \"3-1\" is reversed",
            ),
            (
                "cpus_word",
                "capi.websocket.cpus: [a]",
                "capi.websocket.cpus: expected a CPU list",
            ),
            (
                "cpus_map",
                "capi.websocket.cpus: {a: 1}",
                "capi.websocket.cpus: expected a list",
            ),
            (
                "cpus_too_few",
                "capi.websocket: {cpus: [0], workers: 2}",
                "capi.websocket.cpus: lists 1 CPU(s) but capi.websocket.workers asks for 2",
            ),
            (
                "header_small",
                "capi.websocket.max-header-bytes: 1023",
                "capi.websocket.max-header-bytes: expected a number of bytes 1024..=1048576, got 1023",
            ),
            (
                "header_big",
                "capi.websocket.max-header-bytes: 1048577",
                "capi.websocket.max-header-bytes: expected",
            ),
            (
                "handshake_zero",
                "capi.websocket.handshake-timeout-ms: 0",
                "capi.websocket.handshake-timeout-ms: expected a number of milliseconds 1..=",
            ),
            (
                "connect_zero",
                "capi.websocket.connect-timeout-ms: 0",
                "capi.websocket.connect-timeout-ms: expected",
            ),
            (
                "upstream_zero",
                "capi.websocket.upstream-timeout-ms: 0",
                "capi.websocket.upstream-timeout-ms: expected",
            ),
            (
                "idle_huge",
                "capi.websocket.idle-timeout-ms: 18446744073709551615",
                "capi.websocket.idle-timeout-ms: expected a number of milliseconds 0..=",
            ),
            (
                "drain_float",
                "capi.websocket.drain-timeout-ms: 1.5",
                "capi.websocket.drain-timeout-ms: expected",
            ),
            (
                "lb_random",
                "capi.websocket.load-balancing: random",
                "capi.websocket.load-balancing: expected round-robin or least-connections, got \"random\"",
            ),
            (
                "origins_map",
                "capi.websocket.allowed-origins: {a: b}",
                "capi.websocket.allowed-origins: expected a list",
            ),
            (
                "services_map",
                "capi.websocket.services: {name: a}",
                "capi.websocket.services: expected a list",
            ),
            (
                "service_scalar",
                "capi.websocket.services: [echo]",
                "capi.websocket.services[0]: expected a map",
            ),
            (
                "service_no_name",
                "capi.websocket.services: [{address: a, port: 1}]",
                "capi.websocket.services[0].name: missing",
            ),
            (
                "service_empty_address",
                "capi.websocket.services: [{name: a, address: \"\", port: 1}]",
                "capi.websocket.services[0].address: must not be empty",
            ),
            (
                "service_port_zero",
                "capi.websocket.services: [{name: a, address: b, port: 0}]",
                "capi.websocket.services[0].port: expected a port 1..=65535, got 0",
            ),
            (
                "service_slash",
                "capi.websocket.services: [{name: a/b, address: b, port: 1}]",
                "capi.websocket.services[0].name: must not contain",
            ),
            (
                "service_meta_list",
                "capi.websocket.services: [{name: a, address: b, port: 1, meta: {group: [x]}}]",
                "capi.websocket.services[0].meta.group: expected a text value",
            ),
            (
                "service_meta_scalar",
                "capi.websocket.services: [{name: a, address: b, port: 1, meta: x}]",
                "capi.websocket.services[0].meta: expected a map",
            ),
            (
                "context_relative",
                "camel.servlet.mapping.context-path: capi/*",
                "camel.servlet.mapping.context-path: expected a path starting with \"/\"",
            ),
            (
                "context_wildcard",
                "camel.servlet.mapping.context-path: /a/*/b",
                "camel.servlet.mapping.context-path: expected a plain path",
            ),
            (
                "admin_word",
                "management.server.port: x",
                "management.server.port: expected an integer 0..=65535, got \"x\"",
            ),
            (
                "placeholder_unset",
                "capi.websocket.server.port: ${NOPE}",
                "capi.websocket.server.port: placeholder ${NOPE}: environment variable NOPE is not set",
            ),
            (
                "placeholder_bad_default",
                "capi.websocket.server.port: ${NOPE:x}",
                "capi.websocket.server.port: expected an integer 0..=65535, got \"x\"",
            ),
            (
                "scalar_for_section",
                "capi:\n  websocket: on",
                "capi.websocket: expected a map",
            ),
        ];
        for (name, text, want) in cases {
            match load(text) {
                Ok(s) => panic!("case {name}: accepted: {s:?}"),
                Err(problems) => {
                    assert_eq!(problems.len(), 1, "case {name}: {problems:?}");
                    assert!(
                        problems[0].starts_with(want),
                        "case {name}: {:?} does not start with {want:?}",
                        problems[0]
                    );
                }
            }
        }
    }

    #[test]
    fn all_problems_of_a_file_are_reported_at_once() {
        let text = "
capi:
  mode: rest
  websocket:
    enabled: false
    server:
      port: abc
    services:
      - name: a
        address: b
        port: 1
      - name: c
        address: d
        port: 99999
        meta: {group: [x]}
management.server.port: -5
";
        let problems = load(text).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "capi.mode",
                "capi.websocket.enabled",
                "capi.websocket.server.port",
                "capi.websocket.services[1].port",
                "capi.websocket.services[1].meta.group",
                "management.server.port",
            ],
            "{problems:?}"
        );
    }

    #[test]
    fn context_path_normalisation() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("capi_star", "/capi/*", Some("/capi")),
            ("capi", "/capi", Some("/capi")),
            ("trailing_slashes", "/capi//", Some("/capi")),
            ("star_only", "/*", Some("")),
            ("slash_only", "/", Some("")),
            ("nested", "/a/b/*", Some("/a/b")),
            ("spaces_trimmed", " /capi/* ", Some("/capi")),
            ("relative", "capi", None),
            ("empty", "", None),
            ("inner_star", "/a*b", None),
            ("query", "/a?b", None),
        ];
        for (name, input, want) in cases {
            assert_eq!(
                normalize_context_path(input).ok().as_deref(),
                *want,
                "case {name}"
            );
        }
    }

    #[test]
    fn display_is_stable_and_lists_unknown_keys() {
        let s = load("capi: {websocket: {services: [{name: echo, address: h, port: 1, meta: {group: dev}}]}}\nspring.x: 1\n").unwrap();
        let text = s.to_string();
        for line in [
            "capi.mode: websocket\n",
            "capi.websocket.server.port: 8382\n",
            "capi.websocket.services: 1 static\n  - echo h:1 {group: dev}\n",
            "camel.servlet.mapping.context-path: /capi\n",
            "unknown keys (ignored): 1\n  spring.x\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert_eq!(text, load("capi: {websocket: {services: [{name: echo, address: h, port: 1, meta: {group: dev}}]}}\nspring.x: 1\n").unwrap().to_string());
    }
}
