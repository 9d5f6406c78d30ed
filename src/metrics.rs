//! Metrics: names as consts, per-worker counter blocks that only their own worker writes
//! (a relaxed load + store, never a cross-core read-modify-write), summed by the admin thread
//! at scrape (DESIGN §8). Control-plane counters are ordinary atomics: they are not hot.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

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
    fn gauge_goes_both_ways() {
        let g = LocalGauge::default();
        g.add(2);
        g.add(-1);
        assert_eq!(g.get(), 1);
    }
}
