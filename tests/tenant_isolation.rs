//! Tenant isolation against a real nats-server: the subject a message came on names its
//! tenant (NATS permissions restrict subjects, not bodies), so a body or header naming
//! another tenant touches no tenant, and its quarantine record is filed under none.

mod common;

use common::ops::{call, ops_for, TOKEN};
use common::{await_stats, both_saga, event, wait_until, Rig, WAIT};
use runner::dev::{FakeGateway, Reply};
use runner::settings::Mode;
use runner::store::QuarantineKind;
use runner::types::{CorrelationId, SagaName, TenantId};
use serde_json::json;

fn tenant(name: &str) -> TenantId {
    name.parse().unwrap()
}

fn both() -> SagaName {
    "both".parse().unwrap()
}

fn corr(s: &str) -> CorrelationId {
    s.parse().unwrap()
}

/// The finding of issue 22 as it came from outside: an `OrderPlaced` on acme's subject
/// whose body says globex, without a header. It must create no globex instance and send
/// no globex command (effect or Gateway); it is quarantined, unattributed.
#[test]
fn a_body_naming_another_tenant_than_its_subject_touches_no_tenant() {
    let gateway = FakeGateway::accepting().unwrap();
    let mut rig = Rig::new(both_saga());
    rig.settings.relay.gateway_url = gateway.url().to_string();
    let pipeline = rig.start();
    let nc = rig.connect();
    let acme_subject = rig.aggregate_subject("acme", "OrderPlaced");
    let hostile = event("e-evil", "globex", "o-evil", "OrderPlaced", json!({}));
    rig.publish(&nc, &acme_subject, &hostile);
    // Then a legitimate acme order: once its Gateway command arrived, the hostile one
    // (earlier in the same stream) has been dealt with.
    let fine = event("e-1", "acme", "o-1", "OrderPlaced", json!({}));
    rig.publish(&nc, &acme_subject, &fine);
    await_stats(&pipeline, |s| s.acked + s.quarantined >= 2);
    assert!(
        wait_until(WAIT, || gateway.count() >= 1),
        "the acme order's Gateway command arrives"
    );
    await_stats(&pipeline, |s| s.relayed >= 2);

    let globex = tenant("globex");
    assert_eq!(
        rig.store.saga(&globex, &both(), &corr("o-evil")).unwrap(),
        None,
        "no globex saga instance"
    );
    assert!(rig.store.outbox(&globex, 10).unwrap().is_empty());
    let calls = gateway.received();
    assert!(
        calls
            .iter()
            .all(|c| c.header("x-tenant-id") == Some("acme")),
        "no globex Gateway command: {:?}",
        calls
            .iter()
            .map(|c| c.header("x-tenant-id"))
            .collect::<Vec<_>>()
    );
    let commands = rig.published_commands(&nc, 10);
    assert!(
        commands.iter().all(|m| !m.subject.contains(".globex.")),
        "no globex effect command"
    );
    assert!(rig
        .store
        .saga(&tenant("acme"), &both(), &corr("o-1"))
        .unwrap()
        .is_some());

    let unattributed = rig.store.quarantined(None, 10).unwrap();
    assert_eq!(unattributed.len(), 1, "one unattributed record");
    assert_eq!(unattributed[0].kind, QuarantineKind::TenantAccess);
    assert_eq!(unattributed[0].event_id.as_deref(), Some("e-evil"));
    assert!(rig.store.quarantined(Some(&globex), 10).unwrap().is_empty());
    assert!(rig
        .store
        .quarantined(Some(&tenant("acme")), 10)
        .unwrap()
        .is_empty());
}

