//! Metrics: names as consts, per-worker counter blocks that only their own worker writes
//! (a relaxed load + store, never a cross-core read-modify-write), summed by the admin thread
//! at scrape (DESIGN §8). Control-plane counters are ordinary atomics: they are not hot.
//! Per-service and per-node blocks live in `Arc`s the control plane reuses across snapshots;
//! the Prometheus text is written by hand in `control/exposition.rs` (sum-at-scrape fits no crate).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Metric names (DESIGN §8), one place.
pub mod names {
    pub const CONNECTIONS_ACTIVE: &str = "capi_ws_connections_active";
    pub const CONNECTIONS_TOTAL: &str = "capi_ws_connections_total";
    pub const HANDSHAKE_DURATION: &str = "capi_ws_handshake_duration_seconds";
    pub const AUTH_FAILURES_TOTAL: &str = "capi_ws_auth_failures_total";
    pub const UPSTREAM_CONNECT_FAILURES_TOTAL: &str = "capi_ws_upstream_connect_failures_total";
    pub const BYTES_TOTAL: &str = "capi_ws_bytes_total";
    pub const CONSUL_SYNC_TOTAL: &str = "capi_ws_consul_sync_total";
    pub const CONSUL_LAST_INDEX: &str = "capi_ws_consul_last_index";
    pub const JWKS_REFRESH_TOTAL: &str = "capi_ws_jwks_refresh_total";
    pub const ROUTES: &str = "capi_ws_routes";
    pub const NODE_CONNECTIONS_ACTIVE: &str = "capi_ws_node_connections_active";
    pub const SESSION_DURATION: &str = "capi_ws_session_duration_seconds";
    pub const SNAPSHOT_AGE: &str = "capi_ws_snapshot_age_seconds";
    /// Beyond DESIGN §8: config reloads by result, and connections open on the WebSocket port
    /// (handshaking or relayed), so an operator sees a drain progress.
    pub const RELOADS_TOTAL: &str = "capi_ws_reloads_total";
    pub const OPEN_CONNECTIONS: &str = "capi_ws_open_connections";
    /// Beyond DESIGN §8: access-log lines dropped because stdout's reader fell behind.
    pub const ACCESS_LOG_DROPPED_TOTAL: &str = "capi_ws_access_log_dropped_total";
}

/// `status` label values (DESIGN §12: the numeric code). Every status the gateway answers plus
/// the common ones a node may relay; anything else counts under `other` so the label set stays
/// bounded. `0` = the client left before any answer.
pub const STATUSES: [u16; 22] = [
    0, 101, 200, 202, 301, 302, 304, 400, 401, 403, 404, 405, 408, 426, 429, 431, 500, 501, 502, 503, 504,
    505,
];
/// Slots of a status counter array: [`STATUSES`] plus `other`.
pub const STATUS_SLOTS: usize = STATUSES.len() + 1;

/// Slot of `status` in a status counter array.
pub fn status_index(status: u16) -> usize {
    STATUSES
        .iter()
        .position(|s| *s == status)
        .unwrap_or(STATUSES.len())
}

/// The label text of a status slot.
pub fn status_label(slot: usize) -> String {
    STATUSES
        .get(slot)
        .map_or_else(|| "other".to_string(), |s| s.to_string())
}

/// Handshake buckets (seconds): a loopback upgrade takes well under a millisecond; a node
/// across a region tens of milliseconds; the handshake timeout caps it at seconds.
pub const HANDSHAKE_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// Session buckets (seconds): from reconnect loops (sub-second) to day-long sessions.
pub const SESSION_BUCKETS: [f64; 10] = [
    0.1, 1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 43200.0, 86400.0,
];

/// A histogram with a single writer: one counter per bucket (non-cumulative; the exposition
/// accumulates), one for overflow, and the sum in microseconds.
#[derive(Debug)]
pub struct LocalHistogram<const N: usize> {
    buckets: [LocalCounter; N],
    overflow: LocalCounter,
    sum_us: LocalCounter,
}

impl<const N: usize> Default for LocalHistogram<N> {
    fn default() -> Self {
        LocalHistogram {
            buckets: std::array::from_fn(|_| LocalCounter::default()),
            overflow: LocalCounter::default(),
            sum_us: LocalCounter::default(),
        }
    }
}

impl<const N: usize> LocalHistogram<N> {
    #[inline]
    pub fn observe(&self, bounds: &[f64; N], d: Duration) {
        let secs = d.as_secs_f64();
        match bounds.iter().position(|b| secs <= *b) {
            Some(i) => self.buckets[i].inc(),
            None => self.overflow.inc(),
        }
        self.sum_us.add(d.as_micros().min(u64::MAX as u128) as u64);
    }

