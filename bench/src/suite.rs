//! The bench suite: which rows run against which targets, in what order (every run goes
//! through all rows, and each row through all targets — A B C A B C — so drift hits all
//! alike), with each target started fresh for each measurement and stopped after it. Rows
//! whose capability is missing are recorded as "n/a" with the reason, never silently dropped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::discovery;
use crate::jwt::Keys;
use crate::load::{self, Auth, Outcome, Scenario, Spec};
use crate::targets::{self, Env, ProcStats, TargetId, OPEN_PATH};
use crate::wire;

/// One line of the report (a scenario, or a variant of one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Row {
    HandshakeOpen,
    HandshakeJwtHit,
    HandshakeJwtMiss,
    Echo64,
    Echo4k,
    Bulk64k,
    Bulk1m,
    Idle,
    Discovery,
}

impl Row {
    pub const ALL: [Row; 9] = [
        Row::HandshakeOpen,
        Row::HandshakeJwtHit,
        Row::HandshakeJwtMiss,
        Row::Echo64,
        Row::Echo4k,
        Row::Bulk64k,
        Row::Bulk1m,
        Row::Idle,
        Row::Discovery,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Row::HandshakeOpen => "handshake-open",
            Row::HandshakeJwtHit => "handshake-jwt-hit",
            Row::HandshakeJwtMiss => "handshake-jwt-miss",
            Row::Echo64 => "echo-64",
            Row::Echo4k => "echo-4k",
            Row::Bulk64k => "bulk-64k",
            Row::Bulk1m => "bulk-1m",
            Row::Idle => "idle",
            Row::Discovery => "discovery",
        }
    }

    pub fn from_name(s: &str) -> Option<Row> {
        Row::ALL.into_iter().find(|r| r.name() == s)
    }

    /// Targets measured on this row, in run order.
    pub fn targets(self) -> &'static [TargetId] {
        use TargetId::*;
        match self {
            Row::HandshakeOpen | Row::Echo64 | Row::Echo4k | Row::Idle => {
                &[Direct, CapiIouring, CapiEpoll, Nginx, Haproxy]
            }
            Row::HandshakeJwtHit | Row::HandshakeJwtMiss => &[CapiIouring, CapiEpoll, HaproxyJwt],
            Row::Bulk64k | Row::Bulk1m => &[Direct, CapiIouring, CapiEpoll, Nginx, NginxTuned, Haproxy],
            // Only capi-ws discovers services in Consul; the peers' cells stay blank.
            Row::Discovery => &[CapiIouring, CapiEpoll],
        }
    }

    fn secured(self) -> bool {
        matches!(self, Row::HandshakeJwtHit | Row::HandshakeJwtMiss)
    }
}

/// How big and how long.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub mode: String,
    pub runs: usize,
    pub warmup_s: f64,
    pub handshake_s: f64,
    pub echo_s: f64,
    pub bulk_s: f64,
    pub handshake_concurrency: usize,
    pub echo_conns: usize,
    pub bulk_conns: usize,
    pub bulk_inflight: usize,
    pub idle_conns: usize,
    pub jwt_miss_tokens: usize,
    /// Registrations timed per discovery measurement.
    pub discovery_trials: usize,
    pub client_threads: usize,
    pub workers: usize,
    pub backend_workers: usize,
    pub verify: bool,
    pub pinning: String,
    #[serde(skip)]
    pub rows: Vec<Row>,
    #[serde(skip)]
    pub targets: Vec<TargetId>,
}

impl Plan {
    pub fn for_mode(mode: &str) -> Option<Plan> {
        let base = Plan {
            mode: mode.to_string(),
            runs: 3,
            warmup_s: 1.0,
            handshake_s: 5.0,
            echo_s: 5.0,
            bulk_s: 5.0,
            handshake_concurrency: 64,
            echo_conns: 256,
            bulk_conns: 16,
            bulk_inflight: 4,
            idle_conns: 9_000,
            jwt_miss_tokens: 15_000,
            discovery_trials: 20,
            client_threads: 2,
            workers: 2,
            backend_workers: 2,
            verify: false,
            pinning: "none (the scheduler places client, proxy and backend threads)".into(),
            rows: Row::ALL.to_vec(),
            targets: TargetId::ALL.to_vec(),
        };
        match mode {
            "full" => Some(base),
            "quick" => Some(Plan {
                runs: 1,
                warmup_s: 0.25,
                handshake_s: 1.0,
                echo_s: 1.0,
                bulk_s: 1.0,
                idle_conns: 2_000,
                jwt_miss_tokens: 3_000,
                discovery_trials: 5,
                ..base
            }),
            "smoke" => Some(Plan {
                runs: 1,
                warmup_s: 0.1,
                handshake_s: 0.5,
                echo_s: 0.5,
                bulk_s: 0.5,
                idle_conns: 200,
                jwt_miss_tokens: 200,
                discovery_trials: 3,
                verify: true,
                rows: vec![
                    Row::HandshakeOpen,
                    Row::Echo64,
                    Row::Echo4k,
                    Row::Bulk64k,
                    Row::Bulk1m,
                    Row::Idle,
                    Row::Discovery,
                ],
                targets: vec![TargetId::Direct, TargetId::CapiIouring, TargetId::CapiEpoll],
                ..base
            }),
            _ => None,
        }
    }

