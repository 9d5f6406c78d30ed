//! `capi-ws echo`: an RFC 6455 echo server, thread-per-core on monoio — the node behind the
//! tests, `make run` and `make bench`. Each worker owns a runtime and a `SO_REUSEPORT` listener;
//! each connection owns one read and one write buffer and streams payloads through them (a
//! 1 MiB message is never held whole). Handshake in `handshake.rs`, codec in `frame.rs`. No locks,
//! no shared counters, no per-frame allocation.

pub mod frame;
mod handshake;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, Context};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};

use crate::cli::EchoArgs;
use crate::config::DriverChoice;
use crate::rt::{self, DriverKind};
use frame::{Opcode, ProtocolError};
use handshake::{parse_head, push_response, Head};

/// Per-connection read and write buffer size: one syscall moves up to this much.
const BUF_BYTES: usize = 64 * 1024;
/// A client has this long to send its request head.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After our close frame (or HTTP response), wait this long for the client's EOF so that
/// unread input does not turn our close into a reset that loses the last bytes.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Accept back-off bounds when the process runs out of descriptors (EMFILE and friends).
const ACCEPT_BACKOFF_MIN_MS: u64 = 5;
const ACCEPT_BACKOFF_MAX_MS: u64 = 500;

/// Run the echo server until the process is killed. Prints exactly one line
/// `listening echo=<ip:port>` to stderr once every worker listens. Errors (bad address, bind
/// failure, driver unavailable) are returned; so is a worker that stops (the process exits
/// rather than serve on with fewer workers).
pub fn run_echo(args: &EchoArgs) -> anyhow::Result<()> {
    let listen = resolve_listen(&args.listen)?;
    let choice = parse_driver(&args.driver)?;
    let kind = rt::resolve_driver(choice).map_err(|e| anyhow!(e))?;
    let (addr, count, events) =
        start_workers(listen, args.workers, kind).with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(driver = kind.as_str(), workers = count, %addr, "echo server started");
    eprintln!("listening echo={addr}");
    loop {
        match events.recv() {
            Ok(WorkerEvent::Listening) => {}
            Ok(WorkerEvent::Stopped(Ok(()))) => return Err(anyhow!("echo worker stopped")),
            Ok(WorkerEvent::Stopped(Err(e))) => return Err(e).context("echo worker stopped"),
            Err(_) => return Err(anyhow!("echo workers gone")),
        }
    }
}

/// Start echo workers in background threads (for the demo); returns the bound address once
/// all listen.
pub fn spawn_echo(listen: SocketAddr, workers: usize, driver: DriverChoice) -> io::Result<SocketAddr> {
    let kind = rt::resolve_driver(driver).map_err(io::Error::other)?;
    let (addr, _count, _events) = start_workers(listen, workers, kind)?;
    Ok(addr)
}

fn resolve_listen(listen: &str) -> anyhow::Result<SocketAddr> {
    listen
        .to_socket_addrs()
        .with_context(|| format!("bad --listen address {listen:?}"))?
        .next()
        .ok_or_else(|| anyhow!("--listen {listen:?} resolves to no address"))
}

fn parse_driver(driver: &str) -> anyhow::Result<DriverChoice> {
    DriverChoice::parse(driver).ok_or_else(|| anyhow!("--driver {driver:?}: expected auto, iouring or epoll"))
}

/// What a worker thread reports to the thread that started it.
enum WorkerEvent {
    Listening,
    Stopped(io::Result<()>),
}

