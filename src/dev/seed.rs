//! Outbox items as a crash between commit and dispatch leaves them: committed to the
//! store, with no notice ever sent to the relay. For tests of the relay's scans and the
//! relay benchmark.

use serde_json::json;

use crate::keys::OutboxKind;
use crate::store::{
    CommitBatch, InstanceStatus, OutboxItem, RawJson, SagaRecord, Store, StreamPosition, Transition,
};
use crate::types::TenantId;

/// Commits `n` transitions of a `seeded` saga for `tenant`, each with one outbox item of
/// `kind` (effect commands go to `{command_prefix}.{tenant}.note`), in commits of at most
/// 1,000. Returns the command ids.
pub fn seed_outbox(
    store: &Store,
    command_prefix: &str,
    tenant: &str,
    kind: OutboxKind,
    n: usize,
) -> Result<Vec<String>, String> {
    seed_outbox_as(store, command_prefix, tenant, kind, n, "seeded")
}

/// [`seed_outbox`] with command ids `{tag}-{tenant}-{i}`: seeds that must not collide
/// with earlier ones in JetStream's duplicate window use a tag of their own.
pub fn seed_outbox_as(
    store: &Store,
    command_prefix: &str,
    tenant: &str,
    kind: OutboxKind,
    n: usize,
    tag: &str,
) -> Result<Vec<String>, String> {
    let tenant: TenantId = tenant.parse().map_err(|e| format!("{e}"))?;
    let mut ids = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(1_000) {
        let mut batch = CommitBatch::default();
        for &i in chunk {
            let work = format!("{tag}-{tenant}-{i:08}");
            let corr = format!("o-{i}");
            let metadata = json!({"correlation_id": corr, "saga_name": "seeded",
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"});
            let (destination, envelope) = match kind {
                OutboxKind::Effect => (
                    format!("{command_prefix}.{}.note", tenant.token()),
                    json!({"tenant_id": tenant.as_str(), "command_id": work, "effect_name": "note",
                           "payload": {"order_id": corr, "amount": 4200, "currency": "EUR"},
                           "metadata": metadata, "issued_at": "2026-11-27T10:00:00Z"}),
                ),
                OutboxKind::Aggregate => (
                    "order".to_string(),
                    json!({"command_id": work, "aggregate_type": "order", "aggregate_id": corr,
                           "command_type": "Ship", "payload": {}, "metadata": metadata}),
                ),
            };
            let mut t = seeded_transition(&tenant, &corr, &format!("seed-{i}"), i)?;
            t.outbox.push(OutboxItem {
                kind,
                tenant: tenant.clone(),
                work_id: id(&work)?,
                saga: id("seeded")?,
                correlation: id(&corr)?,
                destination,
                envelope: RawJson::of(&envelope).map_err(|e| e.to_string())?,
                traceparent: envelope["metadata"]["traceparent"]
                    .as_str()
                    .map(str::to_string),
            });
            batch.transitions.push(t);
            ids.push(work);
        }
        store.commit(&batch).map_err(|e| e.to_string())?;
    }
    Ok(ids)
}

fn id<T: std::str::FromStr<Err = crate::types::IdError>>(s: &str) -> Result<T, String> {
    s.parse().map_err(|e: crate::types::IdError| e.to_string())
}

/// Commits `n` instances of a `seeded` saga for `tenant`, each with one timer `t` due at
/// `first_due_ms + i * spacing_us / 1000`, in commits of at most 1,000.
pub fn seed_timers(
    store: &Store,
    tenant: &str,
    n: usize,
    first_due_ms: i64,
    spacing_us: i64,
) -> Result<(), String> {
    let tenant: TenantId = tenant.parse().map_err(|e| format!("{e}"))?;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1_000) {
        let mut batch = CommitBatch::default();
        for &i in chunk {
            let corr = format!("t-{i:08}");
            let mut t = seeded_transition(&tenant, &corr, &format!("seed-timer-{i}"), i)?;
            t.schedules.push(crate::store::ScheduleItem {
                tenant: tenant.clone(),
                saga: id("seeded")?,
                correlation: id(&corr)?,
                name: "t".into(),
                due_at_ms: first_due_ms + (i as i64 * spacing_us) / 1_000,
                payload: json!({}),
                metadata: Default::default(),
            });
            batch.transitions.push(t);
        }
        store.commit(&batch).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The first transition of instance `corr` of the `seeded` saga, with nothing in it yet.
fn seeded_transition(
    tenant: &TenantId,
    corr: &str,
    event: &str,
    i: usize,
) -> Result<Transition, String> {
    Ok(Transition {
        tenant: tenant.clone(),
        saga: id("seeded")?,
        correlation: id(corr)?,
        event_id: id(event)?,
        position: StreamPosition {
            stream: "SEED".into(),
            seq: i as u64 + 1,
        },
        record: SagaRecord {
            status: InstanceStatus::Active,
            state: json!({}),
            version: 1,
            transitions: 1,
            last_event_id: event.to_string(),
            updated_at: "2026-11-27T10:00:00Z".into(),
            fault: None,
        },
        outbox: Vec::new(),
        schedules: Vec::new(),
        cancel: Vec::new(),
        fired: None,
        keep: crate::store::Keep::of(&Default::default()),
        history: Default::default(),
    })
}
