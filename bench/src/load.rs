//! The load engine: `threads` OS threads, each with its own epoll loop (mio, edge-triggered)
//! over raw non-blocking sockets and per-connection state machines (connect → upgrade →
//! scenario → close frame → EOF). Frames are pre-built and masked once per thread, reads
//! go through one per-thread buffer and are decoded in place, so the client's own cost per
//! message is a syscall pair and a few comparisons. Every phase has a deadline.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::hist::Histogram;
use crate::wire::{self, Decoder, HeadCheck, Piece};

/// Payload of the one echo in a handshake (and of an idle connection's first message).
const PROBE_BYTES: usize = 64;
/// Connections a thread keeps in the opening phase at once (idle scenario).
const IDLE_OPENING: usize = 128;
/// After the window: time for in-flight work and close handshakes.
const GRACE: Duration = Duration::from_secs(5);
/// Idle scenario: time to open every connection.
const IDLE_OPEN_LIMIT: Duration = Duration::from_secs(90);
/// Idle scenario: longest hold before closing even without a release.
const IDLE_HOLD_LIMIT: Duration = Duration::from_secs(120);
/// Per-thread read buffer.
const READ_BUF: usize = 256 * 1024;
/// Poll timeout: how often deadlines are checked when nothing happens.
const TICK: Duration = Duration::from_millis(20);

/// What each connection does once upgraded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// `concurrency` slots, each looping connect → upgrade → one echo → close.
    Handshake { concurrency: usize },
    /// `conns` connections ping-ponging one `size`-byte binary message each.
    Echo { conns: usize, size: usize },
    /// `conns` connections keeping `inflight` `size`-byte messages outstanding.
    Bulk {
        conns: usize,
        size: usize,
        inflight: usize,
    },
    /// `conns` connections opened (one echo each), then held idle until released.
    Idle { conns: usize },
}

impl Scenario {
    fn total_conns(&self) -> usize {
        match *self {
            Scenario::Handshake { concurrency } => concurrency,
            Scenario::Echo { conns, .. } | Scenario::Bulk { conns, .. } | Scenario::Idle { conns } => conns,
        }
    }

    fn msg_size(&self) -> usize {
        match *self {
            Scenario::Echo { size, .. } | Scenario::Bulk { size, .. } => size,
            Scenario::Handshake { .. } | Scenario::Idle { .. } => PROBE_BYTES,
        }
    }
}

/// Token to present on the upgrade (`Authorization: Bearer`).
#[derive(Clone, Debug)]
pub enum Auth {
    None,
    /// The same token on every connection (a verifier's cache hit).
    Shared(String),
    /// A different token per connection, taken in order; the run ends early when they run out.
    Fresh(Arc<Vec<String>>),
}

/// One load run.
#[derive(Clone, Debug)]
pub struct Spec {
    pub addr: SocketAddr,
    pub path: String,
    pub auth: Auth,
    pub scenario: Scenario,
    pub threads: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Compare every echoed byte with what was sent.
    pub verify: bool,
}

/// What a run measured.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Operations completed in the window (handshakes, echoed messages).
    pub ops: u64,
    /// Payload bytes received in the window.
    pub bytes: u64,
    /// Window length in seconds (shorter than asked when fresh tokens ran out).
    pub window: f64,
    /// Latency per operation in the window (handshake: connect → echo; echo: RTT).
    pub hist: Histogram,
    /// Payload bytes sent / received over the whole run, by connections that closed cleanly.
    pub sent_payload: u64,
    pub recv_payload: u64,
    /// Error kinds and counts (connect failures, resets, protocol errors, mismatches).
    pub errors: BTreeMap<String, u64>,
    /// Non-101 answers by status.
    pub refused: BTreeMap<u16, u64>,
    /// Idle: connections established and echoed once.
    pub opened: u64,
    /// Connections that completed the close handshake.
    pub clean_closes: u64,
    pub tokens_exhausted: bool,
}

