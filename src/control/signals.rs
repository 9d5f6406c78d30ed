//! Signals (DESIGN §10) on their own thread (`capi-ws-signals`, signal-hook): SIGHUP reloads
//! the config (parse -> validate -> build -> publish; a bad file keeps the old settings; settings
//! that need a restart are logged and kept); SIGTERM/SIGINT drain: listeners close at once,
//! established connections run up to `drain-timeout-ms`, the rest close over a short window;
//! exit 0 when the last connection closes; a second signal exits 1 at once.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::{ConfigError, Settings};
use crate::control::Control;
use crate::data::stop::{Phase, CLOSE_SPREAD};

/// Re-reads the configuration the process started with (same file, same flags).
pub type Reloader = Box<dyn Fn() -> Result<Settings, ConfigError> + Send>;

/// How often the drain checks for the last connection and for a second signal.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// After the close window: how long closing connections may take before the process exits
/// anyway (a relay stops within one poll of its gate opening; this is a safety net).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Install the handlers now (before readiness is announced) and start the signal thread.
pub fn start_signals(control: Arc<Control>, reload: Option<Reloader>) -> anyhow::Result<()> {
    let signals = Signals::new([SIGHUP, SIGTERM, SIGINT]).context("cannot install signal handlers")?;
    std::thread::Builder::new()
        .name("capi-ws-signals".into())
        .spawn(move || run_signals(control, signals, reload))
        .context("cannot spawn the signal thread")?;
    Ok(())
}

fn run_signals(control: Arc<Control>, mut signals: Signals, reload: Option<Reloader>) {
    loop {
        let pending: Vec<i32> = signals.wait().collect();
        for sig in pending {
            match sig {
                SIGHUP => do_reload(&control, reload.as_ref()),
                _ => run_drain(&control, &mut signals, sig),
            }
        }
    }
}

fn do_reload(control: &Control, reload: Option<&Reloader>) {
    let Some(reload) = reload else {
        tracing::info!("SIGHUP: this process runs on a built-in config; nothing to reload");
        return;
    };
    let counters = &control.metrics.control;
    match reload() {
        Err(e) => {
            counters.reload_error.fetch_add(1, Ordering::Relaxed);
            let problems = e.problems.join("; ");
            tracing::error!("SIGHUP: new configuration rejected, keeping the current one: {problems}");
        }
        Ok(mut next) => {
            let current = control.settings();
            for (key, was, now) in keep_restart_only(&current, &mut next) {
                tracing::warn!("SIGHUP: {key} changed ({was} -> {now}); needs a restart, keeping {was}");
            }
            let services = next.services.len();
            control.set_settings(next);
            counters.reload_ok.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                static_services = services,
                "SIGHUP: configuration reloaded; applies to new connections"
            );
        }
    }
}

/// Copy the settings a running process cannot change into `next`; returns (key, current,
/// asked) for each one the new file changed.
pub fn keep_restart_only(current: &Settings, next: &mut Settings) -> Vec<(&'static str, String, String)> {
    use crate::config::file::keys;
    let mut changed = Vec::new();
    macro_rules! keep {
        ($key:expr, $($field:tt)+) => {
            if current.$($field)+ != next.$($field)+ {
                changed.push(($key, format!("{:?}", current.$($field)+), format!("{:?}", next.$($field)+)));
                next.$($field)+ = current.$($field)+.clone();
            }
        };
    }
    keep!(keys::HOST, host);
    keep!(keys::PORT, port);
    keep!(keys::WORKERS, workers);
    keep!(keys::CPUS, pinning);
    keep!("--driver", driver);
    keep!(keys::ADMIN_PORT, admin_port);
    keep!(keys::ADMIN_ADDRESS, ops.admin_address);
    keep!("--log-level", log_level);
    keep!("--log-format", log_format);
    // Read once at start-up by the Consul sync threads, the key-source threads and the workers'
    // token caches: a reload cannot reach them, so say so instead of pretending. (Consul
    // tokens print as `***`.)
    keep!(keys::CONSUL_ENABLED, consul.enabled);
    keep!(keys::CONSUL_HOSTS, consul.hosts);
    keep!(keys::CONSUL_INTERVAL, consul.interval_ms);
    keep!(keys::CONSUL_MAX_WAIT_MS, consul.max_wait_ms);
    keep!(keys::CONSUL_RETRY_MAX_MS, consul.retry_max_ms);
    keep!(keys::OAUTH2_ENABLED, oauth2.enabled);
    keep!(keys::OAUTH2_KEYS, oauth2.sources);
    keep!(keys::OAUTH2_REFRESH_INTERVAL, oauth2.refresh_interval_ms);
    keep!(keys::OAUTH2_TOKEN_CACHE_SIZE, oauth2.token_cache_size);
    changed
}

