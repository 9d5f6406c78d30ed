//! Node choice (DESIGN §6), per worker: round-robin cursor and least-connections counts live
//! in `Cell`s of this worker's [`LocalTable`], never shared between cores. A node that refused
//! a connection is skipped by this worker for a short back-off; failover walks the rest.
//! State is carried over (by service label and node `host:port`) when a new snapshot arrives.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::LoadBalancing;
use crate::snapshot::Snapshot;

/// How long a worker skips a node after a failed connect. Short: a restarted node comes back
/// quickly, and a skipped node is still tried when every other node failed too.
pub const PASSIVE_BACKOFF: Duration = Duration::from_secs(2);

/// This worker's view of one node.
#[derive(Debug, Default)]
pub struct NodeState {
    /// Connections of this worker currently relayed to the node.
    active: Cell<u32>,
    down_until: Cell<Option<Instant>>,
}

impl NodeState {
    pub fn active(&self) -> u32 {
        self.active.get()
    }

    fn in_backoff(&self, now: Instant) -> bool {
        self.down_until.get().is_some_and(|t| now < t)
    }

    pub fn mark_failed(&self, now: Instant) {
        self.down_until.set(Some(now + PASSIVE_BACKOFF));
    }

    pub fn mark_ok(&self) {
        if self.down_until.get().is_some() {
            self.down_until.set(None);
        }
    }
}

/// Counts one connection on a node for as long as it lives (least-connections, metrics).
pub struct ActiveGuard(Rc<NodeState>);

impl ActiveGuard {
    pub fn new(node: Rc<NodeState>) -> Self {
        node.active.set(node.active.get() + 1);
        ActiveGuard(node)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get().saturating_sub(1));
    }
}

#[derive(Debug, Default)]
struct LocalService {
    cursor: Cell<usize>,
    nodes: Vec<Rc<NodeState>>,
}

/// A snapshot plus this worker's balancing state, index-aligned with `snap.services[i].nodes`.
pub struct LocalTable {
    pub snap: Arc<Snapshot>,
    services: Vec<LocalService>,
}

impl LocalTable {
    /// Align state with a new snapshot, keeping the cursor, counts and back-offs of services
    /// and nodes that still exist.
    pub fn build(snap: Arc<Snapshot>, prev: Option<&LocalTable>) -> LocalTable {
        let mut old: HashMap<(&str, &str), &Rc<NodeState>> = HashMap::new();
        let mut cursors: HashMap<&str, usize> = HashMap::new();
        if let Some(prev) = prev {
            for (svc, local) in prev.snap.services.iter().zip(&prev.services) {
                cursors.insert(svc.label.as_str(), local.cursor.get());
                for (node, state) in svc.nodes.iter().zip(&local.nodes) {
                    old.insert((svc.label.as_str(), node.host_port.as_str()), state);
                }
            }
        }
        let services = snap
            .services
            .iter()
            .map(|svc| LocalService {
                cursor: Cell::new(cursors.get(svc.label.as_str()).copied().unwrap_or(0)),
                nodes: svc
                    .nodes
                    .iter()
                    .map(|n| {
                        old.get(&(svc.label.as_str(), n.host_port.as_str()))
                            .map(|s| Rc::clone(s))
                            .unwrap_or_default()
                    })
                    .collect(),
            })
            .collect();
        LocalTable { snap, services }
    }

    pub fn node_state(&self, service: usize, node: usize) -> Rc<NodeState> {
        Rc::clone(&self.services[service].nodes[node])
    }

    /// The order in which to try the usable nodes of `service` for one new connection:
    /// the balancer's choice first, then the others; nodes in back-off go last. Empty when
    /// the service has no usable node (→ 503).
    pub fn candidates(&self, service: usize, lb: LoadBalancing, now: Instant) -> Vec<usize> {
        let svc = &self.snap.services[service];
        let local = &self.services[service];
        // NOTE: one small allocation per connection (bounded by the node count).
        let mut order: Vec<usize> = (0..svc.nodes.len()).filter(|&i| svc.nodes[i].usable()).collect();
        if order.is_empty() {
            return order;
        }
        match lb {
            LoadBalancing::RoundRobin => {
                let start = local.cursor.get() % order.len();
                local.cursor.set(local.cursor.get().wrapping_add(1));
                order.rotate_left(start);
            }
            LoadBalancing::LeastConnections => {
                // Ties rotate, so equal load still spreads.
                let start = local.cursor.get() % order.len();
                local.cursor.set(local.cursor.get().wrapping_add(1));
                order.rotate_left(start);
                order.sort_by_key(|&i| local.nodes[i].active());
            }
        }
        // Stable: keeps the balancer's order within each class.
        order.sort_by_key(|&i| local.nodes[i].in_backoff(now));
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Node, NodeSource, Service};