    /// The load window (the discovery row has none: it counts trials, see `discovery.rs`).
    fn duration(&self, row: Row) -> Duration {
        let s = match row {
            Row::HandshakeOpen | Row::HandshakeJwtHit | Row::HandshakeJwtMiss => self.handshake_s,
            Row::Echo64 | Row::Echo4k => self.echo_s,
            Row::Bulk64k | Row::Bulk1m | Row::Idle | Row::Discovery => self.bulk_s,
        };
        Duration::from_secs_f64(s)
    }

    /// The load of a row (discovery's trials are not a load scenario; it maps to the
    /// handshake only to keep the match total, and `measure` never asks for it).
    fn scenario(&self, row: Row) -> Scenario {
        match row {
            Row::HandshakeOpen | Row::HandshakeJwtHit | Row::HandshakeJwtMiss | Row::Discovery => {
                Scenario::Handshake {
                    concurrency: self.handshake_concurrency,
                }
            }
            Row::Echo64 => Scenario::Echo {
                conns: self.echo_conns,
                size: 64,
            },
            Row::Echo4k => Scenario::Echo {
                conns: self.echo_conns,
                size: 4096,
            },
            Row::Bulk64k => Scenario::Bulk {
                conns: self.bulk_conns,
                size: 64 << 10,
                inflight: self.bulk_inflight,
            },
            Row::Bulk1m => Scenario::Bulk {
                conns: self.bulk_conns,
                size: 1 << 20,
                inflight: self.bulk_inflight,
            },
            Row::Idle => Scenario::Idle {
                conns: self.idle_conns,
            },
        }
    }
}

/// Idle-row figures of one measurement.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IdleSample {
    pub conns: u64,
    pub procs: u64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub rss_per_conn_bytes: Option<f64>,
    pub fds_before: u64,
    pub fds_after: u64,
    pub fds_per_conn: Option<f64>,
    pub threads_after: u64,
    pub iou_wrk_after: u64,
    /// System-wide TCP socket memory (`/proc/net/sockstat` TCP mem, pages) before and after:
    /// includes the client's and the backend's sockets, so compare with the direct row.
    pub tcp_mem_pages_before: u64,
    pub tcp_mem_pages_after: u64,
    pub kernel_bytes_per_conn: Option<f64>,
    pub sockstat_before: BTreeMap<String, u64>,
    pub sockstat_after: BTreeMap<String, u64>,
}

/// Discovery-row figures of one measurement: registration → first 101 plus one echo.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DiscoverySample {
    /// Every trial in order, ms; a failed trial counts with its time (≥ the 5 s bound).
    pub trials_ms: Vec<f64>,
    pub median_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub failed: u64,
    /// 404 answers seen before the routes appeared (all trials): the retry loop at work.
    pub not_found: u64,
}

/// One measurement of one row on one target.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sample {
    pub run: usize,
    /// handshakes/s, messages/s or MB/s (10^6 bytes of echoed payload per second).
    pub rate: f64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    pub ops: u64,
    pub bytes: u64,
    pub window_s: f64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    pub refused: BTreeMap<u16, u64>,
    pub sent_payload: u64,
    pub recv_payload: u64,
    pub clean_closes: u64,
    pub tokens_exhausted: bool,
    /// CPU seconds the target's processes used in the window (all threads, user + system).
    pub target_cpu_s: Option<f64>,
    /// Target CPU per operation in µs (per MB for the bulk rows).
    pub cpu_us_per_op: Option<f64>,
    pub idle: Option<IdleSample>,
    pub discovery: Option<DiscoverySample>,
}

