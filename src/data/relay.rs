//! Phase 11 (DESIGN §2): relay bytes between the client and the node until both directions end.
//! Small reads are copied (`recv` into the worker's scratch buffer, `send` at once); a read that
//! fills the buffer switches the direction to `splice(2)` socket → pipe → socket until reads get
//! short again. Waits for readiness through the runtime (an io_uring poll or epoll, never an
//! io_uring `SPLICE`: that parks a kernel `iou-wrk` thread per idle direction). Pipes come from
//! the worker's [`PipePool`] only while bytes move. Never parses frames; never drops read bytes.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use crate::data::pipes::{Pipe, PipePool, PIPE_BYTES, SCRATCH_BYTES};

/// Consecutive full reads one direction makes before yielding to the worker's other tasks: a
/// sender faster than the relay would otherwise never hit `EAGAIN` and starve the worker.
/// 16 × 64 KiB = 1 MiB per turn.
const READS_BEFORE_YIELD: u32 = 16;

/// Back-off before retrying when no pipe can be created (descriptors or pipe memory exhausted,
/// DESIGN §12): brief, like the accept back-off, so the worker does not spin.
const PIPE_RETRY: Duration = Duration::from_millis(10);

/// Which way bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// client → node
    Up,
    /// node → client
    Down,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }

    /// The end reported when this direction's source socket fails.
    fn src_failed(self) -> RelayEnd {
        match self {
            Direction::Up => RelayEnd::ClientError,
            Direction::Down => RelayEnd::NodeError,
        }
    }

    /// The end reported when this direction's destination socket fails.
    fn dst_failed(self) -> RelayEnd {
        match self {
            Direction::Up => RelayEnd::NodeError,
            Direction::Down => RelayEnd::ClientError,
        }
    }
}

/// Why a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// Both directions reached EOF and everything read was written.
    Closed,
    /// The client socket failed (reset, broken pipe, …).
    ClientError,
    /// The node socket failed.
    NodeError,
    /// No byte moved in either direction for the idle timeout.
    IdleTimeout,
    /// The `stop` future fired (drain, token expiry).
    Stopped,
}

impl RelayEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            RelayEnd::Closed => "closed",
            RelayEnd::ClientError => "client_error",
            RelayEnd::NodeError => "node_error",
            RelayEnd::IdleTimeout => "idle_timeout",
            RelayEnd::Stopped => "stopped",
        }
    }
}

/// Bytes delivered each way and why the relay ended (for the access log, DESIGN §2 step 12).
#[derive(Debug, Clone, Copy)]
pub struct RelayOutcome {
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub end: RelayEnd,
}

