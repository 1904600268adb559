//! Named crash points for the fault-injection tests: `RUNNER_CRASH_AT=<point>` makes the
//! process abort (no destructors, no flushing: as abrupt as `SIGKILL`) the
//! `RUNNER_CRASH_AFTER`-th time (default 1) execution reaches that point. Unset, a point
//! costs one load of a cached `None`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

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

/// After reminders were published, before their timers are deleted.
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

struct Armed {
    point: String,
    after: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let point = std::env::var("RUNNER_CRASH_AT").ok()?;
            let after = std::env::var("RUNNER_CRASH_AFTER")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            Some(Armed {
                point,
                after,
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Checks `RUNNER_CRASH_AT` at start-up: an unknown point is an error.
pub fn validate() -> Result<(), String> {
    match armed() {
        Some(a) if !POINTS.contains(&a.point.as_str()) => Err(format!(
            "RUNNER_CRASH_AT names no crash point: {:?} (known: {})",
            a.point,
            POINTS.join(", ")
        )),
        _ => Ok(()),
    }
}

/// Aborts the process here if this is the armed point and its hit count is reached.
pub fn point(name: &str) {
    let Some(a) = armed() else {
        return;
    };
    if a.point == name && a.hits.fetch_add(1, Ordering::SeqCst) + 1 >= a.after {
        eprintln!("crash point {name} reached: aborting (RUNNER_CRASH_AT)");
        std::process::abort();
    }
}
