//! Turning samples into the report: medians over runs, ratios of capi-ws to direct and to each
//! peer, the JSON file with every figure and the environment, the markdown table (printed and
//! written between markers in RESULTS.md, so hand-written analysis around it survives), and an
//! SVG bar chart of the ratios written as plain text.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::suite::{Plan, Results, Row, Sample};
use crate::targets::TargetId;

pub const BEGIN: &str = "<!-- BEGIN GENERATED: make bench rewrites this block -->";
pub const END: &str = "<!-- END GENERATED -->";

/// One reported figure of a row.
#[derive(Clone, Copy)]
pub struct Metric {
    pub row: Row,
    pub label: &'static str,
    pub unit: &'static str,
    pub higher_better: bool,
    /// Drawn in the chart.
    pub charted: bool,
    pub across: Across,
    get: fn(&Sample) -> Option<f64>,
}

/// A target-CPU-per-operation figure (its direct column is the backend's own CPU).
fn is_cpu(m: &Metric) -> bool {
    m.unit == "µs CPU"
}

fn rate(s: &Sample) -> Option<f64> {
    Some(s.rate)
}
fn p50_ms(s: &Sample) -> Option<f64> {
    s.p50_us.map(|v| v / 1000.0)
}
fn p99_ms(s: &Sample) -> Option<f64> {
    s.p99_us.map(|v| v / 1000.0)
}
fn p50_us(s: &Sample) -> Option<f64> {
    s.p50_us
}
fn p99_us(s: &Sample) -> Option<f64> {
    s.p99_us
}
fn p999_us(s: &Sample) -> Option<f64> {
    s.p999_us
}
fn rss(s: &Sample) -> Option<f64> {
    s.idle.as_ref()?.rss_per_conn_bytes
}
fn fds(s: &Sample) -> Option<f64> {
    s.idle.as_ref()?.fds_per_conn
}
fn iou(s: &Sample) -> Option<f64> {
    s.idle.as_ref().map(|i| i.iou_wrk_after as f64)
}
fn kmem(s: &Sample) -> Option<f64> {
    s.idle.as_ref()?.kernel_bytes_per_conn
}
fn disc_median(s: &Sample) -> Option<f64> {
    s.discovery.as_ref()?.median_ms
}
fn disc_max(s: &Sample) -> Option<f64> {
    s.discovery.as_ref()?.max_ms
}

fn cpu(s: &Sample) -> Option<f64> {
    s.cpu_us_per_op
}

type Getter = fn(&Sample) -> Option<f64>;

/// How a figure's per-run values become the reported one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Across {
    /// The median of the runs (every figure but the worst cases).
    Median,
    /// The largest of the runs (a worst case stays the worst case).
    Max,
}

use Across::{Max, Median};