/// Relay until both directions ended (half-close: EOF from src → shutdown(SHUT_WR) on dst, the
/// other direction keeps running), an error (reset etc.: end both; the caller drops/closes the
/// sockets), the idle timeout (no byte moved in either direction for that long: None = never),
/// or `stop` resolving (drain, token expiry). Every byte read is written before a direction is
/// considered done; nothing buffered is dropped on a clean EOF.
///
/// From here on both sockets are touched only by raw syscalls (copies use `MSG_DONTWAIT`; the
/// first splice switches both to `O_NONBLOCK`, which splice needs): after `relay` returns, close
/// them; do not read or write them through monoio ops (on the io_uring driver monoio expects
/// blocking sockets). `TCP_NODELAY` is the caller's business.
///
/// NOTE: the future lives, idle, for a relayed connection's whole life (DESIGN §2: an idle
/// relayed connection holds only its sockets and a small task), so its layout is kept tight:
/// a plain `fn` returning an `async move` block (an `async fn` would keep a second copy of its
/// arguments), `stop` polled in place (hence `Unpin`: pin it in the caller's frame), and only a
/// readiness wait per direction while idle — the active paths (splice, backpressure) run in
/// boxed futures allocated per burst.
pub fn relay<'a, S: Future<Output = ()> + Unpin + 'a>(
    client: &'a TcpStream,
    node: &'a TcpStream,
    pool: &'a PipePool,
    idle_timeout: Option<Duration>,
    mut stop: S,
) -> impl Future<Output = RelayOutcome> + 'a {
    // Built here and moved into the block as they are: used in place, not copied again.
    let shared = Shared {
        client,
        node,
        pool,
        bytes_up: Cell::new(0),
        bytes_down: Cell::new(0),
        last_active: Cell::new(Instant::now()),
        nonblocking: Cell::new(false),
    };
    let mut idle = IdleWatch {
        idle: idle_timeout,
        sleep: None,
    };
    async move {
        let mut up = pin!(shared.run(Direction::Up));
        let mut down = pin!(shared.run(Direction::Down));
        let (mut up_done, mut down_done) = (false, false);
        let (stop, idle, last_active) = (&mut stop, &mut idle, &shared.last_active);
        // One task, four futures; a completed one is never polled again. Directions first, so
        // bytes already readable move before a stop or timeout is noticed in the same wake.
        // (`move`: the closure holds the pinned references and flags themselves, not pointers
        // to them — fewer bytes in every idle connection's task.)
        let end = poll_fn(move |cx| {
            for (run, done, dir) in [
                (up.as_mut(), &mut up_done, Direction::Up),
                (down.as_mut(), &mut down_done, Direction::Down),
            ] {
                if *done {
                    continue;
                }
                if let Poll::Ready(res) = run.poll(cx) {
                    match res {
                        Ok(()) => *done = true,
                        Err(fail) => return Poll::Ready(report(dir, fail)),
                    }
                }
            }
            if up_done && down_done {
                return Poll::Ready(RelayEnd::Closed);
            }
            if Pin::new(&mut *stop).poll(cx).is_ready() {
                return Poll::Ready(RelayEnd::Stopped);
            }
            if idle.poll(cx, last_active).is_ready() {
                return Poll::Ready(RelayEnd::IdleTimeout);
            }
            Poll::Pending
        })
        .await;
        // Dropping the direction futures (with the relay) cancels their in-flight readiness
        // waits and closes any pipe still holding bytes (it is never given back to the pool).
        RelayOutcome {
            bytes_up: shared.bytes_up.get(),
            bytes_down: shared.bytes_down.get(),
            end,
        }
    }
}

/// What both directions of one relay share.
struct Shared<'a> {
    client: &'a TcpStream,
    node: &'a TcpStream,
    pool: &'a PipePool,
    /// Bytes written to the node / to the client.
    bytes_up: Cell<u64>,
    bytes_down: Cell<u64>,
    /// When bytes last moved either way (copy, splice or spill).
    ///
    /// NOTE: one clock read (vDSO, no syscall) per successful read or write, next to a syscall
    /// that costs far more; it spares a timer per read.
    last_active: Cell<Instant>,
    /// Both sockets are `O_NONBLOCK` (set before the first splice; a connection that only ever
    /// copies never pays the two `ioctl`s).
    nonblocking: Cell<bool>,
}

/// Which socket of a direction failed.
#[derive(Debug, Clone, Copy)]
enum Side {
    Src,
    Dst,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Src => "src",
            Side::Dst => "dst",
        }
    }
}

struct Failure {
    side: Side,
    err: io::Error,
}

impl Failure {
    fn src(err: io::Error) -> Failure {
        Failure { side: Side::Src, err }
    }

    fn dst(err: io::Error) -> Failure {
        Failure { side: Side::Dst, err }
    }
}

/// What a direction does after a copy.
enum Next {
    /// Wait for the source to be readable.
    Wait,
    /// Splice: the read filled the scratch buffer.
    Splice,
    /// The source ended.
    Eof,
}

/// What one splice from the source gave.
enum Fill {
    /// This many bytes were read (and written to the destination).
    Moved(usize),
    /// Nothing to read now (`EAGAIN`).
    Empty,
    /// End of stream.
    Eof,
}