/// Bind one `SO_REUSEPORT` listener per worker (port 0: the first picks, the rest follow),
/// start the threads and wait until each has registered its listener with its runtime.
/// Returns the address, the worker count and the channel on which workers report stopping.
fn start_workers(
    listen: SocketAddr,
    workers: usize,
    kind: DriverKind,
) -> io::Result<(SocketAddr, usize, mpsc::Receiver<WorkerEvent>)> {
    let count = match workers {
        0 => thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let first = rt::bind_reuseport(listen)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..count {
        listeners.push(rt::bind_reuseport(addr)?);
    }
    let (events_tx, events) = mpsc::channel();
    for (i, listener) in listeners.into_iter().enumerate() {
        let events_tx = events_tx.clone();
        thread::Builder::new()
            .name(format!("capi-echo-{i}"))
            .spawn(move || {
                let run = || run_worker(listener, kind, &events_tx);
                let result = panic::catch_unwind(AssertUnwindSafe(run))
                    .unwrap_or_else(|_| Err(io::Error::other("echo worker panicked")));
                let _ = events_tx.send(WorkerEvent::Stopped(result));
            })?;
    }
    drop(events_tx);
    let mut listening = 0;
    while listening < count {
        match events.recv() {
            Ok(WorkerEvent::Listening) => listening += 1,
            Ok(WorkerEvent::Stopped(Err(e))) => return Err(e),
            Ok(WorkerEvent::Stopped(Ok(()))) | Err(_) => {
                return Err(io::Error::other("echo worker exited before listening"))
            }
        }
    }
    Ok((addr, count, events))
}

/// One worker thread: its own runtime, its own listener, accept forever.
fn run_worker(
    listener: std::net::TcpListener,
    kind: DriverKind,
    events: &mpsc::Sender<WorkerEvent>,
) -> io::Result<()> {
    rt::block_on(kind, async move {
        let listener = TcpListener::from_std(listener)?;
        let _ = events.send(WorkerEvent::Listening);
        run_accept(listener).await
    })?
}

/// Accept and spawn, nothing else; back off (capped) when out of descriptors.
async fn run_accept(listener: TcpListener) -> io::Result<()> {
    let mut backoff_ms = 0;
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                backoff_ms = 0;
                monoio::spawn(handle_conn(stream));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                backoff_ms = (backoff_ms * 2).clamp(ACCEPT_BACKOFF_MIN_MS, ACCEPT_BACKOFF_MAX_MS);
                tracing::warn!(error = %e, backoff_ms, "echo accept failed");
                monoio::time::sleep(Duration::from_millis(backoff_ms)).await;
            }
        }
    }
}

async fn handle_conn(stream: TcpStream) {
    // NOTE: echo replies are latency-bound small writes; Nagle would delay them.
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        stream,
        rbuf: Vec::with_capacity(BUF_BYTES),
        rpos: 0,
        wbuf: Vec::with_capacity(BUF_BYTES),
    };
    if let Err(e) = conn.run().await {
        tracing::debug!(error = %e, "echo connection ended");
    }
}

/// One connection: `rbuf[rpos..]` is received but unprocessed input, `wbuf` pending output.
struct Conn {
    stream: TcpStream,
    rbuf: Vec<u8>,
    rpos: usize,
    wbuf: Vec<u8>,
}

