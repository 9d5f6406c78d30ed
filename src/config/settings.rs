//! Validated settings: what the rest of the gateway reads. Built from the raw file mirror
//! (`file.rs`) plus command-line overrides; every value here has been checked.

use std::collections::BTreeMap;

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
    /// Dotted paths of keys present in the file that this gateway does not use.
    pub unknown_keys: Vec<String>,
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
            unknown_keys: Vec::new(),
        }
    }
}