    /// Non-cumulative bucket counts, overflow last.
    pub fn counts(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.buckets.iter().map(LocalCounter::get).collect();
        v.push(self.overflow.get());
        v
    }

    pub fn sum_us(&self) -> u64 {
        self.sum_us.get()
    }
}

/// One worker's counters for one service (label `service`).
#[derive(Debug, Default)]
pub struct ServiceCounters {
    /// Relayed connections open now.
    pub active: LocalGauge,
    pub by_status: [LocalCounter; STATUS_SLOTS],
    pub connect_failures: LocalCounter,
    /// Client -> node.
    pub bytes_up: LocalCounter,
    /// Node -> client.
    pub bytes_down: LocalCounter,
}

/// The stats block of one service, shared by every snapshot that lists it (DESIGN §8).
#[derive(Debug)]
pub struct ServiceStats {
    /// `<name>/<group>`.
    pub label: String,
    pub workers: PerWorker<ServiceCounters>,
}

impl ServiceStats {
    pub fn new(label: &str, workers: usize) -> Self {
        ServiceStats {
            label: label.to_string(),
            workers: PerWorker::new(workers),
        }
    }

    pub fn active(&self) -> i64 {
        self.workers.iter().map(|w| w.active.get()).sum()
    }
}

/// The stats block of one node of one service (label `node` = `host:port`).
#[derive(Debug)]
pub struct NodeStats {
    pub service: String,
    pub node: String,
    pub active: PerWorker<LocalGauge>,
}

impl NodeStats {
    pub fn new(service: &str, node: &str, workers: usize) -> Self {
        NodeStats {
            service: service.to_string(),
            node: node.to_string(),
            active: PerWorker::new(workers),
        }
    }

    pub fn active(&self) -> i64 {
        self.active.iter().map(LocalGauge::get).sum()
    }
}

/// What a snapshot carries per service: its block and its nodes' blocks, index-aligned with
/// `Service::nodes`. Attached by the control plane when it publishes.
#[derive(Debug, Clone)]
pub struct ServiceStatsRef {
    pub service: Arc<ServiceStats>,
    pub nodes: Vec<Arc<NodeStats>>,
}

/// Auth failure reasons (DESIGN §12 "Metric label values"); index = position.
pub const AUTH_REASONS: [&str; 11] = [
    "missing",
    "malformed",
    "signature",
    "expired",
    "not_yet_valid",
    "unknown_key",
    "algorithm",
    "issuer",
    "audience",
    "subscription",
    "no_keys",
];

/// Index of an auth failure reason in [`AUTH_REASONS`]; unknown labels count as `malformed`
/// (never panics, never creates a new label).
pub fn auth_reason_index(reason: &str) -> usize {
    AUTH_REASONS.iter().position(|r| *r == reason).unwrap_or(1)
}

/// A counter with a single writer (its worker). Readers on other threads see a recent value.
#[derive(Debug, Default)]
pub struct LocalCounter(AtomicU64);