/// Every reported figure, in table order: (row, label, unit, higher is better, charted, getter,
/// aggregation over runs).
const METRICS: &[(Row, &str, &str, bool, bool, Getter, Across)] = &[
    (
        Row::HandshakeOpen,
        "handshake, open service (c=64)",
        "handshakes/s",
        true,
        true,
        rate,
        Median,
    ),
    (
        Row::HandshakeOpen,
        "handshake p50",
        "ms",
        false,
        false,
        p50_ms,
        Median,
    ),
    (
        Row::HandshakeOpen,
        "handshake p99",
        "ms",
        false,
        true,
        p99_ms,
        Median,
    ),
    (
        Row::HandshakeOpen,
        "handshake: target CPU per handshake",
        "µs CPU",
        false,
        true,
        cpu,
        Median,
    ),
    (
        Row::HandshakeJwtHit,
        "handshake, JWT reused (cache hit)",
        "handshakes/s",
        true,
        true,
        rate,
        Median,
    ),
    (
        Row::HandshakeJwtHit,
        "handshake JWT hit p99",
        "ms",
        false,
        false,
        p99_ms,
        Median,
    ),
    (
        Row::HandshakeJwtHit,
        "JWT hit: target CPU per handshake",
        "µs CPU",
        false,
        false,
        cpu,
        Median,
    ),
    (
        Row::HandshakeJwtMiss,
        "handshake, JWT per connection (miss)",
        "handshakes/s",
        true,
        true,
        rate,
        Median,
    ),
    (
        Row::HandshakeJwtMiss,
        "handshake JWT miss p99",
        "ms",
        false,
        false,
        p99_ms,
        Median,
    ),
    (
        Row::HandshakeJwtMiss,
        "JWT miss: target CPU per handshake",
        "µs CPU",
        false,
        false,
        cpu,
        Median,
    ),
    (
        Row::Echo64,
        "echo 64 B (256 conns)",
        "msg/s",
        true,
        true,
        rate,
        Median,
    ),
    (Row::Echo64, "echo 64 B p50", "µs", false, false, p50_us, Median),
    (Row::Echo64, "echo 64 B p99", "µs", false, true, p99_us, Median),
    (
        Row::Echo64,
        "echo 64 B p99.9",
        "µs",
        false,
        false,
        p999_us,
        Median,
    ),
    (
        Row::Echo64,
        "echo 64 B: target CPU per message",
        "µs CPU",
        false,
        true,
        cpu,
        Median,
    ),
    (
        Row::Echo4k,
        "echo 4 KiB (256 conns)",
        "msg/s",
        true,
        true,
        rate,
        Median,
    ),
    (Row::Echo4k, "echo 4 KiB p50", "µs", false, false, p50_us, Median),
    (Row::Echo4k, "echo 4 KiB p99", "µs", false, true, p99_us, Median),
    (
        Row::Echo4k,
        "echo 4 KiB p99.9",
        "µs",
        false,
        false,
        p999_us,
        Median,
    ),
    (
        Row::Echo4k,
        "echo 4 KiB: target CPU per message",
        "µs CPU",
        false,
        true,
        cpu,
        Median,
    ),
    (
        Row::Bulk64k,
        "bulk 64 KiB (16 conns, 4 in flight)",
        "MB/s",
        true,
        true,
        rate,
        Median,
    ),
    (
        Row::Bulk64k,
        "bulk 64 KiB: target CPU per MB",
        "µs CPU",
        false,
        true,
        cpu,
        Median,
    ),
    (
        Row::Bulk1m,
        "bulk 1 MiB (16 conns, 4 in flight)",
        "MB/s",
        true,
        true,
        rate,
        Median,
    ),
    (
        Row::Bulk1m,
        "bulk 1 MiB: target CPU per MB",
        "µs CPU",
        false,
        true,
        cpu,
        Median,
    ),
    (
        Row::Idle,
        "idle: RSS per relayed connection",
        "bytes",
        false,
        true,
        rss,
        Median,
    ),
    (
        Row::Idle,
        "idle: descriptors per connection",
        "fds",
        false,
        false,
        fds,
        Median,
    ),
    (
        Row::Idle,
        "idle: iou-wrk kernel threads",
        "threads",
        false,
        false,
        iou,
        Median,
    ),
    (
        Row::Idle,
        "idle: kernel TCP memory per connection (system-wide)",
        "bytes",
        false,
        false,
        kmem,
        Median,
    ),
    (
        Row::Discovery,
        "discovery: registration → first connection (median of trials)",
        "ms",
        false,
        false,
        disc_median,
        Median,
    ),
    (
        Row::Discovery,
        "discovery: slowest trial (max over runs)",
        "ms",
        false,
        false,
        disc_max,
        Max,
    ),
];

pub fn metrics() -> Vec<Metric> {
    METRICS
        .iter()
        .map(
            |&(row, label, unit, higher_better, charted, get, across)| Metric {
                row,
                label,
                unit,
                higher_better,
                charted,
                across,
                get,
            },
        )
        .collect()
}

/// Median of the per-run values (the mean of the middle two for an even count).
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// A metric on a target over the runs (median, or max for a worst case), or why there is none.
pub fn value(res: &Results, m: &Metric, t: TargetId) -> Result<f64, String> {
    let cell = res.cell(m.row, t).ok_or_else(|| "—".to_string())?;
    if let Some(why) = &cell.skipped {
        return Err(why.clone());
    }
    let per_run: Vec<f64> = cell.samples.iter().filter_map(m.get).collect();
    let v = match m.across {
        Across::Median => median(per_run),
        Across::Max => per_run.into_iter().filter(|x| x.is_finite()).reduce(f64::max),
    };
    v.ok_or_else(|| "n/a".to_string())
}

/// Peers capi-ws is compared with on a row.
pub fn peers(row: Row) -> &'static [TargetId] {
    match row {
        Row::HandshakeJwtHit | Row::HandshakeJwtMiss => &[TargetId::HaproxyJwt],
        Row::Bulk64k | Row::Bulk1m => &[TargetId::Nginx, TargetId::NginxTuned, TargetId::Haproxy],
        // No peer discovers services in Consul.
        Row::Discovery => &[],
        _ => &[TargetId::Nginx, TargetId::Haproxy],
    }
}

