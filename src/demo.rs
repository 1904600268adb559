//! `runner demo`: the example order saga end to end against a real NATS JetStream and a
//! real LMDB store, printing what happened at each step.

use std::time::Duration;

use serde_json::{json, Value};

use crate::dev::{publish_all, read_stream, wait_until, FakeGateway, Reply, Sandbox};
use crate::envelope::header;
use crate::keys::OutboxKind;
use crate::stages::Pipeline;
use crate::store::Store;
use crate::types::{CorrelationId, IdError, SagaName, TenantId};

const ORDERS: [(&str, &str, u64); 3] = [
    ("acme", "o-1001", 4200),
    ("acme", "o-1002", 990),
    ("globex", "o-2001", 15000),
];
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const WAIT: Duration = Duration::from_secs(20);

pub fn run(nats_url: Option<&str>) -> Result<(), String> {
    // The demo's own output tells the story; RUNNER_LOG=info shows the stages' logs too.
    crate::logging::init_with_default("warn");
    println!("Runner demo: the example order saga, end to end\n");
    let mut sandbox = Sandbox::new(nats_url)?;
    sandbox.settings.consumer.ack_wait_ms = 5_000;
    sandbox.settings.mode = crate::settings::Mode::Combined;
    match &sandbox.server {
        Some(server) => println!(
            "  nats-server  throwaway, {} ({})",
            sandbox.url,
            server.binary().display()
        ),
        None => println!("  nats-server  {}", sandbox.url),
    }
    println!("  store        {}", sandbox.settings.storage.path.display());
    let gateway =
        FakeGateway::accepting().map_err(|e| format!("cannot start the demo gateway: {e}"))?;
    sandbox.settings.relay.gateway_url = gateway.url().to_string();
    println!("  gateway      stand-in, {} (answers 202)", gateway.url());
    let payments = FakeGateway::start(|req, _| {
        if req.body["order_id"] == DECLINED {
            Reply {
                body: r#"{"error": "card declined"}"#.into(),
                ..Reply::status(402)
            }
        } else {
            Reply {
                body: format!(
                    r#"{{"payment_id": "pay-{}"}}"#,
                    req.body["order_id"].as_str().unwrap_or("?")
                ),
                ..Reply::status(201)
            }
        }
    })
    .map_err(|e| format!("cannot start the demo payment provider: {e}"))?;
    println!(
        "  payments     stand-in, {} (declines {DECLINED} with 402)",
        payments.url()
    );
    sandbox.settings.manifests.effects = vec![write_effects(&sandbox, payments.url())?];
    let catalog = sandbox.load_catalog()?;
    for saga in &catalog.sagas {
        println!(
            "  saga         {} v{} from {}",
            saga.name,
            saga.version,
            saga.source.display()
        );
    }
    println!(
        "  effect       charge_card: http POST {}/v1/charges",
        payments.url()
    );
    let store = sandbox.open_store()?;
    let pipeline = sandbox.start_pipeline(store.clone())?;
    let nc = sandbox.connect()?;

    println!("\n1. Orders are placed (AGGREGATE_EVENTS):");
    // Unique per run, so a rerun against the same server is not deduplicated away.
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let placed: Vec<(String, Value)> = ORDERS
        .iter()
        .map(|(t, o, total)| order_placed(&run_id, t, o, *total))
        .collect();
    for (subject, _) in &placed {
        println!("     {subject}");
    }
    publish_all(&nc, &placed)?;
    // Three OrderPlaced and three charge results reach the sagas; the relay sends three
    // charges and three aggregate commands.
    wait_for(&pipeline, 6)?;
    wait_relayed(&pipeline, 6)?;

    println!("\n2. Each saga asked for a charge_card effect. The relay published the commands to");
    println!("   WORKFLOW_COMMANDS, deleting each from the outbox once JetStream acked it:");
    let streams = &sandbox.settings.streams;
    let commands = read_stream(
        &nc,
        &streams.workflow_commands,
        &format!("{}.>", streams.command_prefix),
        3,
        WAIT,
    )?;
    for msg in &commands {
        println!(
            "     {:<32} Nats-Msg-Id {}  x-tenant-id {}",
            msg.subject,
            crate::nats_io::header(msg, header::MSG_ID).unwrap_or("?"),
            crate::nats_io::header(msg, header::TENANT).unwrap_or("?"),
        );
    }
    println!("   The effect pool called the payment provider once per command:");
    for call in payments.received() {
        println!(
            "     POST {}  order {}  amount {}  idempotency-key {}",
            call.path,
            call.body["order_id"].as_str().unwrap_or("?"),
            call.body["amount"],
            call.header("idempotency-key").unwrap_or("?"),
        );
    }
    println!("   and published each result to WORKFLOW_EVENTS:");
    for msg in read_stream(
        &nc,
        &streams.workflow_events,
        &format!("{}.>", streams.result_prefix),
        3,
        WAIT,
    )? {
        let r: Value = serde_json::from_slice(&msg.data).map_err(|e| e.to_string())?;
        println!(
            "     {:<34} {} {}",
            msg.subject,
            r["result_type"].as_str().unwrap_or("?"),
            r["error"]["kind"].as_str().unwrap_or("")
        );
    }
    println!(
        "   The sagas reacted with aggregate commands, which the relay POSTed to the Gateway:"
    );
    for cmd in gateway.received() {
        println!(
            "     POST {}  {} {}  idempotency-key {}  x-tenant-id {}",
            cmd.path,
            cmd.body["command_type"].as_str().unwrap_or("?"),
            cmd.body["aggregate_id"].as_str().unwrap_or("?"),
            cmd.header("idempotency-key").unwrap_or("?"),
            cmd.header(header::TENANT).unwrap_or("?"),
        );
    }

    println!("\n3. An OrderPlaced is delivered again (same event_id): dedupe makes it a no-op.");
    // Published without a Nats-Msg-Id, so JetStream stores it again and the saga's own
    // dedupe (tenant, saga, event_id) has to act.
    let (subject, again) = &placed[0];
    let body = serde_json::to_vec(again).map_err(|e| e.to_string())?;
    nc.publish(subject, body).map_err(|e| e.to_string())?;
    wait_for(&pipeline, 7)?;
    println!("     duplicates so far: {}", pipeline.stats().duplicates);

    println!("\n4. A poison message (not JSON) is quarantined and terminated, never retried:");
    let mut headers = nats::header::HeaderMap::new();
    headers.insert(crate::envelope::header::TENANT, "acme");
    nc.publish_with_reply_or_headers(
        "aggregate.acme.order.OrderPlaced",
        None,
        Some(&headers),
        b"{ this is not json",
    )
    .map_err(|e| e.to_string())?;
    wait_for(&pipeline, 8)?;
    for q in store
        .quarantined(Some(&id::<TenantId>("acme")?), 10)
        .map_err(|e| e.to_string())?
    {
        println!("     {}#{} {:?}: {}", q.stream, q.seq, q.kind, q.reason);
    }

    println!("\n5. Saga instances now:");
    report_instances(&store)?;
    report_outbox(&store)?;
    let s = pipeline.stats();
    println!(
        "\nSagas: fetched {}, transitions {}, acked {}, quarantined {}, duplicates {}, ignored {}, commits {}",
        s.fetched, s.transitions, s.acked, s.quarantined, s.duplicates, s.ignored, s.commits
    );
    println!(
        "Every message was acked only after the LMDB transaction holding its effect committed."
    );
    println!(
        "Relay: {} outbox items confirmed by their destination, then deleted; {} retries, {} dead letters.",
        s.relayed, s.relay_retries, s.dead_letters
    );
    println!(
        "Effects: {} called, {} results published, {} failed; each command acked after its result was recorded and published.",
        s.effects_called, s.effect_results_published, s.effects_failed
    );
    pipeline.shutdown();
    Ok(())
}

