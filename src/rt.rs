//! Runtime plumbing shared by the gateway workers and the echo server: driver choice
//! (io_uring, else epoll) and `SO_REUSEPORT` listeners. One runtime per thread, never shared.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

use crate::config::DriverChoice;

/// io_uring submission queue size per worker (monoio's default is 1024).
const URING_ENTRIES: u32 = 4096;
/// Listen backlog: the kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 4096;

/// The driver a runtime actually uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    IoUring,
    Epoll,
}

impl DriverKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DriverKind::IoUring => "io_uring",
            DriverKind::Epoll => "epoll",
        }
    }
}

/// Decide the driver once per process. `iouring` where io_uring is unavailable is an error
/// (exit 2, DESIGN §12); `auto` falls back to epoll.
pub fn resolve_driver(choice: DriverChoice) -> Result<DriverKind, String> {
    match choice {
        DriverChoice::Epoll => Ok(DriverKind::Epoll),
        DriverChoice::Auto => Ok(if monoio::utils::detect_uring() {
            DriverKind::IoUring
        } else {
            DriverKind::Epoll
        }),
        DriverChoice::IoUring => {
            if monoio::utils::detect_uring() {
                Ok(DriverKind::IoUring)
            } else {
                Err(
                    "--driver iouring: io_uring is not available here (old kernel, seccomp \
                     profile or io_uring_disabled sysctl); use --driver epoll or auto"
                        .to_string(),
                )
            }
        }
    }
}

/// Build a runtime (with timers) of the given kind on this thread and run `fut` to completion.
pub fn block_on<F: Future>(kind: DriverKind, fut: F) -> io::Result<F::Output> {
    match kind {
        DriverKind::IoUring => {
            let mut rt = build_uring()?;
            Ok(rt.block_on(fut))
        }
        DriverKind::Epoll => {
            let mut rt = RuntimeBuilder::<LegacyDriver>::new()
                .with_entries(URING_ENTRIES)
                .enable_timer()
                .build()?;
            Ok(rt.block_on(fut))
        }
    }
}

type UringRuntime = monoio::Runtime<monoio::time::TimeDriver<IoUringDriver>>;

/// An io_uring runtime whose completions are run by the worker itself, when it waits for
/// events (`IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN`, Linux 6.1+), instead
/// of by a signal-style task-work interrupt per completion: every worker owns its ring and is
/// its only submitter, so this is exact. Older kernels refuse the flags (EINVAL): then
/// `IORING_SETUP_COOP_TASKRUN` (5.19+), then monoio's default setup.
fn build_uring() -> io::Result<UringRuntime> {
    type Setup = fn(&mut io_uring::Builder);
    let setups: [(&str, Setup); 3] = [
        ("single_issuer+defer_taskrun", |b| {
            b.setup_single_issuer().setup_defer_taskrun();
        }),
        ("coop_taskrun", |b| {
            b.setup_coop_taskrun();
        }),
        ("default", |_| {}),
    ];
    let mut last = None;
    for (name, setup) in setups {
        let mut urb = io_uring::IoUring::builder();
        setup(&mut urb);
        match RuntimeBuilder::<IoUringDriver>::new()
            .with_entries(URING_ENTRIES)
            .uring_builder(urb)
            .enable_timer()
            .build()
        {
            Ok(rt) => {
                tracing::debug!(setup = name, "io_uring ring created");
                return Ok(rt);
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("io_uring setup failed")))
}

/// A listening socket with `SO_REUSEPORT` (and `SO_REUSEADDR`), so each worker owns one and
/// the kernel spreads accepts without a shared accept lock. `TCP_NODELAY` is set here once:
/// Linux copies it to every accepted socket, which saves a `setsockopt` per connection.
/// Created in std form so it can be bound before the runtime exists; convert with
/// `monoio::net::TcpListener::from_std`.
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uring_runtime_runs_io_and_timers() {
        // Whatever setup the kernel accepts (DEFER_TASKRUN, COOP_TASKRUN or the default), the
        // runtime must complete I/O and timers on this thread.
        if !monoio::utils::detect_uring() {
            return;
        }
        let listener = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let got = block_on(DriverKind::IoUring, async move {
            let listener = monoio::net::TcpListener::from_std(listener).unwrap();
            let client =
                monoio::spawn(async move { monoio::net::TcpStream::connect(addr).await.map(|_| ()) });
            let accepted = listener.accept().await.map(|_| ());
            monoio::time::sleep(std::time::Duration::from_millis(1)).await;
            (accepted.is_ok(), client.await.is_ok())
        })
        .unwrap();
        assert_eq!(got, (true, true));
    }

    #[test]
    fn accepted_sockets_inherit_nodelay_from_the_listener() {
        let listener = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        listener.set_nonblocking(false).unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(
            accepted.nodelay().unwrap(),
            "TCP_NODELAY not inherited: a setsockopt per connection is needed"
        );
    }
}