/// capi-ws's advantage over `other`: > 1 means capi-ws is better, whichever way the metric runs.
pub fn advantage(m: &Metric, capi: f64, other: f64) -> Option<f64> {
    let (num, den) = if m.higher_better {
        (capi, other)
    } else {
        (other, capi)
    };
    (num > 0.0 && den > 0.0).then(|| num / den)
}

fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "ms" if v < 10.0 => format!("{v:.2}"),
        "ms" => format!("{v:.1}"),
        "fds" => format!("{v:.2}"),
        _ if v >= 100.0 => thousands(v.round() as u64),
        _ => format!("{v:.1}"),
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

const COLUMNS: [TargetId; 7] = TargetId::ALL;
const CAPI: [TargetId; 2] = [TargetId::CapiIouring, TargetId::CapiEpoll];

/// The markdown report: table, notes on skipped cells, environment line.
pub fn markdown(plan: &Plan, res: &Results, env: &Value) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Run `{}` ({} run{} per cell, medians), {} · commit `{}` · kernel {} · {} × {} · capi-ws workers {} · client threads {} · backend `capi-ws echo` workers {} · pinning: {}\n",
        plan.mode,
        plan.runs,
        if plan.runs == 1 { "" } else { "s" },
        env["timestamp"].as_str().unwrap_or(""),
        env["commit"].as_str().unwrap_or("?"),
        env["kernel"].as_str().unwrap_or("?"),
        env["cores"],
        env["cpu_model"].as_str().unwrap_or("?"),
        plan.workers,
        plan.client_threads,
        plan.backend_workers,
        plan.pinning,
    );
    md.push_str("| metric | unit |");
    for t in COLUMNS {
        let _ = write!(md, " {} |", t.label());
    }
    md.push_str(" io_uring ÷ direct | io_uring vs peers | epoll vs peers |\n|---|---|");
    for _ in COLUMNS {
        md.push_str("---:|");
    }
    md.push_str("---:|---|---|\n");
    let mut notes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in metrics().into_iter().filter(|m| plan.rows.contains(&m.row)) {
        let _ = write!(
            md,
            "| {} | {}{} |",
            m.label,
            m.unit,
            if m.higher_better { " ↑" } else { " ↓" }
        );
        for t in COLUMNS {
            if !m.row.targets().contains(&t) || !plan.targets.contains(&t) {
                md.push_str(" |");
                continue;
            }
            match value(res, &m, t) {
                Ok(v) => {
                    let _ = write!(md, " {} |", fmt_value(v, m.unit));
                }
                Err(why) if t == TargetId::Direct && why == "n/a" => md.push_str(" — |"),
                Err(why) => {
                    let short = if why.starts_with("failed") {
                        "failed"
                    } else {
                        "n/a"
                    };
                    notes
                        .entry(why)
                        .or_default()
                        .insert(format!("{} / {}", m.row.name(), t.name()));
                    let _ = write!(md, " {short} |");
                }
            }
        }
        // Ratios: advantage of capi-ws (> 1 = better), direct as the physical limit.
        let direct = value(res, &m, TargetId::Direct).ok();
        let io = value(res, &m, TargetId::CapiIouring).ok();
        match (io, direct) {
            (Some(c), Some(d)) if (m.higher_better || is_cpu(&m)) && d > 0.0 => {
                let _ = write!(md, " {:.2} |", c / d);
            }
            _ => md.push_str(" |"),
        }
        for c in CAPI {
            let mine = value(res, &m, c).ok();
            let parts: Vec<String> = peers(m.row)
                .iter()
                .filter_map(|p| {
                    let adv = advantage(&m, mine?, value(res, &m, *p).ok()?)?;
                    Some(format!("{:.2}× {}", adv, p.label()))
                })
                .collect();
            let _ = write!(md, " {} |", parts.join(", "));
        }
        md.push('\n');
    }
    md.push_str(
        "\n↑ higher is better, ↓ lower is better. \"vs peers\" is capi-ws's advantage factor: \
         above 1.00 capi-ws is better on that metric (throughput ratio, or the inverse ratio for \
         latency and memory). Bulk compares with nginx at its default buffers and with \
         `proxy_buffer_size 64k` (\"nginx 64k buf\"). Idle RSS and descriptors are summed over \
         all processes of a target (nginx: master and workers), after − before, per connection; \
         kernel TCP memory is system-wide (client, proxy and backend sockets), so subtract the \
         direct column for the proxy's share. CPU rows: the direct column is the echo backend's \
         own CPU per operation — one TCP endpoint doing the same socket work; a proxy terminates \
         two connections, so about twice that is its floor, and \"io_uring ÷ direct\" there says \
         how many backend-endpoints of CPU capi-ws spends per operation.\n",
    );
    if plan.rows.contains(&Row::Discovery) {
        let _ = writeln!(
            md,
            "\nDiscovery: {} registrations per run in the Consul test double, each timed to the \
             first 101 on its route plus one echo; \"median of trials\" is the median over runs \
             of each run's median, \"slowest trial\" the largest over all runs (a trial not \
             routable within 5 s counts as an error, with its time). nginx and HAProxy have no \
             Consul discovery.",
            plan.discovery_trials
        );
    }
    if !notes.is_empty() {
        md.push_str("\nNot measured:\n");
        for (why, cells) in notes {
            let cells: Vec<String> = cells.into_iter().collect();
            let _ = writeln!(md, "* {why}: {}", cells.join(", "));
        }
    }
    let errs: Vec<String> = res
        .cells
        .iter()
        .flat_map(|(row, m)| m.iter().map(move |(t, c)| (row, t, c)))
        .filter_map(|(row, t, c)| {
            let n: u64 = c.samples.iter().map(|s| s.errors).sum();
            (n > 0).then(|| format!("{} / {}: {n}", row.name(), t.name()))
        })
        .collect();
    if !errs.is_empty() {
        let _ = writeln!(
            md,
            "\nClient-side errors (details in the JSON): {}",
            errs.join("; ")
        );
    }
    md
}

