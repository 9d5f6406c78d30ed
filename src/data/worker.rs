//! Workers (DESIGN §1): one thread per worker, optionally pinned, each with its own monoio
//! runtime (io_uring or epoll) and its own `SO_REUSEPORT` listener. The accept loop only
//! accepts, refreshes the snapshot when its generation changed, and spawns the connection task.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use crate::config::{Pinning, Settings};
use crate::control::Control;
use crate::data::balance::LocalTable;
use crate::data::conn::handle_conn;
use crate::data::pipes::PipePool;
use crate::data::stop::{race, Either, LocalStop, StopSignal};
use crate::metrics::Metrics;
use crate::rt::{self, DriverKind};
use crate::snapshot::Published;

/// Idle pipes a worker keeps for reuse (each is 2 descriptors); more are closed when drained.
const PIPE_POOL_IDLE: usize = 256;
/// Accept back-off when out of descriptors or memory: starts here, doubles, capped below.
const ACCEPT_BACKOFF_START: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(500);
/// Accepts a worker keeps in flight on io_uring (one per accept loop on the same listener): with
/// one, every accepted connection waits for a completion → task → resubmission round trip under
/// churn. epoll drains the backlog on one readiness event, so it runs a single loop.
const URING_ACCEPTS: usize = 8;

/// Per-worker state shared by the accept loop and this worker's connection tasks (never
/// crosses threads).
pub struct WorkerCtx {
    pub id: usize,
    pub driver: DriverKind,
    pub pipes: PipePool,
    pub metrics: Arc<Metrics>,
    /// Drain gates of this worker (issue 6).
    pub stop: LocalStop,
    /// This worker's access-log line buffer (reused; never shared).
    pub access_buf: RefCell<Vec<u8>>,
    /// Verified-token cache and refresh signalling (JWT authorization).
    pub auth: crate::data::authz::AuthState,
    published: Arc<Published>,
    table: RefCell<Rc<LocalTable>>,
    seen_generation: Cell<u64>,
}

impl WorkerCtx {
    fn new(id: usize, driver: DriverKind, published: Arc<Published>, metrics: Arc<Metrics>) -> Self {
        let snap = published.load();
        let gen = snap.generation;
        let cache_capacity = snap.auth.cache_capacity;
        WorkerCtx {
            id,
            driver,
            pipes: PipePool::new(PIPE_POOL_IDLE),
            table: RefCell::new(Rc::new(LocalTable::build(snap, None))),
            seen_generation: Cell::new(gen),
            auth: crate::data::authz::AuthState::new(cache_capacity),
            metrics,
            stop: LocalStop::default(),
            access_buf: RefCell::new(Vec::with_capacity(512)),
            published,
        }
    }

    /// The table for a new connection: one acquire load; rebuilt only when the generation moved.
    pub fn current_table(&self) -> Rc<LocalTable> {
        if self.published.generation() != self.seen_generation.get() {
            let snap = self.published.load();
            self.seen_generation.set(snap.generation);
            let next = LocalTable::build(snap, Some(&self.table.borrow()));
            *self.table.borrow_mut() = Rc::new(next);
        }
        Rc::clone(&self.table.borrow())
    }
}

/// The running workers.
pub struct Workers {
    pub ws_addr: SocketAddr,
    pub driver: DriverKind,
    pub threads: Vec<JoinHandle<()>>,
}

/// Number of workers: the setting, else one per available core.
pub fn resolve_worker_count(settings: &Settings) -> usize {
    if settings.workers > 0 {
        return settings.workers;
    }
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Which CPU each worker is pinned to (None = not pinned). Errors name the flag.
pub fn resolve_pinning(
    pinning: &Pinning,
    workers: usize,
    available: &[usize],
) -> anyhow::Result<Vec<Option<usize>>> {
    match pinning {
        Pinning::None => Ok(vec![None; workers]),
        Pinning::Sequential => {
            if available.is_empty() {
                bail!("--pin: the CPUs this process may use cannot be read");
            }
            if workers > available.len() {
                bail!(
                    "--pin: {workers} workers but only {} usable cores",
                    available.len()
                );
            }
            Ok(available.iter().take(workers).map(|&c| Some(c)).collect())
        }
        Pinning::List(cpus) => {
            if cpus.len() < workers {
                bail!("--cpus: {workers} workers but only {} CPUs listed", cpus.len());
            }
            if let Some(bad) = cpus.iter().find(|c| !available.contains(c)) {
                bail!("--cpus: CPU {bad} is not available to this process (usable: {available:?})");
            }
            Ok(cpus.iter().take(workers).map(|&c| Some(c)).collect())
        }
    }
}

/// Bind every worker's listener, start the threads and return once all of them accept.
pub fn start_workers(settings: &Settings, control: &Control, driver: DriverKind) -> anyhow::Result<Workers> {
    let count = resolve_worker_count(settings);
    let available: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let pins = resolve_pinning(&settings.pinning, count, &available)?;

    let addr = (settings.host.as_str(), settings.port)
        .to_socket_addrs()
        .with_context(|| format!("capi.websocket.server.host: cannot resolve {:?}", settings.host))?
        .next()
        .ok_or_else(|| anyhow!("capi.websocket.server.host: {:?} has no address", settings.host))?;

    // The first worker binds (port 0 = the kernel picks); the others reuse the port it got.
    let mut listeners = Vec::with_capacity(count);
    let first = rt::bind_reuseport(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let ws_addr = first.local_addr()?;
    listeners.push(first);
    for _ in 1..count {
        listeners.push(rt::bind_reuseport(ws_addr).with_context(|| format!("cannot listen on {ws_addr}"))?);
    }

    let (ready_tx, ready_rx) = mpsc::channel::<Result<usize, String>>();
    let mut threads = Vec::with_capacity(count);
    for (id, (listener, pin)) in listeners.into_iter().zip(pins).enumerate() {
        let published = Arc::clone(&control.published);
        let metrics = Arc::clone(&control.metrics);
        let stop = Arc::clone(&control.stop);
        let ready = ready_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("capi-ws-w{id}"))
            .spawn(move || run_worker(id, driver, pin, listener, published, metrics, stop, ready))
            .context("cannot spawn a worker thread")?;
        threads.push(handle);
    }
    drop(ready_tx);
    for _ in 0..count {
        match ready_rx.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => bail!("{e}"),
            Err(_) => bail!("a worker thread stopped during start-up"),
        }
    }
    Ok(Workers {
        ws_addr,
        driver,
        threads,
    })
}