/// Everything measured for one row on one target.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Cell {
    /// `None` = measured; else why not ("n/a: ...", "failed: ...").
    pub skipped: Option<String>,
    pub samples: Vec<Sample>,
}

/// The suite's results.
#[derive(Debug, Default)]
pub struct Results {
    pub cells: BTreeMap<Row, BTreeMap<TargetId, Cell>>,
}

impl Results {
    pub fn cell(&self, row: Row, t: TargetId) -> Option<&Cell> {
        self.cells.get(&row)?.get(&t)
    }

    fn cell_mut(&mut self, row: Row, t: TargetId) -> &mut Cell {
        self.cells.entry(row).or_default().entry(t).or_default()
    }
}

/// Where things are.
pub struct Paths {
    pub gateway_bin: PathBuf,
    pub run_dir: PathBuf,
}

/// Run the plan; progress goes to stderr.
pub fn run(plan: &Plan, paths: &Paths) -> anyhow::Result<Results> {
    std::fs::create_dir_all(&paths.run_dir)
        .with_context(|| format!("creating {}", paths.run_dir.display()))?;
    let mut res = Results::default();
    let rows: Vec<Row> = plan.rows.clone();
    let wanted = |t: TargetId| plan.targets.contains(&t);

    // What cannot run, and why.
    let mut unavailable: BTreeMap<TargetId, String> = BTreeMap::new();
    for t in TargetId::ALL {
        if let Some(prog) = t.program() {
            if !on_path(prog) {
                unavailable.insert(t, format!("n/a: {prog} not installed"));
            }
        }
    }

    let (backend_proc, backend) =
        targets::start_backend(&paths.gateway_bin, &paths.run_dir, plan.backend_workers)?;
    eprintln!("bench: echo backend on {backend}");

    let need_keys = rows.iter().any(|r| r.secured());
    let keys = if need_keys {
        Some(Keys::generate(&paths.run_dir)?)
    } else {
        None
    };
    let env = Env {
        gateway_bin: paths.gateway_bin.clone(),
        run_dir: paths.run_dir.clone(),
        backend,
        backend_pid: backend_proc.pid(),
        workers: plan.workers,
        jwks: keys.as_ref().map(|k| k.jwks_path.clone()),
        pubkey: keys.as_ref().map(|k| k.pubkey_path.clone()),
    };

    // Secured rows: a target that refuses a valid token does not verify tokens yet.
    let mut secured_na: BTreeMap<TargetId, String> = BTreeMap::new();
    let mut shared_token = String::new();
    let mut pool = Arc::new(Vec::new());
    if let Some(keys) = &keys {
        shared_token = keys.token(u64::MAX)?;
        for &t in Row::HandshakeJwtHit.targets() {
            if !wanted(t) || unavailable.contains_key(&t) {
                continue;
            }
            let verdict = targets::start(t, &env)
                .and_then(|r| probe(r.addr, t.secure_path().unwrap_or(OPEN_PATH), &shared_token));
            match verdict {
                Ok(101) => {}
                Ok(status) => {
                    secured_na.insert(
                        t,
                        format!("n/a: capability not built yet (answered {status} to a valid RS256 token)"),
                    );
                }
                Err(e) => {
                    secured_na.insert(t, format!("failed: {e:#}"));
                }
            }
        }
        let any_secured = Row::HandshakeJwtMiss
            .targets()
            .iter()
            .any(|t| wanted(*t) && !unavailable.contains_key(t) && !secured_na.contains_key(t));
        if any_secured && rows.contains(&Row::HandshakeJwtMiss) {
            eprintln!(
                "bench: signing {} RS256 tokens for the cache-miss row",
                plan.jwt_miss_tokens
            );
            let t0 = std::time::Instant::now();
            pool = Arc::new(keys.token_pool(plan.jwt_miss_tokens, plan.client_threads)?);
            eprintln!("bench: signed in {:.1} s", t0.elapsed().as_secs_f64());
        }
    }

    for &row in &rows {
        for &t in row.targets() {
            if !wanted(t) {
                continue;
            }
            let skip = if let Some(why) = unavailable.get(&t) {
                Some(why.clone())
            } else if row.secured() {
                secured_na.get(&t).cloned()
            } else {
                None
            };
            if let Some(why) = skip {
                res.cell_mut(row, t).skipped = Some(why);
            }
        }
    }

    for run in 0..plan.runs {
        for &row in &rows {
            for &t in row.targets() {
                if !wanted(t) || res.cell(row, t).is_some_and(|c| c.skipped.is_some()) {
                    continue;
                }
                let auth = match row {
                    Row::HandshakeJwtHit => Auth::Shared(shared_token.clone()),
                    Row::HandshakeJwtMiss => Auth::Fresh(pool.clone()),
                    _ => Auth::None,
                };
                eprint!(
                    "bench: run {}/{} {:<18} {:<16} ",
                    run + 1,
                    plan.runs,
                    row.name(),
                    t.name()
                );
                match measure(plan, &env, row, t, auth, run) {
                    Ok(s) => {
                        eprintln!("{}", describe(row, &s));
                        res.cell_mut(row, t).samples.push(s);
                    }
                    Err(e) => {
                        eprintln!("FAILED: {e:#}");
                        res.cell_mut(row, t).skipped = Some(format!("failed: {e:#}"));
                    }
                }
            }
        }
    }
    Ok(res)
}

