//! JWKS refresh (DESIGN §5): one control-plane thread per key source (`capi-jwks-<i>`) loads
//! its JWKS URL (ureq, timeouts) or key file at startup, every `refresh-interval` ms, early
//! (at most once per 2 s) when a worker signals an unknown `kid`, and after a failure with
//! back-off capped at 10 s. A source that fails keeps its last good keys. Keys reach the
//! workers only through the snapshot ([`Control::set_source_keys`]); workers never wait here.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Control;
use crate::config::{KeySource, OAuth2Settings};
use crate::keys::{parse_key_document, Auth, KeySet, RefreshSignal, VerifyKey};

/// Early refresh on an unknown `kid`: at most once per this interval per source (DESIGN §5).
pub const EARLY_REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(2);
/// Back-off after a failed load: starts here, doubles, capped at [`BACKOFF_MAX`] (DESIGN §5).
pub const BACKOFF_START: Duration = Duration::from_millis(250);
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// ureq timeouts: connect, and the whole request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest key document accepted (Keycloak's certs for a realm are a few KiB).
const MAX_DOCUMENT_BYTES: u64 = 1024 * 1024;
/// How long startup waits for every source's first attempt (success or failure) before the
/// workers start, so the first connections already see the keys when the provider is up.
const FIRST_ATTEMPT_WAIT: Duration = Duration::from_secs(12);

/// The key part of the control plane's state: the configured sources, the last good keys of
/// each, and the key set built from them.
#[derive(Default)]
pub struct KeysPart {
    sources: Vec<KeySource>,
    loaded: Vec<Option<Arc<Vec<VerifyKey>>>>,
    generation: u64,
    set: Arc<KeySet>,
    refresh: Option<Arc<RefreshSignal>>,
}

impl KeysPart {
    /// The snapshot's authorization view under the current settings.
    pub fn auth(&self, settings: &OAuth2Settings) -> Auth {
        Auth::new(settings, Arc::clone(&self.set), self.refresh.clone())
    }
}

impl Control {
    /// A source delivered new keys: rebuild the key set (new generation) and publish.
    pub fn set_source_keys(&self, source: usize, keys: Arc<Vec<VerifyKey>>) {
        let mut parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        let part = &mut parts.keys;
        if source >= part.loaded.len() {
            return;
        }
        part.loaded[source] = Some(keys);
        part.generation += 1;
        part.set = Arc::new(KeySet::build(part.generation, &part.sources, &part.loaded));
        if part.loaded.iter().all(Option::is_some) {
            self.readiness.keys.store(true, Ordering::Release);
        }
        self.publish_locked(&parts);
    }

    fn init_keys(&self, sources: &[KeySource], refresh: Arc<RefreshSignal>) {
        let mut parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        parts.keys.sources = sources.to_vec();
        parts.keys.loaded = vec![None; sources.len()];
        parts.keys.refresh = Some(refresh);
        self.publish_locked(&parts);
    }
}

/// Start one thread per configured key source and wait (bounded) for each one's first
/// attempt. `/ready` (readiness.keys) becomes true once every source has loaded successfully
/// once; with the provider disabled or without sources it stays true.
pub fn start(control: &Arc<Control>) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let settings = control.settings();
    let o = &settings.oauth2;
    if !o.enabled && !o.sources.is_empty() {
        tracing::warn!(
            "capi.oauth2.provider.keys is set but capi.oauth2.provider.enabled is not true: \
             no keys are loaded and secured services answer 401"
        );
    }
    if o.enabled && o.sources.is_empty() {
        tracing::warn!(
            "capi.oauth2.provider.enabled is true but no keys are listed: secured services answer 401"
        );
    }
    let sources = o.active_sources().to_vec();
    if sources.is_empty() {
        return Ok(Vec::new());
    }
    control.readiness.keys.store(false, Ordering::Release);
    let interval = Duration::from_millis(o.refresh_interval_ms);
    let (first_tx, first_rx) = mpsc::channel::<()>();
    let mut handles = Vec::with_capacity(sources.len());
    let mut signal_txs = Vec::with_capacity(sources.len());
    for (i, source) in sources.iter().cloned().enumerate() {
        let (tx, rx) = mpsc::channel::<Arc<RefreshSignal>>();
        signal_txs.push(tx);
        let control = Arc::clone(control);
        let first = first_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("capi-jwks-{i}"))
            .spawn(move || {
                if let Ok(signal) = rx.recv() {
                    run_jwks_refresh(i, &source, interval, &control, &signal, first);
                }
            })?;
        handles.push(handle);
    }
    drop(first_tx);
    let signal = Arc::new(RefreshSignal::new(
        handles.iter().map(|h| h.thread().clone()).collect(),
    ));
    control.init_keys(&sources, Arc::clone(&signal));
    for tx in signal_txs {
        let _ = tx.send(Arc::clone(&signal));
    }
    let deadline = Instant::now() + FIRST_ATTEMPT_WAIT;
    for _ in 0..sources.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if first_rx.recv_timeout(left).is_err() {
            tracing::warn!("key sources still loading after {FIRST_ATTEMPT_WAIT:?}; starting anyway");
            break;
        }
    }
    Ok(handles)
}