/// The end a direction's failure maps to, logged once.
fn report(dir: Direction, fail: Failure) -> RelayEnd {
    let end = match fail.side {
        Side::Src => dir.src_failed(),
        Side::Dst => dir.dst_failed(),
    };
    tracing::debug!(
        direction = dir.as_str(),
        side = fail.side.as_str(),
        error = %fail.err,
        end = end.as_str(),
        "relay: direction failed"
    );
    end
}

impl Shared<'_> {
    /// Source and destination of a direction.
    fn ends(&self, dir: Direction) -> (&TcpStream, &TcpStream) {
        match dir {
            Direction::Up => (self.client, self.node),
            Direction::Down => (self.node, self.client),
        }
    }

    /// Count `n` bytes written in direction `dir` (activity for the idle timeout).
    fn moved(&self, dir: Direction, n: usize) {
        let counter = match dir {
            Direction::Up => &self.bytes_up,
            Direction::Down => &self.bytes_down,
        };
        counter.set(counter.get() + n as u64);
        self.last_active.set(Instant::now());
    }

    /// One direction: move bytes until EOF (then shut down the destination's write side) or an
    /// error. Copy while reads are small, splice while they fill the scratch buffer (DESIGN §2:
    /// for small messages a pipe round trip costs more than two copies).
    ///
    /// NOTE: while idle this future holds only the source's readiness wait; the rare or bulky
    /// paths (a spill under backpressure, a splice burst) are boxed futures that exist only
    /// while they run.
    fn run(&self, dir: Direction) -> impl Future<Output = Result<(), Failure>> + '_ {
        // A plain `fn` returning a block: an `async fn` would keep a second copy of its
        // arguments in every state.
        async move {
            loop {
                // Only `next` (one byte) is held across the boxed awaits, nothing across the
                // readiness wait below.
                let next = match self.copy_now(dir)? {
                    (next, None) => next,
                    (next, Some(spill)) => {
                        Box::pin(self.write_spill(dir, spill)).await?;
                        next
                    }
                };
                let eof = match next {
                    Next::Splice => matches!(Box::pin(self.splice_burst(dir)).await?, Fill::Eof),
                    Next::Wait => false,
                    Next::Eof => true,
                };
                if eof {
                    let (_, dst) = self.ends(dir);
                    return shutdown_write(dst.as_raw_fd()).map_err(Failure::dst);
                }
                let (src, _) = self.ends(dir);
                src.readable(false).await.map_err(Failure::src)?;
            }
        }
    }

    /// One `recv` into the worker's scratch buffer and an immediate `send` of what it got, with
    /// no await (so the shared buffer is free again before any other task runs). What the
    /// destination does not take now is returned as a spill of at most [`SCRATCH_BYTES`],
    /// to be written out before the next read.
    fn copy_now(&self, dir: Direction) -> Result<(Next, Option<Vec<u8>>), Failure> {
        let (src, dst) = self.ends(dir);
        let mut scratch = self.pool.scratch();
        let buf = &mut scratch[..];
        let n = match recv(src.as_raw_fd(), buf) {
            Ok(0) => return Ok((Next::Eof, None)),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok((Next::Wait, None)),
            Err(err) => return Err(Failure::src(err)),
        };
        self.last_active.set(Instant::now());
        let sent = match send(dst.as_raw_fd(), &buf[..n]) {
            Ok(k) => k,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => 0,
            Err(err) => return Err(Failure::dst(err)),
        };
        self.moved(dir, sent);
        // A full read: more is likely queued, move it by splice until reads get short again.
        // A short one drained the socket as far as this read could tell: wait for readiness
        // instead of paying a read that would return EAGAIN (the wait re-checks, so bytes that
        // arrived meanwhile are not missed).
        let next = if n >= SCRATCH_BYTES {
            Next::Splice
        } else {
            Next::Wait
        };
        Ok((next, (sent < n).then(|| buf[sent..n].to_vec())))
    }

    /// Write a spill (bytes read but not yet taken by the destination), waiting for it to be
    /// writable; the direction reads nothing more until it is out, which bounds its memory.
    async fn write_spill(&self, dir: Direction, spill: Vec<u8>) -> Result<(), Failure> {
        let (_, dst) = self.ends(dir);
        let mut left = &spill[..];
        while !left.is_empty() {
            dst.writable(false).await.map_err(Failure::dst)?;
            match send(dst.as_raw_fd(), left) {
                Ok(0) => {
                    let err = io::Error::new(io::ErrorKind::WriteZero, "send wrote 0 bytes");
                    return Err(Failure::dst(err));
                }
                Ok(n) => {
                    left = &left[n..];
                    self.moved(dir, n);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Err(Failure::dst(err)),
            }
        }
        Ok(())
    }

    /// Switch both sockets to `O_NONBLOCK` once per relay (splice has no per-call flag for the
    /// socket side).
    fn ensure_nonblocking(&self, dir: Direction) -> Result<(), Failure> {
        if self.nonblocking.get() {
            return Ok(());
        }
        let (src, dst) = self.ends(dir);
        set_nonblocking(src.as_raw_fd()).map_err(Failure::src)?;
        set_nonblocking(dst.as_raw_fd()).map_err(Failure::dst)?;
        self.nonblocking.set(true);
        Ok(())
    }

    /// Splice socket → pipe → socket while reads fill the scratch buffer; returns at the first
    /// short read (`Moved`), when the source has nothing (`Empty`) or at its end (`Eof`). The
    /// pipe is taken from the pool here and given back on return, drained; dropped (closed)
    /// instead if the burst is cancelled or fails while it may hold bytes.
    async fn splice_burst(&self, dir: Direction) -> Result<Fill, Failure> {
        let (src, _) = self.ends(dir);
        self.ensure_nonblocking(dir)?;
        let pipe = self.take_pipe(dir).await;
        let mut reads_this_turn = 0u32;
        loop {
            // The pipe is empty, so EAGAIN can only mean "the socket has nothing" (not "pipe
            // full").
            let fill = match splice(src.as_raw_fd(), pipe.write_fd(), PIPE_BYTES) {
                Ok(0) => Fill::Eof,
                Ok(n) => Fill::Moved(n),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => Fill::Empty,
                Err(err) => return Err(Failure::src(err)),
            };
            let Fill::Moved(n) = fill else {
                self.pool.give(pipe);
                return Ok(fill);
            };
            self.last_active.set(Instant::now());
            self.drain(dir, &pipe, n).await?;
            if n < SCRATCH_BYTES {
                self.pool.give(pipe);
                return Ok(fill);
            }
            // A sender faster than the relay would otherwise never hit EAGAIN and starve
            // the worker.
            reads_this_turn += 1;
            if reads_this_turn >= READS_BEFORE_YIELD {
                reads_this_turn = 0;
                YieldNow(false).await;
            }
        }
    }

    /// Write the `left` bytes in `pipe` to the destination, waiting for it to be writable.
    async fn drain(&self, dir: Direction, pipe: &Pipe, mut left: usize) -> Result<(), Failure> {
        let (_, dst) = self.ends(dir);
        while left > 0 {
            match splice(pipe.read_fd(), dst.as_raw_fd(), left) {
                Ok(0) => {
                    let err = io::Error::new(io::ErrorKind::WriteZero, "splice wrote 0 bytes");
                    return Err(Failure::dst(err));
                }
                Ok(n) => {
                    left -= n;
                    // A slow reader may take long to drain one pipe: writing counts as activity.
                    self.moved(dir, n);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    dst.writable(false).await.map_err(Failure::dst)?;
                }
                Err(err) => return Err(Failure::dst(err)),
            }
        }
        Ok(())
    }

    /// A pipe from the pool. pipe2(2) fails only for lack of descriptors or pipe memory: back
    /// off and retry rather than kill a live connection; idle timeout and `stop` still apply.
    async fn take_pipe(&self, dir: Direction) -> Pipe {
        loop {
            match self.pool.take() {
                Ok(p) => return p,
                Err(err) => {
                    tracing::debug!(direction = dir.as_str(), error = %err, "relay: no pipe, backing off");
                    // Boxed: this path is rare, and an inline `Sleep` would add ~640 bytes to
                    // every splice burst's future.
                    Box::pin(monoio::time::sleep(PIPE_RETRY)).await;
                }
            }
        }
    }
}

