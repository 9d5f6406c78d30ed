//! Stop signals for the drain (DESIGN §10). The control plane flips a [`StopSignal`] (two
//! atomics, read by a per-worker watcher task every few ms — never per connection); each worker
//! turns it into local [`Gate`]s: `draining` ends the accept loop, `closing` ends relays, opened
//! a slice at a time over a short window so clients do not all reconnect in the same instant.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// How often a worker's watcher reads the global phase.
pub const STOP_POLL: Duration = Duration::from_millis(20);
/// The window over which the remaining connections are closed when the drain timeout ends.
pub const CLOSE_SPREAD: Duration = Duration::from_millis(1000);
/// Slices of that window: each closes about 1/CLOSE_STEPS of the connections still open.
const CLOSE_STEPS: u32 = 50;

/// Where the process is in its shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Running = 0,
    /// Listeners closed; established connections run on.
    Draining = 1,
    /// Drain timeout passed: close what is left, spread over [`CLOSE_SPREAD`].
    Closing = 2,
}

/// Shared between the signal thread (writer) and the workers' watchers (readers).
#[derive(Debug, Default)]
pub struct StopSignal {
    phase: AtomicU8,
    listeners_closed: AtomicUsize,
}

impl StopSignal {
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Running,
            1 => Phase::Draining,
            _ => Phase::Closing,
        }
    }

    /// Move forward to `phase` (never back).
    pub fn advance(&self, phase: Phase) {
        self.phase.fetch_max(phase as u8, Ordering::AcqRel);
    }

    /// A worker closed its listener (once per worker, not per connection).
    pub fn listener_closed(&self) {
        self.listeners_closed.fetch_add(1, Ordering::AcqRel);
    }

    pub fn listeners_closed(&self) -> usize {
        self.listeners_closed.load(Ordering::Acquire)
    }
}

/// A single-threaded gate many futures wait on; it opens for everyone at once ([`Gate::open`])
/// or for a few waiters at a time ([`Gate::release`]). O(1) per poll.
///
/// Each registered waiter owns a slot: `Some(waker)` while it waits, `None` once let through
/// (or after it left; left slots are reused via `free`). 16 bytes per slot and a 4-byte key:
/// a worker has one slot per relayed connection.
#[derive(Default)]
pub struct Gate {
    open: Cell<bool>,
    slots: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<u32>>,
}

impl Gate {
    /// A future that completes when this gate lets it through.
    pub fn wait(&self) -> GateWait<'_> {
        GateWait {
            gate: self,
            key: None,
        }
    }

    pub fn is_open(&self) -> bool {
        self.open.get()
    }

    /// Let every current and future waiter through.
    pub fn open(&self) {
        self.open.set(true);
        let wakers: Vec<Waker> = self
            .slots
            .borrow_mut()
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Let up to `n` current waiters through; returns how many were released.
    pub fn release(&self, n: usize) -> usize {
        let wakers: Vec<Waker> = self
            .slots
            .borrow_mut()
            .iter_mut()
            .filter_map(Option::take)
            .take(n)
            .collect();
        let count = wakers.len();
        wakers.into_iter().for_each(Waker::wake);
        count
    }

    /// Waiters not yet let through.
    pub fn waiting(&self) -> usize {
        self.slots.borrow().iter().filter(|s| s.is_some()).count()
    }
}

/// See [`Gate::wait`].
///
/// NOTE: held by every relayed connection for its whole life, hence the `u32` key (16 bytes
/// in all, not 24). A waiter is a connection, which holds descriptors, and the kernel caps a
/// process below 2^30 of them (`fs.nr_open`), so a key always fits.
pub struct GateWait<'g> {
    gate: &'g Gate,
    key: Option<u32>,
}

impl Future for GateWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.gate.open.get() {
            return Poll::Ready(());
        }
        let gate = self.gate;
        let mut slots = gate.slots.borrow_mut();
        match self.key {
            Some(k) => match &mut slots[k as usize] {
                // Let through by `release`.
                None => Poll::Ready(()),
                Some(w) => {
                    if !w.will_wake(cx.waker()) {
                        *w = cx.waker().clone();
                    }
                    Poll::Pending
                }
            },
            None => {
                let waiting = Some(cx.waker().clone());
                let k = match gate.free.borrow_mut().pop() {
                    Some(k) => {
                        slots[k as usize] = waiting;
                        k
                    }
                    None => {
                        slots.push(waiting);
                        (slots.len() - 1) as u32
                    }
                };
                drop(slots);
                self.key = Some(k);
                Poll::Pending
            }
        }
    }
}

