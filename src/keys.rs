//! Storage key composition: the one place that knows the key layout of every keyspace
//! (docs/contracts.md §3 plus the namespaces this project adds).
//!
//! Segments are joined with `:`. Tenants and names cannot contain `:` (see `types`);
//! free-text segments (correlation, event and work ids) are escaped (`%` → `%25`,
//! `:` → `%3A`) so that a prefix scan of one instance never matches another whose id
//! merely starts the same way. Times are fixed-width zero-padded milliseconds so that
//! byte order is time order.

use std::fmt::Write as _;

use crate::digits::{push_hex16, push_zero_padded};
use crate::types::{CorrelationId, EventId, SagaName, TenantId, WorkId};

/// The keyspace prefixes, in one list so that nothing else spells them.
pub mod space {
    pub const SAGA: &str = "saga";
    pub const CHECKPOINT: &str = "checkpoint";
    pub const OUTBOX: &str = "outbox";
    pub const SCHEDULE: &str = "schedule";
    /// Timers by due time, across tenants: `due:{due_at}:{tenant}:{saga}:{corr}:{name}`.
    pub const DUE: &str = "due";
    pub const DEDUPE: &str = "dedupe";
    pub const QUARANTINE: &str = "quarantine";
    pub const DEAD_LETTER: &str = "deadletter";
    pub const META: &str = "meta";
    /// Instances by status and version (derived from `saga:`, written in the same
    /// transaction): `status:{tenant}:{saga}:{status}:{version}:{corr}`, empty value.
    pub const STATUS: &str = "status";
    /// The retention index (`store/expiry.rs`): `expire:{at_ms}:{nonce}`, its value the
    /// keys that expire at `at_ms`, one per line.
    pub const EXPIRE: &str = "expire";
    /// An instance's transitions, one entry each (`store/history.rs`):
    /// `history:{tenant}:{saga}:{corr}:{n:020}`, deleted with the instance.
    pub const HISTORY: &str = "history";

    /// The keyspaces of a tenant's own records, whose keys start `{space}:{tenant}:`
    /// (what a tenant's move carries; its indexes are rebuilt from them).
    pub const TENANT_RECORDS: [&str; 8] = [
        SAGA,
        CHECKPOINT,
        OUTBOX,
        SCHEDULE,
        DEDUPE,
        QUARANTINE,
        DEAD_LETTER,
        HISTORY,
    ];
}

/// The segment that marks effect dedupe records; no saga may be called this.
pub const EFFECT_DEDUPE_SEGMENT: &str = "effect";

/// Which destination an outbox item goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxKind {
    /// An effect command for `WORKFLOW_COMMANDS`.
    Effect,
    /// An aggregate command for the Gateway.
    Aggregate,
}

impl OutboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxKind::Effect => "effect",
            OutboxKind::Aggregate => "aggregate",
        }
    }
}

/// Escapes a free-text segment so it never contains the separator.
pub fn escape(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    escape_into(&mut out, segment);
    out
}

/// Appends [`escape`]`(segment)` to `out`.
fn escape_into(out: &mut String, segment: &str) {
    if !segment.contains([':', '%']) {
        out.push_str(segment);
        return;
    }
    for c in segment.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            c => out.push(c),
        }
    }
}

