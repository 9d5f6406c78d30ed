//! Tests of the relay (`relay.rs`), on both drivers: ordering and integrity across copy and
//! splice, half-close, resets, idle timeout, `stop`, pipe pooling, and that an idle relay
//! holds no pipe and parks no kernel thread.

use std::cell::RefCell;
use std::rc::Rc;
use std::task::Waker;

use futures_util::future::{join, join4};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::net::TcpListener;

use super::*;
use crate::rt::DriverKind;

/// Upper bound for one test body on one driver.
const TEST_BOUND: Duration = Duration::from_secs(4);
/// Upper bound for one peer read or write.
const IO_BOUND: Duration = Duration::from_secs(2);

/// Run `body` on a fresh runtime of each driver kind, bounded by `TEST_BOUND`.
fn on_both_drivers<F, Fut>(body: F)
where
    F: Fn(DriverKind) -> Fut,
    Fut: Future<Output = ()>,
{
    for kind in [DriverKind::IoUring, DriverKind::Epoll] {
        if kind == DriverKind::IoUring && !monoio::utils::detect_uring() {
            eprintln!("io_uring unavailable here: running the epoll half only");
            continue;
        }
        crate::rt::block_on(kind, async {
            if monoio::time::timeout(TEST_BOUND, body(kind)).await.is_err() {
                panic!("{}: test body exceeded {TEST_BOUND:?}", kind.as_str());
            }
        })
        .unwrap();
    }
}

/// The gateway's listener (clients connect here) and a node's listener.
struct Listeners {
    gateway: TcpListener,
    node: TcpListener,
}

impl Listeners {
    fn new() -> Self {
        Listeners {
            gateway: TcpListener::bind("127.0.0.1:0").unwrap(),
            node: TcpListener::bind("127.0.0.1:0").unwrap(),
        }
    }
}

/// client ⇄ (gw_client · relay · gw_node) ⇄ node
struct Link {
    client: TcpStream,
    gw_client: TcpStream,
    gw_node: TcpStream,
    node: TcpStream,
}

async fn link(l: &Listeners) -> Link {
    let client = TcpStream::connect(l.gateway.local_addr().unwrap()).await.unwrap();
    let (gw_client, _) = l.gateway.accept().await.unwrap();
    let gw_node = TcpStream::connect(l.node.local_addr().unwrap()).await.unwrap();
    let (node, _) = l.node.accept().await.unwrap();
    Link {
        client,
        gw_client,
        gw_node,
        node,
    }
}

async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match monoio::time::timeout(IO_BOUND, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no progress within {IO_BOUND:?}"),
    }
}

async fn send(s: &mut impl AsyncWriteRent, data: Vec<u8>) {
    let (res, _) = bounded("write", s.write_all(data)).await;
    res.unwrap();
}

/// Read until `want` bytes arrived (one read sees one segment).
async fn recv_exact(s: &mut impl AsyncReadRent, want: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(want);
    while out.len() < want {
        let (res, buf) = bounded("read", s.read(Vec::with_capacity(want - out.len()))).await;
        let n = res.unwrap();
        assert_ne!(n, 0, "EOF after {} of {want} bytes", out.len());
        out.extend_from_slice(&buf[..n]);
    }
    out
}

async fn recv_to_eof(s: &mut impl AsyncReadRent) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let (res, buf) = bounded("read", s.read(Vec::with_capacity(64 * 1024))).await;
        match res.unwrap() {
            0 => return out,
            n => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Abortive close: SO_LINGER 0, then close → RST.
fn reset(s: TcpStream) {
    // SAFETY: the fd is owned by `s`, open until `s` drops below (monoio's stream has no
    // `AsFd`, so socket2 borrows the raw descriptor for this one call).
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(s.as_raw_fd()) };
    socket2::SockRef::from(&fd)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
}

