//! Consul sync (DESIGN §7): one blocking thread per Consul host (`capi-consul-<i>`, ureq) that
//! turns the host's catalog into table [`Instance`]s and hands them to [`Control`], the only
//! publisher. Never runs on a worker; on any error it keeps the last good table.
//!
//! Per host, one loop (index rules of shared/consul/README.md §5):
//! 1. take a token from a pacing bucket (burst [`PACE_BURST`], one refill per [`PACE_REFILL`]):
//!    calm periods pass straight through, a server that keeps answering at once is polled at
//!    ≤ 5 requests/s instead of in a busy loop;
//! 2. `GET /v1/catalog/services?index=<idx>&wait=<W>` (no `index` while idx is 0). W is the
//!    smaller of `max-wait-ms` and the time left until the next health refresh (scaled by
//!    16/17 because Consul adds up to W/16 jitter); the request timeout is W + W/16 + 2 s;
//! 3. when the index moved (a registration, deregistration or meta change anywhere), when the
//!    names changed, or when `timer.interval` has passed since the last refresh: read
//!    `/v1/health/service/<name>` for every name (instances, meta and every check; one request
//!    per name, `/v1/catalog/service/<name>` is not needed: the health answer carries the
//!    same instance fields plus the node address and the checks), convert, and publish when
//!    the instance list differs from the last one published;
//! 4. index: `new < idx` → apply, then idx = 0 (the next read starts over); else
//!    idx = max(new, 1) (never block on 0). Any failure (connect, timeout, status ≠ 200, bad
//!    JSON, missing index) → keep the table, idx = 0, back off 100 ms doubling with jitter up
//!    to `retry-max-ms`; one log line per state change.
//!
//! Health flips do not move the catalog index, so they are seen by the timer: at most
//! `timer.interval` late (plus one health read). The timer was chosen over one blocking query
//! per service: those need a held connection (and, with a blocking client, a thread) per
//! service per host, while the timer costs one request per service per interval; a node that
//! dies between two reads is also skipped at once by each worker's passive health (§6).

pub mod api;
#[cfg(test)]
mod fixture_tests;
mod pace;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use pace::{Backoff, Pace, BACKOFF_START, PACE_BURST, PACE_REFILL};

use super::Control;
use crate::config::consul::{ConsulHost, ConsulSettings};
use crate::snapshot::Instance;

/// TCP connect timeout to Consul (an agent is local or near).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Added to W + W/16 for the blocking read timeout, so a healthy hold never times out.
pub const READ_MARGIN: Duration = Duration::from_secs(2);
/// Timeout of a plain (non-blocking) read; never longer than a blocking hold (`max-wait-ms` +
/// [`READ_MARGIN`]), so a small `max-wait-ms` also bounds a stalled read.
pub const PLAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Below this remaining time the catalog is read without blocking.
const MIN_BLOCK: Duration = Duration::from_millis(50);
/// Largest body accepted from Consul.
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// Start one sync thread per configured host when discovery is enabled; marks Consul
/// readiness false until every host synced once. Threads live as long as the process.
pub fn start(control: &Arc<Control>) -> Vec<JoinHandle<()>> {
    let settings = control.settings().consul.clone();
    if !settings.enabled || settings.hosts.is_empty() {
        return Vec::new();
    }
    control.readiness.consul.store(false, Ordering::Release);
    let pending = Arc::new(AtomicUsize::new(settings.hosts.len()));
    let mut threads = Vec::new();
    for (i, host) in settings.hosts.iter().enumerate() {
        let mut sync = HostSync::new(host.clone(), &settings, Arc::clone(control), Arc::clone(&pending));
        match std::thread::Builder::new()
            .name(format!("capi-consul-{i}"))
            .spawn(move || sync.run())
        {
            Ok(t) => threads.push(t),
            Err(e) => tracing::error!(host = %host.endpoint, "cannot start the Consul sync thread: {e}"),
        }
    }
    tracing::info!(
        hosts = settings.hosts.len(),
        interval_ms = settings.interval_ms,
        "Consul discovery started"
    );
    threads
}

