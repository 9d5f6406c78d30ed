//! What the admin endpoints say (DESIGN §8): the Prometheus text exposition, summed over the
//! per-worker blocks at scrape, and the `/routes` JSON. Written by hand: the registry-based
//! crates (prometheus, prometheus-client) own their atomics and would need a custom collector
//! per metric to sum our single-writer blocks — the text format itself is a few lines.

use std::fmt::Write;
use std::time::SystemTime;

use serde_json::{json, Value};

use crate::control::Control;
use crate::metrics::{
    names, status_label, LocalHistogram, AUTH_REASONS, HANDSHAKE_BUCKETS, SESSION_BUCKETS, STATUS_SLOTS,
};
use crate::snapshot::Snapshot;

/// `Content-Type` of the exposition (Prometheus text format 0.0.4).
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The whole `/metrics` text as of `now`.
pub fn render_metrics(control: &Control, now: SystemTime) -> String {
    let m = &control.metrics;
    let snap = control.published.load();
    let services = control.stats.services();
    let nodes = control.stats.nodes();
    let mut out = String::with_capacity(4096 + services.len() * 512);

    header(
        &mut out,
        names::CONNECTIONS_ACTIVE,
        "gauge",
        "Relayed connections open now, by service.",
    );
    for s in &services {
        let _ = writeln!(
            out,
            "{}{{service=\"{}\"}} {}",
            names::CONNECTIONS_ACTIVE,
            esc(&s.label),
            s.active()
        );
    }

    header(
        &mut out,
        names::CONNECTIONS_TOTAL,
        "counter",
        "Connections ended, by service and answered status (0 = no answer; service \"\" = no route).",
    );
    for slot in 0..STATUS_SLOTS {
        let n = m.workers.sum(|w| w.unrouted_by_status[slot].get());
        if n > 0 {
            let _ = writeln!(
                out,
                "{}{{service=\"\",status=\"{}\"}} {n}",
                names::CONNECTIONS_TOTAL,
                status_label(slot)
            );
        }
    }
    for s in &services {
        for slot in 0..STATUS_SLOTS {
            let n = s.workers.sum(|w| w.by_status[slot].get());
            if n > 0 {
                let _ = writeln!(
                    out,
                    "{}{{service=\"{}\",status=\"{}\"}} {n}",
                    names::CONNECTIONS_TOTAL,
                    esc(&s.label),
                    status_label(slot)
                );
            }
        }
    }

    histogram(
        &mut out,
        names::HANDSHAKE_DURATION,
        "Accept to 101 sent, upgraded connections.",
        &HANDSHAKE_BUCKETS,
        m.workers.iter().map(|w| &w.handshake),
    );

    header(
        &mut out,
        names::AUTH_FAILURES_TOTAL,
        "counter",
        "Refused authorizations, by reason.",
    );
    for (i, reason) in AUTH_REASONS.iter().enumerate() {
        let n = m.workers.sum(|w| w.auth_failures[i].get());
        let _ = writeln!(out, "{}{{reason=\"{reason}\"}} {n}", names::AUTH_FAILURES_TOTAL);
    }

    header(
        &mut out,
        names::ACCESS_LOG_DROPPED_TOTAL,
        "counter",
        "Access-log lines dropped because the reader of stdout did not keep up.",
    );
    let dropped = m.workers.sum(|w| w.access_log_dropped.get());
    let _ = writeln!(out, "{} {dropped}", names::ACCESS_LOG_DROPPED_TOTAL);

    header(
        &mut out,
        names::UPSTREAM_CONNECT_FAILURES_TOTAL,
        "counter",
        "Failed or timed-out connects to nodes, by service.",
    );
    for s in &services {
        let n = s.workers.sum(|w| w.connect_failures.get());
        let _ = writeln!(
            out,
            "{}{{service=\"{}\"}} {n}",
            names::UPSTREAM_CONNECT_FAILURES_TOTAL,
            esc(&s.label)
        );
    }

    header(
        &mut out,
        names::BYTES_TOTAL,
        "counter",
        "Bytes relayed after the head, by service and direction (up = client to node).",
    );
    for s in &services {
        let up = s.workers.sum(|w| w.bytes_up.get());
        let down = s.workers.sum(|w| w.bytes_down.get());
        let label = esc(&s.label);
        let _ = writeln!(
            out,
            "{}{{service=\"{label}\",direction=\"up\"}} {up}",
            names::BYTES_TOTAL
        );
        let _ = writeln!(
            out,
            "{}{{service=\"{label}\",direction=\"down\"}} {down}",
            names::BYTES_TOTAL
        );
    }

    let c = &m.control;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    header(
        &mut out,
        names::CONSUL_SYNC_TOTAL,
        "counter",
        "Consul catalog/health syncs, by result.",
    );
    let _ = writeln!(
        out,
        "{}{{result=\"ok\"}} {}",
        names::CONSUL_SYNC_TOTAL,
        load(&c.consul_sync_ok)
    );
    let _ = writeln!(
        out,
        "{}{{result=\"error\"}} {}",
        names::CONSUL_SYNC_TOTAL,
        load(&c.consul_sync_error)
    );
    header(
        &mut out,
        names::CONSUL_LAST_INDEX,
        "gauge",
        "Last Consul index seen.",
    );
    let _ = writeln!(out, "{} {}", names::CONSUL_LAST_INDEX, load(&c.consul_last_index));
    header(
        &mut out,
        names::JWKS_REFRESH_TOTAL,
        "counter",
        "Verification key refreshes, by result.",
    );
    let _ = writeln!(
        out,
        "{}{{result=\"ok\"}} {}",
        names::JWKS_REFRESH_TOTAL,
        load(&c.jwks_refresh_ok)
    );
    let _ = writeln!(
        out,
        "{}{{result=\"error\"}} {}",
        names::JWKS_REFRESH_TOTAL,
        load(&c.jwks_refresh_error)
    );

    header(
        &mut out,
        names::ROUTES,
        "gauge",
        "Routable services in the current table.",
    );
    let _ = writeln!(out, "{} {}", names::ROUTES, snap.by_route.len());

    header(
        &mut out,
        names::NODE_CONNECTIONS_ACTIVE,
        "gauge",
        "Relayed connections open now, by service and node.",
    );
    for n in &nodes {
        let _ = writeln!(
            out,
            "{}{{service=\"{}\",node=\"{}\"}} {}",
            names::NODE_CONNECTIONS_ACTIVE,
            esc(&n.service),
            esc(&n.node),
            n.active()
        );
    }

    histogram(
        &mut out,
        names::SESSION_DURATION,
        "101 to close, relayed connections.",
        &SESSION_BUCKETS,
        m.workers.iter().map(|w| &w.session),
    );

    header(
        &mut out,
        names::SNAPSHOT_AGE,
        "gauge",
        "Seconds since the routing table was last confirmed (published or confirmed by Consul).",
    );
    let _ = writeln!(out, "{} {:.3}", names::SNAPSHOT_AGE, c.table_age(now));

    header(
        &mut out,
        names::RELOADS_TOTAL,
        "counter",
        "SIGHUP config reloads, by result.",
    );
    let _ = writeln!(
        out,
        "{}{{result=\"ok\"}} {}",
        names::RELOADS_TOTAL,
        load(&c.reload_ok)
    );
    let _ = writeln!(
        out,
        "{}{{result=\"error\"}} {}",
        names::RELOADS_TOTAL,
        load(&c.reload_error)
    );

    header(
        &mut out,
        names::OPEN_CONNECTIONS,
        "gauge",
        "Connections open on the WebSocket port (handshaking or relayed).",
    );
    let _ = writeln!(out, "{} {}", names::OPEN_CONNECTIONS, m.open_connections());
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn histogram<'a, const N: usize>(
    out: &mut String,
    name: &str,
    help: &str,
    bounds: &[f64; N],
    blocks: impl Iterator<Item = &'a LocalHistogram<N>>,
) {
    let mut counts = vec![0u64; N + 1];
    let mut sum_us = 0u64;
    for h in blocks {
        for (total, n) in counts.iter_mut().zip(h.counts()) {
            *total += n;
        }
        sum_us += h.sum_us();
    }
    header(out, name, "histogram", help);
    let mut cumulative = 0;
    for (bound, n) in bounds.iter().zip(&counts) {
        cumulative += n;
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    cumulative += counts[N];
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{name}_sum {:.6}", sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {cumulative}");
}

