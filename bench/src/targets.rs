//! The targets under test and the shared echo backend: start each as a child process on
//! loopback (capi-ws and the echo server report their ephemeral port; nginx and HAProxy get a
//! free high port and are polled until they accept), read their memory, descriptors and
//! threads from /proc, and stop them (SIGTERM, then SIGKILL). Children also get
//! `PR_SET_PDEATHSIG`, so none outlives the harness.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

const NGINX_CONF: &str = include_str!("../peers/nginx.conf");
const HAPROXY_CFG: &str = include_str!("../peers/haproxy.cfg");
const HAPROXY_JWT_RULES: &str = include_str!("../peers/haproxy-jwt.rules");
/// The tuned nginx variant: 64 KiB relay buffers (busy/proxy buffers sized to satisfy nginx's
/// consistency checks; with buffering off only `proxy_buffer_size` is used for the relay).
const NGINX_TUNING: &str = "proxy_buffer_size 64k; proxy_buffers 4 64k; proxy_busy_buffers_size 128k;";
const CAPI_WS_YAML: &str = include_str!("../peers/capi-ws.yaml");
/// capi-ws for the discovery row: no static service, routes from the Consul test double.
const CAPI_WS_CONSUL_YAML: &str = include_str!("../peers/capi-ws-consul.yaml");

/// How long a target may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a target may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Route of the open service on every target.
pub const OPEN_PATH: &str = "/capi/echo/dev/";

/// Every target the harness knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TargetId {
    Direct,
    CapiIouring,
    CapiEpoll,
    Nginx,
    NginxTuned,
    Haproxy,
    HaproxyJwt,
}

impl TargetId {
    pub const ALL: [TargetId; 7] = [
        TargetId::Direct,
        TargetId::CapiIouring,
        TargetId::CapiEpoll,
        TargetId::Nginx,
        TargetId::NginxTuned,
        TargetId::Haproxy,
        TargetId::HaproxyJwt,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TargetId::Direct => "direct",
            TargetId::CapiIouring => "capi-ws-iouring",
            TargetId::CapiEpoll => "capi-ws-epoll",
            TargetId::Nginx => "nginx",
            TargetId::NginxTuned => "nginx-tuned",
            TargetId::Haproxy => "haproxy",
            TargetId::HaproxyJwt => "haproxy-jwt",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            TargetId::Direct => "direct",
            TargetId::CapiIouring => "capi-ws io_uring",
            TargetId::CapiEpoll => "capi-ws epoll",
            TargetId::Nginx => "nginx",
            TargetId::NginxTuned => "nginx 64k buf",
            TargetId::Haproxy => "HAProxy",
            TargetId::HaproxyJwt => "HAProxy jwt_verify",
        }
    }

    pub fn from_name(s: &str) -> Option<TargetId> {
        TargetId::ALL.into_iter().find(|t| t.name() == s)
    }

    /// The path of the secured route, for targets that verify tokens.
    pub fn secure_path(self) -> Option<&'static str> {
        match self {
            TargetId::CapiIouring | TargetId::CapiEpoll => Some("/capi/secure/dev/"),
            TargetId::HaproxyJwt => Some(OPEN_PATH),
            _ => None,
        }
    }

    /// The external program this target needs, if any.
    pub fn program(self) -> Option<&'static str> {
        match self {
            TargetId::Nginx | TargetId::NginxTuned => Some("nginx"),
            TargetId::Haproxy | TargetId::HaproxyJwt => Some("haproxy"),
            _ => None,
        }
    }
}

/// What every target start needs.
pub struct Env {
    pub gateway_bin: PathBuf,
    pub run_dir: PathBuf,
    pub backend: SocketAddr,
    /// The echo backend's process: in the direct cells its CPU per operation is reported as the
    /// cost of one TCP endpoint doing the same socket work (a proxy terminates two).
    pub backend_pid: u32,
    pub workers: usize,
    pub jwks: Option<PathBuf>,
    pub pubkey: Option<PathBuf>,
}

