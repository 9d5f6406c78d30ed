//! Metric blocks per service and per node, kept across snapshot rebuilds (DESIGN §8): the
//! registry hands the same `Arc` to every snapshot that lists the same service label or node
//! `host:port`, so counters survive Consul changes and reloads. An entry gone from the table
//! is pruned once no connection is open on it. Control plane only (it takes a lock).
#![allow(clippy::disallowed_types)] // control plane: locked once per publish and per scrape

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::metrics::{NodeStats, ServiceStats, ServiceStatsRef};
use crate::snapshot::Snapshot;

#[derive(Default)]
struct Inner {
    services: BTreeMap<String, Arc<ServiceStats>>,
    /// Key: (service label, node host:port).
    nodes: BTreeMap<(String, String), Arc<NodeStats>>,
}

/// Stats blocks by label.
pub struct StatsRegistry {
    workers: usize,
    inner: Mutex<Inner>,
}

impl StatsRegistry {
    pub fn new(workers: usize) -> Self {
        StatsRegistry {
            workers,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Give `snap` its stats blocks (reusing existing ones) and prune the entries it no longer
    /// lists that have no open connection.
    pub fn attach(&self, snap: &mut Snapshot) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut live_services = HashSet::with_capacity(snap.services.len());
        let mut live_nodes = HashSet::new();
        let mut refs = Vec::with_capacity(snap.services.len());
        for svc in &snap.services {
            let service = Arc::clone(
                inner
                    .services
                    .entry(svc.label.clone())
                    .or_insert_with(|| Arc::new(ServiceStats::new(&svc.label, self.workers))),
            );
            live_services.insert(svc.label.clone());
            let nodes =
                svc.nodes
                    .iter()
                    .map(|n| {
                        let key = (svc.label.clone(), n.host_port.clone());
                        live_nodes.insert(key.clone());
                        Arc::clone(inner.nodes.entry(key).or_insert_with(|| {
                            Arc::new(NodeStats::new(&svc.label, &n.host_port, self.workers))
                        }))
                    })
                    .collect();
            refs.push(ServiceStatsRef { service, nodes });
        }
        inner
            .services
            .retain(|label, s| live_services.contains(label) || s.active() != 0);
        inner
            .nodes
            .retain(|key, n| live_nodes.contains(key) || n.active() != 0);
        snap.stats = refs;
    }

    /// Every service block (sorted by label), for the exposition.
    pub fn services(&self) -> Vec<Arc<ServiceStats>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.services.values().cloned().collect()
    }

    /// Every node block (sorted by service, then node), for the exposition.
    pub fn nodes(&self) -> Vec<Arc<NodeStats>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.nodes.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Node, NodeSource, Service};

    fn snap(services: &[(&str, &[&str])]) -> Snapshot {
        Snapshot {
            services: services
                .iter()
                .map(|(label, nodes)| Service {
                    label: label.to_string(),
                    nodes: nodes
                        .iter()
                        .map(|hp| Node {
                            host_port: hp.to_string(),
                            addr: None,
                            healthy: true,
                            source: NodeSource::Static,
                        })
                        .collect(),
                    ..Service::for_test(label, "")
                })
                .collect(),
            ..Snapshot::default()
        }
    }

    #[test]
    fn blocks_survive_rebuilds_and_are_pruned_when_idle() {
        // 1. first table: a/g with two nodes, b/g with one;
        // 2. next table (order changed, b/g gone, a node gone): same Arcs for what stayed;
        // 3. a removed service with an open connection stays listed until it closes.
        let reg = StatsRegistry::new(2);
        let mut first = snap(&[("a/g", &["n1:1", "n2:1"]), ("b/g", &["n3:1"])]);
        reg.attach(&mut first);
        first.stats[1].service.workers.get(0).active.add(1);
        first.stats[0].service.workers.get(1).bytes_up.add(7);

        let mut next = snap(&[("c/g", &[]), ("a/g", &["n2:1"])]);
        reg.attach(&mut next);
        assert!(Arc::ptr_eq(&next.stats[1].service, &first.stats[0].service));
        assert!(Arc::ptr_eq(&next.stats[1].nodes[0], &first.stats[0].nodes[1]));
        assert_eq!(next.stats[1].service.workers.sum(|w| w.bytes_up.get()), 7);
        let labels: Vec<String> = reg.services().iter().map(|s| s.label.clone()).collect();
        assert_eq!(labels, ["a/g", "b/g", "c/g"], "b/g still has an open connection");
        assert_eq!(reg.nodes().len(), 1, "n1 and n3 had no connection: pruned");

        first.stats[1].service.workers.get(0).active.add(-1);
        let mut third = snap(&[("a/g", &["n2:1"])]);
        reg.attach(&mut third);
        let labels: Vec<String> = reg.services().iter().map(|s| s.label.clone()).collect();
        assert_eq!(labels, ["a/g"]);
    }
}
