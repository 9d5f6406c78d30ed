//! Control plane: plain `std::thread`s doing blocking work (table building with DNS, Consul
//! sync, JWKS refresh, signals). [`Control`] is the only publisher of the [`Snapshot`]: every
//! producer hands its part here and the whole table is rebuilt and published; workers never
//! wait for any of it.
#![allow(clippy::disallowed_types)] // locks are allowed on the control plane (not per connection)

pub mod admin;
pub mod consul;
pub mod exposition;
pub mod jwks;
pub mod signals;
pub mod stats;
pub mod table;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::config::Settings;
use crate::data::stop::StopSignal;
use crate::metrics::Metrics;
use crate::snapshot::{Instance, Published, Snapshot};

/// The latest part delivered by each producer; the snapshot is built from all of them.
#[derive(Default)]
struct Parts {
    /// Instances from each Consul host (key: the host's endpoint), as last synced.
    consul: BTreeMap<String, Vec<Instance>>,
    /// Verification keys of every source (JWT authorization, `jwks.rs`).
    keys: jwks::KeysPart,
}

/// What `/ready` waits for (DESIGN §8): workers listening and, when enabled, Consul and the
/// verification keys loaded once. A producer that is disabled marks itself ready at start.
#[derive(Debug)]
pub struct Readiness {
    pub workers: AtomicBool,
    pub consul: AtomicBool,
    pub keys: AtomicBool,
}

impl Readiness {
    pub fn all(&self) -> bool {
        self.workers.load(Ordering::Acquire)
            && self.consul.load(Ordering::Acquire)
            && self.keys.load(Ordering::Acquire)
    }
}

/// The control plane's shared state: current settings, producers' parts, the publication
/// point and the metrics.
pub struct Control {
    settings: RwLock<Arc<Settings>>,
    parts: Mutex<Parts>,
    pub published: Arc<Published>,
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
    /// Metric blocks per service/node, reused across rebuilds (issue 6).
    pub stats: stats::StatsRegistry,
    /// Drain phases, read by the workers (issue 6).
    pub stop: Arc<StopSignal>,
}

impl Control {
    /// Build the first snapshot (static services) and the publication point.
    pub fn new(settings: Settings, workers: usize) -> Arc<Control> {
        let parts = Parts::default();
        let mut first = build(&settings, &parts);
        let stats = stats::StatsRegistry::new(workers);
        stats.attach(&mut first);
        let metrics = Arc::new(Metrics::new(workers));
        metrics.control.confirm_table();
        for svc in &first.services {
            if let Some(reason) = &svc.reason {
                tracing::warn!(service = %svc.label, "service not routable: {reason}");
            }
        }
        tracing::info!(
            services = first.services.len(),
            routes = first.by_route.len(),
            "routing table built"
        );
        Arc::new(Control {
            settings: RwLock::new(Arc::new(settings)),
            parts: Mutex::new(parts),
            published: Published::new(first),
            metrics,
            // Producers that exist flip these to false when they start and back once loaded.
            readiness: Readiness {
                workers: AtomicBool::new(false),
                consul: AtomicBool::new(true),
                keys: AtomicBool::new(true),
            },
            stats,
            stop: Arc::new(StopSignal::default()),
        })
    }

    pub fn settings(&self) -> Arc<Settings> {
        Arc::clone(&self.settings.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replace the settings (reload) and republish.
    pub fn set_settings(&self, settings: Settings) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings);
        self.republish();
    }

    /// A Consul host delivered its current instances.
    pub fn set_consul_instances(&self, host: &str, instances: Vec<Instance>) {
        let mut parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        parts.consul.insert(host.to_string(), instances);
        self.publish_locked(&parts);
    }

    /// Rebuild from the current parts and publish.
    pub fn republish(&self) {
        let parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        self.publish_locked(&parts);
    }

    /// Publishing happens with the parts lock held, so two producers can never publish out of
    /// order (an older table replacing a newer one).
    fn publish_locked(&self, parts: &Parts) {
        let settings = self.settings();
        let mut next = build(&settings, parts);
        self.stats.attach(&mut next);
        let gen = self.published.publish(next);
        self.metrics.control.confirm_table();
        tracing::debug!(generation = gen, "snapshot published");
    }
}

fn build(settings: &Settings, parts: &Parts) -> Snapshot {
    let mut instances = table::static_instances(settings);
    for list in parts.consul.values() {
        instances.extend(list.iter().cloned());
    }
    let mut snap = table::build_snapshot(settings, instances, &table::system_resolve);
    snap.auth = Arc::new(parts.keys.auth(&settings.oauth2));
    snap
}