/// A child process, stopped on drop.
pub struct Proc {
    child: Child,
    name: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` when it already exited.
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(st)) => Some(st.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    fn stop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        let descendants = children_of(self.child.id());
        if self.exited().is_none() {
            // SAFETY: plain syscall on the pid of our own child, which we have not reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let end = Instant::now() + STOP_TIMEOUT;
            while self.exited().is_none() && Instant::now() < end {
                thread::sleep(Duration::from_millis(10));
            }
            if self.exited().is_none() {
                eprintln!("bench: {} did not stop on SIGTERM; killing it", self.name);
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        // Workers of a master (nginx) that are still around, by the pids we saw.
        for d in descendants {
            if parent_of(d).is_some() {
                // SAFETY: plain syscall; `d` was a child of our child a moment ago.
                unsafe { libc::kill(d as libc::pid_t, libc::SIGKILL) };
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running target: its address and processes.
pub struct Running {
    pub addr: SocketAddr,
    procs: Vec<Proc>,
}

impl Running {
    /// Every process of the target (masters and their workers).
    pub fn pids(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for p in &self.procs {
            out.push(p.pid());
            out.extend(children_of(p.pid()));
        }
        out
    }
}

/// Start the shared echo backend.
pub fn start_backend(
    gateway_bin: &Path,
    run_dir: &Path,
    workers: usize,
) -> anyhow::Result<(Proc, SocketAddr)> {
    let mut cmd = Command::new(gateway_bin);
    cmd.args([
        "echo",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        &workers.to_string(),
    ]);
    spawn_with_line(cmd, "echo-backend", run_dir, "listening echo=")
}

/// Start `id` (not `Direct`: that is the backend itself).
pub fn start(id: TargetId, env: &Env) -> anyhow::Result<Running> {
    let (proc_, addr) = match id {
        TargetId::Direct => {
            return Ok(Running {
                addr: env.backend,
                procs: Vec::new(),
            })
        }
        TargetId::CapiIouring | TargetId::CapiEpoll => {
            let jwks = env
                .jwks
                .as_deref()
                .map_or("/nonexistent/jwks.json".into(), |p| p.display().to_string());
            let cfg = render(
                CAPI_WS_YAML,
                &[
                    ("@BACKEND_PORT@", env.backend.port().to_string()),
                    ("@JWKS@", jwks),
                ],
            );
            spawn_capi(id, env, "capi-ws.yaml", &cfg)?
        }
        TargetId::Nginx | TargetId::NginxTuned => {
            let port = free_port()?;
            let tuning = if id == TargetId::NginxTuned {
                NGINX_TUNING
            } else {
                ""
            };
            let cfg = render(
                NGINX_CONF,
                &[
                    ("@RUNDIR@", env.run_dir.display().to_string()),
                    ("@BACKEND@", env.backend.to_string()),
                    ("@PORT@", port.to_string()),
                    ("@TUNING@", tuning.to_string()),
                ],
            );
            let path = write_conf(&env.run_dir, &format!("{}.conf", id.name()), &cfg)?;
            let mut cmd = Command::new("nginx");
            cmd.arg("-c")
                .arg(&path)
                .arg("-p")
                .arg(&env.run_dir)
                .arg("-e")
                .arg(env.run_dir.join("nginx-error.log"));
            spawn_and_poll(cmd, id.name(), &env.run_dir, port)?
        }
        TargetId::Haproxy | TargetId::HaproxyJwt => {
            let port = free_port()?;
            let rules = if id == TargetId::HaproxyJwt {
                let pubkey = env
                    .pubkey
                    .as_deref()
                    .ok_or_else(|| anyhow!("haproxy-jwt needs the bench key"))?;
                render(HAPROXY_JWT_RULES, &[("@PUBKEY@", pubkey.display().to_string())])
            } else {
                String::new()
            };
            let cfg = render(
                HAPROXY_CFG,
                &[
                    ("@BACKEND@", env.backend.to_string()),
                    ("@PORT@", port.to_string()),
                    ("@JWT_RULES@", rules),
                ],
            );
            let path = write_conf(&env.run_dir, &format!("{}.cfg", id.name()), &cfg)?;
            let mut cmd = Command::new("haproxy");
            cmd.arg("-f").arg(&path).arg("-db");
            spawn_and_poll(cmd, id.name(), &env.run_dir, port)?
        }
    };
    Ok(Running {
        addr,
        procs: vec![proc_],
    })
}

/// Start capi-ws (`CapiIouring` or `CapiEpoll`) with discovery from the Consul at
/// `consul_endpoint` (`http://127.0.0.1:<port>`) and no static service.
pub fn start_discovery(id: TargetId, env: &Env, consul_endpoint: &str) -> anyhow::Result<Running> {
    if !matches!(id, TargetId::CapiIouring | TargetId::CapiEpoll) {
        bail!("{} has no Consul discovery", id.name());
    }
    let cfg = render(CAPI_WS_CONSUL_YAML, &[("@CONSUL@", consul_endpoint.to_string())]);
    let (proc_, addr) = spawn_capi(id, env, "capi-ws-consul.yaml", &cfg)?;
    Ok(Running {
        addr,
        procs: vec![proc_],
    })
}

/// Write `cfg` as `conf_name` and start capi-ws on it with the driver of `id`; its address.
fn spawn_capi(id: TargetId, env: &Env, conf_name: &str, cfg: &str) -> anyhow::Result<(Proc, SocketAddr)> {
    let driver = if id == TargetId::CapiIouring {
        "iouring"
    } else {
        "epoll"
    };
    let path = write_conf(&env.run_dir, conf_name, cfg)?;
    let mut cmd = Command::new(&env.gateway_bin);
    cmd.arg("--config").arg(&path);
    cmd.args([
        "--port",
        "0",
        "--admin-port",
        "0",
        "--host",
        "127.0.0.1",
        "--driver",
        driver,
    ]);
    // Default log level (info): the access log is at debug, so nothing per connection.
    cmd.args(["--workers", &env.workers.to_string()]);
    spawn_with_line(cmd, id.name(), &env.run_dir, "listening ws=")
}

/// Replace every `@KEY@` placeholder.
pub fn render(template: &str, vars: &[(&str, String)]) -> String {
    vars.iter()
        .fold(template.to_string(), |acc, (k, v)| acc.replace(k, v))
}

fn write_conf(dir: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let p = dir.join(name);
    fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
    Ok(p)
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

fn prepare(cmd: &mut Command) {
    cmd.stdin(Stdio::null()).env_remove("RUST_LOG");
    // SAFETY: the closure only calls prctl(2), which is async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

/// Spawn with stderr piped; wait for a line containing `marker` and parse the address after it.
fn spawn_with_line(
    mut cmd: Command,
    name: &str,
    run_dir: &Path,
    marker: &str,
) -> anyhow::Result<(Proc, SocketAddr)> {
    prepare(&mut cmd);
    let log_path = run_dir.join(format!("{name}.log"));
    let mut log = File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow!("{name}: no stderr pipe"))?;
    let mut proc_ = Proc {
        child,
        name: name.to_string(),
    };
    let (tx, rx) = mpsc::channel();
    let marker_owned = marker.to_string();
    thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(log, "{line}");
            if !sent {
                if let Some(rest) = line.split(&marker_owned).nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                    sent = true;
                }
            }
        }
    });
    let end = Instant::now() + START_TIMEOUT;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(addr) => {
                let addr: SocketAddr = addr
                    .parse()
                    .with_context(|| format!("{name}: bad address {addr:?}"))?;
                return Ok((proc_, addr));
            }
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < end => {
                if let Some(st) = proc_.exited() {
                    bail!(
                        "{name} exited ({st}) before listening; see {}",
                        log_path.display()
                    );
                }
            }
            Err(_) => {
                proc_.stop();
                bail!(
                    "{name} did not report `{marker}` in time; see {}",
                    log_path.display()
                );
            }
        }
    }
}

