//! The real binary under test: `Gateway` (the proxy) and `EchoNode` (`capi-ws echo`), each a
//! child process on 127.0.0.1 port 0. Start returns once the child printed its `listening`
//! line (≤ 15 s), with stderr and stdout drained on threads into shared logs. Drop kills and
//! reaps the child and, when the test is failing, prints the tail of its logs.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::config::Config;

/// The binary under test; `CAPI_WS_BIN` overrides it (e.g. a release build).
pub fn bin() -> String {
    std::env::var("CAPI_WS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_capi-ws").to_owned())
}
/// Bound on the wait for a `listening` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Log lines printed when a test fails.
const TAIL_LINES: usize = 80;

/// A private directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "capi-ws-test-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Removes ANSI escape sequences (colored `tracing` output).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The socket address after `key` (e.g. `ws=`) in a log line; tolerates quotes and colors.
pub fn parse_addr_after(line: &str, key: &str) -> Option<SocketAddr> {
    let line = strip_ansi(line);
    let at = line.find(key)? + key.len();
    let value: String = line[at..]
        .trim_start_matches(['"', '\''])
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    value.parse().ok()
}

/// `yaml` plus `management.server.address: 127.0.0.1` unless it sets the address itself.
pub fn with_loopback_admin(yaml: &str) -> String {
    if yaml.contains("management.server.address") || yaml.contains("address: 0.0.0.0") {
        return yaml.to_owned();
    }
    format!("{}\nmanagement.server.address: 127.0.0.1\n", yaml.trim_end())
}

/// A running child with drained output.
pub struct Process {
    child: Child,
    stderr_log: Arc<Mutex<String>>,
    stdout_log: Arc<Mutex<String>>,
    what: String,
}

fn drain<R: Read + Send + 'static>(
    src: R,
    log: Arc<Mutex<String>>,
    marker: Option<(String, mpsc::Sender<String>)>,
) {
    thread::Builder::new()
        .name("child-log".into())
        .spawn(move || {
            let mut reader = BufReader::new(src);
            let mut marker = marker;
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let text = strip_ansi(&String::from_utf8_lossy(&line));
                if let Some((m, tx)) = &marker {
                    if text.contains(m.as_str()) {
                        let _ = tx.send(text.clone());
                        marker = None;
                    }
                }
                if let Ok(mut l) = log.lock() {
                    l.push_str(&text);
                    if !text.ends_with('\n') {
                        l.push('\n');
                    }
                }
            }
        })
        .unwrap();
}

impl Process {
    /// Spawns `BIN args` and waits for a stderr line containing `marker`; returns that line.
    pub fn spawn(what: &str, args: Vec<OsString>, marker: &str) -> Result<(Process, String), String> {
        Self::spawn_via(what, &[], args, marker)
    }

    /// Same, run through a wrapper command (e.g. `["prlimit", "--nofile=64:64"]`) that execs it.
    pub fn spawn_via(
        what: &str,
        wrapper: &[&str],
        args: Vec<OsString>,
        marker: &str,
    ) -> Result<(Process, String), String> {
        let bin = bin();
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let mut child = command
            .args(&args)
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawning {bin}: {e}"))?;
        let stderr_log = Arc::new(Mutex::new(String::new()));
        let stdout_log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        if let Some(err) = child.stderr.take() {
            drain(err, stderr_log.clone(), Some((marker.to_owned(), tx)));
        }
        if let Some(out) = child.stdout.take() {
            drain(out, stdout_log.clone(), None);
        }
        let mut p = Process {
            child,
            stderr_log,
            stdout_log,
            what: what.to_owned(),
        };
        let started = Instant::now();
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => Ok((p, line)),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
                "{what} ({args:?}) printed no {marker:?} line within {:?}; stderr:\n{}",
                START_TIMEOUT,
                p.logs()
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = p.wait_exit(Duration::from_secs(5));
                Err(format!(
                    "{what} ({args:?}) closed stderr after {:?} without a {marker:?} line; exit: \
                     {status:?}; stderr:\n{}",
                    started.elapsed(),
                    p.logs()
                ))
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the child wrote to stderr so far (ANSI stripped).
    pub fn logs(&self) -> String {
        self.stderr_log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Everything the child wrote to stdout so far (the access log).
    pub fn stdout(&self) -> String {
        self.stdout_log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The exit status, if the child exits within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the child.
    pub fn signal(&self, signal: i32) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid; it is not reaped until Drop, so the pid
        // cannot have been reused by another process.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
    }

    /// Thread names of the child (`/proc/<pid>/task/*/comm`).
    pub fn thread_names(&self) -> Vec<String> {
        let dir = format!("/proc/{}/task", self.pid());
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            if let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) {
                names.push(comm.trim_end().to_owned());
            }
        }
        names
    }

