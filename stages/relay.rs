//! Relay: sends committed outbox items to their destinations and deletes each only after
//! its destination confirmed it (invariant 2). Effect commands are published to
//! `WORKFLOW_COMMANDS` with pipelined acks; aggregate commands are POSTed to the Gateway
//! by a small pool of HTTP worker threads (`stages/gateway.rs`). The thread learns of
//! new items from the commit stage's notices and finds the rest (left by a crash, or
//! announced while it was full) by scanning the outbox keyspace page by page, at
//! start-up and periodically. Confirmed items are deleted in batches by the
//! `store-writer` thread (`stages/store_writer.rs`), so that the relay keeps sending
//! while a delete's fsync runs; an item leaves memory once its delete committed.
//!
//! A drain (shutdown) does not end the relay at once: it keeps taking notices while the
//! last commits finish, and ends when the outbox is empty after the commit stage ended,
//! or when its share of `ops.drain_deadline_ms` is spent ([`Drain`]), counting what it
//! left for the log and `/ready`.
//!
//! ```text
//! commit ─notices─▶ relay ─▶ publisher ─▶ WORKFLOW_COMMANDS ─acks─▶ relay ─▶ store-writer
//!    store ─scan──▶   │ ──jobs─▶ gateway workers ─HTTP─▶ Gateway ─outcomes─▶ relay
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};
use nats::header::HeaderMap;

use crate::keys::{self, OutboxKind};
use crate::nats_io::{Completion, PublishError, Publisher};
use crate::pipeline::{Shared, Stats};
use crate::relay::backoff::{self, Jitter};
use crate::relay::deleter::{Deleted, Deleter};
use crate::relay::gateway::GatewayOutcome;
use crate::relay::tracker::{Admit, Limits, Tracker};
use crate::relay::verdict::{self, GiveUp};
use crate::relay::{Notice, NoticeInbox};
use crate::settings::RelaySettings;
use crate::stages::gateway::{Job, Lanes};
use crate::stages::StageError;
use crate::store::{OutboxItem, Store};
use crate::timefmt::now_rfc3339;

/// Longest single wait, so shutdown and lost notices are noticed promptly.
const TICK: Duration = Duration::from_millis(100);
/// Pause of an item whose publish failed because NATS itself was unavailable.
const OUTAGE_PAUSE: Duration = Duration::from_secs(1);
/// After a scan that had to leave items in the store, the next one starts this soon.
const RESCAN_AFTER_OVERFLOW: Duration = Duration::from_millis(50);
/// Confirmed items are deleted in one transaction once this many wait…
const DELETE_BATCH: usize = 512;
/// …or the oldest has waited this long (a delete is an fsync; one per item would cap
/// the relay at the disk's sync rate).
const DELETE_DELAY: Duration = Duration::from_millis(5);
/// Most keys in one delete transaction: while one commits, more gather, and a slow
/// fsync must not make the next transaction ever larger.
const DELETE_BATCH_MAX: usize = 4 * DELETE_BATCH;
/// The most a drain keeps for the answers to what is in flight when it stops sending,
/// and the most it waits for one delete batch at its end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The least a drain waits for a delete batch, even past its deadline.
const MIN_DELETE_WAIT: Duration = Duration::from_millis(100);

/// A drain's clock, set when the relay sees it begin. The relay sends until
/// `send_until`, waits for what is in flight until `stop_at`, and leaves the rest of
/// `ops.drain_deadline_ms` for its last deletes and the other stages' ends.
struct Drain {
    began: Instant,
    send_until: Instant,
    stop_at: Instant,
    /// When the process exits whatever runs (the supervisor's deadline).
    deadline: Instant,
    /// `relayed` when the drain began, to report what it sent.
    relayed_before: u64,
}

