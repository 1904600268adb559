//! Exponential backoff with jitter, so that items which failed together (a Gateway
//! outage) do not all come back in the same instant.

use std::time::Duration;

/// Delay before attempt `attempt + 1`, after `attempt` failed ones: the initial delay
/// doubled per attempt, capped at `max`; the result is drawn from its upper half
/// ("equal jitter": never less than half the nominal delay, so retries still spread
/// out, and never more than the cap).
pub fn delay(attempt: u32, initial: Duration, max: Duration, random: u64) -> Duration {
    let exp = attempt.saturating_sub(1).min(32);
    let nominal = initial
        .saturating_mul(1u32 << exp.min(31))
        .min(max)
        .as_millis() as u64;
    let half = nominal / 2;
    Duration::from_millis(half + random % (nominal - half + 1))
}

/// How an item's transient failures are retried: delays from [`delay`], all within a
/// time budget counted from the item's first attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub budget: Duration,
}

/// What to do after a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again after this long.
    RetryIn(Duration),
    /// The budget is spent: give up (the outcome at the destination is unknown).
    BudgetSpent,
}

impl RetryPolicy {
    /// After `attempts` failed attempts, the first of them `since_first` ago: the backoff
    /// (at least what the destination `asked` for, up to the cap), shortened so that the
    /// last attempt falls at the end of the budget; once the budget is spent, give up.
    pub fn after_failure(
        &self,
        attempts: u32,
        since_first: Duration,
        asked: Option<Duration>,
        random: u64,
    ) -> AfterFailure {
        let Some(left) = self
            .budget
            .checked_sub(since_first)
            .filter(|d| !d.is_zero())
        else {
            return AfterFailure::BudgetSpent;
        };
        let wait = delay(attempts, self.initial, self.max, random)
            .max(asked.unwrap_or_default().min(self.max));
        AfterFailure::RetryIn(wait.min(left))
    }
}

/// A small, fast generator for jitter (xorshift64*); not for anything secret.
#[derive(Debug)]
pub struct Jitter(u64);

impl Jitter {
    pub fn seeded() -> Jitter {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Jitter(nanos | 1)
    }

    pub fn draw(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_within_jitter_and_stops_at_the_cap() {
        let (initial, max) = (100 * MS, 1000 * MS);
        for (attempt, nominal) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (60, 1000),
        ] {
            let low = delay(attempt, initial, max, 0);
            let high = delay(attempt, initial, max, u64::MAX - 7);
            assert_eq!(low, nominal / 2 * MS, "attempt {attempt}");
            assert!(
                high <= nominal * MS && high >= low,
                "attempt {attempt}: {high:?}"
            );
        }
    }

    #[test]
    fn failures_within_the_budget_are_retried_and_the_last_retry_ends_it() {
        let policy = RetryPolicy {
            initial: 100 * MS,
            max: 1000 * MS,
            budget: Duration::from_secs(10),
        };
        // Many attempts are fine while time is left: attempts do not end it.
        assert_eq!(
            policy.after_failure(500, Duration::from_secs(3), None, 0),
            AfterFailure::RetryIn(500 * MS)
        );
        // What the destination asked for counts, up to the cap.
        assert_eq!(
            policy.after_failure(1, Duration::ZERO, Some(Duration::from_secs(60)), 0),
            AfterFailure::RetryIn(1000 * MS)
        );
        // The last retry falls at the budget's end, not after it.
        assert_eq!(
            policy.after_failure(9, 9_800 * MS, None, 0),
            AfterFailure::RetryIn(200 * MS)
        );
        for spent in [Duration::from_secs(10), Duration::from_secs(11)] {
            assert_eq!(
                policy.after_failure(2, spent, None, 0),
                AfterFailure::BudgetSpent,
                "{spent:?}"
            );
        }
    }

    #[test]
    fn jitter_spreads() {
        let mut j = Jitter::seeded();
        let delays: std::collections::HashSet<Duration> = (0..50)
            .map(|_| delay(3, 100 * MS, 10_000 * MS, j.draw()))
            .collect();
        assert!(delays.len() > 10, "{delays:?}");
    }
}