#[allow(clippy::too_many_arguments)]
fn run_worker(
    id: usize,
    driver: DriverKind,
    pin: Option<usize>,
    listener: std::net::TcpListener,
    published: Arc<Published>,
    metrics: Arc<Metrics>,
    stop: Arc<StopSignal>,
    ready: mpsc::Sender<Result<usize, String>>,
) {
    if let Some(cpu) = pin {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
            let _ = ready.send(Err(format!("worker {id}: cannot pin to CPU {cpu}")));
            return;
        }
    }
    let result = rt::block_on(driver, async move {
        let listener = match monoio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(format!("worker {id}: listener: {e}")));
                return;
            }
        };
        tracing::debug!(worker = id, driver = driver.as_str(), cpu = ?pin, "worker accepting");
        let _ = ready.send(Ok(id));
        drop(ready);
        let ctx = Rc::new(WorkerCtx::new(id, driver, published, metrics));
        let watcher = Rc::clone(&ctx);
        let global = Arc::clone(&stop);
        monoio::spawn(async move { watcher.stop.run_watch(&global).await });
        let loops = if driver == DriverKind::IoUring {
            URING_ACCEPTS
        } else {
            1
        };
        futures_util::future::join_all((0..loops).map(|_| run_accept(Rc::clone(&ctx), &listener))).await;
        drop(listener);
        stop.listener_closed();
        tracing::info!(worker = id, "listener closed (draining)");
        // Keep the runtime alive for the connections still open; the signal thread exits the
        // process when the last one closes or the drain window ends.
        std::future::pending::<()>().await;
    });
    if let Err(e) = result {
        tracing::error!(worker = id, "worker runtime failed: {e}");
        // start_workers reports the missing readiness message; after start-up this is fatal.
        std::process::exit(1);
    }
}

/// Accept until the drain starts; then the caller drops (closes) the listener so the port is free.
async fn run_accept(ctx: Rc<WorkerCtx>, listener: &monoio::net::TcpListener) {
    let mut backoff = ACCEPT_BACKOFF_START;
    let mut starved = false;
    loop {
        let accepted = match race(ctx.stop.draining.wait(), listener.accept()).await {
            Either::Left(()) => return,
            Either::Right(r) => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                if starved {
                    tracing::info!(worker = ctx.id, "accepting again");
                    starved = false;
                }
                backoff = ACCEPT_BACKOFF_START;
                let table = ctx.current_table();
                monoio::spawn(handle_conn(Rc::clone(&ctx), table, stream, peer));
            }
            Err(e) if is_resource_exhaustion(&e) => {
                if !starved {
                    tracing::warn!(worker = ctx.id, "accept: {e}; backing off");
                    starved = true;
                }
                if let Either::Left(()) = race(ctx.stop.draining.wait(), monoio::time::sleep(backoff)).await {
                    return;
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
            Err(e) => tracing::debug!(worker = ctx.id, "accept: {e}"),
        }
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_resolution() {
        let avail = [0, 1, 2, 3];
        assert_eq!(
            resolve_pinning(&Pinning::None, 2, &avail).unwrap(),
            vec![None, None]
        );
        assert_eq!(
            resolve_pinning(&Pinning::Sequential, 2, &avail).unwrap(),
            vec![Some(0), Some(1)]
        );
        assert_eq!(
            resolve_pinning(&Pinning::List(vec![0, 2, 3]), 3, &avail).unwrap(),
            vec![Some(0), Some(2), Some(3)]
        );
        let err = resolve_pinning(&Pinning::List(vec![0, 9]), 2, &avail)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--cpus") && err.contains('9'), "{err}");
        assert!(resolve_pinning(&Pinning::List(vec![0]), 2, &avail).is_err());
        assert!(resolve_pinning(&Pinning::Sequential, 5, &avail).is_err());
    }

    #[test]
    fn worker_count() {
        let s = Settings {
            workers: 3,
            ..Settings::default()
        };
        assert_eq!(resolve_worker_count(&s), 3);
        assert!(resolve_worker_count(&Settings::default()) >= 1);
    }
}