/// The blocking `wait` for the next catalog request: until the next health refresh (scaled by
/// 16/17 so that Consul's jitter of up to W/16 cannot make it late), at most `max_wait`.
/// `None` = do not block (read at once).
pub fn blocking_wait(index: u64, until_refresh: Duration, max_wait: Duration) -> Option<Duration> {
    if index == 0 {
        return None;
    }
    let w = (until_refresh * 16 / 17).min(max_wait);
    (w >= MIN_BLOCK).then_some(w)
}

/// README §5 steps 6 and 8: the index to send next.
pub fn next_index(current: u64, answered: u64) -> u64 {
    if answered < current {
        0
    } else {
        answered.max(1)
    }
}

/// Go duration text for `wait=` (`1500ms`).
fn go_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// A 200 answer that carried a valid index.
struct Answer {
    body: Vec<u8>,
    index: u64,
    acl_deny: bool,
}

/// How the host is doing, for one log line per change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Starting,
    Ok,
    Failing,
}

/// The sync of one Consul host.
struct HostSync {
    host: ConsulHost,
    agent: ureq::Agent,
    control: Arc<Control>,
    pending: Arc<AtomicUsize>,
    /// Whether this host already counted itself in `pending`.
    counted: bool,
    interval: Duration,
    max_wait: Duration,
    plain_timeout: Duration,
    index: u64,
    names: Vec<String>,
    published: Option<Vec<Instance>>,
    next_refresh: Option<Instant>,
    state: State,
    failures: u64,
    warned_anonymous: bool,
    pace: Pace,
    backoff: Backoff,
}

impl HostSync {
    fn new(
        host: ConsulHost,
        settings: &ConsulSettings,
        control: Arc<Control>,
        pending: Arc<AtomicUsize>,
    ) -> HostSync {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .user_agent(concat!("capi-ws/", env!("CARGO_PKG_VERSION")))
            .build();
        let seed = RandomState::new().build_hasher().finish();
        HostSync {
            host,
            agent,
            control,
            pending,
            counted: false,
            interval: Duration::from_millis(settings.interval_ms),
            max_wait: Duration::from_millis(settings.max_wait_ms),
            plain_timeout: PLAIN_TIMEOUT.min(Duration::from_millis(settings.max_wait_ms) + READ_MARGIN),
            index: 0,
            names: Vec::new(),
            published: None,
            next_refresh: None,
            state: State::Starting,
            failures: 0,
            warned_anonymous: false,
            pace: Pace::new(Instant::now()),
            backoff: Backoff::new(Duration::from_millis(settings.retry_max_ms), seed),
        }
    }

    fn run(&mut self) {
        loop {
            if let Some(pause) = self.pace.take(Instant::now()) {
                std::thread::sleep(pause);
                continue;
            }
            match self.cycle() {
                Ok(()) => self.on_success(),
                Err(e) => {
                    self.on_error(&e);
                    std::thread::sleep(self.backoff.delay());
                }
            }
        }
    }

    /// One catalog read, then the health reads when something may have changed.
    fn cycle(&mut self) -> Result<(), String> {
        let now = Instant::now();
        let until_refresh = self
            .next_refresh
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
        let (query, timeout) = match blocking_wait(self.index, until_refresh, self.max_wait) {
            Some(w) => (
                format!("?index={}&wait={}", self.index, go_duration(w)),
                w + w / 16 + READ_MARGIN,
            ),
            None => (String::new(), self.plain_timeout),
        };
        let catalog = self.get(&format!("/v1/catalog/services{query}"), timeout)?;
        let names = api::parse_service_names(&catalog.body)?;
        let previous = self.index;
        self.index = next_index(previous, catalog.index);
        if catalog.index < previous && previous > 1 {
            tracing::info!(
                host = %self.host.endpoint,
                from = previous,
                to = catalog.index,
                "Consul index went backwards (restore or another server); reading everything again"
            );
        }
        self.control
            .metrics
            .control
            .consul_last_index
            .store(catalog.index, Ordering::Relaxed);
        if self.host.token.is_none() && catalog.acl_deny && !self.warned_anonymous {
            self.warned_anonymous = true;
            tracing::warn!(
                host = %self.host.endpoint,
                "Consul ACL default policy is deny and no token is configured: the catalog seen \
                 is the anonymous token's (set capi.consul.hosts[].token or capi.consul.token)"
            );
        }
        // A hold that ended within the last sixteenth before the refresh counts as due: the
        // refresh happens now instead of after one more (immediate) catalog read.
        let slack = self.interval / 16 + MIN_BLOCK;
        let refresh_due = self.next_refresh.is_none_or(|t| Instant::now() + slack >= t);
        if catalog.index == previous && names == self.names && !refresh_due && self.published.is_some() {
            return Ok(());
        }
        let instances = self.read_instances(&names)?;
        self.names = names;
        self.next_refresh = Some(Instant::now() + self.interval);
        if self.published.as_ref() != Some(&instances) {
            tracing::debug!(
                host = %self.host.endpoint,
                index = catalog.index,
                instances = instances.len(),
                "Consul catalog changed; publishing"
            );
            self.control
                .set_consul_instances(&self.host.endpoint, instances.clone());
            self.published = Some(instances);
        }
        Ok(())
    }

