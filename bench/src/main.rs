//! `capi-ws-bench`: the load generator and harness behind `make bench` (see bench/RESULTS.md).
//! `suite` runs every row against every target (full, quick or smoke) and writes the JSON,
//! the markdown table and the SVG chart; `load` runs one scenario against one address, for
//! profiling by hand.

mod discovery;
mod hist;
mod jwt;
mod load;
mod report;
mod suite;
mod targets;
mod wire;

use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "capi-ws-bench",
    about = "Load generator and benchmark harness for capi-ws"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the suite: direct, capi-ws (both drivers), nginx, HAProxy; report medians and ratios.
    Suite {
        /// full (3 interleaved runs) | quick (1 short run) | smoke (correctness only, exits 1 on any error)
        #[arg(long, default_value = "full")]
        mode: String,
        /// Override the number of runs.
        #[arg(long)]
        runs: Option<usize>,
        /// The capi-ws binary (gateway and echo backend).
        #[arg(long, default_value = "target/release/capi-ws")]
        gateway: PathBuf,
        /// Where the JSON and SVG go.
        #[arg(long, default_value = "bench/results")]
        out_dir: PathBuf,
        /// The markdown report (its generated block is rewritten).
        #[arg(long, default_value = "bench/RESULTS.md")]
        results_md: PathBuf,
        /// Idle connections (bounded by RLIMIT_NOFILE: one client socket each).
        #[arg(long)]
        idle_conns: Option<usize>,
        /// Comma list of rows (default: all of the mode).
        #[arg(long)]
        rows: Option<String>,
        /// Comma list of targets (default: all of the mode).
        #[arg(long)]
        targets: Option<String>,
        /// Client threads.
        #[arg(long)]
        threads: Option<usize>,
        /// capi-ws worker threads.
        #[arg(long)]
        workers: Option<usize>,
    },
    /// One scenario against one address (for profiling by hand).
    Load {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value = "/capi/echo/dev/")]
        path: String,
        /// handshake | echo | bulk | idle
        #[arg(long)]
        scenario: String,
        /// Connections (handshake: concurrency).
        #[arg(long, default_value_t = 64)]
        conns: usize,
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long, default_value_t = 4)]
        inflight: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long)]
        verify: bool,
    },
}

