//! A circuit breaker per upstream: after `failure_threshold` failures in a row it opens
//! and refuses calls for `open_for`; then it lets `half_open_probes` calls through, and
//! closes on their success or opens again on a failure. Shared by the worker threads.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    pub failure_threshold: u32,
    pub open_for: Duration,
    pub half_open_probes: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// Probes let through so far, and how many of them succeeded.
    HalfOpen {
        admitted: u32,
        succeeded: u32,
    },
}

#[derive(Debug)]
pub struct Breaker {
    policy: BreakerPolicy,
    state: Mutex<BreakerState>,
}

impl Breaker {
    pub fn new(policy: BreakerPolicy) -> Breaker {
        Breaker {
            policy,
            state: Mutex::new(BreakerState::Closed { failures: 0 }),
        }
    }

    pub fn state(&self) -> BreakerState {
        *self.state.lock()
    }

    /// Whether a call may go out now. In half-open, each allowed call is a probe.
    pub fn allow(&self, now: Instant) -> bool {
        let mut state = self.state.lock();
        match *state {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { until } if now >= until => {
                *state = BreakerState::HalfOpen {
                    admitted: 1,
                    succeeded: 0,
                };
                true
            }
            BreakerState::Open { .. } => false,
            BreakerState::HalfOpen {
                admitted,
                succeeded,
            } => {
                if admitted < self.policy.half_open_probes {
                    *state = BreakerState::HalfOpen {
                        admitted: admitted + 1,
                        succeeded,
                    };
                    true
                } else {
                    false
                }
            }
        }
    }

    /// An allowed call that never reached the upstream (the command's own fault): not a
    /// failure nor a success; a half-open probe it took is given back.
    pub fn not_asked(&self) {
        let mut state = self.state.lock();
        if let BreakerState::HalfOpen {
            admitted,
            succeeded,
        } = *state
        {
            *state = BreakerState::HalfOpen {
                admitted: admitted.saturating_sub(1),
                succeeded,
            };
        }
    }

    /// The outcome of an allowed call. Only failures of the upstream count (a refused
    /// request, a 4xx of the caller's making, is a success for the breaker).
    pub fn record(&self, upstream_ok: bool, now: Instant) {
        let mut state = self.state.lock();
        let open = BreakerState::Open {
            until: now + self.policy.open_for,
        };
        *state = match (*state, upstream_ok) {
            (BreakerState::Closed { .. }, true) => BreakerState::Closed { failures: 0 },
            (BreakerState::Closed { failures }, false) => {
                if failures + 1 >= self.policy.failure_threshold {
                    open
                } else {
                    BreakerState::Closed {
                        failures: failures + 1,
                    }
                }
            }
            (BreakerState::HalfOpen { .. }, false) => open,
            (
                BreakerState::HalfOpen {
                    admitted,
                    succeeded,
                },
                true,
            ) => {
                if succeeded + 1 >= self.policy.half_open_probes {
                    BreakerState::Closed { failures: 0 }
                } else {
                    BreakerState::HalfOpen {
                        admitted,
                        succeeded: succeeded + 1,
                    }
                }
            }
            // A call allowed before the breaker opened, finishing late: no change.
            (s @ BreakerState::Open { .. }, _) => s,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(probes: u32) -> Breaker {
        Breaker::new(BreakerPolicy {
            failure_threshold: 3,
            open_for: Duration::from_secs(10),
            half_open_probes: probes,
        })
    }

    #[test]
    fn opens_after_the_threshold_and_half_opens_after_the_interval() {
        let b = breaker(1);
        let t0 = Instant::now();
        for _ in 0..2 {
            assert!(b.allow(t0));
            b.record(false, t0);
        }
        assert!(matches!(b.state(), BreakerState::Closed { failures: 2 }));
        assert!(b.allow(t0));
        b.record(false, t0);
        assert!(!b.allow(t0 + Duration::from_secs(9)), "open: refused");
        assert!(
            b.allow(t0 + Duration::from_secs(10)),
            "half-open: one probe"
        );
        assert!(!b.allow(t0 + Duration::from_secs(10)), "only one probe");
        b.record(true, t0 + Duration::from_secs(10));
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
    }

    #[test]
    fn a_call_that_never_reached_the_upstream_gives_its_probe_back() {
        let b = breaker(1);
        let t0 = Instant::now();
        for _ in 0..3 {
            b.record(false, t0);
        }
        let later = t0 + Duration::from_secs(10);
        assert!(b.allow(later));
        b.not_asked();
        assert!(
            matches!(b.state(), BreakerState::HalfOpen { .. }),
            "not closed by it"
        );
        assert!(b.allow(later), "the probe is free again");
        b.not_asked();
        b.record(false, t0);
        assert!(matches!(b.state(), BreakerState::Open { .. }));
        b.not_asked();
        assert!(matches!(b.state(), BreakerState::Open { .. }));
    }

    #[test]
    fn a_failed_probe_opens_again_and_a_success_resets_the_count() {
        let b = breaker(2);
        let t0 = Instant::now();
        b.record(false, t0);
        b.record(false, t0);
        b.record(true, t0);
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
        for _ in 0..3 {
            b.record(false, t0);
        }
        let later = t0 + Duration::from_secs(10);
        assert!(b.allow(later) && b.allow(later) && !b.allow(later));
        b.record(true, later);
        assert!(
            matches!(b.state(), BreakerState::HalfOpen { .. }),
            "needs both probes"
        );
        b.record(false, later);
        assert!(!b.allow(later + Duration::from_secs(9)), "open again");
    }
}