    /// `/v1/health/service/<name>` for every name, converted; all or nothing.
    fn read_instances(&self, names: &[String]) -> Result<Vec<Instance>, String> {
        let mut out = Vec::new();
        for name in names {
            let path = format!("/v1/health/service/{}", api::encode_path_segment(name));
            let answer = self.get(&path, self.plain_timeout)?;
            let entries = api::parse_health(&answer.body).map_err(|e| format!("{path}: {e}"))?;
            for entry in &entries {
                match api::to_instance(entry) {
                    Ok(inst) => out.push(inst),
                    Err(why) => tracing::debug!(
                        service = %name,
                        id = %entry.service.id,
                        "Consul instance not used: {why:?}"
                    ),
                }
            }
        }
        Ok(out)
    }

    /// One GET with the token header; only a 200 with a numeric `X-Consul-Index` is an answer.
    fn get(&self, path: &str, timeout: Duration) -> Result<Answer, String> {
        let url = format!("{}{path}", self.host.endpoint);
        let mut req = self.agent.get(&url).timeout(timeout);
        if let Some(token) = &self.host.token {
            req = req.set("X-Consul-Token", token.expose());
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                let mut text = String::new();
                let _ = r.into_reader().take(200).read_to_string(&mut text);
                return Err(format!("{path}: HTTP {code}: {}", text.trim()));
            }
            Err(ureq::Error::Transport(t)) => return Err(format!("{path}: {t}")),
        };
        if resp.status() != 200 {
            return Err(format!("{path}: HTTP {} (expected 200)", resp.status()));
        }
        let index = api::parse_index(resp.header("X-Consul-Index")).map_err(|e| format!("{path}: {e}"))?;
        let acl_deny = resp
            .header("X-Consul-Default-Acl-Policy")
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("deny"));
        let mut body = Vec::new();
        resp.into_reader()
            .take(MAX_BODY_BYTES)
            .read_to_end(&mut body)
            .map_err(|e| format!("{path}: reading the body: {e}"))?;
        Ok(Answer {
            body,
            index,
            acl_deny,
        })
    }

    fn on_success(&mut self) {
        self.control
            .metrics
            .control
            .consul_sync_ok
            .fetch_add(1, Ordering::Relaxed);
        self.backoff.reset();
        match self.state {
            State::Ok => {}
            State::Starting => {
                tracing::info!(
                    host = %self.host.endpoint,
                    services = self.names.len(),
                    instances = self.published.as_ref().map_or(0, Vec::len),
                    "Consul host synced"
                );
                self.mark_synced();
            }
            State::Failing => {
                tracing::info!(
                    host = %self.host.endpoint,
                    failed_attempts = self.failures,
                    "Consul sync recovered"
                );
                self.mark_synced();
            }
        }
        self.state = State::Ok;
        self.failures = 0;
    }

    /// First success of this host: when every host has synced once, Consul is ready (§8).
    fn mark_synced(&mut self) {
        if self.counted {
            return;
        }
        self.counted = true;
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.control.readiness.consul.store(true, Ordering::Release);
        }
    }

    fn on_error(&mut self, e: &str) {
        self.control
            .metrics
            .control
            .consul_sync_error
            .fetch_add(1, Ordering::Relaxed);
        self.index = 0;
        self.failures += 1;
        if self.state == State::Failing {
            tracing::debug!(host = %self.host.endpoint, "Consul sync still failing: {e}");
            return;
        }
        tracing::warn!(
            host = %self.host.endpoint,
            "Consul sync failing: {e}; keeping the last table, retrying with back-off"
        );
        self.state = State::Failing;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A canned Consul on 127.0.0.1:0: every request gets the answer for its path (keep-alive),
    /// `X-Consul-Index: 7`. Returns the endpoint.
    fn canned_consul(health: &'static str) -> String {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 2048];
                    while let Ok(n) = stream.read(&mut chunk) {
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                            buf.drain(..end + 4);
                            let body = if head.starts_with("GET /v1/catalog/services") {
                                r#"{"consul":[],"chat":[]}"#
                            } else {
                                health
                            };
                            let answer = format!(
                                "HTTP/1.1 200 OK\r\nX-Consul-Index: 7\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if stream.write_all(answer.as_bytes()).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        endpoint
    }

    #[test]
    fn first_sync_publishes_counts_and_makes_consul_ready() {
        // After the first catalog + health read of the only host: the instance is published
        // (healthy, node address fallback), the sync counted, the index recorded, Consul ready.
        let health = r#"[{"Node":{"Node":"n1","Address":"127.0.0.1"},
            "Service":{"ID":"chat-1","Service":"chat","Address":"","Port":9,"Meta":{"group":"dev","type":"websocket"}},
            "Checks":[{"CheckID":"serfHealth","Status":"passing"}]}]"#;
        let settings = crate::config::Settings {
            consul: ConsulSettings {
                enabled: true,
                hosts: vec![ConsulHost {
                    endpoint: canned_consul(health),
                    token: None,
                }],
                interval_ms: 60_000,
                max_wait_ms: 200,
                retry_max_ms: 100,
            },
            ..crate::config::Settings::default()
        };
        let control = Control::new(settings, 1);
        let threads = start(&control);
        assert_eq!(threads.len(), 1);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !control.readiness.consul.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "Consul never became ready");
            std::thread::sleep(Duration::from_millis(5));
        }
        let snap = control.published.load();
        let svc = snap.lookup("/chat/dev").expect("published");
        assert_eq!(svc.nodes.len(), 1);
        assert_eq!(svc.nodes[0].host_port, "127.0.0.1:9");
        assert!(svc.nodes[0].healthy);
        let m = &control.metrics.control;
        assert!(m.consul_sync_ok.load(Ordering::Relaxed) >= 1);
        assert_eq!(m.consul_last_index.load(Ordering::Relaxed), 7);
        assert_eq!(m.consul_sync_error.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn disabled_discovery_starts_nothing_and_stays_ready() {
        let control = Control::new(crate::config::Settings::default(), 1);
        assert!(start(&control).is_empty());
        assert!(control.readiness.consul.load(Ordering::Acquire));
    }

    #[test]
    fn index_rules() {
        let cases: &[(&str, u64, u64, u64)] = &[
            ("first read", 0, 175, 175),
            ("moved", 175, 180, 180),
            ("unchanged (timeout)", 175, 175, 175),
            ("backwards: start over", 175, 5, 0),
            ("zero from a buggy server: wait on 1", 0, 0, 1),
            ("zero after a real index: backwards", 175, 0, 0),
            ("64-bit", 1, u64::MAX, u64::MAX),
        ];
        for (name, cur, answered, want) in cases {
            assert_eq!(next_index(*cur, *answered), *want, "{name}");
        }
    }

    #[test]
    fn wait_is_capped_and_leaves_room_for_consul_jitter() {
        let max = Duration::from_secs(300);
        assert_eq!(
            blocking_wait(0, Duration::from_secs(20), max),
            None,
            "index 0: never block"
        );
        let w = blocking_wait(7, Duration::from_secs(17), max).unwrap();
        assert_eq!(w, Duration::from_secs(16));
        assert!(w + w / 16 <= Duration::from_secs(17));
        assert_eq!(
            blocking_wait(7, Duration::from_secs(3600), max),
            Some(max),
            "capped by max-wait"
        );
        assert_eq!(
            blocking_wait(7, Duration::from_millis(10), max),
            None,
            "refresh due: no block"
        );
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
    }
}