fn describe(row: Row, s: &Sample) -> String {
    let unit = unit(row);
    let mut d = format!("{:>12.1} {unit}", s.rate);
    if let (Some(p50), Some(p99)) = (s.p50_us, s.p99_us) {
        d.push_str(&format!("  p50 {p50:.0} µs  p99 {p99:.0} µs"));
    }
    if let Some(d) = &s.discovery {
        return discovery::describe(d, &s.error_kinds);
    }
    if let Some(i) = &s.idle {
        d = format!(
            "{} conns  rss/conn {}  fds/conn {}  iou-wrk {}",
            i.conns,
            i.rss_per_conn_bytes.map_or("n/a".into(), |v| format!("{v:.0} B")),
            i.fds_per_conn.map_or("n/a".into(), |v| format!("{v:.2}")),
            i.iou_wrk_after
        );
    }
    if s.errors > 0 {
        d.push_str(&format!(
            "  errors {} {:?} {:?}",
            s.errors, s.error_kinds, s.refused
        ));
    }
    d
}

pub fn unit(row: Row) -> &'static str {
    match row {
        Row::HandshakeOpen | Row::HandshakeJwtHit | Row::HandshakeJwtMiss => "handshakes/s",
        Row::Echo64 | Row::Echo4k => "msg/s",
        Row::Bulk64k | Row::Bulk1m => "MB/s",
        Row::Idle => "conns",
        Row::Discovery => "ms",
    }
}

fn measure(plan: &Plan, env: &Env, row: Row, t: TargetId, auth: Auth, run: usize) -> anyhow::Result<Sample> {
    if row == Row::Discovery {
        // Its own target (capi-ws on a Consul double) and its own loop of trials.
        return discovery::measure(t, env, plan.discovery_trials, run);
    }
    let running = targets::start(t, env)?;
    let path = if row.secured() {
        t.secure_path().unwrap_or(OPEN_PATH)
    } else {
        OPEN_PATH
    };
    let spec = Spec {
        addr: running.addr,
        path: path.to_string(),
        auth,
        scenario: plan.scenario(row),
        threads: plan.client_threads,
        warmup: Duration::from_secs_f64(plan.warmup_s),
        duration: plan.duration(row),
        verify: plan.verify,
    };
    let mut sample = if row == Row::Idle {
        // Let the target finish its start-up allocations before the "before" reading.
        thread::sleep(Duration::from_millis(300));
        let pids = if t == TargetId::Direct {
            Vec::new()
        } else {
            running.pids()
        };
        let before = targets::proc_stats(&pids);
        let ss_before = targets::sockstat();
        let (outcome, after) = load::run_idle(&spec, |_opened| {
            // Let lazily-freed handshake buffers settle before the "after" reading.
            thread::sleep(Duration::from_millis(500));
            let pids = if t == TargetId::Direct {
                Vec::new()
            } else {
                running.pids()
            };
            (targets::proc_stats(&pids), targets::sockstat())
        });
        let mut s = sample_from(row, &outcome, run);
        if let Some((after, ss_after)) = after {
            s.idle = Some(idle_sample(t, outcome.opened, before, after, ss_before, ss_after));
        }
        s
    } else {
        // The target's CPU time over the measured window (same start and length as the load's);
        // for direct, the echo backend's: one endpoint of the same connections.
        let pids = if t == TargetId::Direct {
            vec![env.backend_pid]
        } else {
            running.pids()
        };
        let (warmup, duration) = (spec.warmup, spec.duration);
        let sampler = thread::spawn(move || {
            thread::sleep(warmup);
            let a = targets::cpu_seconds(&pids);
            thread::sleep(duration);
            targets::cpu_seconds(&pids) - a
        });
        let outcome = load::run(&spec);
        let mut s = sample_from(row, &outcome, run);
        {
            if let Ok(cpu) = sampler.join() {
                s.target_cpu_s = Some(cpu);
                let work = match row {
                    Row::Bulk64k | Row::Bulk1m => outcome.bytes as f64 / 1e6,
                    _ => outcome.ops as f64,
                };
                s.cpu_us_per_op = (work > 0.0).then(|| cpu * 1e6 / work);
            }
        }
        s
    };
    sample.run = run;
    drop(running);
    Ok(sample)
}