/// SIGTERM/SIGINT: never returns (the process exits).
fn run_drain(control: &Control, signals: &mut Signals, first: i32) -> ! {
    let stop = &control.stop;
    let metrics = &control.metrics;
    let workers = metrics.workers.iter().count();
    let timeout = Duration::from_millis(control.settings().drain_timeout_ms);
    let started = Instant::now();
    stop.advance(Phase::Draining);
    tracing::info!(
        signal = first,
        open = metrics.open_connections(),
        "draining: no new connections; open ones may run up to {} ms (a second signal exits at once)",
        timeout.as_millis()
    );
    let mut closing = false;
    loop {
        for sig in signals.pending() {
            if sig == SIGHUP {
                tracing::info!("SIGHUP during the drain: ignored");
                continue;
            }
            tracing::warn!(
                signal = sig,
                open = metrics.open_connections(),
                "second signal: exiting now"
            );
            std::process::exit(1);
        }
        let open = metrics.open_connections();
        if stop.listeners_closed() >= workers && open <= 0 {
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "drained: exiting"
            );
            std::process::exit(0);
        }
        let elapsed = started.elapsed();
        if !closing && elapsed >= timeout {
            closing = true;
            stop.advance(Phase::Closing);
            tracing::info!(
                open,
                "drain timeout: closing the remaining connections over {} ms",
                CLOSE_SPREAD.as_millis()
            );
        }
        if closing && elapsed >= timeout + CLOSE_SPREAD + CLOSE_GRACE {
            tracing::warn!(open, "connections still open after the close window: exiting");
            std::process::exit(0);
        }
        std::thread::sleep(DRAIN_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_settings_are_kept_and_reported() {
        let current = Settings::default();
        let mut next = Settings {
            port: 1,
            workers: 3,
            connect_timeout_ms: 42,
            ..Settings::default()
        };
        next.ops.admin_address = "127.0.0.1".into();
        next.consul.hosts.push(crate::config::consul::ConsulHost {
            endpoint: "http://127.0.0.1:8500".into(),
            token: Some(crate::config::consul::Secret::new("acl-secret")),
        });
        next.oauth2.token_cache_size = 7;
        next.oauth2.leeway_ms = 5;
        let reported = keep_restart_only(&current, &mut next);
        let changed: Vec<&str> = reported.iter().map(|c| c.0).collect();
        assert_eq!(
            changed,
            [
                "capi.websocket.server.port",
                "capi.websocket.workers",
                "management.server.address",
                "capi.consul.hosts",
                "capi.oauth2.token-cache-size",
            ]
        );
        assert!(
            reported
                .iter()
                .all(|(_, was, now)| !was.contains("acl-secret") && !now.contains("acl-secret")),
            "a Consul token would be logged: {reported:?}"
        );
        assert_eq!((next.port, next.workers), (current.port, current.workers));
        assert_eq!(next.ops.admin_address, current.ops.admin_address);
        assert_eq!(next.consul.hosts, current.consul.hosts);
        assert_eq!(next.oauth2.token_cache_size, current.oauth2.token_cache_size);
        assert_eq!(next.connect_timeout_ms, 42, "reloadable settings apply");
        assert_eq!(next.oauth2.leeway_ms, 5, "reloadable settings apply");
    }
}
