//! Bounded soak (issue 8 item 4), black-box on loopback: mixed load — handshakes with and
//! without tokens, echo traffic checked byte for byte (FNV-1a checksums), a pool of idle
//! connections — while Consul registrations flip, a node dies and returns, the realm's keys
//! rotate and the config is reloaded (SIGHUP). Afterwards: no unexpected client error, every
//! echoed byte matched, descriptors and RSS back near their baseline, no panic in the logs.
//! Duration: `CAPI_WS_SOAK_SECS` (default 20; `make soak` runs 180 with --nocapture).
#![allow(clippy::disallowed_types)] // locks are fine in tests: the rule guards the data plane

#[allow(unused_macros)] // `drivers!`: the soak runs once, on the default driver
mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::{Message, WebSocket};

use common::client::try_ws_connect;
use common::config::{service, Config};
use common::consul::{registration, Consul};
use common::eventually;
use common::gateway::{with_loopback_admin, EchoNode, Gateway};
use common::jwks::{bound_source, claims, jwks_document, keys, oauth2_yaml, JwksServer, TestKey};

const ISS: &str = "https://kc.test/realms/a";
const DEFAULT_SECS: u64 = 20;
const LOAD_THREADS: usize = 3;
const IDLE_CONNECTIONS: usize = 40;
/// Tolerances after the load: descriptors (the per-worker splice-pipe pool keeps idle
/// pipes for reuse) and resident memory (allocator caches).
const FD_TOLERANCE: usize = 64;
const RSS_TOLERANCE_KIB: u64 = 48 * 1024;
/// How long after a Consul flip or node restart a refusal still counts as expected
/// (propagation is ≤ 1 s; the slack is for 2 shared cores).
const SETTLE: Duration = Duration::from_secs(3);

/// FNV-1a over a byte stream.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// xorshift: payload sizes and contents without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn payload(&mut self, max: usize) -> Vec<u8> {
        let n = 1 + (self.next() as usize % max);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A node that can die (listener closed, every connection reset) and come back on the same