fn idle_sample(
    t: TargetId,
    conns: u64,
    before: ProcStats,
    after: ProcStats,
    ss_before: BTreeMap<String, u64>,
    ss_after: BTreeMap<String, u64>,
) -> IdleSample {
    let per =
        |a: u64, b: u64| (conns > 0 && t != TargetId::Direct).then(|| (a as f64 - b as f64) / conns as f64);
    let mem = |m: &BTreeMap<String, u64>| m.get("TCP.mem").copied().unwrap_or(0);
    let (mb, ma) = (mem(&ss_before), mem(&ss_after));
    IdleSample {
        conns,
        procs: after.procs,
        rss_before_kib: before.rss_kib,
        rss_after_kib: after.rss_kib,
        rss_per_conn_bytes: per(after.rss_kib * 1024, before.rss_kib * 1024),
        fds_before: before.fds,
        fds_after: after.fds,
        fds_per_conn: per(after.fds, before.fds),
        threads_after: after.threads,
        iou_wrk_after: after.iou_wrk,
        tcp_mem_pages_before: mb,
        tcp_mem_pages_after: ma,
        kernel_bytes_per_conn: (conns > 0).then(|| (ma as f64 - mb as f64) * 4096.0 / conns as f64),
        sockstat_before: ss_before,
        sockstat_after: ss_after,
    }
}

fn sample_from(row: Row, o: &Outcome, run: usize) -> Sample {
    let us = |q: f64| o.hist.quantile(q).map(|ns| ns as f64 / 1000.0);
    let window = if o.window > 0.0 { o.window } else { 1.0 };
    let rate = match row {
        Row::Bulk64k | Row::Bulk1m => o.bytes as f64 / window / 1e6,
        Row::Idle => o.opened as f64,
        _ => o.ops as f64 / window,
    };
    Sample {
        run,
        rate,
        p50_us: us(0.5),
        p99_us: us(0.99),
        p999_us: us(0.999),
        ops: o.ops,
        bytes: o.bytes,
        window_s: o.window,
        errors: o.error_count(),
        error_kinds: o.errors.clone(),
        refused: o.refused.clone(),
        sent_payload: o.sent_payload,
        recv_payload: o.recv_payload,
        clean_closes: o.clean_closes,
        tokens_exhausted: o.tokens_exhausted,
        target_cpu_s: None,
        cpu_us_per_op: None,
        idle: None,
        discovery: None,
    }
}

/// One upgrade with `token`; the answer's status code.
fn probe(addr: std::net::SocketAddr, path: &str, token: &str) -> anyhow::Result<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let extra = [("Authorization".to_string(), format!("Bearer {token}"))];
    s.write_all(&wire::request_head(&addr.to_string(), path, &extra))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            anyhow::bail!("connection closed before an answer");
        }
        buf.extend_from_slice(&chunk[..n]);
        match wire::check_response(&buf, &wire::accept_for(wire::CLIENT_KEY)) {
            wire::HeadCheck::Partial => {}
            wire::HeadCheck::Switched { .. } => return Ok(101),
            wire::HeadCheck::Refused { status } => return Ok(status),
            wire::HeadCheck::Bad(why) => anyhow::bail!("{why}"),
        }
    }
}

fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
}