impl Drain {
    fn begin(shared: &Shared) -> Drain {
        let began = shared.intake.shutdown_at().unwrap_or_else(Instant::now);
        let budget = Duration::from_millis(shared.settings.ops.drain_deadline_ms);
        let margin = (budget / 10).min(Duration::from_secs(1));
        let stop_at = began + budget - margin;
        let answers = SHUTDOWN_GRACE.min((budget - margin) / 5);
        log::info!(outbox_depth = shared.stats.snapshot().outbox_depth, drain_deadline_ms = budget.as_millis() as u64;
            "drain: the relay sends what the outbox holds");
        Drain {
            began,
            send_until: stop_at - answers,
            stop_at,
            deadline: began + budget,
            relayed_before: shared.stats.snapshot().relayed,
        }
    }

    /// Whether new dispatches may still start.
    fn may_send(&self) -> bool {
        Instant::now() < self.send_until
    }
}

/// What a publish or Gateway call was for.
#[derive(Debug)]
enum Purpose {
    /// Sending the item to its destination.
    Send,
    /// Publishing the result event of an item given up on.
    Verdict,
}

/// Runs until a drain ends it. `deleter` hands its deletes to the `store-writer`
/// thread; `gateway` links it to its `gateway-N` workers, which end once this returns
/// and drops them.
pub fn run(
    shared: &Shared,
    nc: &nats::Connection,
    inbox: NoticeInbox,
    deleter: Deleter,
    gateway: Lanes,
) -> Result<(), StageError> {
    let cfg = shared.settings.relay.clone();
    let publisher = match Publisher::new(
        nc,
        cfg.publish_window,
        Duration::from_millis(cfg.publish_timeout_ms),
        3,
    ) {
        Ok(p) => p.with_max_payload(shared.max_payload),
        Err(e) => {
            log::error!(error = e.to_string(); "relay cannot subscribe to its ack inbox; relay stage ends");
            return Err(StageError::AckInbox(e));
        }
    };
    let Lanes { jobs, results } = gateway;
    let mut relay = Relay {
        shared,
        store: shared.store.clone(),
        tracker: Tracker::new(Limits {
            per_tenant_in_flight: cfg.max_in_flight_per_tenant,
            per_tenant_held: cfg.queue_per_tenant,
            tenants: cfg.max_tenants,
            held_bytes: cfg.max_held_bytes,
        }),
        publisher,
        deleter,
        jobs,
        gateway_in_flight: 0,
        purposes: HashMap::new(),
        announced: HashMap::new(),
        next_tag: 0,
        to_delete: Vec::new(),
        delete_due: None,
        delete_paused_until: None,
        scan_from: Some(String::new()),
        next_scan: Instant::now(),
        rescan_soon: false,
        scan_when_below: None,
        jitter: Jitter::seeded(),
        cfg,
    };
    log::info!("relay stage started");
    relay.run(&inbox, &results)
}

struct Relay<'a> {
    shared: &'a Shared,
    store: Arc<Store>,
    cfg: RelaySettings,
    tracker: Tracker,
    publisher: Publisher,
    deleter: Deleter,
    jobs: Sender<Job>,
    gateway_in_flight: usize,
    purposes: HashMap<u64, (String, Purpose)>,
    /// When the commit of an announced item committed, until its destination confirms
    /// it (the relay latency figure: commit to publish ack or Gateway answer).
    announced: HashMap<String, Instant>,
    next_tag: u64,
    /// Confirmed items not yet handed to the deleter, and when they are due.
    to_delete: Vec<String>,
    delete_due: Option<Instant>,
    /// After a failed delete: no new attempt before this.
    delete_paused_until: Option<Instant>,
    /// Where the scan in progress continues; `None` between scans.
    scan_from: Option<String>,
    next_scan: Instant,
    /// Items were turned away since the current pass began: start the next one soon.
    rescan_soon: bool,
    /// After a pass that left items in the store: start the next one as soon as the
    /// relay holds no more than this many.
    scan_when_below: Option<usize>,
    jitter: Jitter,
}