/// Replace the generated block of `existing` (or start a new file around it).
pub fn splice_results(existing: Option<&str>, generated: &str) -> String {
    let block = format!("{BEGIN}\n{generated}{END}");
    if let Some(text) = existing {
        if let (Some(a), Some(b)) = (text.find(BEGIN), text.find(END)) {
            if a < b {
                return format!("{}{}{}", &text[..a], block, &text[b + END.len()..]);
            }
        }
    }
    format!(
        "# capi-ws benchmark results\n\nReproduce with `make bench` (full, ~15 min) or `make bench-quick` \
         (1 run, < 2 min). Raw figures: `bench/results/*.json`; chart: `bench/results/latest.svg`.\n\n{block}\n"
    )
}

/// Every figure plus the environment.
pub fn json_report(plan: &Plan, res: &Results, env: &Value) -> Value {
    let mut rows = serde_json::Map::new();
    for (row, cells) in &res.cells {
        let mut targets = serde_json::Map::new();
        for (t, cell) in cells {
            let medians: serde_json::Map<String, Value> = metrics()
                .iter()
                .filter(|m| m.row == *row)
                .filter_map(|m| {
                    Some((
                        format!("{} ({})", m.label, m.unit),
                        json!(value(res, m, *t).ok()?),
                    ))
                })
                .collect();
            targets.insert(
                t.name().to_string(),
                json!({"skipped": cell.skipped, "medians": medians, "samples": cell.samples}),
            );
        }
        rows.insert(row.name().to_string(), Value::Object(targets));
    }
    json!({"environment": env, "plan": plan, "rows": rows})
}