/// Smoke verdict: every measured cell error-free, with every byte echoed.
pub fn smoke_failures(plan: &Plan, res: &Results) -> Vec<String> {
    let mut out = Vec::new();
    for &row in &plan.rows {
        for &t in row.targets() {
            if !plan.targets.contains(&t) {
                continue;
            }
            let Some(cell) = res.cell(row, t) else {
                out.push(format!("{} on {}: not measured", row.name(), t.name()));
                continue;
            };
            if let Some(why) = &cell.skipped {
                out.push(format!("{} on {}: {why}", row.name(), t.name()));
            }
            for s in &cell.samples {
                let who = format!("{} on {}", row.name(), t.name());
                if s.errors > 0 {
                    out.push(format!(
                        "{who}: {} errors {:?} {:?}",
                        s.errors, s.error_kinds, s.refused
                    ));
                }
                if s.sent_payload != s.recv_payload {
                    out.push(format!(
                        "{who}: sent {} payload bytes, {} echoed",
                        s.sent_payload, s.recv_payload
                    ));
                }
                // Discovery: `ops` counts the trials that upgraded and echoed.
                let done = if row == Row::Idle {
                    s.idle.as_ref().map_or(0, |i| i.conns)
                } else {
                    s.ops
                };
                if done == 0 || s.clean_closes == 0 {
                    out.push(format!("{who}: nothing completed"));
                }
                if let (Row::Idle, Some(i)) = (row, &s.idle) {
                    if i.conns != plan.idle_conns as u64 {
                        out.push(format!(
                            "{who}: opened {} of {} idle connections",
                            i.conns, plan.idle_conns
                        ));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_exist_and_differ() {
        let full = Plan::for_mode("full").unwrap();
        let quick = Plan::for_mode("quick").unwrap();
        let smoke = Plan::for_mode("smoke").unwrap();
        assert!(Plan::for_mode("bogus").is_none());
        assert_eq!((full.runs, quick.runs), (3, 1));
        assert!(quick.handshake_s < full.handshake_s);
        assert!(smoke.verify && !full.verify);
        assert!(
            !smoke.targets.iter().any(|t| t.program().is_some()),
            "smoke must not need peers"
        );
    }

    #[test]
    fn rows_cover_targets() {
        let cases: &[(Row, TargetId, bool)] = &[
            (Row::HandshakeOpen, TargetId::Nginx, true),
            (Row::HandshakeJwtMiss, TargetId::Direct, false),
            (Row::HandshakeJwtHit, TargetId::HaproxyJwt, true),
            (Row::Bulk64k, TargetId::NginxTuned, true),
            (Row::Echo64, TargetId::NginxTuned, false),
            (Row::Discovery, TargetId::CapiIouring, true),
            (Row::Discovery, TargetId::CapiEpoll, true),
            (Row::Discovery, TargetId::Nginx, false),
            (Row::Discovery, TargetId::Haproxy, false),
        ];
        for (row, t, want) in cases {
            assert_eq!(row.targets().contains(t), *want, "{} / {}", row.name(), t.name());
        }
        for r in Row::ALL {
            assert_eq!(Row::from_name(r.name()), Some(r));
        }
    }

    #[test]
    fn idle_sample_per_connection() {
        let before = ProcStats {
            rss_kib: 1000,
            fds: 10,
            threads: 3,
            iou_wrk: 0,
            procs: 1,
        };
        let after = ProcStats {
            rss_kib: 2000,
            fds: 210,
            threads: 3,
            iou_wrk: 0,
            procs: 1,
        };
        let ss = |mem| BTreeMap::from([("TCP.mem".to_string(), mem)]);
        let s = idle_sample(TargetId::CapiIouring, 100, before, after, ss(10), ss(110));
        assert_eq!(s.rss_per_conn_bytes, Some(10_240.0));
        assert_eq!(s.fds_per_conn, Some(2.0));
        assert_eq!(s.kernel_bytes_per_conn, Some(4096.0));
        let d = idle_sample(TargetId::Direct, 100, before, after, ss(10), ss(110));
        assert_eq!(d.rss_per_conn_bytes, None, "direct has no proxy process");
    }

    #[test]
    fn smoke_flags_lost_bytes() {
        let plan = Plan {
            rows: vec![Row::Echo64],
            targets: vec![TargetId::Direct],
            ..Plan::for_mode("smoke").unwrap()
        };
        let mut res = Results::default();
        let good = Sample {
            ops: 5,
            clean_closes: 2,
            sent_payload: 640,
            recv_payload: 640,
            ..Default::default()
        };
        res.cell_mut(Row::Echo64, TargetId::Direct)
            .samples
            .push(good.clone());
        assert!(smoke_failures(&plan, &res).is_empty());
        res.cell_mut(Row::Echo64, TargetId::Direct).samples[0].recv_payload = 576;
        assert_eq!(smoke_failures(&plan, &res).len(), 1);
        let mut res = Results::default();
        res.cell_mut(Row::Echo64, TargetId::Direct)
            .samples
            .push(Sample { errors: 1, ..good });
        assert_eq!(smoke_failures(&plan, &res).len(), 1);
    }
}