/// One segment of a key: written as it is, escaped (free text), or a time in ms.
enum Part<'a> {
    Raw(&'a str),
    Free(&'a str),
    /// As [`time_segment`] writes it.
    Time(i64),
    /// A number zero-padded to a width (byte order is numeric order).
    Padded(u64, usize),
    /// A number as 16 lowercase hex digits.
    Hex16(u64),
}

/// Joins a keyspace and its segments with `:` into one buffer (keys are built for every
/// lookup and write, so without the intermediate strings `format!` would make).
fn join(space: &str, parts: &[Part<'_>]) -> String {
    let len = parts.iter().fold(space.len(), |n, p| match p {
        Part::Raw(s) | Part::Free(s) => n + 1 + s.len(),
        Part::Time(_) => n + 17,
        Part::Padded(_, width) => n + 1 + width,
        Part::Hex16(_) => n + 17,
    });
    let mut key = String::with_capacity(len);
    key.push_str(space);
    for part in parts {
        key.push(':');
        match part {
            Part::Raw(s) => key.push_str(s),
            Part::Free(s) => escape_into(&mut key, s),
            Part::Time(ms) => push_zero_padded(&mut key, (*ms).max(0) as u64, 16),
            Part::Padded(v, width) => push_zero_padded(&mut key, *v, *width),
            Part::Hex16(v) => push_hex16(&mut key, *v),
        }
    }
    key
}

/// Reverses [`escape`]. Unknown escapes are kept as they are.
pub fn unescape(segment: &str) -> String {
    segment.replace("%3A", ":").replace("%25", "%")
}

/// Fixed-width milliseconds: byte order equals numeric order for 0..=9999-12-31.
pub fn time_segment(ms: i64) -> String {
    crate::digits::zero_padded(ms.max(0) as u64, 16)
}

pub fn saga(tenant: &TenantId, saga: &SagaName, corr: &CorrelationId) -> String {
    join(
        space::SAGA,
        &[
            Part::Raw(tenant.token()),
            Part::Raw(saga.as_str()),
            Part::Free(corr.as_str()),
        ],
    )
}

/// All instances of one saga of one tenant.
pub fn saga_prefix(tenant: &TenantId, saga: &SagaName) -> String {
    format!("{}:{}:{}:", space::SAGA, tenant.token(), saga)
}

/// The status index entry of one instance (`status` as its lowercase name; the
/// version zero-padded so that byte order is version order).
pub fn status_index(
    tenant: &TenantId,
    saga: &SagaName,
    status: &str,
    version: u32,
    corr: &CorrelationId,
) -> String {
    join(
        space::STATUS,
        &[
            Part::Raw(tenant.token()),
            Part::Raw(saga.as_str()),
            Part::Raw(status),
            Part::Padded(version.into(), 10),
            Part::Free(corr.as_str()),
        ],
    )
}

/// Status index entries of one saga of one tenant, narrowed to a status and, with it, a
/// version.
pub fn status_index_prefix(
    tenant: &TenantId,
    saga: &SagaName,
    status: Option<&str>,
    version: Option<u32>,
) -> String {
    let mut prefix = format!("{}:{}:{}:", space::STATUS, tenant.token(), saga);
    if let Some(status) = status {
        let _ = write!(prefix, "{status}:");
        if let Some(version) = version {
            let _ = write!(prefix, "{version:010}:");
        }
    }
    prefix
}

/// The status index entry of the instance stored under `saga_key` (`saga:…`), for
/// rebuilding the index from records.
pub fn status_index_of_saga_key(saga_key: &str, status: &str, version: u32) -> Option<String> {
    let rest = saga_key.strip_prefix(space::SAGA)?.strip_prefix(':')?;
    let mut parts = rest.splitn(3, ':');
    let (tenant, saga, corr) = (parts.next()?, parts.next()?, parts.next()?);
    Some(format!(
        "{}:{tenant}:{saga}:{status}:{version:010}:{corr}",
        space::STATUS
    ))
}

/// The (escaped) correlation and the version of a status index key.
pub fn status_index_parts(key: &str) -> Option<(String, u32)> {
    // status:{tenant}:{saga}:{status}:{version}:{corr}; corr is escaped (no ':').
    let mut parts = key.splitn(6, ':');
    let _ = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let version = parts.next()?.parse().ok()?;
    Some((unescape(parts.next()?), version))
}

/// Entry `n` of an instance's history (`n` zero-padded to 20 digits, all of a `u64`, so
/// byte order is transition order).
pub fn history(tenant: &TenantId, saga: &SagaName, corr: &CorrelationId, n: u64) -> String {
    join(
        space::HISTORY,
        &[
            Part::Raw(tenant.token()),
            Part::Raw(saga.as_str()),
            Part::Free(corr.as_str()),
            Part::Padded(n, 20),
        ],
    )
}

/// Every history entry of one instance.
pub fn history_prefix(tenant: &TenantId, saga: &SagaName, corr: &CorrelationId) -> String {
    format!(
        "{}:{}:{}:{}:",
        space::HISTORY,
        tenant.token(),
        saga,
        escape(corr.as_str())
    )
}

/// The history prefix of the instance stored under `saga_key` (`saga:…`): what goes
/// with the instance when it expires.
pub fn history_prefix_of_saga_key(saga_key: &str) -> Option<String> {
    let rest = saga_key.strip_prefix(space::SAGA)?.strip_prefix(':')?;
    Some(format!("{}:{rest}:", space::HISTORY))
}

/// The transition number of a history entry's key.
pub fn history_n(key: &str) -> Option<u64> {
    let (_, n) = key.strip_prefix(space::HISTORY)?.rsplit_once(':')?;
    if n.len() != 20 {
        return None;
    }
    n.parse().ok()
}

pub fn checkpoint(tenant: &TenantId, saga: &SagaName) -> String {
    join(
        space::CHECKPOINT,
        &[Part::Raw(tenant.token()), Part::Raw(saga.as_str())],
    )
}

pub fn outbox(tenant: &TenantId, kind: OutboxKind, work: &WorkId) -> String {
    join(
        space::OUTBOX,
        &[
            Part::Raw(tenant.token()),
            Part::Raw(kind.as_str()),
            Part::Free(work.as_str()),
        ],
    )
}

/// Every outbox item of one tenant.
pub fn outbox_prefix(tenant: &TenantId) -> String {
    format!("{}:{}:", space::OUTBOX, tenant.token())
}

/// `schedule:{tenant}:{saga}:{correlation}:{due_at}:{name}`. The contract's layout ends at
/// `due_at`; the timer name is appended so two timers due at the same instant coexist.
pub fn schedule(
    tenant: &TenantId,
    saga: &SagaName,
    corr: &CorrelationId,
    due_at_ms: i64,
    name: &str,
) -> String {
    join(
        space::SCHEDULE,
        &[
            Part::Raw(tenant.token()),
            Part::Raw(saga.as_str()),
            Part::Free(corr.as_str()),
            Part::Time(due_at_ms),
            Part::Free(name),
        ],
    )
}

/// The due-time index entry of a timer: its `schedule:` key with the due time moved to
/// the front, so that "what is due now" is an ordered scan from `due:`. `None` for a key
/// that is not a timer's.
pub fn due_index(schedule_key: &str) -> Option<String> {
    let rest = schedule_key
        .strip_prefix(space::SCHEDULE)?
        .strip_prefix(':')?;
    let [tenant, saga, corr, due, name] = split5(rest)?;
    let parts = [due, tenant, saga, corr, name].map(Part::Raw);
    is_time_segment(due).then(|| join(space::DUE, &parts))
}

/// The `schedule:` key a due-index entry points at (the inverse of [`due_index`]).
pub fn schedule_of_due(index_key: &str) -> Option<String> {
    let rest = index_key.strip_prefix(space::DUE)?.strip_prefix(':')?;
    let [due, tenant, saga, corr, name] = split5(rest)?;
    let parts = [tenant, saga, corr, due, name].map(Part::Raw);
    is_time_segment(due).then(|| join(space::SCHEDULE, &parts))
}

/// The due time (ms) a due-index entry starts with.
pub fn due_of_index(index_key: &str) -> Option<i64> {
    let rest = index_key.strip_prefix(space::DUE)?.strip_prefix(':')?;
    rest.get(..16)?.parse().ok()
}

/// Where due-index keys of timers due after `ms` begin: `due:{ms+1:016}`.
pub fn due_after(ms: i64) -> String {
    format!("{}:{}", space::DUE, time_segment(ms.saturating_add(1)))
}

/// Exactly five `:`-separated segments (free text is escaped, so none holds a `:`).
fn split5(s: &str) -> Option<[&str; 5]> {
    let mut it = s.split(':');
    let parts = [it.next()?, it.next()?, it.next()?, it.next()?, it.next()?];
    it.next().is_none().then_some(parts)
}

fn is_time_segment(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Every timer of one saga instance.
pub fn schedule_instance_prefix(
    tenant: &TenantId,
    saga: &SagaName,
    corr: &CorrelationId,
) -> String {
    join(
        space::SCHEDULE,
        &[
            Part::Raw(tenant.token()),
            Part::Raw(saga.as_str()),
            Part::Free(corr.as_str()),
            // The trailing `:`.
            Part::Raw(""),
        ],
    )
}

/// Every timer of one tenant.
pub fn schedule_prefix(tenant: &TenantId) -> String {
    format!("{}:{}:", space::SCHEDULE, tenant.token())
}

pub fn saga_dedupe(tenant: &TenantId, saga: &SagaName, event: &EventId) -> String {
    join(
        space::DEDUPE,
        &[
            Part::Raw(tenant.token()),
            Part::Raw(saga.as_str()),
            Part::Free(event.as_str()),
        ],
    )
}

pub fn effect_dedupe(tenant: &TenantId, command: &WorkId) -> String {
    join(
        space::DEDUPE,
        &[
            Part::Raw(tenant.token()),
            Part::Raw(EFFECT_DEDUPE_SEGMENT),
            Part::Free(command.as_str()),
        ],
    )
}

/// A quarantined message, by the stream position it came from, filed under its tenant
/// (`None`: the unattributed namespace `~`, for messages whose tenant cannot be trusted,
/// so one tenant's body never lands among another tenant's records).
pub fn quarantine(tenant: Option<&TenantId>, stream: &str, stream_seq: u64) -> String {
    format!(
        "{}{}:{:020}",
        quarantine_prefix(tenant),
        escape(stream),
        stream_seq
    )
}

/// `None`: the unattributed namespace (`~` is never a tenant token).
pub fn quarantine_prefix(tenant: Option<&TenantId>) -> String {
    let token = tenant.map_or(UNATTRIBUTED, TenantId::token);
    format!("{}:{}:", space::QUARANTINE, token)
}

/// The tenant segment of records that belong to no trustworthy tenant.
pub const UNATTRIBUTED: &str = "~";

pub fn dead_letter(tenant: &TenantId, kind: OutboxKind, work: &WorkId) -> String {
    format!(
        "{}:{}:{}:{}",
        space::DEAD_LETTER,
        tenant.token(),
        kind.as_str(),
        escape(work.as_str())
    )
}

/// Whether a `dedupe:` key is an effect's completion record (not a saga's marker).
pub fn is_effect_dedupe(key: &str) -> bool {
    let mut parts = key.splitn(4, ':');
    parts.next() == Some(space::DEDUPE)
        && parts.next().is_some()
        && parts.next() == Some(EFFECT_DEDUPE_SEGMENT)
}

/// An entry of the retention index: what expires at `at_ms` (ms since the epoch), one
/// of possibly many entries of that instant, told apart by `nonce`.
pub fn expiry(at_ms: i64, nonce: u64) -> String {
    join(space::EXPIRE, &[Part::Time(at_ms), Part::Hex16(nonce)])
}

/// Where entries of what expires after `ms` begin.
pub fn expiry_after(ms: i64) -> String {
    format!("{}:{}", space::EXPIRE, time_segment(ms.saturating_add(1)))
}

/// When a retention index entry expires.
pub fn expiry_at(key: &str) -> Option<i64> {
    let rest = key.strip_prefix(space::EXPIRE)?.strip_prefix(':')?;
    rest.get(..16)?.parse().ok()
}

pub fn meta(name: &str) -> String {
    format!("{}:{}", space::META, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TenantId {
        s.parse().unwrap()
    }
    fn s(x: &str) -> SagaName {
        x.parse().unwrap()
    }
    fn c(x: &str) -> CorrelationId {
        x.parse().unwrap()
    }

    /// The layout is a storage format: a change here orphans every stored record, so
    /// these literals must only change together with a migration.
    #[test]
    fn key_strings_are_stable_across_keyspaces() {
        let (acme, single) = (t("acme"), TenantId::single());
        let saga_name = s("order_fulfilment");
        assert_eq!(
            saga(&acme, &saga_name, &c("o-1001")),
            "saga:acme:order_fulfilment:o-1001"
        );
        assert_eq!(
            saga(&single, &saga_name, &c("o-1")),
            "saga:_:order_fulfilment:o-1"
        );
        assert_eq!(
            checkpoint(&acme, &saga_name),
            "checkpoint:acme:order_fulfilment"
        );
        assert_eq!(
            outbox(&acme, OutboxKind::Effect, &"cmd-1".parse().unwrap()),
            "outbox:acme:effect:cmd-1"
        );
        assert_eq!(
            outbox(&acme, OutboxKind::Aggregate, &"cmd-2".parse().unwrap()),
            "outbox:acme:aggregate:cmd-2"
        );
        assert_eq!(
            schedule(
                &acme,
                &saga_name,
                &c("o-1"),
                1_700_000_000_000,
                "payment_timeout"
            ),
            "schedule:acme:order_fulfilment:o-1:0001700000000000:payment_timeout"
        );
        assert_eq!(
            saga_dedupe(&acme, &saga_name, &"ev-9".parse().unwrap()),
            "dedupe:acme:order_fulfilment:ev-9"
        );
        assert_eq!(
            effect_dedupe(&acme, &"cmd-1".parse().unwrap()),
            "dedupe:acme:effect:cmd-1"
        );
        assert_eq!(
            quarantine(Some(&acme), "AGGREGATE_EVENTS", 42),
            "quarantine:acme:AGGREGATE_EVENTS:00000000000000000042"
        );
        assert_eq!(
            quarantine(None, "AGGREGATE_EVENTS", 42),
            "quarantine:~:AGGREGATE_EVENTS:00000000000000000042"
        );
        assert_eq!(
            dead_letter(&acme, OutboxKind::Aggregate, &"cmd-3".parse().unwrap()),
            "deadletter:acme:aggregate:cmd-3"
        );
        assert_eq!(meta("probe"), "meta:probe");
        let (t, g, c): (TenantId, SagaName, CorrelationId) = (
            "acme".parse().unwrap(),
            "order".parse().unwrap(),
            "o:1".parse().unwrap(),
        );
        let entry = status_index(&t, &g, "active", 3, &c);
        assert_eq!(entry, "status:acme:order:active:0000000003:o%3A1");
        assert_eq!(
            status_index_of_saga_key(&saga(&t, &g, &c), "active", 3).as_deref(),
            Some(entry.as_str()),
            "rebuilt from the record's key, the same entry"
        );
        assert_eq!(status_index_parts(&entry), Some(("o:1".to_string(), 3)));
        assert!(entry.starts_with(&status_index_prefix(&t, &g, Some("active"), Some(3))));
        assert!(entry.starts_with(&status_index_prefix(&t, &g, None, None)));
    }

    #[test]
    fn colons_in_free_text_cannot_fake_another_instance() {
        let (acme, saga_name) = (t("acme"), s("order"));
        let short = schedule_instance_prefix(&acme, &saga_name, &c("a"));
        let long_key = schedule(&acme, &saga_name, &c("a:0000000000000001"), 5, "x");
        assert!(!long_key.starts_with(&short), "{long_key} vs {short}");
        assert_eq!(unescape(&escape("a:%3A:b%")), "a:%3A:b%");
    }

    /// The joined keys are byte-for-byte the `format!` layout they replaced, escapes and
    /// out-of-range times included.
    #[test]
    fn the_due_index_mirrors_timer_keys_and_sorts_by_time() {
        let (acme, saga_name) = (t("acme"), s("order"));
        let key = schedule(
            &acme,
            &saga_name,
            &c("a:b"),
            1_700_000_000_000,
            "pay:timeout",
        );
        let index = due_index(&key).unwrap();
        assert_eq!(index, "due:0001700000000000:acme:order:a%3Ab:pay%3Atimeout");
        assert_eq!(schedule_of_due(&index).as_deref(), Some(key.as_str()));
        assert_eq!(due_of_index(&index), Some(1_700_000_000_000));
        let later = due_index(&schedule(
            &acme,
            &saga_name,
            &c("a"),
            1_700_000_000_001,
            "x",
        ))
        .unwrap();
        assert!(
            index < later
                && due_after(1_700_000_000_000) <= later
                && due_after(1_700_000_000_000) > index
        );
        assert_eq!(due_index("outbox:acme:effect:x"), None);
        assert_eq!(due_index("schedule:acme:order:c:notatime:n"), None);
    }

    #[test]
    fn joined_keys_match_the_formatted_layout() {
        let (acme, single, saga_name) = (t("acme"), TenantId::single(), s("order"));
        for corr in ["o-1", "a:b%c", "%3A::"] {
            for tenant in [&acme, &single] {
                let corr_id = c(corr);
                let esc = escape(corr);
                let tok = tenant.token();
                assert_eq!(
                    saga(tenant, &saga_name, &corr_id),
                    format!("saga:{tok}:order:{esc}")
                );
                assert_eq!(
                    saga_dedupe(tenant, &saga_name, &corr.parse().unwrap()),
                    format!("dedupe:{tok}:order:{esc}")
                );
                assert_eq!(
                    outbox(tenant, OutboxKind::Aggregate, &corr.parse().unwrap()),
                    format!("outbox:{tok}:aggregate:{esc}")
                );
                for n in [0, 7, 1_795_774_500_000, u64::MAX] {
                    assert_eq!(
                        history(tenant, &saga_name, &corr_id, n),
                        format!("history:{tok}:order:{esc}:{n:020}")
                    );
                }
                for v in [0, 3, u32::MAX] {
                    assert_eq!(
                        status_index(tenant, &saga_name, "active", v, &corr_id),
                        format!("status:{tok}:order:active:{v:010}:{esc}")
                    );
                }
                assert_eq!(
                    schedule_instance_prefix(tenant, &saga_name, &corr_id),
                    format!("schedule:{tok}:order:{esc}:")
                );
                assert_eq!(
                    effect_dedupe(tenant, &corr.parse().unwrap()),
                    format!("dedupe:{tok}:{EFFECT_DEDUPE_SEGMENT}:{esc}")
                );
                assert_eq!(
                    checkpoint(tenant, &saga_name),
                    format!("checkpoint:{tok}:order")
                );
                for ms in [-5, 0, 1_795_774_500_000, 253_402_300_799_999, i64::MAX] {
                    assert_eq!(time_segment(ms), format!("{:016}", ms.max(0)));
                    let key = schedule(tenant, &saga_name, &corr_id, ms, corr);
                    assert_eq!(
                        key,
                        format!("schedule:{tok}:order:{esc}:{:016}:{esc}", ms.max(0))
                    );
                    let due = format!("due:{:016}:{tok}:order:{esc}:{esc}", ms.max(0));
                    if time_segment(ms).len() == 16 {
                        assert_eq!(due_index(&key).as_deref(), Some(due.as_str()));
                        assert_eq!(schedule_of_due(&due), Some(key));
                    } else {
                        // Past 16 digits a time is no segment: no index entry.
                        assert_eq!(due_index(&key), None);
                        assert_eq!(schedule_of_due(&due), None);
                    }
                    for nonce in [0, 0xab, 1 << 40, u64::MAX] {
                        assert_eq!(
                            expiry(ms, nonce),
                            format!("expire:{:016}:{nonce:016x}", ms.max(0))
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn expiry_entries_sort_by_time_and_say_when() {
        let a = expiry(1_700_000_000_000, 7);
        assert_eq!(a, "expire:0001700000000000:0000000000000007");
        assert_eq!(expiry_at(&a), Some(1_700_000_000_000));
        assert!(a < expiry(1_700_000_000_001, 0));
        assert!(expiry_after(1_700_000_000_000) > a);
        assert!(expiry_after(999_999_999_999) < a);
        assert!(is_effect_dedupe(&effect_dedupe(
            &t("acme"),
            &"c:1".parse().unwrap()
        )));
        assert!(!is_effect_dedupe(&saga_dedupe(
            &t("acme"),
            &s("order"),
            &"effect".parse().unwrap()
        )));
    }

    #[test]
    fn history_entries_sort_by_transition_and_belong_to_one_instance() {
        let (acme, order) = (t("acme"), s("order"));
        let key = history(&acme, &order, &c("o:1"), 7);
        assert_eq!(key, "history:acme:order:o%3A1:00000000000000000007");
        assert_eq!(history_n(&key), Some(7));
        assert!(key.starts_with(&history_prefix(&acme, &order, &c("o:1"))));
        assert_eq!(
            history_prefix_of_saga_key(&saga(&acme, &order, &c("o:1"))).as_deref(),
            Some(history_prefix(&acme, &order, &c("o:1")).as_str())
        );
        assert!(history(&acme, &order, &c("o"), 9) < history(&acme, &order, &c("o"), 10));
        assert!(
            history(&acme, &order, &c("o"), u64::MAX).len()
                == history(&acme, &order, &c("o"), 1).len()
        );
        // Another instance whose id starts the same, or another tenant, never matches.
        let prefix = history_prefix(&acme, &order, &c("o"));
        assert!(!history(&acme, &order, &c("o:1"), 1).starts_with(&prefix));
        assert!(!history(&t("acme2"), &order, &c("o"), 1).starts_with(&prefix));
        assert_eq!(history_n("history:acme:order:o:7"), None);
        assert_eq!(history_n("saga:acme:order:00000000000000000007"), None);
    }

    #[test]
    fn time_segments_sort_like_numbers() {
        assert!(time_segment(999) < time_segment(1000));
        assert!(time_segment(9_999_999_999_999) < time_segment(10_000_000_000_000));
    }

    #[test]
    fn tenant_prefixes_do_not_overlap() {
        // "acme" must not be a prefix match for tenant "acme2".
        let k = outbox(&t("acme2"), OutboxKind::Effect, &"w".parse().unwrap());
        assert!(!k.starts_with(&outbox_prefix(&t("acme"))));
    }
}