/// Resolves once no byte moved for `idle`; never without one. Sleeps until the deadline implied
/// by the last activity and re-checks: one timer per connection, re-armed at most once per
/// `idle`, no per-read timers.
struct IdleWatch {
    idle: Option<Duration>,
    /// NOTE: boxed, and only with an idle timeout: monoio's `Sleep` is a ~640-byte cache-aligned
    /// timer entry; inline, it would more than double every relay's future.
    sleep: Option<Pin<Box<monoio::time::Sleep>>>,
}

impl IdleWatch {
    fn poll(&mut self, cx: &mut Context<'_>, last_active: &Cell<Instant>) -> Poll<()> {
        let Some(idle) = self.idle else {
            return Poll::Pending;
        };
        let sleep = self.sleep.get_or_insert_with(|| {
            Box::pin(monoio::time::sleep_until(monoio::time::Instant::from_std(
                last_active.get() + idle,
            )))
        });
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let deadline = last_active.get() + idle;
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            sleep.as_mut().reset(monoio::time::Instant::from_std(deadline));
        }
    }
}

/// Yield once to the worker's scheduler.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// `splice(2)` up to `len` bytes, non-blocking; retries `EINTR`.
///
/// NOTE: splicing into a socket whose peer is gone raises `SIGPIPE` (the kernel's
/// splice-to-socket path sends without `MSG_NOSIGNAL`); Rust binaries ignore `SIGPIPE` by
/// default, so it surfaces as `EPIPE` here. A host that re-enabled `SIGPIPE` would die on the
/// first broken relay.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    retry_eintr(|| {
        // SAFETY: `from` and `to` are open descriptors borrowed for the call: the sockets are
        // owned by the caller's `TcpStream`s, which outlive `relay`, and the pipe ends by a
        // `Pipe` the calling direction holds; null offsets are required for sockets and pipes.
        unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
            )
        }
    })
}