/// port: WebSocket echo via tungstenite, thread per connection.
struct KillableNode {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    epoch: Arc<AtomicU64>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl KillableNode {
    fn start() -> KillableNode {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let node = KillableNode {
            addr: listener.local_addr().unwrap(),
            up: Arc::new(AtomicBool::new(true)),
            epoch: Arc::new(AtomicU64::new(0)),
            conns: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        node.serve(listener);
        node
    }

    fn serve(&self, listener: TcpListener) {
        let (conns, up, stop) = (self.conns.clone(), self.up.clone(), self.stop.clone());
        listener.set_nonblocking(true).unwrap();
        thread::spawn(move || {
            while up.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                        if let Ok(c) = s.try_clone() {
                            conns.lock().unwrap().push(c);
                        }
                        thread::spawn(move || {
                            let Ok(mut ws) = tungstenite::accept(s) else {
                                return;
                            };
                            while let Ok(m) = ws.read() {
                                if (m.is_binary() || m.is_text()) && ws.send(m).is_err() {
                                    return;
                                }
                            }
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
    }

    /// Listener closed (the acceptor sees `up == false`), every connection reset.
    fn kill(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Back on the same port, once the old acceptor has dropped its listener (bounded).
    fn revive(&self) {
        let started = Instant::now();
        let listener = loop {
            match TcpListener::bind(self.addr) {
                Ok(l) => break l,
                Err(_) if started.elapsed() < Duration::from_secs(5) => {
                    thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("rebinding {}: {e}", self.addr),
            }
        };
        self.up.store(true, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.serve(listener);
    }
}

impl Drop for KillableNode {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Everything the clients count, and the chaos state they consult to tell expected errors
/// (a route that was just deregistered, a node that died) from unexpected ones.
#[derive(Default)]
struct Stats {
    connections: AtomicUsize,
    messages: AtomicUsize,
    bytes: AtomicU64,
    unexpected: Mutex<Vec<String>>,
    expected: Mutex<Vec<String>>,
    /// Consul: `dyn/dev` registered, and when it last changed.
    dyn_registered: AtomicBool,
    dyn_changed: Mutex<Option<Instant>>,
    /// Key rotation: 0 = sign with the first key, 1 = with the rotated one; bumped on switch.
    signer: AtomicUsize,
    signer_epoch: AtomicU64,
    node_changed: Mutex<Option<Instant>>,
    stop: AtomicBool,
}

impl Stats {
    fn recently(t: &Mutex<Option<Instant>>) -> bool {
        t.lock().unwrap().is_some_and(|t| t.elapsed() < SETTLE)
    }
}

/// Send `rounds` random messages on `ws`, each echoed whole; checksums over both directions.
fn echo_rounds(
    ws: &mut WebSocket<TcpStream>,
    rng: &mut Rng,
    rounds: usize,
    stats: &Stats,
) -> Result<(), String> {
    let (mut sent, mut got) = (FNV_START, FNV_START);
    let mut n = 0u64;
    for _ in 0..rounds {
        let p = rng.payload(8192);
        sent = fnv(sent, &p);
        n += p.len() as u64;
        ws.send(Message::binary(p)).map_err(|e| format!("send: {e}"))?;
        match ws.read().map_err(|e| format!("read: {e}"))? {
            Message::Binary(b) => got = fnv(got, &b),
            other => return Err(format!("unexpected message {other:?}")),
        }
        stats.messages.fetch_add(1, Ordering::Relaxed);
    }
    if sent != got {
        return Err(format!("checksum mismatch: sent {sent:x} got {got:x}"));
    }
    stats.bytes.fetch_add(n, Ordering::Relaxed);
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Open,
    Secured,
    Dyn,
    Flaky,
}

fn client(id: u64, gw: SocketAddr, stats: Arc<Stats>, tokens: Arc<[String; 2]>, node_epoch: Arc<AtomicU64>) {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ (id + 1).wrapping_mul(0x9e37_79b9));
    while !stats.stop.load(Ordering::SeqCst) {
        let kind = match rng.next() % 8 {
            0..=2 => Kind::Open,
            3..=5 => Kind::Secured,
            6 => Kind::Dyn,
            _ => Kind::Flaky,
        };
        let (path, auth) = match kind {
            Kind::Open => ("/capi/open/dev", None),
            Kind::Secured => {
                let s = stats.signer.load(Ordering::SeqCst);
                ("/capi/secure/dev", Some(format!("Bearer {}", tokens[s])))
            }
            Kind::Dyn => ("/capi/dyn/dev", None),
            Kind::Flaky => ("/capi/flaky/dev", None),
        };
        let (key_epoch, n_epoch) = (
            stats.signer_epoch.load(Ordering::SeqCst),
            node_epoch.load(Ordering::SeqCst),
        );
        let dyn_was = stats.dyn_registered.load(Ordering::SeqCst);
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        let rounds = 1 + (rng.next() % 8) as usize;
        let outcome = try_ws_connect(gw, path, &headers).and_then(|(mut ws, _)| {
            stats.connections.fetch_add(1, Ordering::Relaxed);
            let r = echo_rounds(&mut ws, &mut rng, rounds, &stats);
            let _ = ws.close(None);
            while ws.read().is_ok() {} // to the close handshake's end
            r
        });
        let Err(e) = outcome else { continue };
        // Expected: the route flipped (or was just flipped) by Consul; the node died or just
        // came back; the signing key switched during the attempt.
        let why = match kind {
            Kind::Dyn
                if !dyn_was
                    || !stats.dyn_registered.load(Ordering::SeqCst)
                    || Stats::recently(&stats.dyn_changed) =>
            {
                Some("dyn/dev deregistered by Consul")
            }
            Kind::Flaky
                if node_epoch.load(Ordering::SeqCst) != n_epoch
                    || n_epoch % 2 == 1
                    || Stats::recently(&stats.node_changed) =>
            {
                Some("flaky/dev node died")
            }
            Kind::Secured if stats.signer_epoch.load(Ordering::SeqCst) != key_epoch => {
                Some("key switched mid-attempt")
            }
            _ => None,
        };
        let line = format!("{kind:?} {path}: {e}");
        match why {
            Some(w) => stats.expected.lock().unwrap().push(format!("[{w}] {line}")),
            None => stats.unexpected.lock().unwrap().push(line),
        }
        if why.is_some() {
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn gateway_yaml(config: &Config, consul: &Consul, jwks: &JwksServer, extra_service: bool) -> String {
    let mut config = config.clone();
    if extra_service {
        config = config.with(service("extra", "dev", "127.0.0.1:9".parse().unwrap()));
    }
    format!(
        "{}capi.consul:\n  hosts:\n    - {{endpoint: \"{}\"}}\n  discovery:\n    enabled: true\n    \
         timer: {{interval: 300}}\n    max-wait-ms: 1000\n    retry-max-ms: 300\n{}",
        config.yaml(),
        consul.endpoint(),
        oauth2_yaml(
            &[bound_source(&jwks.url("a"), ISS)],
            "capi.oauth2.provider.refresh-interval: 1000\n"
        )
    )
}

fn soak(driver: &str) {
    let secs = std::env::var("CAPI_WS_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SECS);
    let k = keys();
    let jwks = JwksServer::start(jwks_document(&[&k.rsa]));
    let consul = Consul::start();
    let echo = EchoNode::start(driver);
    let flaky = KillableNode::start();
    let base = Config::new()
        .with(service("open", "dev", echo.addr()))
        .with(service("secure", "dev", echo.addr()).meta("secured", "true"))
        .with(service("flaky", "dev", flaky.addr));
    let gw = Gateway::start_with(
        &gateway_yaml(&base, &consul, &jwks, false),
        driver,
        2,
        &["--log-level", "info"],
    );
    let dyn_reg = registration("dyn", "dyn-1", "dev", echo.addr());
    consul.register(&dyn_reg);
    let token = |key: &TestKey| key.token(&claims(ISS, &[]));
    let tokens: Arc<[String; 2]> = Arc::new([token(&k.rsa), token(&k.rotated)]);
    let stats = Arc::new(Stats::default());
    stats.dyn_registered.store(true, Ordering::SeqCst);
    let addr = gw.ws_addr();
    eventually("every route serves", Duration::from_secs(10), || {
        let auth = format!("Bearer {}", tokens[0]);
        ["/capi/open/dev", "/capi/dyn/dev", "/capi/flaky/dev"]
            .iter()
            .all(|p| try_ws_connect(addr, p, &[]).is_ok())
            && try_ws_connect(addr, "/capi/secure/dev", &[("Authorization", &auth)]).is_ok()
    });
    // Baseline: after one connection of each kind (worker buffers, pipes, token cache), once
    // the gateway has closed the probes' sockets (no signal for that: a short pause).
    thread::sleep(Duration::from_millis(300));
    let (fd_before, rss_before) = (gw.process.fd_count(), vm_rss_kib(gw.pid()));

    let mut idle: Vec<WebSocket<TcpStream>> = (0..IDLE_CONNECTIONS)
        .map(|i| {
            try_ws_connect(addr, "/capi/open/dev", &[])
                .unwrap_or_else(|e| panic!("idle connection {i}: {e}"))
                .0
        })
        .collect();
    let node_epoch = flaky.epoch.clone();
    let clients: Vec<_> = (0..LOAD_THREADS as u64)
        .map(|i| {
            let (s, t, e) = (stats.clone(), tokens.clone(), node_epoch.clone());
            thread::spawn(move || client(i, addr, s, t, e))
        })
        .collect();

    // Chaos on this thread, one step every ~2 s in a fixed cycle until the time is up.
    let started = Instant::now();
    let (mut step, mut reloads, mut rotations, mut flips, mut deaths) =
        (0u64, 0usize, 0usize, 0usize, 0usize);
    let mut extra = false;
    while started.elapsed() < Duration::from_secs(secs) {
        thread::sleep(Duration::from_secs(2));
        match step % 4 {
            0 => {
                // Consul: flip dyn/dev.
                let was = stats.dyn_registered.load(Ordering::SeqCst);
                *stats.dyn_changed.lock().unwrap() = Some(Instant::now());
                stats.dyn_registered.store(!was, Ordering::SeqCst);
                if was {
                    consul.deregister("dyn-1");
                } else {
                    consul.register(&dyn_reg);
                }
                *stats.dyn_changed.lock().unwrap() = Some(Instant::now());
                flips += 1;
            }
            1 => {
                // The flaky node dies, stays down a second, and returns on its port.
                *stats.node_changed.lock().unwrap() = Some(Instant::now());
                flaky.kill();
                thread::sleep(Duration::from_secs(1));
                flaky.revive();
                *stats.node_changed.lock().unwrap() = Some(Instant::now());
                deaths += 1;
            }
            2 => {
                // Key rotation: publish old + new, the new key's token must be accepted
                // (early refresh on the unknown kid), clients switch, the old key goes.
                let cur = stats.signer.load(Ordering::SeqCst);
                let (old, new) = if cur == 0 {
                    (&k.rsa, &k.rotated)
                } else {
                    (&k.rotated, &k.rsa)
                };
                jwks.set_body(jwks_document(&[old, new]));
                let auth = format!("Bearer {}", tokens[1 - cur]);
                eventually(
                    "the rotated key's token is accepted",
                    Duration::from_secs(10),
                    || try_ws_connect(addr, "/capi/secure/dev", &[("Authorization", &auth)]).is_ok(),
                );
                stats.signer_epoch.fetch_add(1, Ordering::SeqCst);
                stats.signer.store(1 - cur, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(200));
                stats.signer_epoch.fetch_add(1, Ordering::SeqCst);
                jwks.set_body(jwks_document(&[new]));
                rotations += 1;
            }
            _ => {
                // Reload: the file gains or loses extra/dev; SIGHUP.
                extra = !extra;
                let before = gw.logs().matches("configuration reloaded").count();
                std::fs::write(
                    gw.config_path(),
                    with_loopback_admin(&gateway_yaml(&base, &consul, &jwks, extra)),
                )
                .unwrap();
                gw.process.signal(libc::SIGHUP);
                eventually("configuration reloaded", Duration::from_secs(10), || {
                    gw.logs().matches("configuration reloaded").count() > before
                });
                reloads += 1;
            }
        }
        step += 1;
    }
    stats.stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    // Every idle connection survived everything and still echoes exactly.
    let mut rng = Rng(7);
    for (i, ws) in idle.iter_mut().enumerate() {
        if let Err(e) = echo_rounds(ws, &mut rng, 1, &stats) {
            stats
                .unexpected
                .lock()
                .unwrap()
                .push(format!("idle connection {i}: {e}"));
        }
    }
    for mut ws in idle.drain(..) {
        let _ = ws.close(None);
        while ws.read().is_ok() {}
    }
    let idle_total = IDLE_CONNECTIONS;
    // Descriptors and RSS settle (closes are asynchronous in the gateway).
    let fd_limit = fd_before + FD_TOLERANCE;
    let rss_limit = rss_before + RSS_TOLERANCE_KIB;
    let settled = Instant::now();
    while settled.elapsed() < Duration::from_secs(10)
        && (gw.process.fd_count() > fd_limit || vm_rss_kib(gw.pid()) > rss_limit)
    {
        thread::sleep(Duration::from_millis(100));
    }
    let (fd_after, rss_after) = (gw.process.fd_count(), vm_rss_kib(gw.pid()));
    let unexpected = stats.unexpected.lock().unwrap().clone();
    let expected = stats.expected.lock().unwrap().clone();
    println!(
        "soak ({driver}, {secs} s): connections {} (+{idle_total} idle), messages {}, bytes checked {}, \
         unexpected errors {}, expected errors {}, fds {fd_before} -> {fd_after}, \
         RSS {rss_before} KiB -> {rss_after} KiB; chaos: {flips} Consul flips, {deaths} node deaths, \
         {rotations} key rotations, {reloads} reloads",
        stats.connections.load(Ordering::Relaxed),
        stats.messages.load(Ordering::Relaxed),
        stats.bytes.load(Ordering::Relaxed),
        unexpected.len(),
        expected.len(),
    );
    // Expected errors, grouped by reason and refusal (the reason is the bracketed prefix).
    let mut groups: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for e in &expected {
        let key = match e.find("handshake refused: ") {
            Some(at) => format!("{} {}", &e[..e.find(']').map_or(0, |i| i + 1)], &e[at..]),
            None => e.clone(),
        };
        *groups.entry(key).or_default() += 1;
    }
    for (what, n) in &groups {
        println!("  expected x{n}: {what}");
    }
    assert!(
        unexpected.is_empty(),
        "unexpected client errors:\n{}",
        unexpected.join("\n")
    );
    assert!(stats.connections.load(Ordering::Relaxed) > 0 && stats.bytes.load(Ordering::Relaxed) > 0);
    assert!(fd_after <= fd_limit, "descriptors {fd_before} -> {fd_after}");
    assert!(rss_after <= rss_limit, "RSS {rss_before} KiB -> {rss_after} KiB");
    let logs = gw.logs();
    assert!(!logs.contains("panicked"), "a panic in the gateway logs:\n{logs}");
    assert!(
        !echo.process.logs().contains("panicked"),
        "a panic in the echo node's logs"
    );
}

#[test]
fn soak_iouring() {
    soak("iouring")
}