/// The effect side: a command on acme's command subject whose body says globex is never
/// executed and yields no result; it is quarantined, unattributed.
#[test]
fn a_command_whose_subject_names_another_tenant_is_never_executed() {
    let upstream = FakeGateway::start(|_, _| Reply::status(200)).unwrap();
    let mut rig = Rig::new(both_saga());
    let manifest = rig.dir.path().join("effects.json");
    let effects = json!({"effects": [{
        "name": "charge", "provider": "http", "timeout_ms": 500,
        "retry": {"max_attempts": 1},
        "http": {"url": format!("{}/v1/charges", upstream.url())}
    }]});
    std::fs::write(&manifest, effects.to_string()).unwrap();
    rig.settings.mode = Mode::Effect;
    rig.settings.manifests.effects = vec![manifest];
    let pipeline = rig.start();
    let nc = rig.connect();
    let subject = format!("{}.acme.charge", rig.settings.streams.command_prefix);
    let command = |tenant: &str, id: &str| {
        json!({"tenant_id": tenant, "command_id": id, "effect_name": "charge",
               "payload": {}, "metadata": {"correlation_id": "o-1"},
               "issued_at": "2026-11-27T10:00:00Z"})
    };
    rig.publish(&nc, &subject, &command("globex", "cmd-evil"));
    rig.publish(&nc, &subject, &command("acme", "cmd-1"));
    await_stats(&pipeline, |s| {
        s.effect_commands_acked >= 1 && s.quarantined + s.effect_commands_acked >= 2
    });
    assert_eq!(upstream.count(), 1, "only the acme command was called");
    assert_eq!(
        upstream.received()[0].header("x-tenant-id"),
        Some("acme"),
        "and it is acme's"
    );
    let results = rig.result_messages(&nc, 10);
    assert_eq!(results.len(), 1);
    assert!(results[0].subject.contains(".acme."));
    let unattributed = rig.store.quarantined(None, 10).unwrap();
    assert_eq!(unattributed.len(), 1, "one unattributed record");
    assert_eq!(unattributed[0].kind, QuarantineKind::TenantAccess);
    assert_eq!(
        unattributed[0].stream,
        rig.settings.streams.workflow_commands
    );
    assert!(rig
        .store
        .quarantined(Some(&tenant("globex")), 10)
        .unwrap()
        .is_empty());
}

/// A record is filed under a tenant only when subject, header and body agree: a broken
/// acme envelope is acme's to see; a broken one on acme's subject that names globex is
/// neither acme's nor globex's, only the operator's (unattributed). Metadata over
/// `pipeline.max_metadata_bytes` is a decode quarantine of the tenant that sent it.
#[test]
fn quarantine_records_are_filed_under_a_tenant_only_when_the_message_proved_it() {
    let rig = Rig::new(both_saga());
    let pipeline = rig.start();
    let nc = rig.connect();
    let subject = rig.aggregate_subject("acme", "OrderPlaced");
    let mut broken = event("e-acme", "acme", "o-1", "OrderPlaced", json!({}));
    broken.as_object_mut().unwrap().remove("aggregate_id");
    rig.publish(&nc, &subject, &broken);
    broken["event_id"] = json!("e-globex");
    broken["tenant_id"] = json!("globex");
    rig.publish(&nc, &subject, &broken);
    let mut fat = event("e-fat", "acme", "o-fat", "OrderPlaced", json!({}));
    fat["metadata"]["blob"] = json!("m".repeat(64 * 1024));
    rig.publish(&nc, &subject, &fat);
    await_stats(&pipeline, |s| s.quarantined >= 3);

    let acme_records = rig.store.quarantined(Some(&tenant("acme")), 10).unwrap();
    let mut ids: Vec<_> = acme_records
        .iter()
        .map(|r| r.event_id.clone().unwrap_or_default())
        .collect();
    ids.sort();
    assert_eq!(ids, ["e-acme", "e-fat"], "acme sees its own records only");
    let fat_record = acme_records
        .iter()
        .find(|r| r.event_id.as_deref() == Some("e-fat"))
        .unwrap();
    assert_eq!(fat_record.kind, QuarantineKind::Decode);
    assert!(
        fat_record.reason.contains("metadata"),
        "{}",
        fat_record.reason
    );
    assert_eq!(
        rig.store
            .saga(&tenant("acme"), &both(), &corr("o-fat"))
            .unwrap(),
        None
    );
    assert!(
        rig.store
            .quarantined(Some(&tenant("globex")), 10)
            .unwrap()
            .is_empty(),
        "globex's list holds nothing a message merely claimed for it"
    );
    let unattributed = rig.store.quarantined(None, 10).unwrap();
    assert_eq!(unattributed.len(), 1);
    assert_eq!(unattributed[0].event_id.as_deref(), Some("e-globex"));
    assert!(unattributed[0].unattributed);

    // The same through the admin API: per tenant, and the operator's unattributed view.
    let ops = ops_for(&rig, &pipeline, Some(TOKEN));
    let listed = |query: &str| {
        let url = format!("http://{}/admin/quarantine?{query}", ops.addr());
        let (status, body) = call("GET", &url, Some(TOKEN));
        assert_eq!(status, 200, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut ids: Vec<String> = body["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r["record"]["event_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(listed("tenant=acme"), ["e-acme", "e-fat"]);
    assert!(listed("tenant=globex").is_empty());
    assert_eq!(listed("unattributed=true"), ["e-globex"]);
}