impl Conn {
    async fn run(&mut self) -> io::Result<()> {
        let upgraded = match monoio::time::timeout(HANDSHAKE_TIMEOUT, self.do_handshake()).await {
            Ok(result) => result?,
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "handshake timed out")),
        };
        if upgraded {
            self.run_frames().await
        } else {
            self.flush().await?;
            self.close_gracefully().await;
            Ok(())
        }
    }

    /// Read the head and queue the answer; input after the head stays in `rbuf` for the frame
    /// loop. Returns whether the connection upgraded (false also on EOF before a full head).
    async fn do_handshake(&mut self) -> io::Result<bool> {
        loop {
            let head = parse_head(&self.rbuf);
            if head == Head::Partial {
                if !self.fill().await? {
                    return Ok(false);
                }
                continue;
            }
            if let Head::Upgrade { head_len, .. } = head {
                self.rpos = head_len;
            }
            return Ok(push_response(&mut self.wbuf, &head));
        }
    }

    /// Echo frames until close, protocol error or EOF. Output is flushed only before waiting
    /// for input (or when `wbuf` is full), so pipelined small frames share one write.
    async fn run_frames(&mut self) -> io::Result<()> {
        let mut in_message = false;
        loop {
            let (header, header_len) = match frame::parse_client_header(&self.rbuf[self.rpos..]) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => {
                    if !self.flush_and_fill().await? {
                        return Ok(());
                    }
                    continue;
                }
                Err(e) => return self.close_with_error(e).await,
            };
            self.rpos += header_len;
            if let Err(e) = frame::check_sequence(&mut in_message, header.opcode, header.fin) {
                return self.close_with_error(e).await;
            }
            if !header.opcode.is_control() {
                if !self.echo_data(&header).await? {
                    return Ok(());
                }
                continue;
            }
            // Control payloads are at most 125 bytes (checked by the parser).
            let len = header.payload_len as usize;
            if !self.ensure(len).await? {
                return Ok(());
            }
            let start = self.rpos;
            self.rpos += len;
            let payload = &mut self.rbuf[start..start + len];
            frame::apply_mask(payload, header.mask, 0);
            match header.opcode {
                Opcode::Ping => {
                    self.reserve(frame::MAX_SERVER_HEADER_LEN + len).await?;
                    frame::push_server_header(&mut self.wbuf, true, Opcode::Pong, len as u64);
                    self.wbuf.extend_from_slice(&self.rbuf[start..start + len]);
                }
                Opcode::Close => {
                    let code = match frame::close_reply_code(&self.rbuf[start..start + len]) {
                        Ok(code) => code,
                        Err(e) => return self.close_with_error(e).await,
                    };
                    return self.close_with(code).await;
                }
                _ => {} // pong: ignored
            }
        }
    }

    /// Stream one data frame's payload: unmask from `rbuf` into `wbuf` chunk by chunk.
    /// Returns false on EOF mid-frame.
    async fn echo_data(&mut self, header: &frame::FrameHeader) -> io::Result<bool> {
        self.reserve(frame::MAX_SERVER_HEADER_LEN).await?;
        frame::push_server_header(&mut self.wbuf, header.fin, header.opcode, header.payload_len);
        let mut remaining = header.payload_len;
        let mut offset = 0usize;
        while remaining > 0 {
            let available = self.rbuf.len() - self.rpos;
            if available == 0 {
                if !self.flush_and_fill().await? {
                    return Ok(false);
                }
                continue;
            }
            let room = self.wbuf.capacity() - self.wbuf.len();
            if room == 0 {
                self.flush().await?;
                continue;
            }
            let n = available
                .min(room)
                .min(usize::try_from(remaining).unwrap_or(usize::MAX));
            let start = self.wbuf.len();
            self.wbuf.extend_from_slice(&self.rbuf[self.rpos..self.rpos + n]);
            frame::apply_mask(&mut self.wbuf[start..], header.mask, offset);
            offset = (offset + n) & 3;
            self.rpos += n;
            remaining -= n as u64;
        }
        Ok(true)
    }

    /// Make sure at least `n` unprocessed bytes are buffered (`n` is at most a control frame).
    async fn ensure(&mut self, n: usize) -> io::Result<bool> {
        while self.rbuf.len() - self.rpos < n {
            if !self.flush_and_fill().await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Make room for `n` more output bytes without growing `wbuf`.
    async fn reserve(&mut self, n: usize) -> io::Result<()> {
        if self.wbuf.capacity() - self.wbuf.len() < n {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush_and_fill(&mut self) -> io::Result<bool> {
        self.flush().await?;
        self.fill().await
    }

    /// Read more input after what is buffered; false on EOF.
    async fn fill(&mut self) -> io::Result<bool> {
        if self.rpos > 0 {
            let unprocessed = self.rbuf.len() - self.rpos;
            self.rbuf.copy_within(self.rpos.., 0);
            self.rbuf.truncate(unprocessed);
            self.rpos = 0;
        }
        let start = self.rbuf.len();
        if start == self.rbuf.capacity() {
            // Callers wait for at most a head (capped below the capacity) or a control frame.
            return Err(io::Error::other("echo read buffer full"));
        }
        let buf = std::mem::take(&mut self.rbuf);
        let (result, slice) = self.stream.read(buf.slice_mut(start..)).await;
        self.rbuf = slice.into_inner();
        Ok(result? > 0)
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.wbuf);
        let (result, mut buf) = self.stream.write_all(buf).await;
        buf.clear();
        self.wbuf = buf;
        result.map(|_| ())
    }

    async fn close_with_error(&mut self, e: ProtocolError) -> io::Result<()> {
        tracing::debug!(reason = e.as_str(), "echo: closing on protocol error");
        self.close_with(Some(e.close_code())).await
    }

    /// Send a close frame (after any pending output) and end the connection.
    async fn close_with(&mut self, code: Option<u16>) -> io::Result<()> {
        self.reserve(frame::MAX_SERVER_HEADER_LEN + 2).await?;
        frame::push_close(&mut self.wbuf, code);
        self.flush().await?;
        self.close_gracefully().await;
        Ok(())
    }

    /// Half-close our side, then drain input until the client's EOF (bounded by
    /// `CLOSE_LINGER`) so our last bytes are not lost to a reset.
    async fn close_gracefully(&mut self) {
        let _ = self.stream.shutdown().await;
        let drain = async {
            loop {
                self.rpos = self.rbuf.len();
                if !matches!(self.fill().await, Ok(true)) {
                    break;
                }
            }
        };
        let _ = monoio::time::timeout(CLOSE_LINGER, drain).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_driver_names() {
        let cases: &[(&str, Option<DriverChoice>)] = &[
            ("auto", Some(DriverChoice::Auto)),
            ("iouring", Some(DriverChoice::IoUring)),
            ("epoll", Some(DriverChoice::Epoll)),
            ("kqueue", None),
        ];
        for &(name, want) in cases {
            assert_eq!(parse_driver(name).ok(), want, "{name}");
        }
    }
}
