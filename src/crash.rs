//! Named crash points for the fault-injection tests: `RUNNER_CRASH_AT=<point>` makes the
//! process abort (no destructors, no flushing: as abrupt as `SIGKILL`) the
//! `RUNNER_CRASH_AFTER`-th time (default 1) execution reaches that point. Unset, a point
//! costs one load of a cached `None`.
//!
//! Points can also pause, so a test can force an interleaving (something committed
//! while a stage holds what it read): `RUNNER_PAUSE_AT=<point>` with
//! `RUNNER_PAUSE_UNTIL=<file>` blocks the thread that reaches the point until the file
//! exists (it first creates `<file>.paused`, so the test knows the point was reached),
//! and with `RUNNER_PAUSE_MS=<n>` sleeps n ms at every pass (a slow stage). A wait for
//! the file ends after [`PAUSE_LIMIT`] whatever happens.
//!
//! Points exist only in builds with the `dev` feature (tests get it). Without it
//! [`point`] is empty and inlined away, and [`validate`] refuses `RUNNER_CRASH_AT` and
//! `RUNNER_PAUSE_AT` at start-up: a test that armed a point against a release binary
//! would otherwise pass without ever crashing.

#[cfg(feature = "dev")]
pub use armed::{point, validate};

/// Why `RUNNER_CRASH_AT` / `RUNNER_PAUSE_AT` is refused at start-up.
#[derive(Debug, thiserror::Error)]
pub enum PointError {
    #[error("{var} names no {what} point: {point:?} (known: {known})")]
    Unknown {
        var: &'static str,
        what: &'static str,
        point: String,
        known: String,
    },
    #[error(
        "{var} is set ({point:?}), but this build has no crash or pause points: they are \
         for the fault-injection tests, in builds with the `dev` feature (`cargo build \
         --features dev`, or the binary `cargo test` builds)"
    )]
    NoPoints {
        var: &'static str,
        point: std::ffi::OsString,
    },
}
#[cfg(not(feature = "dev"))]
pub use inert::{point, validate};

/// After a batch was pulled from JetStream, before decode sees it.
pub const AFTER_FETCH: &str = "fetch.after_fetch_before_decode";
/// Inside the saga transaction: every record written, the LMDB transaction not committed.
pub const MID_TRANSACTION: &str = "store.mid_transaction";
/// After an LMDB commit of saga transitions, before their messages are acked and the
/// relay is told of their outbox items.
pub const AFTER_COMMIT: &str = "commit.after_commit_before_ack";
/// An outbox item about to be sent: its transition is committed and its message acked
/// or being acked (the commit stage acks right after it hands the items to the relay).
pub const BEFORE_SEND: &str = "relay.before_send";
/// After destinations confirmed outbox items, before their delete is committed.
pub const AFTER_CONFIRM: &str = "relay.after_confirm_before_delete";

/// After an effect's call ended, before its result is recorded: the window in which a
/// crash leads to a second call (with the same `idempotency-key`).
pub const AFTER_CALL: &str = "effect.after_call_before_record";
/// After effect results are recorded, before any is published: once per group commit of
/// the `effect-commit` thread (so a count counts batches; with one worker, records).
pub const AFTER_RECORD: &str = "effect.after_record_before_publish";
/// After an effect's result publish was acked, before the command is acked.
pub const AFTER_RESULT: &str = "effect.after_publish_before_ack";

/// After due timers were read, before their reminders are published (a pause point:
/// what commits while the scheduler waits here is what its reminders race with).
pub const BEFORE_REMINDER: &str = "scheduler.after_read_before_publish";
/// After reminders were published, before their timers leave the due index.
pub const AFTER_REMINDER: &str = "scheduler.after_publish_before_delete";

/// Inside a transaction that sweeps expired records (its own, or one it rides in):
/// the deletes done, the transaction not committed.
pub const SWEEP_MID_TRANSACTION: &str = "sweep.mid_transaction";
/// After a transaction that swept expired records committed.
pub const SWEEP_AFTER_COMMIT: &str = "sweep.after_commit";

/// Every point, so a typo in `RUNNER_CRASH_AT` is refused instead of silently ignored.
pub const POINTS: &[&str] = &[
    AFTER_FETCH,
    MID_TRANSACTION,
    AFTER_COMMIT,
    BEFORE_SEND,
    AFTER_CONFIRM,
    AFTER_CALL,
    AFTER_RECORD,
    AFTER_RESULT,
    AFTER_REMINDER,
    SWEEP_MID_TRANSACTION,
    SWEEP_AFTER_COMMIT,
];