/// The loop of one source's thread.
fn run_jwks_refresh(
    index: usize,
    source: &KeySource,
    interval: Duration,
    control: &Control,
    signal: &RefreshSignal,
    first_attempt: mpsc::Sender<()>,
) {
    let mut first_attempt = Some(first_attempt);
    let mut backoff = BACKOFF_START;
    let mut last_attempt: Option<Instant> = None;
    let mut last_good: Option<Vec<u8>> = None;
    let mut failing = false;
    let mut due = Instant::now();
    loop {
        // Wait until due; an unknown-kid signal brings `due` forward, rate-limited.
        loop {
            let now = Instant::now();
            if signal.take(index) {
                let earliest = last_attempt.map_or(now, |t| t + EARLY_REFRESH_MIN_INTERVAL);
                if earliest < due {
                    tracing::debug!(source = index, "early key refresh requested (unknown kid)");
                    due = earliest;
                }
            }
            if now >= due {
                break;
            }
            std::thread::park_timeout(due - now);
        }
        let started = Instant::now();
        last_attempt = Some(started);
        let result = fetch(source).and_then(|doc| {
            if last_good.as_deref() == Some(doc.as_slice()) {
                return Ok(None);
            }
            parse_key_document(&doc).map(|keys| Some((doc, keys)))
        });
        match result {
            Ok(update) => {
                control
                    .metrics
                    .control
                    .jwks_refresh_ok
                    .fetch_add(1, Ordering::Relaxed);
                if failing {
                    tracing::info!(source = index, "key source {} is back", source.source);
                    failing = false;
                }
                if let Some((doc, keys)) = update {
                    tracing::info!(
                        source = index,
                        keys = keys.len(),
                        "verification keys loaded from {}",
                        source.source
                    );
                    control.set_source_keys(index, Arc::new(keys));
                    last_good = Some(doc);
                }
                backoff = BACKOFF_START;
                due = started + interval;
            }
            Err(e) => {
                control
                    .metrics
                    .control
                    .jwks_refresh_error
                    .fetch_add(1, Ordering::Relaxed);
                if failing {
                    tracing::debug!(source = index, "key source {}: {e}", source.source);
                } else {
                    tracing::warn!(
                        source = index,
                        "key source {}: {e}; keeping the last good keys, retrying with back-off",
                        source.source
                    );
                    failing = true;
                }
                due = started + backoff;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
        if let Some(tx) = first_attempt.take() {
            let _ = tx.send(());
        }
    }
}

/// The source's document: an HTTP(S) GET or a file read, size-capped.
fn fetch(source: &KeySource) -> Result<Vec<u8>, String> {
    if source.is_url() {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build();
        let resp = agent
            .get(&source.source)
            .set("Accept", "application/json")
            .call()
            .map_err(|e| match e {
                ureq::Error::Status(code, _) => format!("HTTP status {code}"),
                ureq::Error::Transport(t) => format!("request failed: {t}"),
            })?;
        let mut body = Vec::new();
        resp.into_reader()
            .take(MAX_DOCUMENT_BYTES + 1)
            .read_to_end(&mut body)
            .map_err(|e| format!("reading the response: {e}"))?;
        if body.len() as u64 > MAX_DOCUMENT_BYTES {
            return Err(format!("document larger than {MAX_DOCUMENT_BYTES} bytes"));
        }
        Ok(body)
    } else {
        let path = std::path::Path::new(&source.source);
        let len = std::fs::metadata(path)
            .map_err(|e| format!("cannot read: {e}"))?
            .len();
        if len > MAX_DOCUMENT_BYTES {
            return Err(format!("file larger than {MAX_DOCUMENT_BYTES} bytes"));
        }
        std::fs::read(path).map_err(|e| format!("cannot read: {e}"))
    }
}