impl Outcome {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum::<u64>() + self.refused.values().sum::<u64>()
    }

    fn merge(&mut self, o: Outcome) {
        self.ops += o.ops;
        self.bytes += o.bytes;
        self.window = self.window.max(o.window);
        self.hist.merge(&o.hist);
        self.sent_payload += o.sent_payload;
        self.recv_payload += o.recv_payload;
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in o.refused {
            *self.refused.entry(k).or_default() += v;
        }
        self.opened += o.opened;
        self.clean_closes += o.clean_closes;
        self.tokens_exhausted |= o.tokens_exhausted;
    }
}

/// Run a timed scenario (not `Idle`) and merge the threads' outcomes.
pub fn run(spec: &Spec) -> Outcome {
    run_threads::<()>(spec, None).0
}

/// Run the idle scenario: open every connection, call `hold(opened)` while they are all
/// open and idle, then close them. Returns the outcome and what `hold` returned.
pub fn run_idle<T>(spec: &Spec, hold: impl FnOnce(u64) -> T) -> (Outcome, Option<T>) {
    run_threads(spec, Some(Box::new(hold)))
}

type HoldFn<'a, T> = Box<dyn FnOnce(u64) -> T + 'a>;

fn run_threads<T>(spec: &Spec, hold: Option<HoldFn<'_, T>>) -> (Outcome, Option<T>) {
    let threads = spec.threads.max(1);
    let release = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel::<u64>();
    let begin = Instant::now();
    let mut total = Outcome::default();
    let mut held = None;
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|id| {
                let (release, ready_tx) = (release.clone(), ready_tx.clone());
                s.spawn(move || {
                    Worker::new(spec, id, threads, begin, release, ready_tx).and_then(|w| w.run())
                })
            })
            .collect();
        drop(ready_tx);
        if let Some(hold) = hold {
            let mut opened = 0;
            let mut reported = 0;
            let deadline = Instant::now() + IDLE_OPEN_LIMIT + Duration::from_secs(5);
            while reported < threads {
                let left = deadline.saturating_duration_since(Instant::now());
                match ready_rx.recv_timeout(left) {
                    Ok(n) => {
                        opened += n;
                        reported += 1;
                    }
                    Err(_) => break,
                }
            }
            held = Some(hold(opened));
            release.store(true, Ordering::Release);
        }
        for h in handles {
            match h.join() {
                Ok(Ok(o)) => total.merge(o),
                Ok(Err(e)) => *total.errors.entry(format!("thread setup: {e}")).or_default() += 1,
                Err(_) => *total.errors.entry("load thread panicked".into()).or_default() += 1,
            }
        }
    });
    if total.window == 0.0 {
        total.window = spec.duration.as_secs_f64();
    }
    (total, held)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Connecting,
    Upgrading,
    Open,
    /// Close frame queued or sent; waiting for the server's close frame and EOF.
    Closing,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Out {
    Nothing,
    Head,
    Msg,
    Close,
}

struct Conn {
    sock: TcpStream,
    phase: Phase,
    /// Connect start (handshake) or send time of the outstanding message (echo).
    t0: Instant,
    /// Own request head (fresh token); `None` = the thread's shared head.
    head: Option<Vec<u8>>,
    out: Out,
    out_off: usize,
    /// Messages to write after the current write.
    queued: u32,
    close_after: bool,
    /// Messages written or queued and not yet echoed.
    outstanding: u32,
    sent_msgs: u64,
    recv_bytes: u64,
    resp: Vec<u8>,
    dec: Decoder,
    close_seen: bool,
    /// Idle: first echo arrived.
    established: bool,
}

/// What the decoder saw in one read.
#[derive(Default)]
struct ReadSummary {
    data_bytes: u64,
    msgs: u32,
    wrong_len: bool,
    mismatch: bool,
    close: bool,
}