/// Deterministic pseudo-random bytes (xorshift).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A one-shot signal for `stop` futures.
#[derive(Default)]
struct Flag {
    fired: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Flag {
    fn fire(&self) {
        self.fired.set(true);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// `Unpin`, as `relay` wants its `stop`.
    fn wait(&self) -> impl Future<Output = ()> + Unpin + '_ {
        poll_fn(|cx| {
            if self.fired.get() {
                Poll::Ready(())
            } else {
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
    }
}

/// Poll `cond` every 10 ms until it holds, for at most `IO_BOUND`.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    let mut attempts = 0;
    while !cond() {
        attempts += 1;
        assert!(
            start.elapsed() < IO_BOUND,
            "{what}: not true after {attempts} attempts / {:?}",
            start.elapsed()
        );
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn iou_worker_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with("iou-wrk"))
        .count()
}

#[test]
fn small_writes_arrive_in_order_both_ways() {
    // 1. 10,000 small numbered records each way, written one by one, concurrently.
    // 2. Each side reads until EOF and checks the sequence is complete and in order.
    // 3. Both sides half-close after writing: the relay ends Closed with exact byte counts.
    const RECORDS: u32 = 10_000;
    fn expected() -> Vec<u8> {
        (0..RECORDS).flat_map(|i| i.to_be_bytes()).collect()
    }
    on_both_drivers(|_| async {
        let l = Listeners::new();
        let Link {
            client,
            gw_client,
            gw_node,
            node,
        } = link(&l).await;
        let pool = PipePool::new(8);
        let (mut c_rd, mut c_wr) = client.into_split();
        let (mut n_rd, mut n_wr) = node.into_split();
        let c_send = async {
            for i in 0..RECORDS {
                send(&mut c_wr, i.to_be_bytes().to_vec()).await;
            }
            c_wr.shutdown().await.unwrap();
        };
        let n_send = async {
            for i in 0..RECORDS {
                send(&mut n_wr, i.to_be_bytes().to_vec()).await;
            }
            n_wr.shutdown().await.unwrap();
        };
        let c_recv = recv_to_eof(&mut c_rd);
        let n_recv = recv_to_eof(&mut n_rd);
        let (out, ((), (), at_client, at_node)) = join(
            relay(&gw_client, &gw_node, &pool, None, std::future::pending()),
            join4(c_send, n_send, c_recv, n_recv),
        )
        .await;
        assert!(
            at_node == expected(),
            "node got {} bytes, not the ordered sequence",
            at_node.len()
        );
        assert!(
            at_client == expected(),
            "client got {} bytes, not the ordered sequence",
            at_client.len()
        );
        assert_eq!(out.end, RelayEnd::Closed);
        assert_eq!(out.bytes_up, u64::from(RECORDS) * 4);
        assert_eq!(out.bytes_down, u64::from(RECORDS) * 4);
    });
}

#[test]
fn one_mib_each_way_arrives_intact() {
    // 1. Each peer writes 1 MiB of distinct pseudo-random bytes, then half-closes.
    // 2. Each peer reads to EOF: the bytes match exactly; the relay ends Closed.
    const LEN: usize = 1 << 20;
    on_both_drivers(|_| async {
        let l = Listeners::new();
        let Link {
            client,
            gw_client,
            gw_node,
            node,
        } = link(&l).await;
        let pool = PipePool::new(8);
        let (mut c_rd, mut c_wr) = client.into_split();
        let (mut n_rd, mut n_wr) = node.into_split();
        let c_send = async {
            for chunk in pattern(LEN, 1).chunks(64 * 1024) {
                send(&mut c_wr, chunk.to_vec()).await;
            }
            c_wr.shutdown().await.unwrap();
        };
        let n_send = async {
            send(&mut n_wr, pattern(LEN, 2)).await;
            n_wr.shutdown().await.unwrap();
        };
        let (out, ((), (), at_client, at_node)) = join(
            relay(&gw_client, &gw_node, &pool, None, std::future::pending()),
            join4(c_send, n_send, recv_to_eof(&mut c_rd), recv_to_eof(&mut n_rd)),
        )
        .await;
        assert!(
            at_node == pattern(LEN, 1),
            "node: {} bytes, content differs",
            at_node.len()
        );
        assert!(
            at_client == pattern(LEN, 2),
            "client: {} bytes, content differs",
            at_client.len()
        );
        assert_eq!(out.end, RelayEnd::Closed);
        assert_eq!((out.bytes_up, out.bytes_down), (LEN as u64, LEN as u64));
    });
}

#[test]
fn half_close_keeps_the_other_direction() {
    struct Case {
        name: &'static str,
        client_first: bool,
    }
    let cases = [
        Case {
            name: "client half-closes first",
            client_first: true,
        },
        Case {
            name: "node half-closes first",
            client_first: false,
        },
    ];
    for case in cases {
        on_both_drivers(|kind| async move {
            let ctx = format!("{} ({})", case.name, kind.as_str());
            let l = Listeners::new();
            let Link {
                client,
                gw_client,
                gw_node,
                node,
            } = link(&l).await;
            let pool = PipePool::new(8);
            let (first, second) = if case.client_first {
                (client, node)
            } else {
                (node, client)
            };
            let scenario = async move {
                let (mut first, mut second) = (first, second);
                // 1. `first` sends and half-closes; `second` reads it all, then EOF.
                send(&mut first, b"ping".to_vec()).await;
                first.shutdown().await.unwrap();
                assert_eq!(recv_to_eof(&mut second).await, b"ping", "{ctx}: first → second");
                // 2. The other direction still works after the EOF.
                send(&mut second, b"pong".to_vec()).await;
                assert_eq!(recv_exact(&mut first, 4).await, b"pong", "{ctx}: second → first");
                // 3. `second` closes: `first` sees EOF; the relay ends Closed.
                drop(second);
                assert!(recv_to_eof(&mut first).await.is_empty(), "{ctx}: EOF after close");
            };
            let (out, ()) = join(
                relay(&gw_client, &gw_node, &pool, None, std::future::pending()),
                scenario,
            )
            .await;
            assert_eq!(out.end, RelayEnd::Closed, "{}", case.name);
            assert_eq!((out.bytes_up, out.bytes_down), (4, 4), "{}", case.name);
        });
    }
}

#[test]
fn peer_reset_ends_with_that_sides_error() {
    #[derive(Clone, Copy)]
    enum Who {
        Client,
        Node,
    }
    struct Case {
        name: &'static str,
        resets: Who,
        // The other peer keeps streaming toward the one that resets.
        streaming: bool,
        want: RelayEnd,
    }
    let cases = [
        Case {
            name: "idle client resets",
            resets: Who::Client,
            streaming: false,
            want: RelayEnd::ClientError,
        },
        Case {
            name: "idle node resets",
            resets: Who::Node,
            streaming: false,
            want: RelayEnd::NodeError,
        },
        Case {
            name: "client resets under load",
            resets: Who::Client,
            streaming: true,
            want: RelayEnd::ClientError,
        },
        Case {
            name: "node resets under load",
            resets: Who::Node,
            streaming: true,
            want: RelayEnd::NodeError,
        },
    ];
    for case in cases {
        on_both_drivers(|kind| async move {
            let l = Listeners::new();
            let Link {
                mut client,
                gw_client,
                gw_node,
                mut node,
            } = link(&l).await;
            let pool = PipePool::new(8);
            let scenario = async move {
                // 1. The relay carries bytes both ways.
                send(&mut client, b"hi".to_vec()).await;
                assert_eq!(recv_exact(&mut node, 2).await, b"hi");
                send(&mut node, b"yo".to_vec()).await;
                assert_eq!(recv_exact(&mut client, 2).await, b"yo");
                // 2. One peer resets; the other may keep writing toward it.
                let (victim, mut other) = match case.resets {
                    Who::Client => (client, node),
                    Who::Node => (node, client),
                };
                reset(victim);
                if case.streaming {
                    loop {
                        let (res, _) = other.write_all(vec![7u8; 64 * 1024]).await;
                        res.unwrap();
                    }
                }
                std::future::pending::<()>().await;
            };
            // 3. The relay ends on its own with the reset side's error.
            let relay_fut = pin!(relay(&gw_client, &gw_node, &pool, None, std::future::pending()));
            let out = match futures_util::future::select(relay_fut, pin!(scenario)).await {
                futures_util::future::Either::Left((out, _)) => out,
                futures_util::future::Either::Right(_) => unreachable!("scenario never ends"),
            };
            assert_eq!(out.end, case.want, "{} ({})", case.name, kind.as_str());
            assert!(out.bytes_up >= 2 && out.bytes_down >= 2, "{}: {out:?}", case.name);
        });
    }
}

#[test]
fn idle_timeout_fires_when_quiet() {
    // 1. A relay with no traffic and a 200 ms idle timeout ends IdleTimeout, not earlier.
    const IDLE: Duration = Duration::from_millis(200);
    on_both_drivers(|_| async {
        let l = Listeners::new();
        let link = link(&l).await;
        let pool = PipePool::new(8);
        let start = Instant::now();
        let out = relay(
            &link.gw_client,
            &link.gw_node,
            &pool,
            Some(IDLE),
            std::future::pending(),
        )
        .await;
        assert_eq!(out.end, RelayEnd::IdleTimeout);
        assert!(start.elapsed() >= IDLE, "fired after {:?}", start.elapsed());
        assert_eq!((out.bytes_up, out.bytes_down), (0, 0));
    });
}

#[test]
fn idle_timeout_waits_while_bytes_flow() {
    // 1. Idle timeout 300 ms; one byte every 25 ms for 20 ticks (500 ms in all), alternating
    //    up and down: every byte gets through (a read would time out if the relay had ended).
    // 2. Then silence: the relay ends IdleTimeout, after the flow.
    const IDLE: Duration = Duration::from_millis(300);
    const TICKS: u64 = 20;
    on_both_drivers(|_| async {
        let l = Listeners::new();
        let Link {
            mut client,
            gw_client,
            gw_node,
            mut node,
        } = link(&l).await;
        let pool = PipePool::new(8);
        let scenario = async {
            let start = Instant::now();
            for i in 0..TICKS {
                if i % 2 == 0 {
                    send(&mut client, vec![i as u8]).await;
                    assert_eq!(recv_exact(&mut node, 1).await, [i as u8], "tick {i} up");
                } else {
                    send(&mut node, vec![i as u8]).await;
                    assert_eq!(recv_exact(&mut client, 1).await, [i as u8], "tick {i} down");
                }
                monoio::time::sleep(Duration::from_millis(25)).await;
            }
            assert!(start.elapsed() > IDLE, "the flow must outlast the idle timeout");
            Instant::now()
        };
        let (out, flow_end) = join(
            async {
                let out = relay(&gw_client, &gw_node, &pool, Some(IDLE), std::future::pending()).await;
                (out, Instant::now())
            },
            scenario,
        )
        .await;
        let ((out, relay_end), flow_end) = (out, flow_end);
        assert_eq!(out.end, RelayEnd::IdleTimeout);
        assert!(relay_end > flow_end, "the idle timeout fired during the flow");
        assert_eq!((out.bytes_up, out.bytes_down), (TICKS / 2, TICKS / 2));
    });
}

#[test]
fn stop_future_ends_the_relay() {
    // 1. Bytes move both ways. 2. `stop` fires: the relay ends Stopped with the counts,
    //    and no pipe was made: small reads are copied through the worker's scratch buffer.
    on_both_drivers(|_| async {
        let l = Listeners::new();
        let Link {
            mut client,
            gw_client,
            gw_node,
            mut node,
        } = link(&l).await;
        let pool = PipePool::new(8);
        let stop = Flag::default();
        let scenario = async {
            send(&mut client, b"abc".to_vec()).await;
            assert_eq!(recv_exact(&mut node, 3).await, b"abc");
            send(&mut node, b"defg".to_vec()).await;
            assert_eq!(recv_exact(&mut client, 4).await, b"defg");
            stop.fire();
        };
        let (out, ()) = join(relay(&gw_client, &gw_node, &pool, None, stop.wait()), scenario).await;
        assert_eq!(out.end, RelayEnd::Stopped);
        assert_eq!((out.bytes_up, out.bytes_down), (3, 4));
        assert_eq!(pool.created(), 0, "small reads took a pipe");
    });
}

#[test]
fn a_pipe_holding_bytes_is_closed_not_pooled() {
    // 1. The node never reads and its buffers are small, so the relay ends up holding a
    //    pipe with bytes, waiting for the node to become writable.
    // 2. `stop` fires: that pipe is closed, not given back (give() would also panic in
    //    debug builds on a non-empty pipe).
    on_both_drivers(|_| async {
        let l = Listeners::new();
        let Link {
            client,
            gw_client,
            gw_node,
            node,
        } = link(&l).await;
        for (s, opt) in [(&node, libc::SO_RCVBUF), (&gw_node, libc::SO_SNDBUF)] {
            let size: libc::c_int = 16 * 1024;
            // SAFETY: the fd is owned by a live TcpStream; `size` is a valid c_int.
            let rc = unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0);
        }
        let pool = PipePool::new(8);
        let stop = Flag::default();
        let written = Cell::new(0usize);
        let mut client = client;
        let writer = async {
            for _ in 0..512 {
                send(&mut client, vec![1u8; 64 * 1024]).await;
                written.set(written.get() + 1);
            }
            std::future::pending::<()>().await;
        };
        let control = async {
            // Stuck = pool empty and the client making no progress for 5 samples in a row.
            let (mut stable, mut last) = (0, usize::MAX);
            eventually("relay stuck with a full pipe", || {
                let now = written.get();
                stable = if pool.idle() == 0 && now == last {
                    stable + 1
                } else {
                    0
                };
                last = now;
                stable >= 5
            })
            .await;
            stop.fire();
        };
        let relay_and_control = pin!(join(
            relay(&gw_client, &gw_node, &pool, None, stop.wait()),
            control
        ));
        let out = match futures_util::future::select(relay_and_control, pin!(writer)).await {
            futures_util::future::Either::Left(((out, ()), _)) => out,
            futures_util::future::Either::Right(_) => unreachable!("writer never ends"),
        };
        drop(node);
        assert_eq!(out.end, RelayEnd::Stopped);
        assert!(out.bytes_up > 0);
        assert_eq!(pool.idle(), 0, "the pipe holding bytes went back to the pool");
    });
}

#[test]
fn small_and_large_writes_keep_order_across_copy_and_splice() {
    // 1. The client writes a sequence of chunks whose sizes alternate between small (copied)
    //    and larger than the scratch buffer (spliced), then half-closes.
    // 2. The node receives exactly the concatenation, in order; the relay ends Closed after
    //    the node half-closes too; the large chunks used a pipe and gave it back.
    on_both_drivers(|kind| async move {
        let l = Listeners::new();
        let Link {
            client,
            gw_client,
            gw_node,
            node,
        } = link(&l).await;
        let pool = PipePool::new(8);
        let sizes = [1usize, 64, 3 * SCRATCH_BYTES + 17, 5, 4096, 200 * 1024, 2, 100];
        let total: usize = sizes.iter().sum();
        let data = pattern(total, 7);
        let (mut c_rd, mut c_wr) = client.into_split();
        let (mut n_rd, mut n_wr) = node.into_split();
        let c_send = async {
            let mut at = 0;
            for n in sizes {
                send(&mut c_wr, data[at..at + n].to_vec()).await;
                at += n;
            }
            c_wr.shutdown().await.unwrap();
        };
        let n_close = async {
            let got = recv_to_eof(&mut n_rd).await;
            n_wr.shutdown().await.unwrap();
            got
        };
        let (out, ((), at_node, at_client)) = join(
            relay(&gw_client, &gw_node, &pool, None, std::future::pending()),
            futures_util::future::join3(c_send, n_close, recv_to_eof(&mut c_rd)),
        )
        .await;
        assert!(at_node == data, "{}: bytes differ or out of order", kind.as_str());
        assert!(at_client.is_empty());
        assert_eq!(out.end, RelayEnd::Closed);
        assert_eq!(out.bytes_up, total as u64);
        assert!(
            pool.created() >= 1,
            "{}: large chunks were not spliced",
            kind.as_str()
        );
        assert_eq!(pool.idle() as u64, pool.created(), "a pipe was not given back");
    });
}

#[test]
fn sequential_relays_reuse_pipes() {
    // 1. 30 relays one after another, each moving 200 KiB both ways (large enough to switch
    //    to splice) and closing cleanly.
    // 2. After each, the pool holds at least one idle pipe; overall at most two were made.
    on_both_drivers(|kind| async move {
        let l = Listeners::new();
        let pool = PipePool::new(8);
        for i in 0..30 {
            let Link {
                client,
                gw_client,
                gw_node,
                node,
            } = link(&l).await;
            let (mut c_rd, mut c_wr) = client.into_split();
            let (mut n_rd, mut n_wr) = node.into_split();
            let c_send = async {
                send(&mut c_wr, vec![b'u'; 200 * 1024]).await;
                c_wr.shutdown().await.unwrap();
            };
            let n_send = async {
                send(&mut n_wr, vec![b'd'; 200 * 1024]).await;
                n_wr.shutdown().await.unwrap();
            };
            let (out, ((), (), at_client, at_node)) = join(
                relay(&gw_client, &gw_node, &pool, None, std::future::pending()),
                join4(c_send, n_send, recv_to_eof(&mut c_rd), recv_to_eof(&mut n_rd)),
            )
            .await;
            assert_eq!(
                (at_client.len(), at_node.len()),
                (200 * 1024, 200 * 1024),
                "relay {i}"
            );
            assert_eq!(out.end, RelayEnd::Closed, "relay {i}");
            assert!(pool.idle() >= 1, "relay {i}: no pipe back in the pool");
        }
        assert!(
            pool.created() <= 2,
            "{}: {} pipes created for 30 relays",
            kind.as_str(),
            pool.created()
        );
    });
}

#[test]
fn idle_relays_hold_no_pipe_and_park_no_kernel_thread() {
    // The property DESIGN §2 "How to splice" exists for.
    // 1. Count io_uring worker threads (iou-wrk*) before.
    // 2. 200 relays, one task each; one byte through each, so each has spliced and parked.
    // 3. Every pipe is back in the pool (an idle relay holds none) and no iou-wrk thread
    //    appeared (an io_uring SPLICE on a quiet socket would park two per relay: ~400).
    // 4. `stop` ends them all.
    const RELAYS: usize = 200;
    const SLACK: usize = 16; // other tests share this process; a leak would be ~400.
    on_both_drivers(|kind| async move {
        let before = iou_worker_threads();
        let l = Listeners::new();
        let pool = Rc::new(PipePool::new(256));
        let stop = Rc::new(Flag::default());
        let mut peers = Vec::with_capacity(RELAYS);
        let mut tasks = Vec::with_capacity(RELAYS);
        for _ in 0..RELAYS {
            let Link {
                client,
                gw_client,
                gw_node,
                node,
            } = link(&l).await;
            let (pool, stop) = (pool.clone(), stop.clone());
            tasks.push(monoio::spawn(async move {
                relay(&gw_client, &gw_node, &pool, None, stop.wait()).await
            }));
            peers.push((client, node));
        }
        for (client, node) in &mut peers {
            send(client, vec![9]).await;
            assert_eq!(recv_exact(node, 1).await, [9]);
        }
        eventually("all pipes back in the pool", || {
            pool.idle() as u64 == pool.created()
        })
        .await;
        let after = iou_worker_threads();
        eprintln!(
            "{}: iou-wrk threads before {before}, with {RELAYS} idle relays {after}; pipes created {}",
            kind.as_str(),
            pool.created()
        );
        assert!(
            after <= before + SLACK,
            "{}: iou-wrk threads {before} → {after}",
            kind.as_str()
        );
        assert!(
            pool.created() <= 2,
            "{} pipes for sequential traffic",
            pool.created()
        );
        stop.fire();
        for t in tasks {
            let out = t.await;
            assert_eq!((out.end, out.bytes_up, out.bytes_down), (RelayEnd::Stopped, 1, 0));
        }
    });
}
