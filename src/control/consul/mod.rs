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

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Control;
use crate::config::consul::{ConsulHost, ConsulSettings};
use crate::snapshot::Instance;

/// Pacing bucket size: a burst of changes passes without delay.
pub const PACE_BURST: u32 = 5;
/// One pacing token comes back this often (steady state ≤ 5 catalog requests/s per host).
pub const PACE_REFILL: Duration = Duration::from_millis(200);
/// First back-off after an error; doubles up to `retry-max-ms`.
pub const BACKOFF_START: Duration = Duration::from_millis(100);
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

/// Token bucket in front of every catalog request (README §5 step 2).
#[derive(Debug)]
pub struct Pace {
    tokens: u32,
    last: Instant,
}

impl Pace {
    pub fn new(now: Instant) -> Pace {
        Pace {
            tokens: PACE_BURST,
            last: now,
        }
    }

    /// Take a token at `now`: `None` when one was available, else how long to wait first.
    pub fn take(&mut self, now: Instant) -> Option<Duration> {
        let earned = (now.saturating_duration_since(self.last).as_millis() / PACE_REFILL.as_millis()) as u32;
        if earned > 0 {
            self.tokens = (self.tokens + earned).min(PACE_BURST);
            self.last += PACE_REFILL * earned;
        }
        if self.tokens > 0 {
            self.tokens -= 1;
            return None;
        }
        Some((self.last + PACE_REFILL).saturating_duration_since(now))
    }
}

/// Exponential back-off with jitter: the n-th delay is uniform in [d/2, d], d = start·2ⁿ ≤ cap.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    cap: Duration,
    rng: u64,
}

impl Backoff {
    pub fn new(cap: Duration, seed: u64) -> Backoff {
        Backoff {
            next: BACKOFF_START.min(cap),
            cap,
            rng: seed | 1,
        }
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_START.min(self.cap);
    }

    pub fn delay(&mut self) -> Duration {
        // xorshift64: good enough to spread retries, no dependency needed.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let d = self.next;
        let half = d / 2;
        let spread = half.as_millis().max(1) as u64;
        self.next = (self.next * 2).min(self.cap);
        half + Duration::from_millis(self.rng % (spread + 1))
    }
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
        let refresh_due = self.next_refresh.map_or(true, |t| Instant::now() + slack >= t);
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

    #[test]
    fn pace_allows_a_burst_then_paces() {
        let t0 = Instant::now();
        let mut p = Pace::new(t0);
        for i in 0..PACE_BURST {
            assert_eq!(p.take(t0), None, "burst token {i}");
        }
        let wait = p.take(t0).expect("bucket empty");
        assert!(wait > Duration::ZERO && wait <= PACE_REFILL);
        assert_eq!(p.take(t0 + PACE_REFILL), None, "one token back after one refill");
        assert!(p.take(t0 + PACE_REFILL).is_some());
        // A long calm period refills the bucket, never beyond the burst.
        let later = t0 + PACE_REFILL * 100;
        for _ in 0..PACE_BURST {
            assert_eq!(p.take(later), None);
        }
        assert!(p.take(later).is_some());
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let cap = Duration::from_millis(1000);
        let mut b = Backoff::new(cap, 42);
        let mut nominal = BACKOFF_START;
        for step in 0..10 {
            let d = b.delay();
            assert!(
                d >= nominal / 2 && d <= nominal,
                "step {step}: {d:?} vs {nominal:?}"
            );
            nominal = (nominal * 2).min(cap);
        }
        b.reset();
        assert!(b.delay() <= BACKOFF_START);
        let mut tiny = Backoff::new(Duration::from_millis(10), 7);
        assert!(tiny.delay() <= Duration::from_millis(10));
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
