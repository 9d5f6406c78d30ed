//! Pacing for the Consul sync (shared/consul/README.md §5): a token bucket in front of every
//! catalog request and an exponential back-off with jitter after errors. Pure state machines:
//! they compute delays from the `Instant` given and never sleep themselves.

use std::time::{Duration, Instant};

/// Pacing bucket size: a burst of changes passes without delay.
pub const PACE_BURST: u32 = 5;
/// One pacing token comes back this often (steady state ≤ 5 catalog requests/s per host).
pub const PACE_REFILL: Duration = Duration::from_millis(200);
/// First back-off after an error; doubles up to `retry-max-ms`.
pub const BACKOFF_START: Duration = Duration::from_millis(100);

/// Token bucket in front of every catalog request (README §5 step 2).
#[derive(Debug)]
pub struct Pace {
    tokens: u32,
    last: Instant,
}

impl Pace {
    pub fn new(now: Instant) -> Pace {
        Pace {
            tokens: PACE_BURST,
            last: now,
        }
    }

    /// Take a token at `now`: `None` when one was available, else how long to wait first.
    pub fn take(&mut self, now: Instant) -> Option<Duration> {
        let earned = (now.saturating_duration_since(self.last).as_millis() / PACE_REFILL.as_millis()) as u32;
        if earned > 0 {
            self.tokens = (self.tokens + earned).min(PACE_BURST);
            self.last += PACE_REFILL * earned;
        }
        if self.tokens > 0 {
            self.tokens -= 1;
            return None;
        }
        Some((self.last + PACE_REFILL).saturating_duration_since(now))
    }
}

/// Exponential back-off with jitter: the n-th delay is uniform in [d/2, d], d = start·2ⁿ ≤ cap.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    cap: Duration,
    rng: u64,
}

impl Backoff {
    pub fn new(cap: Duration, seed: u64) -> Backoff {
        Backoff {
            next: BACKOFF_START.min(cap),
            cap,
            rng: seed | 1,
        }
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_START.min(self.cap);
    }

    pub fn delay(&mut self) -> Duration {
        // xorshift64: good enough to spread retries, no dependency needed.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let d = self.next;
        let half = d / 2;
        let spread = half.as_millis().max(1) as u64;
        self.next = (self.next * 2).min(self.cap);
        half + Duration::from_millis(self.rng % (spread + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_allows_a_burst_then_paces() {
        let t0 = Instant::now();
        let mut p = Pace::new(t0);
        for i in 0..PACE_BURST {
            assert_eq!(p.take(t0), None, "burst token {i}");
        }
        let wait = p.take(t0).expect("bucket empty");
        assert!(wait > Duration::ZERO && wait <= PACE_REFILL);
        assert_eq!(p.take(t0 + PACE_REFILL), None, "one token back after one refill");
        assert!(p.take(t0 + PACE_REFILL).is_some());
        // A long calm period refills the bucket, never beyond the burst.
        let later = t0 + PACE_REFILL * 100;
        for _ in 0..PACE_BURST {
            assert_eq!(p.take(later), None);
        }
        assert!(p.take(later).is_some());
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let cap = Duration::from_millis(1000);
        let mut b = Backoff::new(cap, 42);
        let mut nominal = BACKOFF_START;
        for step in 0..10 {
            let d = b.delay();
            assert!(
                d >= nominal / 2 && d <= nominal,
                "step {step}: {d:?} vs {nominal:?}"
            );
            nominal = (nominal * 2).min(cap);
        }
        b.reset();
        assert!(b.delay() <= BACKOFF_START);
        let mut tiny = Backoff::new(Duration::from_millis(10), 7);
        assert!(tiny.delay() <= Duration::from_millis(10));
    }
}
