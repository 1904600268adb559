//! What a claim write costs the server: the claims of a batch created (all outstanding
//! at once, as `effect-split` sends them) and then completed with a result (as the
//! `effect-commit` thread writes them), each a compare-and-set on the key's revision
//! without a `Nats-Msg-Id`, as the Runner sends them; beside the same writes each
//! carrying one (which the server then keeps for its duplicate window). Rounds of the
//! two alternate (each going first in turn), each on a fresh server; nats-server's CPU
//! per write is the figure (the wall clock shares two cores with this process). The
//! ids' purge, once the two-minute window has passed, is not in it.

use std::time::{Duration, Instant};

use crate::dev::{NatsServer, Sandbox};
use crate::effects::claims::{ClaimWrite, Claims};
use crate::nats_io::Publisher;
use crate::store::{EffectCompletion, RawJson};
use crate::types::{TenantId, WorkId};

/// Claims created, then completed, per batch (the splitter's create window).
const BATCH: usize = 256;
/// Rounds of each variant, alternated.
const ROUNDS: usize = 3;

/// Prints nats-server's CPU per claim write, without and with message ids.
pub(super) fn claim_writes(sandbox: &Sandbox, n: usize) -> Result<(), String> {
    if sandbox.server.is_none() {
        println!("claim writes: skipped (they need servers of their own, not --nats-url's)");
        return Ok(());
    }
    let batches = (n / BATCH).max(1);
    let mut figures = [Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        // Each variant goes first in turn.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for with_id in order {
            figures[usize::from(with_id)].push(one_round(batches, with_id)?);
        }
    }
    println!();
    println!(
        "claim writes ({} creates then as many completions per round, {BATCH} outstanding, a fresh server each round): nats-server CPU per write (writes/s)",
        BATCH * batches
    );
    println!(
        "  compare-and-set, no message id (the Runner's): {}",
        figures[0].join(", ")
    );
    println!(
        "  the same with a Nats-Msg-Id each:               {}",
        figures[1].join(", ")
    );
    Ok(())
}

/// `batches` batches of claim writes on a server of their own (the ids one round leaves
/// in the server's duplicate window, and the garbage collector's scans of them, would
/// burden the next); nats-server's CPU per write and the writes a second.
fn one_round(batches: usize, with_id: bool) -> Result<String, String> {
    let server = NatsServer::start().map_err(|e| e.to_string())?;
    let nc =
        crate::nats_io::connect(&server.url(), "bench-claim-writes").map_err(|e| e.to_string())?;
    // Opened for the bucket and for `Claims::completion`, which builds each write's
    // subject, key, headers and value as the Runner's are.
    let claims = Claims::open(
        &nc,
        "bench_claim_writes",
        Duration::from_secs(60),
        Duration::from_secs(3600),
        1,
    )
    .map_err(|e| e.to_string())?;
    let mut publisher =
        Publisher::new(&nc, BATCH, Duration::from_secs(5), 1).map_err(|e| e.to_string())?;
    let tenant: TenantId = "acme".parse().map_err(|e| format!("{e}"))?;
    let result = RawJson::of(&serde_json::json!({
        "event_id": "0192b1c4-58f7-5a32-9c41-7d2f0e6a1b3c", "result_type": "succeeded",
        "payload": {"charge_id": "ch_1", "amount": 4200}, "metadata": {"correlation_id": "req-1"}
    }))
    .map_err(|e| e.to_string())?;
    let completion = EffectCompletion {
        event_id: "0192b1c4-58f7-5a32-9c41-7d2f0e6a1b3c".into(),
        result,
        recorded_at: crate::timefmt::now_rfc3339(),
    };
    let (cpu, started) = (super::nats_server_cpu(&server), Instant::now());
    let mut next = 0u64;
    for _ in 0..batches {
        let works: Vec<WorkId> = (0..BATCH)
            .map(|_| {
                next += 1;
                WorkId::new(&format!("bench-claim-{next}"))
            })
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{e}"))?;
        write_batch(
            &mut publisher,
            &claims,
            &tenant,
            &works,
            &completion,
            with_id,
        )?;
    }
    let writes = (2 * BATCH * batches) as u32;
    let rate = writes as f64 / started.elapsed().as_secs_f64();
    let cpu =
        super::nats_server_cpu(&server)
            .zip(cpu)
            .map_or("-".to_string(), |(after, before)| {
                let per = after.saturating_sub(before).as_secs_f64() * 1e6 / writes as f64;
                format!("{per:.1} µs")
            });
    Ok(format!("{cpu} ({rate:.0}/s)"))
}

/// Creates the claims of `works`, then writes the result into each.
fn write_batch(
    publisher: &mut Publisher,
    claims: &Claims,
    tenant: &TenantId,
    works: &[WorkId],
    completion: &EffectCompletion,
    with_id: bool,
) -> Result<(), String> {
    let send = |publisher: &mut Publisher, tag: usize, write: ClaimWrite, id: String| {
        let headers = write.headers();
        if with_id {
            publisher.publish(tag as u64, &write.subject, &id, headers, write.value);
        } else {
            publisher.publish_compare_and_set(tag as u64, &write.subject, headers, write.value);
        }
    };
    // A create is the claim's first revision: a running claim's body, as the splitter's.
    for (tag, work) in works.iter().enumerate() {
        let mut write = claims.completion(tenant, work, 0, completion);
        write.value = claims.fresh();
        let id = format!("{}@0@bench-replica", write.key);
        send(publisher, tag, write, id);
    }
    let mut revisions = vec![0; works.len()];
    for c in publisher.finish() {
        let ack = c.result.map_err(|e| format!("claim create: {e}"))?;
        if let Some(slot) = revisions.get_mut(c.tag as usize) {
            *slot = ack.seq;
        }
    }
    for (tag, (work, revision)) in works.iter().zip(revisions).enumerate() {
        let write = claims.completion(tenant, work, revision, completion);
        let id = format!("{}@{revision}", write.key);
        send(publisher, tag, write, id);
    }
    for c in publisher.finish() {
        c.result.map_err(|e| format!("claim completion: {e}"))?;
    }
    Ok(())
}