struct Worker<'a> {
    spec: &'a Spec,
    threads: usize,
    poll: Poll,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    live: usize,
    head: Vec<u8>,
    msg_frame: Vec<u8>,
    close_frame: Vec<u8>,
    payload: Vec<u8>,
    accept: String,
    host: String,
    buf: Vec<u8>,
    share: usize,
    started: usize,
    opening: usize,
    next_token: usize,
    win_start: Instant,
    win_end: Instant,
    last_op: Option<Instant>,
    release: Arc<AtomicBool>,
    ready_tx: mpsc::Sender<u64>,
    ready_sent: bool,
    closing_all: bool,
    o: Outcome,
}

impl<'a> Worker<'a> {
    fn new(
        spec: &'a Spec,
        id: usize,
        threads: usize,
        begin: Instant,
        release: Arc<AtomicBool>,
        ready_tx: mpsc::Sender<u64>,
    ) -> io::Result<Self> {
        let total = spec.scenario.total_conns();
        let share = total / threads + usize::from(id < total % threads);
        let host = spec.addr.to_string();
        let extra = match &spec.auth {
            Auth::Shared(t) => vec![("Authorization".to_string(), format!("Bearer {t}"))],
            Auth::None | Auth::Fresh(_) => Vec::new(),
        };
        let size = spec.scenario.msg_size();
        let payload = wire::pattern(size);
        // A per-thread mask: servers must unmask, whatever the key.
        let mask = [0x5a ^ id as u8, 0x3c, 0xa5, 0x0f];
        let win_start = begin + spec.warmup;
        Ok(Self {
            spec,
            threads,
            poll: Poll::new()?,
            conns: Vec::with_capacity(share),
            free: Vec::new(),
            live: 0,
            head: wire::request_head(&host, &spec.path, &extra),
            msg_frame: wire::client_frame(wire::OP_BINARY, &payload, mask),
            close_frame: wire::close_frame(mask),
            payload,
            accept: wire::accept_for(wire::CLIENT_KEY),
            host,
            buf: vec![0; READ_BUF],
            share,
            started: 0,
            opening: 0,
            next_token: id,
            win_start,
            win_end: win_start + spec.duration,
            last_op: None,
            release,
            ready_tx,
            ready_sent: false,
            closing_all: false,
            o: Outcome::default(),
        })
    }

    fn run(mut self) -> io::Result<Outcome> {
        let mut events = Events::with_capacity(1024);
        let idle = matches!(self.spec.scenario, Scenario::Idle { .. });
        let begin = Instant::now();
        self.fill();
        loop {
            match self.poll.poll(&mut events, Some(TICK)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                self.on_event(
                    ev.token().0,
                    ev.is_writable() || ev.is_error(),
                    ev.is_readable() || ev.is_read_closed(),
                );
            }
            let now = Instant::now();
            if idle {
                if !self.ready_sent {
                    self.fill();
                }
                if !self.ready_sent
                    && ((self.started >= self.share && self.opening == 0) || now - begin > IDLE_OPEN_LIMIT)
                {
                    self.ready_sent = true;
                    let _ = self.ready_tx.send(self.o.opened);
                }
                let released =
                    self.release.load(Ordering::Acquire) || now - begin > IDLE_OPEN_LIMIT + IDLE_HOLD_LIMIT;
                if self.ready_sent && released && !self.closing_all {
                    self.close_all();
                    self.win_end = now;
                }
                if self.closing_all && (self.live == 0 || now > self.win_end + GRACE) {
                    break;
                }
            } else {
                self.fill();
                if now >= self.win_end && !self.closing_all {
                    self.closing_all = true;
                    self.close_quiet();
                }
                if self.live == 0 || now > self.win_end + GRACE {
                    break;
                }
            }
        }
        let left = self.live as u64;
        if left > 0 {
            *self.o.errors.entry("unfinished at deadline".into()).or_default() += left;
        }
        self.o.window = match (self.o.tokens_exhausted, self.last_op) {
            (true, Some(t)) => (t.min(self.win_end).saturating_duration_since(self.win_start)).as_secs_f64(),
            _ => self.spec.duration.as_secs_f64(),
        };
        if !self.ready_sent {
            let _ = self.ready_tx.send(self.o.opened);
        }
        Ok(self.o)
    }

