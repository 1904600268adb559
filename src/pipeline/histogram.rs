//! A fixed-size latency histogram: 4 buckets per power of two of microseconds (each
//! bucket at most 19% wide), lock-free to record, up to about 70 minutes. Quantiles
//! come back as the upper bound of their bucket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const SUB: u32 = 4;
const BUCKETS: usize = 32 * SUB as usize;

#[derive(Debug)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

/// The bucket of `us`: values below 4 get their own buckets; above, the power of two
/// and the top two bits below the leading one pick the bucket.
fn bucket(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let power = 63 - us.leading_zeros();
    let sub = (us >> (power - 2)) & 0b11;
    (((power - 1) * SUB) as usize + sub as usize).min(BUCKETS - 1)
}

/// The largest value of bucket `b`.
fn upper(b: usize) -> u64 {
    if b < SUB as usize {
        return b as u64;
    }
    let power = b as u32 / SUB + 1;
    let sub = b as u64 % SUB as u64;
    ((4 + sub + 1) << (power - 2)) - 1
}

impl Histogram {
    pub fn record(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        self.counts[bucket(us)].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Sum of everything recorded.
    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_us.load(Ordering::Relaxed))
    }

    /// Cumulative counts at each of `limits` (ascending): how many recorded values lie in
    /// buckets wholly at or below the limit (Prometheus `le` buckets, within a bucket's
    /// width of exact).
    pub fn cumulative(&self, limits: &[Duration]) -> Vec<u64> {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        limits
            .iter()
            .map(|limit| {
                let us = limit.as_micros().min(u64::MAX as u128) as u64;
                (0..BUCKETS)
                    .filter(|b| upper(*b) <= us)
                    .map(|b| counts[b])
                    .sum()
            })
            .collect()
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The `q`-quantile (0.0–1.0), `None` when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        self.recorded().quantile(q)
    }

    /// What has been recorded so far: two of these measure the window between them.
    pub fn recorded(&self) -> Recorded {
        Recorded {
            counts: std::array::from_fn(|b| self.counts[b].load(Ordering::Relaxed)),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

/// A histogram's contents at one moment (a copy; recording goes on).
#[derive(Debug, Clone)]
pub struct Recorded {
    counts: [u64; BUCKETS],
    sum_us: u64,
}

impl Recorded {
    /// What was recorded after `earlier` (taken from the same histogram) up to this.
    pub fn since(&self, earlier: &Recorded) -> Recorded {
        Recorded {
            counts: std::array::from_fn(|b| self.counts[b].saturating_sub(earlier.counts[b])),
            sum_us: self.sum_us.saturating_sub(earlier.sum_us),
        }
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_us)
    }

    /// The `q`-quantile (0.0–1.0), `None` when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Duration::from_micros(upper(b)));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_tight() {
        let mut last = None;
        for us in 0..100_000u64 {
            let b = bucket(us);
            assert!(us <= upper(b), "{us} above its bucket's bound {}", upper(b));
            if b > 0 {
                assert!(us > upper(b - 1), "{us} belongs to an earlier bucket");
            }
            if let Some(l) = last {
                assert!(b == l || b == l + 1, "buckets skip at {us}");
            }
            last = Some(b);
            if us >= 8 {
                assert!(
                    upper(b) as f64 <= us as f64 * 1.25,
                    "bucket of {us} too wide"
                );
            }
        }
    }

    #[test]
    fn quantiles_come_from_the_recorded_values() {
        let h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        assert_eq!(h.count(), 100);
        let p50 = h.quantile(0.5).unwrap();
        assert!(
            p50 >= Duration::from_millis(50) && p50 <= Duration::from_millis(62),
            "{p50:?}"
        );
        let p99 = h.quantile(0.99).unwrap();
        assert!(
            p99 >= Duration::from_millis(99) && p99 <= Duration::from_millis(124),
            "{p99:?}"
        );
        h.record(Duration::from_secs(10_000_000));
        assert_eq!(h.count(), 101, "huge values land in the last bucket");
    }

    #[test]
    fn a_window_holds_only_what_was_recorded_inside_it() {
        let h = Histogram::default();
        for _ in 0..1000 {
            h.record(Duration::from_millis(1));
        }
        let before = h.recorded();
        for _ in 0..10 {
            h.record(Duration::from_millis(40));
        }
        let window = h.recorded().since(&before);
        assert_eq!(window.count(), 10);
        assert_eq!(window.sum(), Duration::from_millis(400));
        let p50 = window.quantile(0.5).unwrap();
        assert!(
            p50 >= Duration::from_millis(40),
            "{p50:?}: the 1 ms values are outside the window"
        );
        assert!(
            h.quantile(0.5).unwrap() < Duration::from_millis(2),
            "the whole still holds them"
        );
        assert_eq!(before.since(&before).quantile(0.5), None);
    }
}