impl Drop for GateWait<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key {
            self.gate.slots.borrow_mut()[k as usize] = None;
            self.gate.free.borrow_mut().push(k);
        }
    }
}

/// One worker's view of the stop signal.
#[derive(Default)]
pub struct LocalStop {
    /// Opens when the drain starts: the accept loop stops and closes its listener.
    pub draining: Gate,
    /// Opens (a slice at a time) when the drain timeout ends: relays stop.
    pub closing: Gate,
}

impl LocalStop {
    /// The worker's watcher task: follows the global phase, then spreads the closing.
    pub async fn run_watch(&self, global: &StopSignal) {
        loop {
            match global.phase() {
                Phase::Running => {}
                Phase::Draining => {
                    if !self.draining.is_open() {
                        self.draining.open();
                    }
                }
                Phase::Closing => break,
            }
            monoio::time::sleep(STOP_POLL).await;
        }
        self.draining.open();
        let per_step = self.closing.waiting().div_ceil(CLOSE_STEPS as usize).max(1);
        for _ in 0..CLOSE_STEPS {
            self.closing.release(per_step);
            monoio::time::sleep(CLOSE_SPREAD / CLOSE_STEPS).await;
        }
        self.closing.open();
    }
}

/// Completes when either future completes: combine the drain's stop with any other reason to
/// end a relay (e.g. a token's expiry). A plain struct (both halves `Unpin`, polled in place):
/// it lives inside every relayed connection's task, so it adds only the two futures' bytes.
pub struct First<A, B>(pub A, pub B);

impl<A, B> Future for First<A, B>
where
    A: Future<Output = ()> + Unpin,
    B: Future<Output = ()> + Unpin,
{
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if Pin::new(&mut this.0).poll(cx).is_ready() || Pin::new(&mut this.1).poll(cx).is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Outcome of [`race`].
pub enum Either<L, R> {
    Left(L),
    Right(R),
}

/// Polls `a` then `b`; the first to complete wins and the other is dropped.
pub async fn race<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(v));
        }
        if let Poll::Ready(v) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(v));
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicUsize);
    impl Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll(f: &mut Pin<Box<GateWait<'_>>>, waker: &Waker) -> bool {
        f.as_mut().poll(&mut Context::from_waker(waker)).is_ready()
    }

    #[test]
    fn gate_releases_in_slices_then_opens() {
        // 1. three waiters register and stay pending;
        // 2. release(2) lets exactly two through and wakes them;
        // 3. a dropped waiter frees its slot; open() lets the rest and late-comers through.
        let flag = std::sync::Arc::new(Flag(AtomicUsize::new(0)));
        let waker = Waker::from(flag.clone());
        let gate = Rc::new(Gate::default());
        let mut ws: Vec<_> = (0..3).map(|_| Box::pin(gate.wait())).collect();
        for w in ws.iter_mut() {
            assert!(!poll(w, &waker));
        }
        assert_eq!(gate.waiting(), 3);
        assert_eq!(gate.release(2), 2);
        assert_eq!(flag.0.load(Ordering::SeqCst), 2);
        let ready: Vec<bool> = ws.iter_mut().map(|w| poll(w, &waker)).collect();
        assert_eq!(ready, [true, true, false]);
        ws.truncate(2);
        assert_eq!(gate.waiting(), 0);
        let mut late = Box::pin(gate.wait());
        assert!(!poll(&mut late, &waker));
        gate.open();
        assert!(poll(&mut late, &waker));
        assert!(poll(&mut Box::pin(gate.wait()), &waker));
    }

    #[test]
    fn phase_only_moves_forward() {
        let s = StopSignal::default();
        assert_eq!(s.phase(), Phase::Running);
        s.advance(Phase::Closing);
        s.advance(Phase::Draining);
        assert_eq!(s.phase(), Phase::Closing);
    }
}