/// Spawn with output to a log file; poll `port` until it accepts.
fn spawn_and_poll(
    mut cmd: Command,
    name: &str,
    run_dir: &Path,
    port: u16,
) -> anyhow::Result<(Proc, SocketAddr)> {
    prepare(&mut cmd);
    let log_path = run_dir.join(format!("{name}.log"));
    let log = File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    cmd.stdout(log.try_clone()?).stderr(log);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {name} (is it installed?)"))?;
    let mut proc_ = Proc {
        child,
        name: name.to_string(),
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let end = Instant::now() + START_TIMEOUT;
    while Instant::now() < end {
        if let Some(st) = proc_.exited() {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            bail!("{name} exited ({st}) before listening: {}", log.trim());
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            // nginx: every worker must be up before load starts (the master listens first).
            if wait_workers(&proc_, name) {
                return Ok((proc_, addr));
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    proc_.stop();
    bail!(
        "{name} did not accept on {addr} in time; see {}",
        log_path.display()
    )
}

fn wait_workers(p: &Proc, name: &str) -> bool {
    !name.starts_with("nginx") || children_of(p.pid()).len() >= 2
}

/// Parent pid from /proc/<pid>/stat (`None` when the process is gone).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 4 (ppid) follows the command name, which may contain spaces: split after ')'.
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Direct children of `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| parent_of(p) == Some(pid))
        .collect()
}

/// User + system CPU seconds of a set of processes (all their threads), from /proc/<pid>/stat.
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    let ticks: u64 = pids
        .iter()
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            stat_cpu_ticks(&stat)
        })
        .sum();
    ticks as f64 / hz
}

/// utime + stime (fields 14 and 15) of a /proc/<pid>/stat line.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    // Fields after the command name (which may hold spaces) start at field 3.
    let mut f = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Memory, descriptors and threads of a set of processes (summed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcStats {
    pub rss_kib: u64,
    pub fds: u64,
    pub threads: u64,
    pub iou_wrk: u64,
    pub procs: u64,
}

pub fn proc_stats(pids: &[u32]) -> ProcStats {
    let mut s = ProcStats::default();
    for &pid in pids {
        let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        s.procs += 1;
        s.rss_kib += status_kib(&status, "VmRSS:").unwrap_or(0);
        s.fds += fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count() as u64)
            .unwrap_or(0);
        if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
            for t in tasks.flatten() {
                s.threads += 1;
                let comm = fs::read_to_string(t.path().join("comm")).unwrap_or_default();
                if comm.starts_with("iou-wrk") {
                    s.iou_wrk += 1;
                }
            }
        }
    }
    s
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// `/proc/net/sockstat` as `"TCP.mem" → value` (mem in pages).
pub fn sockstat() -> BTreeMap<String, u64> {
    parse_sockstat(&fs::read_to_string("/proc/net/sockstat").unwrap_or_default())
}

pub fn parse_sockstat(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some((proto, rest)) = line.split_once(':') else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        for kv in words.chunks(2) {
            if let [k, v] = kv {
                if let Ok(v) = v.parse() {
                    out.insert(format!("{proto}.{k}"), v);
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
    fn sockstat_parses() {
        let text = "sockets: used 290\nTCP: inuse 27 orphan 0 tw 3 alloc 30 mem 5\nUDP: inuse 1 mem 0\n";
        let m = parse_sockstat(text);
        let cases: &[(&str, u64)] = &[
            ("sockets.used", 290),
            ("TCP.inuse", 27),
            ("TCP.tw", 3),
            ("TCP.mem", 5),
            ("UDP.mem", 0),
        ];
        for (k, v) in cases {
            assert_eq!(m.get(*k), Some(v), "{k}");
        }
    }

    #[test]
    fn templates_render_every_placeholder() {
        type Case<'a> = (&'a str, &'a str, Vec<(&'a str, String)>);
        let cases: &[Case] = &[
            (
                "nginx",
                NGINX_CONF,
                vec![
                    ("@RUNDIR@", "/r".into()),
                    ("@BACKEND@", "127.0.0.1:1".into()),
                    ("@PORT@", "2".into()),
                    ("@TUNING@", String::new()),
                ],
            ),
            (
                "haproxy",
                HAPROXY_CFG,
                vec![
                    ("@BACKEND@", "b".into()),
                    ("@PORT@", "1".into()),
                    ("@JWT_RULES@", String::new()),
                ],
            ),
            (
                "haproxy-jwt",
                HAPROXY_JWT_RULES,
                vec![("@PUBKEY@", "/k.pem".into())],
            ),
            (
                "capi-ws",
                CAPI_WS_YAML,
                vec![("@BACKEND_PORT@", "1".into()), ("@JWKS@", "/j".into())],
            ),
            (
                "capi-ws-consul",
                CAPI_WS_CONSUL_YAML,
                vec![("@CONSUL@", "http://127.0.0.1:1".into())],
            ),
        ];
        for (name, t, vars) in cases {
            let out = render(t, vars);
            assert!(!out.contains('@'), "{name}: placeholder left in {out}");
        }
    }

    #[test]
    fn stat_cpu_fields() {
        let cases: &[(&str, &str, Option<u64>)] = &[
            (
                "plain",
                "42 (nginx) S 1 42 42 0 -1 4194560 10 0 0 0 7 5 0 0 20 0 1 0",
                Some(12),
            ),
            (
                "spaces in name",
                "7 (a b) c) R 1 7 7 0 -1 0 0 0 0 0 100 23 0 0",
                Some(123),
            ),
            ("truncated", "7 (x) R 1", None),
        ];
        for (name, line, want) in cases {
            assert_eq!(stat_cpu_ticks(line), *want, "{name}");
        }
        assert!(cpu_seconds(&[std::process::id()]) >= 0.0);
    }

    #[test]
    fn own_process_stats() {
        let s = proc_stats(&[std::process::id()]);
        assert_eq!(s.procs, 1);
        assert!(s.rss_kib > 0 && s.fds > 0 && s.threads > 0);
        assert_eq!(s.iou_wrk, 0);
        assert_eq!(proc_stats(&[u32::MAX]).procs, 0);
    }

    #[test]
    fn target_names_round_trip() {
        for t in TargetId::ALL {
            assert_eq!(TargetId::from_name(t.name()), Some(t));
        }
        assert_eq!(TargetId::from_name("nope"), None);
    }
}