fn main() -> ExitCode {
    raise_nofile();
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Suite {
            mode,
            runs,
            gateway,
            out_dir,
            results_md,
            idle_conns,
            rows,
            targets,
            threads,
            workers,
        } => suite_cmd(SuiteArgs {
            mode,
            runs,
            gateway,
            out_dir,
            results_md,
            idle_conns,
            rows,
            targets,
            threads,
            workers,
        }),
        Cmd::Load {
            addr,
            path,
            scenario,
            conns,
            size,
            inflight,
            seconds,
            threads,
            verify,
        } => load_cmd(
            addr, path, &scenario, conns, size, inflight, seconds, threads, verify,
        ),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("capi-ws-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

struct SuiteArgs {
    mode: String,
    runs: Option<usize>,
    gateway: PathBuf,
    out_dir: PathBuf,
    results_md: PathBuf,
    idle_conns: Option<usize>,
    rows: Option<String>,
    targets: Option<String>,
    threads: Option<usize>,
    workers: Option<usize>,
}

fn suite_cmd(a: SuiteArgs) -> anyhow::Result<ExitCode> {
    let mut plan = suite::Plan::for_mode(&a.mode)
        .ok_or_else(|| anyhow!("unknown mode {:?} (full, quick, smoke)", a.mode))?;
    if let Some(r) = a.runs {
        plan.runs = r.max(1);
    }
    if let Some(n) = a.idle_conns {
        plan.idle_conns = n;
    }
    if let Some(n) = a.threads {
        plan.client_threads = n.max(1);
    }
    if let Some(n) = a.workers {
        plan.workers = n.max(1);
    }
    if let Some(list) = &a.rows {
        plan.rows = list
            .split(',')
            .map(|s| suite::Row::from_name(s.trim()).ok_or_else(|| anyhow!("unknown row {s:?}")))
            .collect::<anyhow::Result<_>>()?;
    }
    if let Some(list) = &a.targets {
        plan.targets = list
            .split(',')
            .map(|s| targets::TargetId::from_name(s.trim()).ok_or_else(|| anyhow!("unknown target {s:?}")))
            .collect::<anyhow::Result<_>>()?;
    }
    let limit = nofile_soft();
    if plan.idle_conns + 200 > limit {
        let n = limit.saturating_sub(200);
        eprintln!(
            "bench: RLIMIT_NOFILE {limit}: idle connections lowered from {} to {n}",
            plan.idle_conns
        );
        plan.idle_conns = n;
    }
    if !a.gateway.is_file() {
        return Err(anyhow!(
            "{} not found: run `cargo build --release` first",
            a.gateway.display()
        ));
    }
    let gateway = fs::canonicalize(&a.gateway)?;
    let env = report::environment(&gateway);
    let stamp = env["timestamp"].as_str().unwrap_or("unknown").replace(':', "-");
    let run_dir = std::env::temp_dir().join(format!("capi-ws-bench-{}-{}", std::process::id(), stamp));
    let paths = suite::Paths {
        gateway_bin: gateway,
        run_dir: run_dir.clone(),
    };
    eprintln!(
        "bench: mode {}, {} run(s), logs and rendered configs in {}",
        plan.mode,
        plan.runs,
        run_dir.display()
    );
    let res = suite::run(&plan, &paths)?;

    let md = report::markdown(&plan, &res, &env);
    println!("\n{md}");
    if plan.mode == "smoke" {
        let failures = suite::smoke_failures(&plan, &res);
        for f in &failures {
            eprintln!("bench-smoke: FAIL {f}");
        }
        if failures.is_empty() {
            let _ = fs::remove_dir_all(&run_dir);
            eprintln!("bench-smoke: ok (no errors, every byte echoed)");
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("bench-smoke: logs kept in {}", run_dir.display());
        return Ok(ExitCode::from(1));
    }
    fs::create_dir_all(&a.out_dir).with_context(|| format!("creating {}", a.out_dir.display()))?;
    let json_path = a.out_dir.join(format!("{stamp}-{}.json", plan.mode));
    let json = report::json_report(&plan, &res, &env);
    fs::write(&json_path, serde_json::to_string_pretty(&json)?)?;
    let svg_path = a.out_dir.join("latest.svg");
    let title = format!(
        "capi-ws vs direct, nginx, HAProxy — {} ({} run{})",
        env["timestamp"].as_str().unwrap_or(""),
        plan.runs,
        if plan.runs == 1 { "" } else { "s" }
    );
    fs::write(&svg_path, report::svg(&res, &title))?;
    let existing = fs::read_to_string(&a.results_md).ok();
    fs::write(&a.results_md, report::splice_results(existing.as_deref(), &md))?;
    eprintln!(
        "bench: wrote {}, {}, {}",
        json_path.display(),
        svg_path.display(),
        a.results_md.display()
    );
    let failed = res
        .cells
        .values()
        .flat_map(|m| m.values())
        .any(|c| c.skipped.as_deref().is_some_and(|s| s.starts_with("failed")));
    if failed {
        eprintln!("bench: some cells failed; logs kept in {}", run_dir.display());
    } else {
        let _ = fs::remove_dir_all(&run_dir);
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
fn load_cmd(
    addr: SocketAddr,
    path: String,
    scenario: &str,
    conns: usize,
    size: usize,
    inflight: usize,
    seconds: f64,
    threads: usize,
    verify: bool,
) -> anyhow::Result<ExitCode> {
    let scenario = match scenario {
        "handshake" => load::Scenario::Handshake { concurrency: conns },
        "echo" => load::Scenario::Echo { conns, size },
        "bulk" => load::Scenario::Bulk {
            conns,
            size,
            inflight,
        },
        "idle" => load::Scenario::Idle { conns },
        other => return Err(anyhow!("unknown scenario {other:?}")),
    };
    let spec = load::Spec {
        addr,
        path,
        auth: load::Auth::None,
        scenario,
        threads,
        warmup: Duration::from_millis(500),
        duration: Duration::from_secs_f64(seconds),
        verify,
    };
    let o = if matches!(scenario, load::Scenario::Idle { .. }) {
        load::run_idle(&spec, |n| {
            eprintln!("{n} connections open; holding {seconds} s");
            std::thread::sleep(Duration::from_secs_f64(seconds));
        })
        .0
    } else {
        load::run(&spec)
    };
    let w = o.window.max(1e-9);
    let q = |x: f64| {
        o.hist
            .quantile(x)
            .map_or("-".into(), |ns| format!("{:.1}", ns as f64 / 1000.0))
    };
    println!(
        "ops {} ({:.0}/s)  MB/s {:.1}  p50 {} µs  p99 {} µs  p99.9 {} µs  errors {} {:?} {:?}",
        o.ops,
        o.ops as f64 / w,
        o.bytes as f64 / w / 1e6,
        q(0.5),
        q(0.99),
        q(0.999),
        o.error_count(),
        o.errors,
        o.refused
    );
    Ok(if o.error_count() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn nofile_soft() -> usize {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
        r.rlim_cur as usize
    } else {
        1024
    }
}

/// One client socket per connection: take the hard descriptor limit.
fn raise_nofile() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}
