//! Per-worker pool of splice pipes for the relay (DESIGN §2 step 11, §12 "Descriptor limits").
//! A relay direction takes a pipe when bytes arrive and gives it back once the pipe is drained,
//! so an idle relayed connection holds no pipe: only its two sockets. One pool per worker
//! thread (`!Send`): `RefCell`/`Cell`, no locks, no atomics. A pipe that may still hold bytes
//! must be dropped (closed), never given back. The pool also owns the worker's scratch buffer
//! for copied (small) relay reads.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Bytes one pipe holds: Linux's default pipe capacity (16 pages of 4 KiB, pipe(7)). The relay
/// asks splice for at most this much per read. Kept at the default (no `F_SETPIPE_SZ`): a
/// bigger pipe costs pinned kernel memory per in-flight connection and nothing was measured
/// that says it pays.
pub const PIPE_BYTES: usize = 64 * 1024;

/// Bytes of a worker's scratch buffer for copied relay reads. A read that fills it switches its
/// direction to splice (DESIGN §2: copy small reads, splice large transfers). 64 KiB, not 16:
/// measured on loopback (A/B binaries, `capi-ws-bench load --scenario bulk`, 16 connections,
/// 64 KiB messages, 3 alternations), copying reads up to 64 KiB moved 1,486–1,577 MB/s at
/// 35–37 µs CPU per message against 1,370–1,476 MB/s at 39–42 µs with 16 KiB; 1 MiB messages
/// were unchanged; 256 KiB cost more CPU. What the destination cannot take at once is kept
/// as a spill of at most this size per direction (only while the destination is slow).
pub const SCRATCH_BYTES: usize = 64 * 1024;