/// Label value escaping of the text format: `\`, `"` and newline.
fn esc(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// `/routes`: one object per service, as DESIGN §8 lists (plus `conflicts`, §12).
pub fn routes_json(snap: &Snapshot) -> Value {
    let list: Vec<Value> = snap
        .services
        .iter()
        .map(|svc| {
            let mut groups: Vec<&str> = svc
                .subscription_groups
                .iter()
                .flatten()
                .map(String::as_str)
                .collect();
            groups.sort_unstable();
            groups.dedup();
            let nodes: Vec<Value> = svc
                .nodes
                .iter()
                .map(|n| {
                    let (address, port) = split_host_port(&n.host_port);
                    json!({
                        "address": address,
                        "port": port,
                        "healthy": n.healthy,
                        "source": n.source.as_str(),
                    })
                })
                .collect();
            json!({
                "service": svc.name,
                "group": svc.group,
                "route": svc.route,
                "type": svc.kind,
                "secured": svc.secured,
                "subscriptionGroups": groups,
                "routable": svc.routable,
                "reason": svc.reason,
                "conflicts": svc.conflicts,
                "nodes": nodes,
            })
        })
        .collect();
    Value::Array(list)
}

/// `host:port` / `[v6]:port` -> (host without brackets, port); port 0 when absent.
fn split_host_port(hp: &str) -> (&str, u16) {
    match hp.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && (h.starts_with('[') || !h.contains(':')) => (
            h.trim_start_matches('[').trim_end_matches(']'),
            p.parse().unwrap_or(0),
        ),
        _ => (hp, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::control::Control;
    use std::time::Duration;

    #[test]
    fn host_port_split() {
        let cases: &[(&str, &str, (&str, u16))] = &[
            ("v4", "127.0.0.1:9001", ("127.0.0.1", 9001)),
            ("name", "node-1.local:80", ("node-1.local", 80)),
            ("v6", "[::1]:8080", ("::1", 8080)),
        ];
        for (name, input, want) in cases {
            assert_eq!(split_host_port(input), *want, "case {name}");
        }
    }

    fn control() -> std::sync::Arc<Control> {
        let yaml = "capi.websocket.services:\n  - {name: echo, address: 127.0.0.1, port: 9, meta: {group: dev, type: websocket, secured: \"true\", subscription-group: \"b,a\"}}\n  - {name: api, address: 127.0.0.1, port: 8, meta: {group: dev, type: rest}}\ncapi.mode: full\n";
        let settings: Settings = crate::config::load_str_with_env(yaml, &|_| None).unwrap();
        Control::new(settings, 2)
    }

    #[test]
    fn metrics_text_sums_workers_and_is_well_formed() {
        // 1. traffic on two workers of one service, an unrouted 404 and an auth failure;
        // 2. the text sums them, every sample line belongs to a declared metric family.
        let c = control();
        let snap = c.published.load();
        let echo = snap.services.iter().position(|s| s.name == "echo").unwrap();
        let stats = &snap.stats[echo];
        stats.service.workers.get(0).by_status[crate::metrics::status_index(101)].inc();
        stats.service.workers.get(1).by_status[crate::metrics::status_index(101)].inc();
        stats.service.workers.get(1).bytes_up.add(10);
        stats.service.workers.get(0).active.add(1);
        stats.nodes[0].active.get(1).add(1);
        c.metrics.workers.get(0).unrouted_by_status[crate::metrics::status_index(404)].inc();
        c.metrics.auth_failure(1, "expired");
        c.metrics.workers.get(1).access_log_dropped.add(3);
        c.metrics
            .workers
            .get(0)
            .handshake
            .observe(&HANDSHAKE_BUCKETS, Duration::from_millis(3));
        let text = render_metrics(&c, SystemTime::now());
        for want in [
            "capi_ws_connections_total{service=\"echo/dev\",status=\"101\"} 2",
            "capi_ws_connections_total{service=\"\",status=\"404\"} 1",
            "capi_ws_connections_active{service=\"echo/dev\"} 1",
            "capi_ws_node_connections_active{service=\"echo/dev\",node=\"127.0.0.1:9\"} 1",
            "capi_ws_bytes_total{service=\"echo/dev\",direction=\"up\"} 10",
            "capi_ws_auth_failures_total{reason=\"expired\"} 1",
            "capi_ws_access_log_dropped_total 3",
            "capi_ws_handshake_duration_seconds_bucket{le=\"0.005\"} 1",
            "capi_ws_handshake_duration_seconds_bucket{le=\"0.0025\"} 0",
            "capi_ws_handshake_duration_seconds_count 1",
            "capi_ws_routes 1",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        let mut families = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                families.insert(rest.split(' ').next().unwrap().to_string());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| families.contains(*b)))
                .unwrap_or(name);
            assert!(families.contains(base), "sample {line:?} has no # TYPE");
            assert!(!line.contains("access_token"));
        }
    }

    #[test]
    fn routes_list_every_service_with_its_fields() {
        let c = control();
        let v = routes_json(&c.published.load());
        let list = v.as_array().unwrap();
        assert_eq!(list.len(), 2);
        let echo = list.iter().find(|s| s["service"] == "echo").unwrap();
        assert_eq!(echo["group"], "dev");
        assert_eq!(echo["route"], "/capi/echo/dev");
        assert_eq!(echo["type"], "websocket");
        assert_eq!(echo["secured"], true);
        assert_eq!(echo["subscriptionGroups"], json!(["a", "b"]));
        assert_eq!(echo["routable"], true);
        assert_eq!(echo["reason"], Value::Null);
        assert_eq!(echo["conflicts"], json!([]));
        assert_eq!(
            echo["nodes"],
            json!([{"address": "127.0.0.1", "port": 9, "healthy": true, "source": "static"}])
        );
        let api = list.iter().find(|s| s["service"] == "api").unwrap();
        assert_eq!(api["routable"], false);
        assert!(api["reason"].as_str().unwrap().contains("not websocket"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
