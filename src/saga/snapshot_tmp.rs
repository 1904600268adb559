//! TEMPORARY (helper pass): snapshot of executor outputs, compared before/after.
use serde_json::{json, Value};

use super::*;

fn reminder(order: &str, event_id: &str, name: &str) -> Value {
    json!({
        "event_id": event_id, "tenant_id": "acme", "saga_name": "order_fulfilment",
        "correlation_id": order, "name": name, "due_at": "2026-11-27T10:15:00Z",
        "payload": {"order_id": order},
        "metadata": {"correlation_id": order, "traceparent": TRACEPARENT}
    })
}

#[test]
fn snapshot() {
    let env = env();
    let mut exec = Executor::new("workflow.cmd");
    let mut log = String::new();
    let mut step = |log: &mut String,
                    exec: &mut Executor,
                    v: &Value,
                    info: &MessageInfo,
                    batch: u64,
                    do_commit: bool| {
        let out = run(&env, exec, v, info, batch);
        log.push_str(&format!("{out:#?}\n"));
        for t in &out.transitions {
            log.push_str(&serde_json::to_string(&t.record).unwrap());
            log.push('\n');
            for o in &t.outbox {
                log.push_str(&serde_json::to_string(o).unwrap());
                log.push('\n');
            }
            for s in &t.schedules {
                log.push_str(&serde_json::to_string(s).unwrap());
                log.push('\n');
            }
        }
        if do_commit {
            commit(&env, &out);
        }
    };
    step(
        &mut log,
        &mut exec,
        &placed("o-1", "e-1"),
        &agg_info(1),
        1,
        false,
    );
    step(
        &mut log,
        &mut exec,
        &charge_result("o-1", "r-1", "succeeded"),
        &result_info(1),
        1,
        false,
    );
    step(
        &mut log,
        &mut exec,
        &placed("o-2", "e-2"),
        &agg_info(2),
        2,
        true,
    );
    step(
        &mut log,
        &mut exec,
        &charge_result("o-2", "r-2", "failed"),
        &result_info(2),
        3,
        true,
    );
    step(
        &mut log,
        &mut exec,
        &placed("o-3", "e-3"),
        &agg_info(3),
        4,
        true,
    );
    step(
        &mut log,
        &mut exec,
        &reminder("o-3", "t-3", "payment_timeout"),
        &info("WORKFLOW_EVENTS", "workflow.timer.acme.order_fulfilment", 3),
        5,
        true,
    );
    step(
        &mut log,
        &mut exec,
        &placed("o-3", "e-3"),
        &agg_info(3),
        6,
        true,
    );
    let mut p = placed("o-4", "e-4");
    p["metadata"] =
        json!({"correlation_id": "o-4", "traceparent": "garbage", "x": [1, {"y": null}]});
    step(&mut log, &mut exec, &p, &agg_info(7), 7, true);
    let mut p = placed("o-5", "e-5");
    p["metadata"] = json!({});
    p["payload"] = json!({"total": 1.5e3, "currency": "USD", "customer_id": "c:%x\"\n"});
    step(&mut log, &mut exec, &p, &agg_info(8), 8, true);
    let mut p = placed("o:6%", "e:6%");
    p.as_object_mut().unwrap().remove("metadata");
    step(&mut log, &mut exec, &p, &agg_info(9), 9, true);
    let dir = crate::dev::TempDir::new("snap").unwrap();
    for comp in [true, false] {
        let catalog = faulty_catalog(&dir, comp);
        let i = agg_info(4);
        let ev = decode_event(&catalog, &placed("o-9", "e-9"), &i);
        let out = Executor::new("workflow.cmd")
            .execute(&env.store.reader().unwrap(), &ev, &i, 1)
            .unwrap();
        log.push_str(&format!("{out:#?}\n"));
    }
    let path = "/work/helper-notes/snapshot.txt";
    if std::env::var("SNAP_WRITE").is_ok() {
        std::fs::write(path, &log).unwrap();
    } else {
        let want = std::fs::read_to_string(path).unwrap();
        if want != log {
            std::fs::write("/work/helper-notes/snapshot-now.txt", &log).unwrap();
            panic!("snapshot differs");
        }
    }
}