/// `recv(2)` into `buf` without blocking (`MSG_DONTWAIT`, whatever the socket's mode); retries
/// `EINTR`.
fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `fd` is a socket owned by a `TcpStream` the caller borrows for the call; `buf` is
    // valid and writable for `buf.len()` bytes.
    retry_eintr(|| unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) })
}

/// `send(2)` from `buf` without blocking and without `SIGPIPE` (`EPIPE` instead); retries
/// `EINTR`.
pub(crate) fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `fd` is a socket the caller keeps open for the call (a borrowed `TcpStream`, the
    // access log's stdout); `buf` is valid and readable for `buf.len()` bytes.
    retry_eintr(|| unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    })
}

/// Run a byte-count syscall until it is not interrupted: `Ok(n)` for n ≥ 0, else the OS error.
pub(crate) fn retry_eintr(mut call: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// `O_NONBLOCK` on a socket via `FIONBIO` (one syscall, no F_GETFL round trip).
fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    let mut on: libc::c_int = 1;
    // SAFETY: `fd` belongs to a `TcpStream` the caller borrows for the whole relay; FIONBIO
    // reads one c_int from `on`, which is valid.
    if unsafe { libc::ioctl(fd, libc::FIONBIO, &mut on) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Half-close: send FIN to the destination's peer, keep its read side open.
fn shutdown_write(fd: RawFd) -> io::Result<()> {
    // SAFETY: `fd` belongs to a `TcpStream` the caller borrows for the whole relay.
    if unsafe { libc::shutdown(fd, libc::SHUT_WR) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
