//! Latency histogram for the load generator: log-linear buckets (64 per power of two, so a
//! reported value is within 1.6% of the true one), fixed size, no allocation per record.
//! Each load thread owns one; they are merged after the run.

/// Values below this are stored exactly (one bucket per nanosecond).
const EXACT: u64 = 128;
/// Sub-buckets per power of two above `EXACT`.
const SUB: u64 = 64;
/// Bucket count: the exact range plus 57 powers of two (2^7 ..= 2^63) of `SUB` buckets each.
const BUCKETS: usize = (EXACT + 57 * SUB) as usize;

/// Latency histogram in nanoseconds.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }

    /// Record one value (nanoseconds).
    pub fn record(&mut self, ns: u64) {
        self.counts[bucket_of(ns)] += 1;
        self.total += 1;
        self.max = self.max.max(ns);
    }

    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Add another histogram's counts to this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The value at quantile `q` (0.0..=1.0) in nanoseconds: the lower bound of the bucket
    /// holding the `ceil(q * count)`-th value; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(lower_bound(i).min(self.max));
            }
        }
        Some(self.max)
    }
}

fn bucket_of(v: u64) -> usize {
    if v < EXACT {
        return v as usize;
    }
    let exp = 63 - u64::from(v.leading_zeros()); // >= 7
    let shift = exp - 6; // keeps the top 7 bits: mantissa in 64..128
    let mantissa = v >> shift;
    (EXACT + (exp - 7) * SUB + (mantissa - SUB)) as usize
}

fn lower_bound(i: usize) -> u64 {
    let i = i as u64;
    if i < EXACT {
        return i;
    }
    let exp = (i - EXACT) / SUB + 7;
    let mantissa = (i - EXACT) % SUB + SUB;
    mantissa << (exp - 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_round_trip() {
        let cases: &[(&str, u64)] = &[
            ("zero", 0),
            ("last exact", 127),
            ("first log bucket", 128),
            ("mid", 1_000_000),
            ("large", 5_000_000_000),
            ("max", u64::MAX),
        ];
        for (name, v) in cases {
            let b = bucket_of(*v);
            assert!(b < BUCKETS, "{name}: bucket {b} out of range");
            let lo = lower_bound(b);
            assert!(lo <= *v, "{name}: lower bound {lo} > {v}");
            assert!(
                (*v - lo) as f64 <= *v as f64 / 64.0,
                "{name}: {lo} too far below {v}"
            );
        }
    }

    #[test]
    fn quantiles_within_precision() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v * 1_000);
        }
        let cases: &[(&str, f64, u64)] = &[
            ("p50", 0.5, 5_000_000),
            ("p99", 0.99, 9_900_000),
            ("p999", 0.999, 9_990_000),
            ("max", 1.0, 10_000_000),
        ];
        for (name, q, want) in cases {
            let got = h.quantile(*q).unwrap() as f64;
            let err = (got - *want as f64).abs() / *want as f64;
            assert!(err < 0.02, "{name}: got {got}, want {want}");
        }
    }

    #[test]
    fn empty_and_merge() {
        let mut a = Histogram::new();
        assert_eq!(a.quantile(0.5), None);
        let mut b = Histogram::new();
        b.record(100);
        b.record(300);
        a.record(200);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.quantile(0.5), Some(200));
        assert_eq!(a.quantile(1.0), Some(300));
    }
}