    /// Open descriptors of the child (`/proc/<pid>/fd`).
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let logs = self.logs();
            let lines: Vec<&str> = logs.lines().collect();
            let from = lines.len().saturating_sub(TAIL_LINES);
            eprintln!(
                "---- {} (pid {}) stderr, last {} of {} lines ----\n{}\n---- end ----",
                self.what,
                self.child.id(),
                lines.len() - from,
                lines.len(),
                lines[from..].join("\n")
            );
        }
    }
}

/// The gateway under test.
pub struct Gateway {
    pub process: Process,
    ws: SocketAddr,
    admin: Option<SocketAddr>,
    config: PathBuf,
    _dir: TempDir,
}

impl Gateway {
    /// Starts the gateway with `yaml` as its config file; panics (with its logs) when it does
    /// not print `listening ws=…` within 15 s.
    pub fn start(yaml: &str, driver: &str, workers: usize) -> Gateway {
        Self::start_with(yaml, driver, workers, &[])
    }

    /// Same with a [`Config`].
    pub fn start_config(config: &Config, driver: &str, workers: usize) -> Gateway {
        Self::start(&config.yaml(), driver, workers)
    }

    /// Same with extra flags (e.g. `["--log-level", "debug"]`).
    pub fn start_with(yaml: &str, driver: &str, workers: usize, extra: &[&str]) -> Gateway {
        match Self::try_start(yaml, driver, workers, extra) {
            Ok(g) => g,
            Err(e) => panic!("gateway did not start: {e}\nconfig:\n{yaml}"),
        }
    }

    pub fn try_start(yaml: &str, driver: &str, workers: usize, extra: &[&str]) -> Result<Gateway, String> {
        Self::try_start_via(&[], yaml, driver, workers, extra)
    }

    /// [`Gateway::try_start`] through a wrapper command (see [`Process::spawn_via`]).
    pub fn try_start_via(
        wrapper: &[&str],
        yaml: &str,
        driver: &str,
        workers: usize,
        extra: &[&str],
    ) -> Result<Gateway, String> {
        let dir = TempDir::new();
        let file = dir.path().join("capi.yaml");
        // Loopback only: the admin server binds 0.0.0.0 by default.
        let yaml = with_loopback_admin(yaml);
        std::fs::write(&file, &yaml).map_err(|e| format!("writing {file:?}: {e}"))?;
        let mut args: Vec<OsString> = vec![
            "--config".into(),
            file.clone().into_os_string(),
            "--port".into(),
            "0".into(),
            "--admin-port".into(),
            "0".into(),
            "--driver".into(),
            driver.into(),
            "--workers".into(),
            workers.to_string().into(),
        ];
        args.extend(extra.iter().map(OsString::from));
        let (process, line) = Process::spawn_via("gateway", wrapper, args, "listening ws=")?;
        let ws = parse_addr_after(&line, "ws=")
            .ok_or_else(|| format!("no ws address in listening line {line:?}"))?;
        Ok(Gateway {
            process,
            ws,
            admin: parse_addr_after(&line, "admin="),
            config: file,
            _dir: dir,
        })
    }

    /// The admin listener address (from the `listening` line).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.expect("the listening line names no admin address")
    }

    /// The config file the gateway was started with (rewrite it, then send SIGHUP).
    pub fn config_path(&self) -> &std::path::Path {
        &self.config
    }

    /// The WebSocket listener address.
    pub fn ws_addr(&self) -> SocketAddr {
        self.ws
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn logs(&self) -> String {
        self.process.logs()
    }

    /// The access log (stdout, DESIGN §10).
    pub fn access_log(&self) -> String {
        self.process.stdout()
    }
}

/// `capi-ws echo` on 127.0.0.1 port 0.
pub struct EchoNode {
    pub process: Process,
    addr: SocketAddr,
}

impl EchoNode {
    pub fn start(driver: &str) -> EchoNode {
        let args: Vec<OsString> = ["echo", "--listen", "127.0.0.1:0", "--driver", driver]
            .iter()
            .map(OsString::from)
            .collect();
        match Process::spawn("echo node", args, "listening echo=") {
            Ok((process, line)) => match parse_addr_after(&line, "echo=") {
                Some(addr) => EchoNode { process, addr },
                None => panic!("no echo address in listening line {line:?}"),
            },
            Err(e) => panic!("echo node did not start: {e}"),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}