    /// Start connections up to the scenario's level.
    fn fill(&mut self) {
        let now = Instant::now();
        match self.spec.scenario {
            Scenario::Handshake { .. } => {
                if now >= self.win_end || self.o.tokens_exhausted {
                    return;
                }
                while self.live < self.share {
                    if !self.open(now) {
                        break;
                    }
                }
            }
            Scenario::Echo { .. } | Scenario::Bulk { .. } => {
                while self.started < self.share {
                    self.started += 1;
                    if !self.open(now) {
                        break;
                    }
                }
            }
            Scenario::Idle { .. } => {
                while self.started < self.share && self.opening < IDLE_OPENING {
                    self.started += 1;
                    self.opening += 1;
                    if !self.open(now) {
                        self.opening -= 1;
                    }
                }
            }
        }
    }

    fn err(&mut self, kind: &str) {
        *self.o.errors.entry(kind.to_string()).or_default() += 1;
    }

    fn open(&mut self, now: Instant) -> bool {
        let head = match &self.spec.auth {
            Auth::Fresh(pool) => {
                let Some(tok) = pool.get(self.next_token) else {
                    self.o.tokens_exhausted = true;
                    return false;
                };
                self.next_token += self.threads;
                let extra = [("Authorization".to_string(), format!("Bearer {tok}"))];
                Some(wire::request_head(&self.host, &self.spec.path, &extra))
            }
            Auth::None | Auth::Shared(_) => None,
        };
        let mut sock = match TcpStream::connect(self.spec.addr) {
            Ok(s) => s,
            Err(e) => {
                self.err(&format!("connect: {}", e.kind()));
                return false;
            }
        };
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut sock, Token(slot), Interest::READABLE | Interest::WRITABLE)
        {
            self.free.push(slot);
            self.err(&format!("register: {}", e.kind()));
            return false;
        }
        self.conns[slot] = Some(Conn {
            sock,
            phase: Phase::Connecting,
            t0: now,
            head,
            out: Out::Nothing,
            out_off: 0,
            queued: 0,
            close_after: false,
            outstanding: 0,
            sent_msgs: 0,
            recv_bytes: 0,
            resp: Vec::new(),
            dec: Decoder::default(),
            close_seen: false,
            established: false,
        });
        self.live += 1;
        true
    }

    /// Drop a connection; `error` names why when it did not end cleanly.
    fn drop_conn(&mut self, slot: usize, error: Option<&str>) {
        let Some(c) = self.remove(slot) else { return };
        match error {
            Some(kind) => self.err(kind),
            None => {
                self.o.clean_closes += 1;
                self.o.sent_payload += c.sent_msgs * self.payload.len() as u64;
                self.o.recv_payload += c.recv_bytes;
            }
        }
    }

    /// Take a connection out of the loop (the socket closes when it drops).
    fn remove(&mut self, slot: usize) -> Option<Conn> {
        // Closing the socket (on drop) removes it from the epoll set: no deregister syscall.
        let c = self.conns.get_mut(slot)?.take()?;
        self.free.push(slot);
        self.live -= 1;
        if matches!(self.spec.scenario, Scenario::Idle { .. }) && !c.established {
            self.opening -= 1;
        }
        Some(c)
    }

    fn on_event(&mut self, slot: usize, writable: bool, readable: bool) {
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if c.phase == Phase::Connecting {
            match c.sock.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    let kind = format!("connect: {}", e.kind());
                    return self.drop_conn(slot, Some(&kind));
                }
            }
            // epoll reports a connecting socket writable once the connect completed (an error
            // shows in SO_ERROR above), so no getpeername is needed.
            if !writable {
                return;
            }
            let _ = c.sock.set_nodelay(true);
            c.phase = Phase::Upgrading;
            c.out = Out::Head;
            c.out_off = 0;
        }
        if writable || c.out != Out::Nothing {
            if let Err(kind) = self.flush(slot) {
                return self.drop_conn(slot, Some(kind));
            }
        }
        if readable {
            self.read(slot);
        }
    }

    /// Write pending output until done or `EAGAIN`.
    fn flush(&mut self, slot: usize) -> Result<(), &'static str> {
        let Some(c) = self.conns[slot].as_mut() else {
            return Ok(());
        };
        loop {
            let src: &[u8] = match c.out {
                Out::Nothing => return Ok(()),
                Out::Head => c.head.as_deref().unwrap_or(&self.head),
                Out::Msg => &self.msg_frame,
                Out::Close => &self.close_frame,
            };
            match c.sock.write(&src[c.out_off..]) {
                Ok(0) => return Err("write returned 0"),
                Ok(n) => {
                    c.out_off += n;
                    if c.out_off == src.len() {
                        c.out_off = 0;
                        if c.out == Out::Head {
                            c.head = None;
                        }
                        c.out = if c.queued > 0 {
                            c.queued -= 1;
                            Out::Msg
                        } else if c.close_after {
                            c.close_after = false;
                            Out::Close
                        } else {
                            Out::Nothing
                        };
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => {
                    return Err(match e.kind() {
                        io::ErrorKind::ConnectionReset => "write: connection reset",
                        io::ErrorKind::BrokenPipe => "write: broken pipe",
                        _ => "write: other error",
                    })
                }
            }
        }
    }

    fn queue_msgs(&mut self, slot: usize, n: u32) {
        let Some(c) = self.conns[slot].as_mut() else {
            return;
        };
        if n == 0 {
            return;
        }
        c.outstanding += n;
        c.sent_msgs += u64::from(n);
        if c.out == Out::Nothing {
            c.out = Out::Msg;
            c.queued += n - 1;
        } else {
            c.queued += n;
        }
    }

    fn queue_close(&mut self, slot: usize) {
        let Some(c) = self.conns[slot].as_mut() else {
            return;
        };
        if c.phase == Phase::Closing {
            return;
        }
        c.phase = Phase::Closing;
        if c.out == Out::Nothing {
            c.out = Out::Close;
        } else {
            c.close_after = true;
        }
    }

    fn read(&mut self, slot: usize) {
        let mut buf = std::mem::take(&mut self.buf);
        while let Some(c) = self.conns[slot].as_mut() {
            let n = match c.sock.read(&mut buf) {
                Ok(0) => {
                    self.on_eof(slot);
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let kind = match e.kind() {
                        io::ErrorKind::ConnectionReset => "read: connection reset",
                        io::ErrorKind::ConnectionRefused => "connect: refused",
                        _ => "read: other error",
                    };
                    self.drop_conn(slot, Some(kind));
                    break;
                }
            };
            if !self.on_bytes(slot, &buf[..n]) {
                break;
            }
        }
        self.buf = buf;
    }

    /// Handle bytes read; `false` when the connection is gone.
    fn on_bytes(&mut self, slot: usize, bytes: &[u8]) -> bool {
        let Some(c) = self.conns[slot].as_mut() else {
            return false;
        };
        if c.phase == Phase::Upgrading {
            c.resp.extend_from_slice(bytes);
            match wire::check_response(&c.resp, &self.accept) {
                HeadCheck::Partial => return true,
                HeadCheck::Refused { status } => {
                    *self.o.refused.entry(status).or_default() += 1;
                    self.remove(slot);
                    return false;
                }
                HeadCheck::Bad(why) => {
                    self.drop_conn(slot, Some(why));
                    return false;
                }
                HeadCheck::Switched { head_len } => {
                    let rest = std::mem::take(&mut c.resp);
                    c.phase = Phase::Open;
                    self.on_open(slot);
                    return self.on_frames(slot, &rest[head_len..]);
                }
            }
        }
        self.on_frames(slot, bytes)
    }

    fn on_open(&mut self, slot: usize) {
        let now = Instant::now();
        if let Some(c) = self.conns[slot].as_mut() {
            if !matches!(self.spec.scenario, Scenario::Handshake { .. }) {
                c.t0 = now;
            }
        }
        let n = match self.spec.scenario {
            Scenario::Bulk { inflight, .. } => inflight.max(1) as u32,
            _ => 1,
        };
        self.queue_msgs(slot, n);
        if let Err(kind) = self.flush(slot) {
            self.drop_conn(slot, Some(kind));
        }
    }

    /// Decode server frames and act on completed messages; `false` when the connection is gone.
    fn on_frames(&mut self, slot: usize, bytes: &[u8]) -> bool {
        if bytes.is_empty() {
            return true;
        }
        let Some(c) = self.conns[slot].as_mut() else {
            return false;
        };
        let size = self.payload.len() as u64;
        let verify = self.spec.verify;
        let payload = &self.payload;
        let mut sum = ReadSummary::default();
        let res = c.dec.feed(bytes, &mut |p| match p {
            Piece::Data { opcode, at, bytes } if opcode < 8 => {
                sum.data_bytes += bytes.len() as u64;
                if verify {
                    let at = at as usize;
                    if payload.get(at..at + bytes.len()) != Some(bytes) {
                        sum.mismatch = true;
                    }
                }
            }
            Piece::Data { .. } => {}
            Piece::End {
                opcode: wire::OP_CLOSE,
                ..
            } => sum.close = true,
            Piece::End { opcode, len } if opcode < 8 => {
                sum.msgs += 1;
                sum.wrong_len |= len != size;
            }
            Piece::End { .. } => {}
        });
        if let Err(e) = res {
            self.drop_conn(slot, Some(e.0));
            return false;
        }
        c.recv_bytes += sum.data_bytes;
        let now = Instant::now();
        let in_window = now >= self.win_start && now < self.win_end;
        if in_window {
            self.o.bytes += sum.data_bytes;
        }
        if sum.mismatch {
            self.drop_conn(slot, Some("echoed payload differs"));
            return false;
        }
        if sum.wrong_len {
            self.drop_conn(slot, Some("echoed message length differs"));
            return false;
        }
        if sum.close {
            c.close_seen = true;
            if c.phase != Phase::Closing {
                self.drop_conn(slot, Some("server closed the WebSocket"));
                return false;
            }
        }
        if sum.msgs > 0 {
            if sum.msgs > c.outstanding {
                self.drop_conn(slot, Some("more echoes than messages"));
                return false;
            }
            c.outstanding -= sum.msgs;
            self.on_echoes(slot, sum.msgs, now, in_window);
        }
        true
    }

    fn on_echoes(&mut self, slot: usize, msgs: u32, now: Instant, in_window: bool) {
        let Some(c) = self.conns[slot].as_mut() else {
            return;
        };
        let done = now >= self.win_end;
        match self.spec.scenario {
            Scenario::Handshake { .. } => {
                if in_window {
                    self.o.hist.record((now - c.t0).as_nanos() as u64);
                }
                self.queue_close(slot);
            }
            Scenario::Echo { .. } => {
                if in_window {
                    self.o.ops += u64::from(msgs);
                    self.o.hist.record((now - c.t0).as_nanos() as u64);
                    self.last_op = Some(now);
                }
                if done || self.closing_all {
                    self.queue_close(slot);
                } else {
                    c.t0 = now;
                    self.queue_msgs(slot, msgs);
                }
            }
            Scenario::Bulk { .. } => {
                if in_window {
                    self.o.ops += u64::from(msgs);
                    self.last_op = Some(now);
                }
                if done || self.closing_all {
                    if c.outstanding == 0 {
                        self.queue_close(slot);
                    }
                } else {
                    self.queue_msgs(slot, msgs);
                }
            }
            Scenario::Idle { .. } => {
                if !c.established {
                    c.established = true;
                    self.opening -= 1;
                    self.o.opened += 1;
                    self.fill();
                }
                if self.closing_all {
                    self.queue_close(slot);
                }
            }
        }
        if let Err(kind) = self.flush(slot) {
            self.drop_conn(slot, Some(kind));
        }
    }

    fn on_eof(&mut self, slot: usize) {
        let Some(c) = self.conns[slot].as_ref() else {
            return;
        };
        if c.phase == Phase::Closing && c.close_seen {
            if matches!(self.spec.scenario, Scenario::Handshake { .. }) {
                let now = Instant::now();
                if now >= self.win_start && now < self.win_end {
                    self.o.ops += 1;
                    self.last_op = Some(now);
                }
            }
            self.drop_conn(slot, None);
            self.fill();
        } else {
            let kind = match c.phase {
                Phase::Connecting | Phase::Upgrading => "EOF before the upgrade answer",
                Phase::Open => "EOF while open",
                Phase::Closing => "EOF before the close frame",
            };
            self.drop_conn(slot, Some(kind));
        }
    }

    /// Window over (timed scenarios): connections with nothing outstanding close now; the
    /// rest close when their last echo arrives; ones still opening are dropped.
    fn close_quiet(&mut self) {
        for slot in 0..self.conns.len() {
            let Some(c) = self.conns[slot].as_ref() else {
                continue;
            };
            match c.phase {
                Phase::Connecting | Phase::Upgrading => {
                    // In-flight handshakes finish (their answer is on its way); nothing new starts.
                    if !matches!(self.spec.scenario, Scenario::Handshake { .. }) {
                        self.drop_conn(slot, Some("still opening at the end"));
                    }
                }
                Phase::Open if c.outstanding == 0 => {
                    self.queue_close(slot);
                    if let Err(kind) = self.flush(slot) {
                        self.drop_conn(slot, Some(kind));
                    }
                }
                Phase::Open | Phase::Closing => {}
            }
        }
    }

    /// Idle release: close every connection.
    fn close_all(&mut self) {
        self.closing_all = true;
        for slot in 0..self.conns.len() {
            let Some(c) = self.conns[slot].as_ref() else {
                continue;
            };
            match c.phase {
                Phase::Connecting | Phase::Upgrading => {
                    self.drop_conn(slot, Some("still opening at release"))
                }
                Phase::Open if c.outstanding == 0 => {
                    self.queue_close(slot);
                    if let Err(kind) = self.flush(slot) {
                        self.drop_conn(slot, Some(kind));
                    }
                }
                Phase::Open | Phase::Closing => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_shares() {
        let cases: &[(&str, Scenario, usize, usize)] = &[
            (
                "handshake",
                Scenario::Handshake { concurrency: 64 },
                64,
                PROBE_BYTES,
            ),
            (
                "echo",
                Scenario::Echo {
                    conns: 256,
                    size: 4096,
                },
                256,
                4096,
            ),
            (
                "bulk",
                Scenario::Bulk {
                    conns: 16,
                    size: 1 << 20,
                    inflight: 4,
                },
                16,
                1 << 20,
            ),
            ("idle", Scenario::Idle { conns: 9000 }, 9000, PROBE_BYTES),
        ];
        for (name, s, conns, size) in cases {
            assert_eq!(s.total_conns(), *conns, "{name}");
            assert_eq!(s.msg_size(), *size, "{name}");
        }
    }

    #[test]
    fn outcome_merge_adds_up() {
        let mut a = Outcome {
            ops: 1,
            bytes: 10,
            window: 1.0,
            ..Default::default()
        };
        a.errors.insert("x".into(), 1);
        let mut b = Outcome {
            ops: 2,
            bytes: 5,
            window: 2.0,
            ..Default::default()
        };
        b.errors.insert("x".into(), 2);
        b.refused.insert(401, 3);
        a.merge(b);
        assert_eq!((a.ops, a.bytes, a.window), (3, 15, 2.0));
        assert_eq!(a.error_count(), 6);
    }
}