    fn snap(nodes: &[(&str, bool)]) -> Arc<Snapshot> {
        let svc = Service {
            nodes: nodes
                .iter()
                .enumerate()
                .map(|(i, (hp, healthy))| Node {
                    host_port: hp.to_string(),
                    addr: Some(([127, 0, 0, 1], 1000 + i as u16).into()),
                    healthy: *healthy,
                    source: NodeSource::Static,
                })
                .collect(),
            ..Service::for_test("s", "g")
        };
        let mut s = Snapshot {
            services: vec![svc],
            ..Snapshot::default()
        };
        s.by_route.insert("/s/g".into(), 0);
        Arc::new(s)
    }

    #[test]
    fn round_robin_spreads_evenly() {
        let t = LocalTable::build(snap(&[("a:1", true), ("b:1", true), ("c:1", true)]), None);
        let now = Instant::now();
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[t.candidates(0, LoadBalancing::RoundRobin, now)[0]] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn unhealthy_skipped_and_none_means_empty() {
        let t = LocalTable::build(snap(&[("a:1", false), ("b:1", true)]), None);
        for _ in 0..4 {
            assert_eq!(
                t.candidates(0, LoadBalancing::RoundRobin, Instant::now()),
                vec![1]
            );
        }
        let none = LocalTable::build(snap(&[("a:1", false)]), None);
        assert!(none
            .candidates(0, LoadBalancing::RoundRobin, Instant::now())
            .is_empty());
    }

    #[test]
    fn backoff_moves_node_last_then_expires() {
        let t = LocalTable::build(snap(&[("a:1", true), ("b:1", true)]), None);
        let now = Instant::now();
        t.node_state(0, 0).mark_failed(now);
        for _ in 0..4 {
            assert_eq!(t.candidates(0, LoadBalancing::RoundRobin, now), vec![1, 0]);
        }
        let later = now + PASSIVE_BACKOFF + Duration::from_millis(1);
        let firsts: Vec<usize> = (0..2)
            .map(|_| t.candidates(0, LoadBalancing::RoundRobin, later)[0])
            .collect();
        assert!(firsts.contains(&0));
    }

    #[test]
    fn least_connections_prefers_idle_node() {
        let t = LocalTable::build(snap(&[("a:1", true), ("b:1", true)]), None);
        let _g1 = ActiveGuard::new(t.node_state(0, 0));
        let _g2 = ActiveGuard::new(t.node_state(0, 0));
        for _ in 0..4 {
            assert_eq!(
                t.candidates(0, LoadBalancing::LeastConnections, Instant::now())[0],
                1
            );
        }
        drop(_g1);
        drop(_g2);
        assert_eq!(t.node_state(0, 0).active(), 0);
    }

    #[test]
    fn state_carries_over_by_label_and_node() {
        let first = LocalTable::build(snap(&[("a:1", true), ("b:1", true)]), None);
        let guard = ActiveGuard::new(first.node_state(0, 1));
        first.candidates(0, LoadBalancing::RoundRobin, Instant::now());
        // b:1 moves to index 0 in the next snapshot; a:1 is gone, c:1 is new.
        let next = LocalTable::build(snap(&[("b:1", true), ("c:1", true)]), Some(&first));
        assert_eq!(next.node_state(0, 0).active(), 1);
        assert_eq!(next.node_state(0, 1).active(), 0);
        assert_eq!(next.services[0].cursor.get(), 1);
        drop(guard);
        assert_eq!(next.node_state(0, 0).active(), 0);
    }
}