/// Commit, kernel, CPU, cores, tool versions, time.
pub fn environment(gateway_bin: &Path) -> Value {
    let run = |prog: &str, args: &[&str]| -> String {
        Command::new(prog)
            .args(args)
            .output()
            .map(|o| {
                let text = if o.stdout.is_empty() { o.stderr } else { o.stdout };
                String::from_utf8_lossy(&text)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .unwrap_or_else(|_| "not installed".into())
    };
    let dirty = !run("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    json!({
        "timestamp": iso_utc(secs),
        "commit": format!("{}{}", run("git", &["rev-parse", "--short=12", "HEAD"]), if dirty { "-dirty" } else { "" }),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "cpu_model": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "nofile_limit": nofile(),
        "capi_ws": run(&gateway_bin.display().to_string(), &["--version"]),
        "nginx": run("nginx", &["-v"]),
        "haproxy": run("haproxy", &["-v"]),
        "drivers": {"capi-ws-iouring": "iouring", "capi-ws-epoll": "epoll", "echo backend": "auto"},
    })
}

fn nofile() -> Value {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0;
    if ok {
        json!({"soft": r.rlim_cur, "hard": r.rlim_max})
    } else {
        Value::Null
    }
}

/// `2025-01-02T03:04:05Z` for seconds since the epoch.
pub fn iso_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Bar chart of capi-ws's advantage factors (log scale, 1× in the middle).
pub fn svg(res: &Results, title: &str) -> String {
    struct Bar {
        label: String,
        value: f64,
        color: &'static str,
    }
    let mut groups: Vec<(String, Vec<Bar>)> = Vec::new();
    for m in metrics().iter().filter(|m| m.charted) {
        let mut bars = Vec::new();
        for (c, cname) in [
            (TargetId::CapiIouring, "io_uring"),
            (TargetId::CapiEpoll, "epoll"),
        ] {
            let Ok(mine) = value(res, m, c) else { continue };
            let mut others: Vec<TargetId> = peers(m.row).to_vec();
            if m.higher_better && m.row.targets().contains(&TargetId::Direct) {
                others.push(TargetId::Direct);
            }
            for p in others {
                let Ok(theirs) = value(res, m, p) else { continue };
                let Some(adv) = advantage(m, mine, theirs) else {
                    continue;
                };
                let color = match (c, p) {
                    (_, TargetId::Direct) => "#9e9e9e",
                    (TargetId::CapiIouring, _) => "#1f77b4",
                    _ => "#6baed6",
                };
                bars.push(Bar {
                    label: format!("{cname} vs {}", p.label()),
                    value: adv,
                    color,
                });
            }
        }
        if !bars.is_empty() {
            groups.push((format!("{} ({})", m.label, m.unit), bars));
        }
    }
    let (left, width, bar_h, gap, top) = (300.0, 900.0, 14.0, 22.0, 60.0);
    let plot_w = width - left - 60.0;
    let n_bars: usize = groups.iter().map(|g| g.1.len()).sum();
    let height = top + n_bars as f64 * (bar_h + 3.0) + groups.len() as f64 * gap + 40.0;
    // log2 scale from 1/8× to 8×.
    let x = |v: f64| left + (v.clamp(0.125, 8.0).log2() + 3.0) / 6.0 * plot_w;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="20" font-size="14" font-weight="bold">{}</text>"#,
        esc(title)
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="38">capi-ws advantage factor per metric (log scale; &gt; 1× = capi-ws better; grey = share of the direct connection)</text>"#
    );
    for (v, label) in [
        (0.125, "⅛×"),
        (0.25, "¼×"),
        (0.5, "½×"),
        (1.0, "1×"),
        (2.0, "2×"),
        (4.0, "4×"),
        (8.0, "8×"),
    ] {
        let xv = x(v);
        let stroke = if v == 1.0 { "#000" } else { "#ddd" };
        let _ = writeln!(
            s,
            r#"<line x1="{xv:.1}" y1="{:.0}" x2="{xv:.1}" y2="{:.0}" stroke="{stroke}"/>"#,
            top - 8.0,
            height - 30.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{xv:.1}" y="{:.0}" text-anchor="middle">{label}</text>"#,
            height - 15.0
        );
    }
    let mut y = top;
    for (name, bars) in &groups {
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.0}" font-weight="bold">{}</text>"#,
            y + 2.0,
            esc(name)
        );
        y += 8.0;
        for b in bars {
            let (x1, x0) = (x(b.value), x(1.0));
            let (bx, bw) = if x1 >= x0 { (x0, x1 - x0) } else { (x1, x0 - x1) };
            let _ = writeln!(
                s,
                r#"<text x="{:.0}" y="{:.0}" text-anchor="end">{}</text>"#,
                left - 6.0,
                y + bar_h - 3.0,
                esc(&b.label)
            );
            let _ = writeln!(
                s,
                r#"<rect x="{bx:.1}" y="{y:.0}" width="{:.1}" height="{bar_h}" fill="{}"/>"#,
                bw.max(1.0),
                b.color
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.0}">{:.2}×</text>"#,
                x1.max(x0) + 4.0,
                y + bar_h - 3.0,
                b.value
            );
            y += bar_h + 3.0;
        }
        y += gap - 8.0;
    }
    s.push_str("</svg>\n");
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::Cell;

    fn results_with(row: Row, vals: &[(TargetId, &[f64])]) -> Results {
        let mut r = Results::default();
        for (t, vs) in vals {
            let cell = Cell {
                skipped: None,
                samples: vs
                    .iter()
                    .map(|&v| Sample {
                        rate: v,
                        cpu_us_per_op: Some(v / 10.0),
                        ..Default::default()
                    })
                    .collect(),
            };
            r.cells.entry(row).or_default().insert(*t, cell);
        }
        r
    }

    #[test]
    fn medians() {
        let cases: &[(&str, Vec<f64>, Option<f64>)] = &[
            ("empty", vec![], None),
            ("odd", vec![3.0, 1.0, 2.0], Some(2.0)),
            ("even", vec![4.0, 1.0, 2.0, 3.0], Some(2.5)),
            ("nan dropped", vec![f64::NAN, 5.0], Some(5.0)),
        ];
        for (name, v, want) in cases {
            assert_eq!(median(v.clone()), *want, "{name}");
        }
    }

    #[test]
    fn advantage_direction() {
        let ms = metrics();
        let thr = ms.iter().find(|m| m.higher_better).unwrap();
        let lat = ms.iter().find(|m| !m.higher_better).unwrap();
        assert_eq!(advantage(thr, 200.0, 100.0), Some(2.0));
        assert_eq!(advantage(lat, 50.0, 100.0), Some(2.0));
        assert_eq!(advantage(lat, 0.0, 100.0), None);
    }

    #[test]
    fn table_and_chart_show_ratios() {
        let res = results_with(
            Row::Echo64,
            &[
                (TargetId::Direct, &[100.0, 120.0, 110.0]),
                (TargetId::CapiIouring, &[60.0]),
                (TargetId::Nginx, &[30.0]),
            ],
        );
        let plan = Plan::for_mode("quick").unwrap();
        let md = markdown(&plan, &res, &json!({"commit": "abc"}));
        let line = md.lines().find(|l| l.starts_with("| echo 64 B (256")).unwrap();
        assert!(line.contains("| 110 |"), "median of direct: {line}");
        assert!(line.contains("0.55"), "io_uring ÷ direct: {line}");
        assert!(line.contains("2.00× nginx"), "vs nginx: {line}");
        // CPU per message: direct is the backend's own (one endpoint), shown with the ratio.
        let cpu = md
            .lines()
            .find(|l| l.starts_with("| echo 64 B: target CPU"))
            .unwrap();
        assert!(
            cpu.contains("| 11.0 |") && cpu.contains("| 0.55 |"),
            "CPU vs direct: {cpu}"
        );
        assert!(cpu.contains("0.50× nginx"), "less CPU is better: {cpu}");
        let svg = svg(&res, "t");
        assert!(
            svg.starts_with("<svg")
                && svg.contains("io_uring vs nginx")
                && svg.trim_end().ends_with("</svg>")
        );
    }

    #[test]
    fn discovery_median_of_runs_and_max_of_runs() {
        use crate::suite::DiscoverySample;
        let run = |median: f64, max: f64| Sample {
            discovery: Some(DiscoverySample {
                median_ms: Some(median),
                max_ms: Some(max),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut res = Results::default();
        let cell = Cell {
            skipped: None,
            samples: vec![run(2.0, 9.0), run(4.0, 30.0), run(3.0, 5.0)],
        };
        res.cells
            .entry(Row::Discovery)
            .or_default()
            .insert(TargetId::CapiEpoll, cell);
        let plan = Plan {
            rows: vec![Row::Discovery],
            targets: vec![TargetId::CapiEpoll],
            ..Plan::for_mode("full").unwrap()
        };
        let md = markdown(&plan, &res, &json!({}));
        let cases: &[(&str, &str)] = &[
            ("| discovery: registration", "| | | 3.00 | | | | |"),
            ("| discovery: slowest", "| | | 30.0 | | | | |"),
        ];
        for (start, cells) in cases {
            let line = md.lines().find(|l| l.starts_with(start)).unwrap();
            assert!(line.contains(cells), "{start}: {line}");
        }
        assert!(!md.contains("Not measured"), "{md}");
    }

    #[test]
    fn results_block_is_replaced_not_duplicated() {
        let first = splice_results(None, "table 1\n");
        assert!(first.contains("table 1"));
        let with_notes = format!("{first}\n## Analysis\nkept\n");
        let second = splice_results(Some(&with_notes), "table 2\n");
        assert!(second.contains("table 2") && !second.contains("table 1"));
        assert!(second.contains("## Analysis\nkept"));
        assert_eq!(second.matches(BEGIN).count(), 1);
    }

    #[test]
    fn iso_dates() {
        let cases: &[(u64, &str)] = &[
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_700_000_000, "2023-11-14T22:13:20Z"),
        ];
        for (secs, want) in cases {
            assert_eq!(iso_utc(*secs), *want);
        }
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
    }
}