/// The order the stand-in payment provider declines.
const DECLINED: &str = "o-1002";

/// The demo's effect manifest: `charge_card` over HTTP to the stand-in payment provider.
fn write_effects(sandbox: &Sandbox, payments_url: &str) -> Result<std::path::PathBuf, String> {
    let path = sandbox.dir.path().join("effects.json");
    let manifest = json!({"effects": [{
        "name": "charge_card", "provider": "http", "timeout_ms": 2000,
        "retry": {"max_attempts": 3, "backoff_initial_ms": 100, "backoff_max_ms": 1000},
        "http": {"url": format!("{payments_url}/v1/charges")}
    }]});
    std::fs::write(&path, manifest.to_string())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

fn wait_for(pipeline: &Pipeline, finished: u64) -> Result<(), String> {
    if wait_until(WAIT, || pipeline.stats().finished() >= finished) {
        Ok(())
    } else {
        Err(format!(
            "timed out waiting for {finished} messages to finish; stats: {:?}; intake stopped: {:?}",
            pipeline.stats(),
            pipeline.intake().stop_reason()
        ))
    }
}

fn order_placed(run_id: &str, tenant: &str, order: &str, total: u64) -> (String, Value) {
    (
        format!("aggregate.{tenant}.order.OrderPlaced"),
        json!({
            "event_id": format!("evt-{order}-placed-{run_id}"),
            "tenant_id": tenant, "aggregate_type": "order", "aggregate_id": order,
            // Now: the saga's 15-minute payment timeout then lies in the future.
            "event_type": "OrderPlaced", "version": 1, "occurred_at": crate::timefmt::now_rfc3339(),
            "payload": {"total": total, "currency": "EUR", "customer_id": format!("cust-{order}")},
            "metadata": {"correlation_id": format!("req-{order}"), "traceparent": TRACEPARENT}
        }),
    )
}

fn wait_relayed(pipeline: &Pipeline, relayed: u64) -> Result<(), String> {
    if wait_until(WAIT, || pipeline.stats().relayed >= relayed) {
        Ok(())
    } else {
        Err(format!(
            "timed out waiting for {relayed} outbox items to be relayed; stats: {:?}",
            pipeline.stats()
        ))
    }
}

/// Parses an id, with the reason as text.
fn id<T: std::str::FromStr<Err = IdError>>(raw: &str) -> Result<T, String> {
    raw.parse().map_err(|e: IdError| e.to_string())
}

fn tenants() -> Vec<TenantId> {
    ["acme", "globex"]
        .iter()
        .filter_map(|t| t.parse().ok())
        .collect()
}

fn report_outbox(store: &Store) -> Result<(), String> {
    let mut left = 0;
    for tenant in tenants() {
        for (key, item) in store.outbox(&tenant, 100).map_err(|e| e.to_string())? {
            left += 1;
            let what = match item.kind {
                OutboxKind::Effect => format!("effect {}", item.envelope.to_value()["effect_name"]),
                OutboxKind::Aggregate => {
                    format!("command {}", item.envelope.to_value()["command_type"])
                }
            };
            println!("     still in the outbox: {key:<64} {what}");
        }
    }
    if left == 0 {
        println!("   Outbox: empty (every item was confirmed by its destination, then deleted)");
    }
    Ok(())
}

fn report_instances(store: &Store) -> Result<(), String> {
    let saga: SagaName = id("order_fulfilment")?;
    println!(
        "     {:<8} {:<8} {:<10} {:<16} {:>11} {:>7}",
        "tenant", "order", "status", "step", "transitions", "timers"
    );
    for tenant in tenants() {
        for (_, rec) in store
            .instances(&tenant, &saga, 100)
            .map_err(|e| e.to_string())?
        {
            let order = rec.state["order_id"].as_str().unwrap_or("?").to_string();
            let corr: CorrelationId = id(&order)?;
            let timers = store
                .instance_schedules(&tenant, &saga, &corr)
                .map_err(|e| e.to_string())?
                .len();
            println!(
                "     {:<8} {:<8} {:<10} {:<16} {:>11} {:>7}",
                tenant.as_str(),
                order,
                format!("{:?}", rec.status).to_lowercase(),
                rec.state["step"].as_str().unwrap_or("?"),
                rec.transitions,
                timers
            );
        }
    }
    Ok(())
}