enum Event {
    Notice(Notice),
    Ack(nats::Message),
    Gateway(u64, GatewayOutcome),
    Deleted(Result<Deleted, crossbeam_channel::RecvError>),
    Idle,
}

impl Relay<'_> {
    fn run(
        &mut self,
        inbox: &NoticeInbox,
        results: &Receiver<(u64, GatewayOutcome)>,
    ) -> Result<(), StageError> {
        let mut drain: Option<Drain> = None;
        loop {
            if drain.is_none() && self.shared.intake.is_shutting_down() {
                drain = Some(Drain::begin(self.shared));
            }
            if let Some(d) = &drain {
                if self.drained(d) {
                    return self.stop(d);
                }
            }
            let sending = drain.as_ref().is_none_or(Drain::may_send);
            if sending {
                if inbox.take_missed() || self.tracker.take_overflow() {
                    // Items were left in the store: the next pass comes soon, also
                    // when one is under way (it may be past their keys).
                    self.rescan_soon = true;
                    if self.scan_from.is_none() {
                        self.next_scan = self.next_scan.min(Instant::now() + RESCAN_AFTER_OVERFLOW);
                    }
                }
                self.scan_step();
                self.tracker.wake(Instant::now());
                self.dispatch();
            } else {
                // Past the last moment to send: only answers to what is in flight count.
                self.scan_from = None;
                self.tracker.wake(Instant::now());
            }
            self.publisher.tick();
            let event = self.wait(inbox, results, sending);
            self.handle(event);
            // Whatever else is ready, without waiting.
            while let Ok(msg) = self.publisher.acks().try_recv() {
                self.publisher.on_message(msg);
            }
            while let Ok((tag, outcome)) = results.try_recv() {
                self.on_gateway(tag, outcome);
            }
            if let Ok(deleted) = self.deleter.outcomes().try_recv() {
                self.on_deleted(Ok(deleted));
            }
            // Also while draining: the commits that finish then announce items too.
            while let Ok(notice) = inbox.rx.try_recv() {
                self.on_notice(notice);
            }
            for completion in self.publisher.take_completions() {
                self.on_publish(completion);
            }
            Stats::set(&self.shared.stats.relay_held, self.tracker.len() as u64);
            Stats::set(
                &self.shared.stats.relay_held_bytes,
                self.tracker.bytes() as u64,
            );
            let due = self.delete_due.is_some_and(|at| at <= Instant::now());
            if self.to_delete.len() >= DELETE_BATCH || due || drain.is_some() {
                self.flush_deletes();
            }
        }
    }

    /// Whether a draining relay is done: the outbox is empty (every commit ended and
    /// every item sent, confirmed and deleted), or its time is up, or nothing it holds
    /// can still be confirmed in time.
    fn drained(&mut self, d: &Drain) -> bool {
        let now = Instant::now();
        if now >= d.stop_at || (!d.may_send() && self.tracker.in_flight() == 0) {
            return true;
        }
        if !self.shared.intake.commits_ended() || !self.tracker.is_empty() {
            return false;
        }
        // Nothing held: is anything left in the store (left by a full tenant queue, a
        // lost notice, an earlier run)? One key is enough to know.
        match self.store.outbox_page("", 1, |_| false) {
            Ok(page) if page.items.is_empty() => true,
            Ok(_) => {
                if self.scan_from.is_none() {
                    self.next_scan = self.next_scan.min(now + RESCAN_AFTER_OVERFLOW);
                }
                false
            }
            Err(e) => {
                log::warn!(error = e.to_string(); "draining relay cannot read the outbox; retrying");
                false
            }
        }
    }

    /// The drain's end: deletes what was confirmed, counts what the outbox still holds
    /// (for the log and `/ready`) and ends the stage. Items left are sent after the
    /// next start; one in flight now may then arrive twice (idempotently). An outbox
    /// that cannot be counted is the stage's failure (it leaves `outbox_left` unknown).
    fn stop(&mut self, d: &Drain) -> Result<(), StageError> {
        self.finish_deletes(d.deadline.saturating_duration_since(Instant::now()));
        if !self.to_delete.is_empty() {
            log::warn!(items = self.to_delete.len() as u64; "relay stops with confirmed items not deleted; they are sent again (idempotently) after restart");
        }
        let sent = self
            .shared
            .stats
            .snapshot()
            .relayed
            .saturating_sub(d.relayed_before);
        let took_ms = d.began.elapsed().as_millis() as u64;
        let left = match self.store.outbox_len() {
            Ok(left) => left,
            Err(e) => {
                log::error!(error = e.to_string(), held = self.tracker.len() as u64;
                    "relay stage stopped; cannot count the outbox items left in the store");
                return Err(StageError::Store(e));
            }
        };
        self.shared.intake.set_outbox_left(left);
        Stats::set(&self.shared.stats.outbox_depth, left);
        if left == 0 {
            log::info!(outbox_left = left, sent = sent, took_ms = took_ms;
                "relay stage stopped: the drain sent everything the outbox held");
        } else {
            log::warn!(outbox_left = left, in_flight = self.tracker.in_flight() as u64, sent = sent,
                took_ms = took_ms, drain_deadline_ms = self.shared.settings.ops.drain_deadline_ms;
                "relay stage stopped with outbox items left in the store (drain deadline); they are sent after the next start");
        }
        Ok(())
    }

    /// The next event, or `Idle` when the next thing to do is due. `sending`: false
    /// once a drain stopped sending (scans are then not due).
    fn wait(
        &self,
        inbox: &NoticeInbox,
        results: &Receiver<(u64, GatewayOutcome)>,
        sending: bool,
    ) -> Event {
        let now = Instant::now();
        let mut until = now + TICK;
        for t in [self.tracker.next_wake(), self.publisher.next_deadline()]
            .into_iter()
            .flatten()
        {
            until = until.min(t);
        }
        // While a batch is being deleted, its outcome is what wakes the next hand-over.
        if let Some(due) = self.delete_due.filter(|_| !self.deleter.is_busy()) {
            until = until.min(due);
        }
        if sending {
            until = if self.scan_from.is_some() {
                now
            } else {
                until.min(self.next_scan)
            };
        }
        let timeout = until.saturating_duration_since(now);
        select! {
            recv(inbox.rx) -> items => items.map_or(Event::Idle, Event::Notice),
            recv(self.publisher.acks()) -> msg => msg.map_or(Event::Idle, Event::Ack),
            recv(results) -> r => r.map_or(Event::Idle, |(tag, o)| Event::Gateway(tag, o)),
            recv(self.deleter.outcomes()) -> d => Event::Deleted(d),
            default(timeout) => Event::Idle,
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Notice(items) => self.on_notice(items),
            Event::Ack(msg) => self.publisher.on_message(msg),
            Event::Gateway(tag, outcome) => self.on_gateway(tag, outcome),
            Event::Deleted(deleted) => self.on_deleted(deleted),
            Event::Idle => {}
        }
    }

    /// Items the commit stage just wrote. One may have been sent and deleted already (a
    /// scan found it first), so only those still in the store are taken.
    fn on_notice(&mut self, notice: Notice) {
        let Notice {
            committed_at,
            items,
        } = notice;
        let keys: Vec<String> = items
            .iter()
            .map(|i| keys::outbox(&i.tenant, i.kind, &i.work_id))
            .collect();
        let existing = match self.store.existing(&keys) {
            Ok(e) => e,
            Err(e) => {
                log::warn!(error = e.to_string(); "relay cannot read the outbox; a scan will pick the items up");
                self.next_scan = Instant::now() + OUTAGE_PAUSE;
                return;
            }
        };
        for ((key, item), exists) in keys.into_iter().zip(items).zip(existing) {
            if exists && self.tracker.admit(key.clone(), item) == Admit::Added {
                self.announced.insert(key, committed_at);
            }
        }
    }

    /// One page of the scan in progress, if any.
    fn scan_step(&mut self) {
        let drained = self
            .scan_when_below
            .is_some_and(|n| self.tracker.len() <= n);
        if self.scan_from.is_none() && (Instant::now() >= self.next_scan || drained) {
            self.scan_when_below = None;
            self.scan_from = Some(String::new());
            self.rescan_soon = false;
            Stats::add(&self.shared.stats.relay_scans, 1);
        }
        let Some(from) = self.scan_from.take() else {
            return;
        };
        let tracker = &self.tracker;
        let page = match self
            .store
            .outbox_page(&from, self.cfg.scan_batch, |key| tracker.contains(key))
        {
            Ok(page) => page,
            Err(e) => {
                log::warn!(error = e.to_string(); "relay cannot scan the outbox; retrying later");
                self.next_scan = Instant::now() + OUTAGE_PAUSE;
                return;
            }
        };
        let mut next = page.next;
        for (key, item) in page.items {
            if self.tracker.bytes_full() {
                // The byte budget is spent: nothing more is taken this pass (admitting
                // records that items were left); the next pass comes once sends freed
                // some.
                self.tracker.admit(key, item);
                next = None;
                break;
            }
            if !self.tracker.has_room_for(&item.tenant) {
                // This tenant is full: skip the rest of its items (admitting this one
                // records that items were left behind). ';' sorts right after ':', so
                // this is the first key past the tenant's prefix.
                let prefix = keys::outbox_prefix(&item.tenant);
                self.tracker.admit(key, item);
                next = Some(format!("{};", &prefix[..prefix.len() - 1]));
                break;
            }
            self.tracker.admit(key, item);
        }
        match next {
            Some(from) => self.scan_from = Some(from),
            None => {
                let overflowed = self.tracker.take_overflow() || self.rescan_soon;
                let pause = if overflowed {
                    // Items wait in the store: scan again once half of what is held
                    // went out, or after a short pause at the latest.
                    self.scan_when_below = Some(self.tracker.len() / 2);
                    RESCAN_AFTER_OVERFLOW
                } else {
                    Duration::from_millis(self.cfg.scan_interval_ms)
                };
                self.next_scan = Instant::now() + pause;
            }
        }
    }

    /// Sends ready items while their lanes have room.
    fn dispatch(&mut self) {
        let workers = self.cfg.gateway_workers;
        // One tenant never holds every Gateway worker: another tenant's command gets the
        // spare one at once, even while the first tenant's calls hang until their timeout.
        // A lone tenant still uses all but one.
        let per_tenant_gateway = workers.saturating_sub(1).max(1);
        loop {
            let effect_room = self.publisher.has_room();
            let gateway_free = workers - self.gateway_in_flight;
            if !effect_room && gateway_free == 0 {
                // Neither lane takes anything: no pass over the tenants' queues (this
                // runs once per batch of acks, so a full window would cost a pass each).
                return;
            }
            let next = self.tracker.next(|kind, mine| match kind {
                OutboxKind::Effect => effect_room,
                OutboxKind::Aggregate => gateway_free > 0 && mine < per_tenant_gateway,
            });
            let Some((key, entry)) = next else {
                return;
            };
            let tag = self.next_tag;
            self.next_tag += 1;
            if let Some(record) = &entry.verdict {
                let now = now_rfc3339();
                let prefix = &self.shared.settings.streams.result_prefix;
                let (subject, event) = verdict::result_event(record, prefix, &now);
                let body = serde_json::to_vec(&event).unwrap_or_default();
                let headers = headers_of(&entry.item);
                self.purposes.insert(tag, (key, Purpose::Verdict));
                self.publisher
                    .publish(tag, &subject, &event.event_id, headers, body);
                continue;
            }
            self.purposes.insert(tag, (key, Purpose::Send));
            crate::crash::point(crate::crash::BEFORE_SEND);
            match entry.item.kind {
                OutboxKind::Effect => {
                    let item = &entry.item;
                    // Scoped by tenant and saga: a saga may name its command's id, and
                    // another tenant may name the same one (saga::command_message_id).
                    let msg_id = crate::saga::command_message_id(
                        &item.tenant,
                        &item.saga,
                        item.work_id.as_str(),
                    );
                    self.publisher.publish(
                        tag,
                        &item.destination,
                        &msg_id,
                        headers_of(item),
                        item.envelope.as_bytes().to_vec(),
                    );
                }
                OutboxKind::Aggregate => {
                    let item = entry.item.clone();
                    self.gateway_in_flight += 1;
                    // Never blocks: the channel holds one job per worker and at most
                    // that many are in flight.
                    if self.jobs.send(Job { tag, item }).is_err() {
                        self.gateway_in_flight -= 1;
                        self.on_gateway(
                            tag,
                            GatewayOutcome::Retry {
                                reason: "gateway workers are gone".into(),
                                after: Some(OUTAGE_PAUSE),
                            },
                        );
                    }
                }
            }
        }
    }

    fn on_publish(&mut self, c: Completion) {
        let Some((key, purpose)) = self.purposes.remove(&c.tag) else {
            return;
        };
        match (c.result, purpose) {
            (Ok(_), Purpose::Send) => self.confirmed(key),
            (Ok(_), Purpose::Verdict) => self.file_dead_letter(&key),
            // The server would never take it: no attempt is spent, none is made again.
            (Err(e @ PublishError::TooLarge { .. }), Purpose::Send) => {
                Stats::add(&self.shared.stats.relay_too_large, 1);
                let detail = e.to_string();
                self.give_up(&key, GiveUp::TooLarge { detail });
            }
            // Its result cannot be told either (its metadata is cut to a few ids, so this
            // is all but impossible): the dead letter is filed without it.
            (Err(e @ PublishError::TooLarge { .. }), Purpose::Verdict) => {
                let (tenant, correlation, trace) = self.ids(&key);
                log::error!(outbox_key = key.as_str(), tenant_id = tenant, correlation_id = correlation, trace_id = trace,
                    error = e.to_string(); "the result event of a dead letter is too large to publish; filing the dead letter without it");
                self.file_dead_letter(&key);
            }
            // NATS itself is unavailable: not the item's fault, so no attempt is used.
            (Err(e @ (PublishError::Timeout { .. } | PublishError::Io(_))), _) => {
                let (tenant, correlation, trace) = self.ids(&key);
                log::warn!(outbox_key = key.as_str(), tenant_id = tenant, correlation_id = correlation, trace_id = trace,
                    error = e.to_string(); "publish failed; NATS unavailable, retrying");
                self.tracker
                    .retry_at(&key, Instant::now() + OUTAGE_PAUSE, false);
            }
            (Err(e), _) => self.failed(&key, e.to_string(), None),
        }
    }

    fn on_gateway(&mut self, tag: u64, outcome: GatewayOutcome) {
        self.gateway_in_flight = self.gateway_in_flight.saturating_sub(1);
        let Some((key, _)) = self.purposes.remove(&tag) else {
            return;
        };
        match outcome {
            GatewayOutcome::Accepted { .. } => self.confirmed(key),
            GatewayOutcome::Retry { reason, after } => self.failed(&key, reason, after),
            GatewayOutcome::Rejected { status, body } => {
                self.give_up(&key, GiveUp::Rejected { status, body });
            }
        }
    }

    /// The destination has the item: it is deleted with the next batch of deletes.
    fn confirmed(&mut self, key: String) {
        // (Checked first: hashing the key costs more than the rest when nothing was
        // announced, as in a drain after a restart.)
        if let Some(at) = (!self.announced.is_empty())
            .then(|| self.announced.remove(&key))
            .flatten()
        {
            self.shared.relay_latency.record(at.elapsed());
        }
        self.tracker.confirm(&key);
        self.delete_due
            .get_or_insert_with(|| Instant::now() + DELETE_DELAY);
        self.to_delete.push(key);
    }

    /// A counted failure: retry after a backoff (at least what the destination asked
    /// for), or give up once the retry budget is spent.
    fn failed(&mut self, key: &str, reason: String, after: Option<Duration>) {
        let Some(entry) = self.tracker.get(key) else {
            return;
        };
        let attempts = entry.attempts;
        let policy = backoff::RetryPolicy {
            initial: Duration::from_millis(self.cfg.backoff_initial_ms),
            max: Duration::from_millis(self.cfg.backoff_max_ms),
            budget: Duration::from_secs(self.cfg.retry_budget_secs),
        };
        let since_first = entry.first_attempt.map_or(Duration::ZERO, |t| t.elapsed());
        let random = self.jitter.draw();
        let step = match entry.verdict {
            // A verdict's result event is published however long it takes.
            Some(_) => backoff::AfterFailure::RetryIn(backoff::delay(
                attempts,
                policy.initial,
                policy.max,
                random,
            )),
            None => policy.after_failure(attempts, since_first, after, random),
        };
        let delay = match step {
            backoff::AfterFailure::RetryIn(delay) => delay,
            backoff::AfterFailure::BudgetSpent => {
                let why = GiveUp::BudgetSpent {
                    last_error: reason,
                    budget: policy.budget,
                };
                self.give_up(key, why);
                return;
            }
        };
        let (tenant, correlation, trace) = ids_of(&entry.item);
        log::warn!(outbox_key = key, tenant_id = tenant, correlation_id = correlation, trace_id = trace,
            attempts = attempts, retry_in_ms = delay.as_millis() as u64, reason = reason.as_str();
            "dispatch failed; will retry");
        Stats::add(&self.shared.stats.relay_retries, 1);
        self.tracker.retry_at(key, Instant::now() + delay, true);
    }

    /// Publishes the item's result event next; the dead letter is filed once it is acked.
    fn give_up(&mut self, key: &str, why: GiveUp) {
        let Some(entry) = self.tracker.get(key) else {
            return;
        };
        let record = verdict::dead_letter(&entry.item, &why, entry.attempts, &now_rfc3339());
        let (tenant, correlation, trace) = ids_of(&entry.item);
        log::warn!(outbox_key = key, tenant_id = tenant, correlation_id = correlation, trace_id = trace,
            reason = record.reason.as_str(); "giving up on an outbox item: dead letter and result event");
        self.tracker.condemn(key, record);
        self.tracker.retry_at(key, Instant::now(), true);
    }

    fn file_dead_letter(&mut self, key: &str) {
        let Some(record) = self.tracker.get(key).and_then(|e| e.verdict.clone()) else {
            return;
        };
        match self.store.dead_letter(key, &record) {
            Ok(()) => {
                Stats::add(&self.shared.stats.dead_letters, 1);
                self.shared.labelled.dead_letter(&record.item);
                Stats::sub(&self.shared.stats.outbox_depth, 1);
                self.announced.remove(key);
                self.tracker.done(key);
            }
            Err(e) => {
                let (tenant, correlation, trace) = self.ids(key);
                log::error!(outbox_key = key, tenant_id = tenant, correlation_id = correlation, trace_id = trace,
                    error = e.to_string(); "cannot file a dead letter; retrying");
                self.tracker
                    .retry_at(key, Instant::now() + OUTAGE_PAUSE, false);
            }
        }
    }

    /// [`ids_of`] the held item under `key` (empty ids when it is not held).
    fn ids(&self, key: &str) -> (&str, &str, &str) {
        self.tracker
            .get(key)
            .map_or(("", "", ""), |entry| ids_of(&entry.item))
    }

    /// Hands confirmed items to the deleter as one batch (one transaction), unless a
    /// batch is still being deleted or a failed one's pause has not passed: they then
    /// wait for a later call.
    fn flush_deletes(&mut self) {
        let paused = self.delete_paused_until.is_some_and(|t| Instant::now() < t);
        if self.to_delete.is_empty() || self.deleter.is_busy() || paused {
            return;
        }
        crate::crash::point(crate::crash::AFTER_CONFIRM);
        log::debug!(items = self.to_delete.len() as u64, held = self.tracker.len() as u64, in_flight = self.tracker.in_flight() as u64; "deleting confirmed items");
        // In key order, LMDB walks its pages once instead of jumping between tenants.
        self.to_delete.sort_unstable();
        let rest = self
            .to_delete
            .split_off(self.to_delete.len().min(DELETE_BATCH_MAX));
        let batch = std::mem::replace(&mut self.to_delete, rest);
        self.delete_due = (!self.to_delete.is_empty()).then(Instant::now);
        if let Err(batch) = self.deleter.submit(batch) {
            // Not reached (a batch is refused only while one is in flight, checked
            // above): the keys wait for the next batch.
            self.to_delete.extend(batch);
        }
    }

    /// A batch's transaction ended: its items leave memory, or wait for a later batch.
    fn on_deleted(&mut self, arrived: Result<Deleted, crossbeam_channel::RecvError>) {
        let Some(deleted) = self.deleter.taken(arrived) else {
            return;
        };
        match deleted.result {
            Ok(n) => {
                self.delete_paused_until = None;
                Stats::sub(&self.shared.stats.outbox_depth, n as u64);
                for key in &deleted.keys {
                    self.tracker.done(key);
                }
                Stats::add(&self.shared.stats.relayed, deleted.keys.len() as u64);
            }
            Err(e) => {
                // The items were confirmed; deleting later is safe, sending again is not
                // needed. They stay held until the delete commits.
                log::error!(error = e.to_string(), items = deleted.keys.len() as u64; "cannot delete relayed outbox items; retrying");
                let retry = Instant::now() + OUTAGE_PAUSE;
                self.delete_paused_until = Some(retry);
                self.delete_due = Some(retry);
                self.to_delete.extend(deleted.keys);
            }
        }
    }

    /// At shutdown: waits for the batch being deleted, then deletes what is left (one
    /// more attempt, also during a failed batch's pause), each wait at most `wait`
    /// (what is left of the drain's time), and a little even when that is spent.
    fn finish_deletes(&mut self, wait: Duration) {
        let wait = wait.clamp(MIN_DELETE_WAIT, SHUTDOWN_GRACE);
        if let Some(deleted) = self.deleter.wait(wait) {
            self.on_deleted(Ok(deleted));
        }
        self.delete_paused_until = None;
        while !self.to_delete.is_empty() {
            let before = self.to_delete.len();
            self.flush_deletes();
            if let Some(deleted) = self.deleter.wait(wait) {
                self.on_deleted(Ok(deleted));
            }
            // Stuck (a batch did not end in time) or failed (its keys are back): the rest
            // is sent again, idempotently, after restart.
            if self.deleter.is_busy() || self.to_delete.len() >= before {
                return;
            }
        }
    }
}

/// What every log line about an item names: tenant, correlation and the trace id of
/// its `traceparent` ("" when it has none).
fn ids_of(item: &OutboxItem) -> (&str, &str, &str) {
    let trace = item
        .traceparent
        .as_deref()
        .and_then(crate::envelope::trace_id)
        .unwrap_or_default();
    (item.tenant.as_str(), item.correlation.as_str(), trace)
}

/// The headers of docs/contracts.md §1 (the caller adds `Nats-Msg-Id`).
fn headers_of(item: &OutboxItem) -> HeaderMap {
    crate::nats_io::context_headers(
        item.tenant.as_str(),
        Some(item.correlation.as_str()),
        item.traceparent.as_deref(),
    )
}