/// A kernel pipe used as the splice buffer between two sockets: both ends non-blocking and
/// close-on-exec. Dropping it closes both ends (and discards whatever it still holds).
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn create() -> io::Result<Pipe> {
        let mut fds: [libc::c_int; 2] = [-1, -1];
        // SAFETY: `fds` is a valid, writable array of two c_ints, as pipe2(2) requires.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else;
        // each OwnedFd becomes their sole owner and closes it exactly once on drop.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Pipe { read, write })
    }

    /// The read end (splice source when draining into a socket).
    pub fn read_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// The write end (splice destination when reading from a socket).
    pub fn write_fd(&self) -> RawFd {
        self.write.as_raw_fd()
    }

    /// Bytes currently queued in the pipe (FIONREAD). Only for debug checks and tests: it is a
    /// syscall, and the relay tracks what it put in instead.
    pub fn queued(&self) -> io::Result<usize> {
        let mut n: libc::c_int = 0;
        // SAFETY: `self.read` is an open pipe descriptor owned by this Pipe for its whole
        // lifetime; FIONREAD writes one c_int into `n`, which is valid and writable.
        let rc = unsafe { libc::ioctl(self.read.as_raw_fd(), libc::FIONREAD, &mut n) };
        if rc == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

/// Idle pipes of one worker, reused across connections. At most `max_idle` are kept; extra
/// returned pipes are closed, so a burst does not pin descriptors forever.
#[derive(Debug)]
pub struct PipePool {
    idle: RefCell<Vec<Pipe>>,
    max_idle: usize,
    created: Cell<u64>,
    /// The worker's copy buffer, shared by all its relays: each use is one `recv` + `send` with
    /// no await between them, so it is free again before any other task runs.
    scratch: RefCell<Box<[u8]>>,
}

/// Upper bound on the idle list's up-front capacity, so a huge `max_idle` does not allocate
/// at startup; the list still grows to `max_idle` if needed.
const MAX_PREALLOC: usize = 1024;

impl PipePool {
    /// A pool that keeps at most `max_idle` idle pipes (e.g. 256 per worker).
    pub fn new(max_idle: usize) -> Self {
        PipePool {
            idle: RefCell::new(Vec::with_capacity(max_idle.min(MAX_PREALLOC))),
            max_idle,
            created: Cell::new(0),
            scratch: RefCell::new(vec![0u8; SCRATCH_BYTES].into_boxed_slice()),
        }
    }

    /// An empty pipe: an idle one if any, else a new one (`EMFILE`/`ENFILE` when the process
    /// is out of descriptors).
    pub fn take(&self) -> io::Result<Pipe> {
        if let Some(p) = self.idle.borrow_mut().pop() {
            return Ok(p);
        }
        let p = Pipe::create()?;
        self.created.set(self.created.get() + 1);
        Ok(p)
    }

    /// Return a pipe the caller has fully drained. Kept for reuse unless the pool is full,
    /// then closed.
    pub fn give(&self, p: Pipe) {
        debug_assert_eq!(p.queued().ok(), Some(0), "a pipe holding bytes was given back");
        let mut idle = self.idle.borrow_mut();
        if idle.len() < self.max_idle {
            idle.push(p);
        }
    }

    /// The worker's scratch buffer ([`SCRATCH_BYTES`]). Hold the borrow only across
    /// synchronous code, never across an await.
    pub fn scratch(&self) -> std::cell::RefMut<'_, Box<[u8]>> {
        self.scratch.borrow_mut()
    }

    /// Pipes currently idle in the pool.
    pub fn idle(&self) -> usize {
        self.idle.borrow().len()
    }

    /// Pipes created by this pool so far (reuse keeps this small).
    pub fn created(&self) -> u64 {
        self.created.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_bytes(p: &Pipe, data: &[u8]) -> isize {
        // SAFETY: the write end is open (owned by `p`); `data` is valid for `data.len()` bytes.
        unsafe { libc::write(p.write_fd(), data.as_ptr().cast(), data.len()) }
    }

    #[test]
    fn pipe_is_nonblocking_and_cloexec() {
        let p = Pipe::create().unwrap();
        for (name, fd) in [("read", p.read_fd()), ("write", p.write_fd())] {
            // SAFETY: fd is open, owned by `p`.
            let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
            // SAFETY: as above.
            let fdfl = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            assert_ne!(fl & libc::O_NONBLOCK, 0, "{name}: O_NONBLOCK");
            assert_ne!(fdfl & libc::FD_CLOEXEC, 0, "{name}: FD_CLOEXEC");
        }
        // An empty non-blocking pipe: read → EAGAIN instead of blocking.
        let mut b = [0u8; 4];
        // SAFETY: read end open; `b` writable for 4 bytes.
        let rc = unsafe { libc::read(p.read_fd(), b.as_mut_ptr().cast(), b.len()) };
        assert_eq!(rc, -1);
        assert_eq!(io::Error::last_os_error().kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn pool_cases() {
        struct Case {
            name: &'static str,
            max_idle: usize,
            // Take this many at once, then give them all back; repeat `rounds` times.
            batch: usize,
            rounds: usize,
            want_created: u64,
            want_idle: usize,
        }
        let cases = [
            Case {
                name: "sequential reuse",
                max_idle: 4,
                batch: 1,
                rounds: 100,
                want_created: 1,
                want_idle: 1,
            },
            Case {
                name: "batch within bound",
                max_idle: 4,
                batch: 3,
                rounds: 10,
                want_created: 3,
                want_idle: 3,
            },
            Case {
                name: "extras closed",
                max_idle: 2,
                batch: 5,
                rounds: 1,
                want_created: 5,
                want_idle: 2,
            },
            Case {
                name: "extras recreated",
                max_idle: 2,
                batch: 5,
                rounds: 3,
                want_created: 11,
                want_idle: 2,
            },
            Case {
                name: "no pooling",
                max_idle: 0,
                batch: 1,
                rounds: 3,
                want_created: 3,
                want_idle: 0,
            },
        ];
        for c in cases {
            let pool = PipePool::new(c.max_idle);
            for _ in 0..c.rounds {
                let taken: Vec<Pipe> = (0..c.batch).map(|_| pool.take().unwrap()).collect();
                for p in taken {
                    pool.give(p);
                }
            }
            assert_eq!(pool.created(), c.want_created, "{}: created", c.name);
            assert_eq!(pool.idle(), c.want_idle, "{}: idle", c.name);
        }
    }

    #[test]
    fn queued_counts_bytes() {
        let p = Pipe::create().unwrap();
        assert_eq!(p.queued().unwrap(), 0);
        assert_eq!(write_bytes(&p, b"hello"), 5);
        assert_eq!(p.queued().unwrap(), 5);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "a pipe holding bytes was given back")]
    fn giving_back_a_full_pipe_is_a_bug() {
        let pool = PipePool::new(4);
        let p = pool.take().unwrap();
        assert_eq!(write_bytes(&p, b"x"), 1);
        pool.give(p);
    }
}
