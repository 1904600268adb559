//! Pipeline counters and gauges: cheap atomics the stages bump, exported by the ops
//! port's `/metrics` (a field whose description starts with "Gauge:" is a gauge).

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident: $doc:literal),* $(,)?) => {
        /// Counters shared by the stages.
        #[derive(Debug, Default)]
        pub struct Stats { $(#[doc = $doc] pub $name: AtomicU64,)* }

        /// A point-in-time copy of [`Stats`].
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct StatsSnapshot { $(#[doc = $doc] pub $name: u64,)* }

        impl Stats {
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl StatsSnapshot {
            /// Every counter and gauge: (name, description, value), for the metrics page.
            pub fn named(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![$((stringify!($name), $doc, self.$name),)*]
            }
        }
    };
}

counters! {
    fetched: "Messages received from JetStream.",
    fetched_batches: "Batches the fetch stages forwarded (fetched / this = mean batch size).",
    dropped_stale: "Messages dropped unacked because intake stopped (they are redelivered).",
    events: "Messages decoded into valid events.",
    ignored: "Saga routes that changed nothing (no instance and not a start trigger, or instance done), plus events that reached no saga.",
    duplicates: "Saga routes whose event had already been applied.",
    transitions: "Transitions committed.",
    faults: "Program faults (instance faulted, message quarantined).",
    quarantined: "Messages quarantined (any reason) and terminated.",
    acked: "Messages acked after their commit.",
    commits: "Group commits of the commit stage (each one job of a store-writer transaction).",
    store_groups: "LMDB write transactions of the store-writer thread (one fsync pair each).",
    store_jobs: "Writes the store-writer thread took (saga commits, effect records, outbox deletes); / store_groups = writes per transaction.",
    commit_failures: "Commits that failed (intake stopped, nothing acked).",
    stale_refused: "Commits refused because a transition was computed from an older record than the stored one: nothing acked, the messages run again.",
    relayed: "Outbox items confirmed by their destination and deleted.",
    relay_retries: "Dispatches that failed and wait for another attempt.",
    dead_letters: "Outbox items given up on: dead-lettered, their saga told.",
    quarantine_retried: "Quarantined messages an operator retried whose transition then committed.",
    quarantine_discarded: "Quarantine records an operator discarded.",
    dead_letters_redriven: "Dead letters an operator put back into the outbox.",
    dead_letters_discarded: "Dead letters an operator discarded.",
    program_gas: "Gas the saga programs used (on_event and compensation), over every transition run.",
    relay_scans: "Passes of the relay over the outbox keyspace.",
    effects_called: "Effect commands executed (provider called, retries included as one).",
    effect_results_replayed: "Effect commands redelivered after their call: the recorded result was published again, the upstream not called.",
    effect_results_published: "Effect result events whose publish was acked.",
    effects_failed: "Effect commands that ended failed or timed out.",
    effect_commands_acked: "Effect commands acked (their result recorded and published).",
    effect_claims_busy: "Effect commands put back because another replica held their claim, or no claim could be had.",
    effects_unknown_put_back: "Effect commands of an effect this process does not define that reached it anyway (fetched just before a reload dropped the effect): put back with a delay, not failed.",
    effect_commands_unclaimed: "Gauge: effect commands no process has taken for longer than effects.unclaimed_alert_secs, as the latest scan found them (GET /admin/effects/unclaimed lists them).",
    timers_fired: "Timers whose reminder was published and acked (the timer then leaves the due index; its record stays until the reminder is applied).",
    timers_stale: "Reminders ignored as stale: their instance no longer held that timer (cancelled, set again or finished after the scheduler read it); acked, no program ran.",
    timers_due: "Gauge: timers found due by the scheduler's latest scan (at most scheduler.batch).",
    queue_decode: "Gauge: batches waiting for the decode stage (fetch → decode channel), as decode last saw it.",
    queue_execute: "Gauge: batches waiting for the execute stage, as it last saw them.",
    queue_commit: "Gauge: batches waiting for the commit stage, as it last saw them.",
    queue_effects: "Gauge: effect commands waiting for a worker, as the workers last saw them.",
    relay_held: "Gauge: outbox items the relay holds in memory (ready, in flight, waiting to retry, awaiting delete).",
    outbox_depth: "Gauge: outbox items in the store (counted at start-up, then kept by the commit stage and the relay).",
    relay_held_bytes: "Gauge: bytes of outbox envelopes the relay holds in memory (bounded by relay.max_held_bytes).",
    too_large_quarantined: "Saga transitions refused because a command or reminder they would send is over the server's max_payload: the event quarantined, nothing written.",
    relay_too_large: "Outbox items over the server's max_payload: never sent, dead-lettered at once with a failed result (too_large).",
    timers_too_large: "Reminders over the server's max_payload: never published; the timer leaves the due index (counted, logged with its reason).",
    effect_results_too_large: "Effect results over the server's max_payload, replaced by a small failed result (result_too_large).",
    effect_commands_too_large: "Effect commands over pipeline.max_message_bytes: quarantined, never executed.",
}

impl Stats {
    pub fn set(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Ordering::Relaxed);
    }

    /// Lowers a gauge, never below zero.
    pub fn sub(gauge: &AtomicU64, n: u64) {
        let _ = gauge.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(n))
        });
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

impl StatsSnapshot {
    /// Messages whose delivery ended (acked or terminated).
    pub fn finished(&self) -> u64 {
        self.acked + self.quarantined
    }
}
