//! The routing snapshot: an immutable table of services, nodes and metadata that the control
//! plane builds whole and publishes; workers read it with one acquire load per accept and swap
//! their `Arc` only when the generation changed (DESIGN §1). Open connections keep theirs.
//! Building from instances (static config now, Consul later) applies CAPI's metadata rules (§4, §12).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

/// Where a node came from (shown in `/routes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeSource {
    Static,
    Consul,
}

impl NodeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeSource::Static => "static",
            NodeSource::Consul => "consul",
        }
    }
}

/// One instance as discovered (static config entry or Consul catalog entry), before grouping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Consul `ServiceID` (static: `<name>-<index>`); orders instances deterministically.
    pub id: String,
    pub name: String,
    /// `ServiceAddress`, already falling back to the node `Address`.
    pub address: String,
    pub port: u16,
    pub meta: BTreeMap<String, String>,
    pub healthy: bool,
    pub source: NodeSource,
}

/// A node of a service: where the gateway connects.
#[derive(Debug, Clone)]
pub struct Node {
    /// `host:port` as written to the `Host` header and used as metric label.
    pub host_port: String,
    /// Resolved address; `None` when the name did not resolve (the node is then not used).
    pub addr: Option<SocketAddr>,
    pub healthy: bool,
    pub source: NodeSource,
}

impl Node {
    pub fn usable(&self) -> bool {
        self.healthy && self.addr.is_some()
    }
}

/// An allowed `Origin` entry, pre-normalised (DESIGN §12 "Origin matching").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigin {
    /// `*`: every origin except `null`.
    Any,
    /// a literal `null` entry.
    Null,
    /// lower-case scheme, lower-case host, explicit port (default port filled in).
    Exact { scheme: String, host: String, port: u16 },
}

/// One service: Consul name + `group` meta; all instances with both equal are its nodes.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub group: String,
    /// `<name>/<group>`: the metric label.
    pub label: String,
    /// The two path segments after the context path, with a leading slash: `/<name>/<group>`
    /// (or `/<group>/<name>` with group-first). Compared case-sensitively, as CAPI does.
    pub route_key: String,
    /// Full route as shown in `/routes`: `<context-path><route_key>`.
    pub route: String,
    /// Meta `type`, lower-cased (`websocket`, `rest`, ...).
    pub kind: String,
    pub secured: bool,
    /// Every distinct `subscription-group` list among the instances; a token must share an
    /// entry with each list (DESIGN §12). Empty = any valid token.
    pub subscription_groups: Vec<Vec<String>>,
    /// Forward prefix without trailing slash; "" = none.
    pub root_context: String,
    /// Forward `capi-group: /<name>/<group>`.
    pub keep_group: bool,
    /// Per-service `allowed-origins`; `None` = fall back to the gateway default.
    pub allowed_origins: Option<Vec<AllowedOrigin>>,
    /// Whether an upgrade on the WebSocket port may reach it.
    pub routable: bool,
    /// Why it is not routable (None when routable).
    pub reason: Option<String>,
    /// Metadata keys whose values differ between instances.
    pub conflicts: Vec<String>,
    pub nodes: Vec<Node>,
}

impl Service {
    /// Indices of nodes that may receive new connections.
    pub fn has_usable_node(&self) -> bool {
        self.nodes.iter().any(Node::usable)
    }
}

/// The immutable table workers route with.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub generation: u64,
    /// Route prefix without trailing slash, e.g. `/capi`.
    pub context_path: String,
    /// Gateway-wide `allowed-origins` default (empty = no check).
    pub allowed_origins: Vec<AllowedOrigin>,
    pub services: Vec<Service>,
    /// `route_key` -> index in `services`.
    pub by_route: HashMap<String, usize>,
    pub limits: Limits,
    /// Metric blocks per service (index-aligned with `services`), attached by the control plane
    /// when it publishes; empty in snapshots built outside it (unit tests).
    pub stats: Vec<crate::metrics::ServiceStatsRef>,
    /// Verification keys and token policy (DESIGN §5).
    pub auth: Arc<crate::keys::Auth>,
}

impl Snapshot {
    pub fn lookup(&self, route_key: &str) -> Option<&Service> {
        self.by_route.get(route_key).map(|&i| &self.services[i])
    }
}

/// Publication point shared by the control plane (writer) and the workers (readers).
pub struct Published {
    generation: AtomicU64,
    current: ArcSwap<Snapshot>,
}

impl Published {
    pub fn new(first: Snapshot) -> Arc<Self> {
        let gen = first.generation;
        Arc::new(Published {
            generation: AtomicU64::new(gen),
            current: ArcSwap::from_pointee(first),
        })
    }

    /// Control plane only: install a new snapshot (its generation is assigned here).
    pub fn publish(&self, mut next: Snapshot) -> u64 {
        let gen = self.generation.load(Ordering::Relaxed) + 1;
        next.generation = gen;
        self.current.store(Arc::new(next));
        self.generation.store(gen, Ordering::Release);
        gen
    }

    /// The generation most recently published (one acquire load: the per-accept check).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }
}

/// Per-connection limits and policies; part of the snapshot so a reload applies them to new
/// connections only (DESIGN §10).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub handshake_timeout: std::time::Duration,
    pub connect_timeout: std::time::Duration,
    pub upstream_timeout: std::time::Duration,
    /// None = no idle timeout.
    pub idle_timeout: Option<std::time::Duration>,
    pub load_balancing: crate::config::LoadBalancing,
    /// Per worker; 0 = no cap (issue 6).
    pub max_connections: u64,
    /// Peers whose first `X-Forwarded-For` entry the access log shows as the remote address.
    pub trusted_proxies: Vec<crate::config::ops::TrustedProxy>,
    /// One access-log line per connection (`capi.websocket.access-log`).
    pub access_log: bool,
    /// `Access-Control-Allow-Headers` of a preflight, pre-joined (CAPI: `,`); None = echo.
    pub cors_allow_headers: Option<String>,
}

impl Limits {
    pub fn from_settings(s: &crate::config::Settings) -> Self {
        use std::time::Duration;
        Limits {
            max_header_bytes: s.max_header_bytes,
            handshake_timeout: Duration::from_millis(s.handshake_timeout_ms),
            connect_timeout: Duration::from_millis(s.connect_timeout_ms),
            upstream_timeout: Duration::from_millis(s.upstream_timeout_ms),
            idle_timeout: (s.idle_timeout_ms > 0).then(|| Duration::from_millis(s.idle_timeout_ms)),
            load_balancing: s.load_balancing,
            max_connections: s.ops.max_connections,
            trusted_proxies: s.ops.trusted_proxies.clone(),
            access_log: s.ops.access_log,
            cors_allow_headers: (!s.ops.cors_allowed_headers.is_empty())
                .then(|| s.ops.cors_allowed_headers.join(",")),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_settings(&crate::config::Settings::default())
    }
}

#[cfg(test)]
impl Service {
    /// A routable, open websocket service `/<name>/<group>` without nodes, for unit tests;
    /// tests set the fields they care about with struct-update syntax.
    pub fn for_test(name: &str, group: &str) -> Service {
        Service {
            name: name.into(),
            group: group.into(),
            label: format!("{name}/{group}"),
            route_key: format!("/{name}/{group}"),
            route: format!("/capi/{name}/{group}"),
            kind: "websocket".into(),
            secured: false,
            subscription_groups: vec![],
            root_context: String::new(),
            keep_group: false,
            allowed_origins: None,
            routable: true,
            reason: None,
            conflicts: vec![],
            nodes: vec![],
        }
    }
}
