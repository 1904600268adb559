//! Running one effect command to its end: attempts with exponential backoff and jitter,
//! the upstream's circuit breaker, and the result that ends it. A command always ends
//! in a result — succeeded, failed or timed out — never in silence.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::manifest::EffectDef;
use super::provider::{Call, Failure, Outcome};
use crate::envelope::{EffectCommand, ResultError, ResultType};
use crate::relay::backoff::{self, Jitter};

/// How a command ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Final {
    pub result_type: ResultType,
    pub payload: Value,
    pub error: Option<ResultError>,
    pub attempts: u32,
}

/// Runs `command` against `def` until it succeeds, fails for good or runs out of
/// attempts. `sleep` waits between attempts (tests pass a recorder).
pub fn run(
    def: &EffectDef,
    command: &EffectCommand,
    raw: &[u8],
    jitter: &mut Jitter,
    sleep: &mut dyn FnMut(Duration),
) -> Final {
    let call = Call::new(command, raw);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let failure = if def.breaker.allow(Instant::now()) {
            match def.provider.call(&call) {
                Outcome::Succeeded(payload) => {
                    def.breaker.record(true, Instant::now());
                    return Final {
                        result_type: ResultType::Succeeded,
                        payload,
                        error: None,
                        attempts,
                    };
                }
                Outcome::Failed(f) => {
                    // Only the upstream's own failures count against it; a command that
                    // never reached it (its own fault) is no news about the upstream.
                    if f.command_fault {
                        def.breaker.not_asked();
                    } else {
                        def.breaker.record(!f.retryable, Instant::now());
                    }
                    f
                }
            }
        } else {
            Failure::retryable(
                "circuit_open",
                format!("the circuit breaker of {} is open", def.name),
            )
        };
        if !failure.retryable || attempts >= def.retry.max_attempts {
            let result_type = if failure.retryable && failure.kind == "timeout" {
                ResultType::TimedOut
            } else {
                ResultType::Failed
            };
            return Final {
                result_type,
                payload: Value::Null,
                error: Some(ResultError {
                    kind: failure.kind,
                    message: failure.message,
                }),
                attempts,
            };
        }
        sleep(backoff::delay(
            attempts,
            def.retry.backoff_initial,
            def.retry.backoff_max,
            jitter.draw(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::effects::breaker::{Breaker, BreakerPolicy, BreakerState};
    use crate::effects::manifest::RetryPolicy;
    use crate::effects::provider::Provider;

    /// Answers with `script[n]` on the n-th call (the last entry repeats).
    struct Scripted {
        script: Vec<Outcome>,
        calls: Arc<AtomicU32>,
    }

    impl Provider for Scripted {
        fn call(&self, _: &Call<'_>) -> Outcome {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) as usize;
            self.script[n.min(self.script.len() - 1)].clone()
        }
    }

    fn def(script: Vec<Outcome>, max_attempts: u32, threshold: u32) -> EffectDef {
        def_counting(script, max_attempts, threshold, Arc::default())
    }

    fn def_counting(
        script: Vec<Outcome>,
        max_attempts: u32,
        threshold: u32,
        calls: Arc<AtomicU32>,
    ) -> EffectDef {
        EffectDef {
            name: "charge".parse().unwrap(),
            provider_name: "scripted".into(),
            provider: Box::new(Scripted { script, calls }),
            timeout: Duration::from_secs(1),
            concurrency: 1,
            retry: RetryPolicy {
                max_attempts,
                backoff_initial: Duration::from_millis(100),
                backoff_max: Duration::from_secs(1),
            },
            breaker: Breaker::new(BreakerPolicy {
                failure_threshold: threshold,
                open_for: Duration::from_secs(60),
                half_open_probes: 1,
            }),
            limit: crate::effects::limit::Limit::new(1),
            retention: None,
        }
    }

    fn command() -> (EffectCommand, Vec<u8>) {
        let json = serde_json::json!({"tenant_id": "acme", "command_id": "c-1", "effect_name": "charge",
            "payload": {}, "metadata": {}, "issued_at": "2026-11-27T10:00:00Z"});
        (
            serde_json::from_value(json.clone()).unwrap(),
            json.to_string().into_bytes(),
        )
    }

    fn run_def(d: &EffectDef) -> (Final, Vec<Duration>) {
        let (cmd, raw) = command();
        let mut waits = Vec::new();
        let f = run(d, &cmd, &raw, &mut Jitter::seeded(), &mut |w| waits.push(w));
        (f, waits)
    }

    fn retryable(kind: &str) -> Outcome {
        Outcome::Failed(Failure::retryable(kind, "down"))
    }

    #[test]
    fn commands_that_never_reach_the_upstream_leave_the_breaker_alone() {
        let invalid = Outcome::Failed(Failure::invalid("bad_request", "bad header"));
        let d = def(vec![retryable("connection"), invalid], 1, 2);
        assert_eq!(run_def(&d).0.error.unwrap().kind, "connection");
        for _ in 0..5 {
            let (f, _) = run_def(&d);
            assert_eq!(f.result_type, ResultType::Failed);
            assert_eq!(
                (f.attempts, f.error.unwrap().kind.as_str()),
                (1, "bad_request")
            );
        }
        assert_eq!(
            d.breaker.state(),
            BreakerState::Closed { failures: 1 },
            "neither counted as failures nor as successes"
        );
    }

    #[test]
    fn retries_with_growing_backoff_then_succeeds() {
        let d = def(
            vec![
                retryable("http_503"),
                retryable("timeout"),
                Outcome::Succeeded(serde_json::json!({"ok": 1})),
            ],
            5,
            10,
        );
        let (f, waits) = run_def(&d);
        assert_eq!((f.result_type, f.attempts), (ResultType::Succeeded, 3));
        assert_eq!(f.payload["ok"], 1);
        assert_eq!(waits.len(), 2);
        assert!(waits[0] >= Duration::from_millis(50) && waits[0] <= Duration::from_millis(100));
        assert!(waits[1] >= Duration::from_millis(100) && waits[1] <= Duration::from_millis(200));
    }

    #[test]
    fn a_permanent_failure_is_not_retried() {
        let d = def(
            vec![Outcome::Failed(Failure::permanent("http_422", "bad card"))],
            5,
            10,
        );
        let (f, waits) = run_def(&d);
        assert_eq!((f.result_type, f.attempts), (ResultType::Failed, 1));
        assert_eq!(f.error.unwrap().kind, "http_422");
        assert!(waits.is_empty());
    }

    #[test]
    fn spent_attempts_end_failed_or_timed_out() {
        let (f, _) = run_def(&def(vec![retryable("http_503")], 3, 10));
        assert_eq!((f.result_type, f.attempts), (ResultType::Failed, 3));
        let (f, _) = run_def(&def(vec![retryable("timeout")], 2, 10));
        assert_eq!((f.result_type, f.attempts), (ResultType::TimedOut, 2));
    }

    #[test]
    fn an_open_breaker_refuses_calls_without_reaching_the_upstream() {
        let calls = Arc::new(AtomicU32::new(0));
        let d = def_counting(vec![retryable("connection")], 2, 2, calls.clone());
        let (f, _) = run_def(&d);
        assert_eq!(f.attempts, 2);
        // Two failures opened it: the next command is refused without a call.
        let (f, _) = run_def(&d);
        assert_eq!(f.error.unwrap().kind, "circuit_open");
        assert_eq!(f.attempts, 2);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "the upstream saw only the first two"
        );
    }
}