/// Points that can pause (`RUNNER_PAUSE_AT`); a pause needs no crash test of its own.
pub const PAUSE_POINTS: &[&str] = &[BEFORE_REMINDER];

/// The longest a paused thread waits for its file.
pub const PAUSE_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The points, armed from the environment.
#[cfg(feature = "dev")]
mod armed {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    use super::{PAUSE_LIMIT, PAUSE_POINTS, POINTS};

    struct Armed {
        point: String,
        after: u64,
        hits: AtomicU64,
    }

    /// The number in `var`, if it is set to one.
    fn number(var: &str) -> Option<u64> {
        std::env::var(var).ok()?.parse().ok()
    }

    fn armed() -> Option<&'static Armed> {
        static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
        ARMED
            .get_or_init(|| {
                let point = std::env::var("RUNNER_CRASH_AT").ok()?;
                let after = number("RUNNER_CRASH_AFTER").unwrap_or(1);
                Some(Armed {
                    point,
                    after,
                    hits: AtomicU64::new(0),
                })
            })
            .as_ref()
    }

    /// How a pause point is armed (`RUNNER_PAUSE_AT`).
    struct Pause {
        point: String,
        /// Block until this file exists.
        until: Option<std::path::PathBuf>,
        /// Sleep this long at every pass.
        sleep: std::time::Duration,
    }

    fn pause() -> Option<&'static Pause> {
        static PAUSE: OnceLock<Option<Pause>> = OnceLock::new();
        PAUSE
            .get_or_init(|| {
                let point = std::env::var("RUNNER_PAUSE_AT").ok()?;
                let until = std::env::var_os("RUNNER_PAUSE_UNTIL").map(std::path::PathBuf::from);
                let ms = number("RUNNER_PAUSE_MS").unwrap_or(0);
                Some(Pause {
                    point,
                    until,
                    sleep: std::time::Duration::from_millis(ms),
                })
            })
            .as_ref()
    }

    /// Checks `RUNNER_CRASH_AT` and `RUNNER_PAUSE_AT` at start-up: an unknown point is an
    /// error.
    pub fn validate() -> Result<(), super::PointError> {
        known(
            "RUNNER_CRASH_AT",
            "crash",
            armed().map(|a| a.point.as_str()),
            POINTS,
        )?;
        known(
            "RUNNER_PAUSE_AT",
            "pause",
            pause().map(|p| p.point.as_str()),
            PAUSE_POINTS,
        )
    }

    /// An error naming `var` if the `point` it armed is not one of `points`.
    fn known(
        var: &'static str,
        what: &'static str,
        point: Option<&str>,
        points: &[&str],
    ) -> Result<(), super::PointError> {
        match point {
            Some(p) if !points.contains(&p) => Err(super::PointError::Unknown {
                var,
                what,
                point: p.to_string(),
                known: points.join(", "),
            }),
            _ => Ok(()),
        }
    }

    /// Aborts the process here if this is the armed point and its hit count is reached;
    /// pauses here if this is the paused point.
    pub fn point(name: &str) {
        if let Some(a) = armed() {
            if a.point == name && a.hits.fetch_add(1, Ordering::SeqCst) + 1 >= a.after {
                eprintln!("crash point {name} reached: aborting (RUNNER_CRASH_AT)");
                std::process::abort();
            }
        }
        if let Some(p) = pause().filter(|p| p.point == name) {
            wait_at(name, p);
        }
    }

    fn wait_at(name: &str, p: &Pause) {
        std::thread::sleep(p.sleep);
        let Some(until) = &p.until else {
            return;
        };
        if until.exists() {
            return;
        }
        let mut paused = until.clone().into_os_string();
        paused.push(".paused");
        if let Err(e) = std::fs::write(&paused, name) {
            eprintln!("pause point {name}: cannot create {paused:?}: {e}");
        }
        let deadline = std::time::Instant::now() + PAUSE_LIMIT;
        while !until.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// A build without the `dev` feature: no points.
#[cfg(not(feature = "dev"))]
mod inert {
    /// There are no points to arm, so arming one is an error (the variables that only
    /// tune an armed point are ignored, as they are when nothing is armed).
    pub fn validate() -> Result<(), super::PointError> {
        for var in ["RUNNER_CRASH_AT", "RUNNER_PAUSE_AT"] {
            if let Some(point) = std::env::var_os(var) {
                return Err(super::PointError::NoPoints { var, point });
            }
        }
        Ok(())
    }

    /// Nothing: the call compiles away.
    #[inline(always)]
    pub fn point(_name: &str) {}
}
