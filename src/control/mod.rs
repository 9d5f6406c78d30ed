//! Control plane: plain `std::thread`s doing blocking work (table building with DNS, later
//! Consul sync, JWKS refresh, signals). It is the only publisher of the [`Snapshot`]; workers
//! never wait for it.

pub mod table;

use std::sync::Arc;

use crate::config::Settings;
use crate::snapshot::{Published, Snapshot};

/// The snapshot built from the config file alone (static services).
pub fn static_snapshot(settings: &Settings) -> Snapshot {
    table::build_snapshot(
        settings,
        table::static_instances(settings),
        &table::system_resolve,
    )
}

/// Build the first snapshot and the publication point the workers read.
pub fn start(settings: &Settings) -> Arc<Published> {
    let first = static_snapshot(settings);
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
    Published::new(first)
}