impl LocalCounter {
    /// Single-writer add: load + store, no locked instruction.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0
            .store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A gauge with a single writer (e.g. this worker's open connections to a service).
#[derive(Debug, Default)]
pub struct LocalGauge(AtomicI64);

impl LocalGauge {
    #[inline]
    pub fn add(&self, n: i64) {
        self.0
            .store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One `T` per worker, each on its own cache line so workers never share a line.
#[derive(Debug)]
pub struct PerWorker<T> {
    slots: Box<[Padded<T>]>,
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

impl<T: Default> PerWorker<T> {
    pub fn new(workers: usize) -> Self {
        PerWorker {
            slots: (0..workers.max(1)).map(|_| Padded(T::default())).collect(),
        }
    }
}

impl<T> PerWorker<T> {
    /// The block of worker `id` (the only thread that may write it).
    #[inline]
    pub fn get(&self, id: usize) -> &T {
        &self.slots[id % self.slots.len()].0
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().map(|p| &p.0)
    }

    /// Sum of one field over all workers (admin, at scrape).
    pub fn sum(&self, f: impl Fn(&T) -> u64) -> u64 {
        self.iter().map(f).sum()
    }
}

/// Counters every worker keeps that are not per service.
#[derive(Debug, Default)]
pub struct WorkerCounters {
    pub auth_failures: [LocalCounter; AUTH_REASONS.len()],
    /// Connections on the WebSocket port open now (handshaking or relayed).
    pub open: LocalGauge,
    /// Answers to requests that matched no service (label `service=""`).
    pub unrouted_by_status: [LocalCounter; STATUS_SLOTS],
    /// Accept to `101` sent, for upgraded connections.
    pub handshake: LocalHistogram<{ HANDSHAKE_BUCKETS.len() }>,
    /// `101` to close, for relayed connections.
    pub session: LocalHistogram<{ SESSION_BUCKETS.len() }>,
    /// Access-log lines dropped because stdout's reader did not keep up.
    pub access_log_dropped: LocalCounter,
}

/// Control-plane counters (Consul sync, JWKS refresh): several control threads may write, so
/// these use plain atomic adds — they are not on any connection's path.
#[derive(Debug, Default)]
pub struct ControlCounters {
    pub consul_sync_ok: AtomicU64,
    pub consul_sync_error: AtomicU64,
    pub consul_last_index: AtomicU64,
    pub jwks_refresh_ok: AtomicU64,
    pub jwks_refresh_error: AtomicU64,
    pub reload_ok: AtomicU64,
    pub reload_error: AtomicU64,
    /// Unix time (ms) when the routing table was last confirmed: published, or found unchanged
    /// by a Consul sync ([`ControlCounters::confirm_table`]). 0 = never.
    pub table_confirmed_unix_ms: AtomicU64,
}

impl ControlCounters {
    /// The routing table is known current as of now (a publish, or a Consul sync that found
    /// nothing new): resets `capi_ws_snapshot_age_seconds`.
    pub fn confirm_table(&self) {
        self.table_confirmed_unix_ms
            .store(unix_ms(SystemTime::now()), Ordering::Relaxed);
    }

    /// Seconds since the table was last confirmed, as of `now`.
    pub fn table_age(&self, now: SystemTime) -> f64 {
        let at = self.table_confirmed_unix_ms.load(Ordering::Relaxed);
        unix_ms(now).saturating_sub(at) as f64 / 1000.0
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// All metrics of the process; shared by `Arc` between workers, control threads and admin.
#[derive(Debug)]
pub struct Metrics {
    pub workers: PerWorker<WorkerCounters>,
    pub control: ControlCounters,
}

impl Metrics {
    pub fn new(workers: usize) -> Self {
        Metrics {
            workers: PerWorker::new(workers),
            control: ControlCounters::default(),
        }
    }

    /// Connections open on the WebSocket port, all workers.
    pub fn open_connections(&self) -> i64 {
        self.workers.iter().map(|w| w.open.get()).sum()
    }

    /// Count one auth failure on worker `id`.
    #[inline]
    pub fn auth_failure(&self, id: usize, reason: &str) {
        self.workers.get(id).auth_failures[auth_reason_index(reason)].inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_worker_sum_and_isolation() {
        let m = Metrics::new(3);
        m.auth_failure(0, "expired");
        m.auth_failure(2, "expired");
        m.auth_failure(2, "no such reason");
        let expired = auth_reason_index("expired");
        assert_eq!(m.workers.sum(|w| w.auth_failures[expired].get()), 2);
        assert_eq!(m.workers.get(1).auth_failures[expired].get(), 0);
        assert_eq!(
            m.workers.sum(|w| w.auth_failures[1].get()),
            1,
            "unknown reason counts as malformed"
        );
    }

    #[test]
    fn slots_do_not_share_cache_lines() {
        let p: PerWorker<LocalCounter> = PerWorker::new(2);
        let a = p.get(0) as *const _ as usize;
        let b = p.get(1) as *const _ as usize;
        assert!(b.abs_diff(a) >= 128);
    }

    #[test]
    fn status_slots_are_bounded() {
        let cases: &[(&str, u16, &str)] = &[
            ("switching", 101, "101"),
            ("not_found", 404, "404"),
            ("none", 0, "0"),
            ("teapot", 418, "other"),
            ("weird", 999, "other"),
        ];
        for (name, code, want) in cases {
            assert_eq!(status_label(status_index(*code)), *want, "case {name}");
        }
    }

    #[test]
    fn histogram_buckets() {
        let h: LocalHistogram<3> = LocalHistogram::default();
        let bounds = [0.001, 0.01, 0.1];
        h.observe(&bounds, Duration::from_micros(500));
        h.observe(&bounds, Duration::from_millis(1));
        h.observe(&bounds, Duration::from_millis(50));
        h.observe(&bounds, Duration::from_secs(2));
        assert_eq!(h.counts(), vec![2, 0, 1, 1]);
        assert_eq!(h.sum_us(), 500 + 1000 + 50_000 + 2_000_000);
    }

    #[test]
    fn table_age_counts_from_confirmation() {
        let c = ControlCounters::default();
        c.confirm_table();
        let later = SystemTime::now() + Duration::from_secs(3);
        let age = c.table_age(later);
        assert!((2.9..3.5).contains(&age), "{age}");
    }

    #[test]
    fn gauge_goes_both_ways() {
        let g = LocalGauge::default();
        g.add(2);
        g.add(-1);
        assert_eq!(g.get(), 1);
    }
}
