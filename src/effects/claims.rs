//! Execution claims shared by every effect replica, in a NATS KV bucket: the gate that
//! keeps one command from running on two hosts. A replica's own store only knows its
//! own calls; the claim is what the others see.
//!
//! Before calling, a worker *creates* the command's key (atomic: only one create
//! succeeds). The winner calls, then writes the result into the claim (`done`) before
//! publishing it; anyone else who meets the command finds the claim and, when it is
//! done, publishes that result instead of calling. A claim still `running` after
//! `effects.claim_lease_ms` belongs to a replica that died mid-call: it is taken over
//! (compare-and-set on its revision) and the effect called again under the same
//! idempotency key — the one window no record can close, as on a single replica.
//! Lease ages compare the claimer's clock with the reader's; skew between hosts adds
//! to or takes from the lease, which is minutes against seconds of skew.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::nats_io::{cas_headers, Publisher};
use crate::store::{EffectCompletion, RawJson};
use crate::timefmt::now_ms;
use crate::types::{TenantId, WorkId};

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("claims bucket {bucket}: {source}")]
    Bucket {
        bucket: String,
        #[source]
        source: std::io::Error,
    },
    #[error("claim {key}: {source}")]
    Claim {
        key: String,
        #[source]
        source: ClaimIoError,
    },
}

/// Why one claim could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ClaimIoError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("unreadable claim: {0}")]
    Unreadable(#[source] serde_json::Error),
    /// Other replicas kept writing it between our reads and writes.
    #[error("the claim kept changing; will try again")]
    KeptChanging,
}

/// What the claim says about a command.
pub enum Gate<'a> {
    /// This worker holds the claim (at this revision) and may call; no other worker of
    /// this process takes the command while `held` lives.
    /// `taken_over`: the claim was another replica's whose lease ran out unfinished
    /// (it died mid-call): the command is called again under the same idempotency key,
    /// which the caller logs with the command's context.
    Mine {
        revision: u64,
        held: Held<'a>,
        taken_over: Option<TakenOver>,
    },
    /// Some replica finished it: its result, to publish instead of calling.
    Done(EffectCompletion),
    /// Another replica holds a live claim (it may be calling now): try again after this.
    Busy { retry_after: Duration },
}

/// Whose expired claim was taken over, and how old it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenOver {
    pub previous_owner: String,
    pub age: Duration,
}

/// A command one of this process's workers is handling.
pub struct Held<'a> {
    claims: &'a Claims,
    key: String,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.claims.in_flight.lock().remove(&self.key);
    }
}

/// A claim created ahead of the worker that calls under it ([`Claims::create_many`]).
/// Like [`Held`] it keeps this process's other workers off the command, until it is
/// dropped or becomes the worker's [`Held`] ([`Claims::adopt`]).
pub struct Won {
    claims: Arc<Claims>,
    key: Option<String>,
    /// The claim's revision: what its completion write compares against.
    pub revision: u64,
    created: std::time::Instant,
}

impl Drop for Won {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.claims.in_flight.lock().remove(&key);
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claim {
    /// The process that claimed (a restarted process is another).
    owner: String,
    /// Wall clock of the claimer when it claimed (ms).
    at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    done: Option<Done>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Done {
    event_id: String,
    result: RawJson,
    recorded_at: String,
}

pub struct Claims {
    kv: nats::kv::Store,
    bucket: String,
    /// Names this process in claims: a claim of its own that none of its workers holds
    /// is one whose create timed out after it landed, and is taken back at once.
    replica: String,
    lease: Duration,
    /// Claim keys this process's workers are handling (at most one per worker).
    in_flight: parking_lot::Mutex<std::collections::HashSet<String>>,
    /// Kicked before a KV read: the blocking client otherwise sends a request's message
    /// only at its next 5 ms flush.
    flusher: crate::nats_io::Flusher,
    /// Claim creates share one reply subscription (the completions are published by
    /// the effect-commit thread).
    requester: crate::nats_io::Requester,
}

/// Create attempts before giving up on a key whose claim keeps changing under us.
const ATTEMPTS: usize = 3;

impl Claims {
    /// Opens the bucket, creating it when missing (file storage, one value per key,
    /// entries kept `ttl`).
    pub fn open(
        nc: &nats::Connection,
        bucket: &str,
        lease: Duration,
        ttl: Duration,
        replicas: usize,
    ) -> Result<Claims, ClaimError> {
        let js = nats::jetstream::new(nc.clone());
        let err = |source: std::io::Error| ClaimError::Bucket {
            bucket: bucket.to_string(),
            source,
        };
        let config = nats::kv::Config {
            bucket: bucket.to_string(),
            description: "Runner effect execution claims".into(),
            history: 1,
            max_age: ttl,
            num_replicas: replicas,
            storage: nats::jetstream::StorageType::File,
            ..Default::default()
        };
        let kv = crate::nats_io::key_value(&js, &config).map_err(err)?;
        Ok(Claims {
            kv,
            bucket: bucket.to_string(),
            replica: format!(
                "{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            lease,
            in_flight: Default::default(),
            flusher: crate::nats_io::Flusher::start_lagging(nc, FLUSH_LAG).map_err(err)?,
            requester: crate::nats_io::Requester::start(nc).map_err(err)?,
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Claims the command for this worker, or says who has it.
    pub fn acquire(&self, tenant: &TenantId, command: &WorkId) -> Result<Gate<'_>, ClaimError> {
        let key = claim_key(tenant, command);
        if !self.in_flight.lock().insert(key.clone()) {
            // A redelivery while another worker here still handles it.
            return Ok(Gate::Busy {
                retry_after: LOCAL_BUSY,
            });
        }
        let held = Held {
            claims: self,
            key: key.clone(),
        };
        let fresh = self.fresh();
        let err = |source: ClaimIoError| ClaimError::Claim {
            key: key.clone(),
            source,
        };
        // The key's last revision: 0 while it never existed, else that of the delete or
        // purge marker an operator left (a create must name it, or it is refused for
        // ever, and the command with it).
        let mut last = 0;
        for _ in 0..ATTEMPTS {
            if let Ok(revision) = self.write(&key, &fresh, last) {
                return Ok(Gate::Mine {
                    revision,
                    held,
                    taken_over: None,
                });
            }
            // Taken — or our create timed out after it landed: read what is there.
            let (current, claim) = match self.read_entry(&key).map_err(err)? {
                Some((current, Some(claim))) => (current, claim),
                Some((marker, None)) => {
                    last = marker;
                    continue;
                }
                None => {
                    last = 0;
                    continue;
                }
            };
            if let Some(done) = claim.done {
                return Ok(Gate::Done(EffectCompletion {
                    event_id: done.event_id,
                    result: done.result,
                    recorded_at: done.recorded_at,
                }));
            }
            let age = Duration::from_millis(now_ms().saturating_sub(claim.at_ms).max(0) as u64);
            let ours = claim.owner == self.replica;
            if ours || age >= self.lease {
                // Ours with no worker on it (our create timed out after landing), or
                // its holder died mid-call: take it, unless someone else just did.
                if let Ok(revision) = self.write(&key, &fresh, current) {
                    let taken_over = (!ours).then_some(TakenOver {
                        previous_owner: claim.owner,
                        age,
                    });
                    return Ok(Gate::Mine {
                        revision,
                        held,
                        taken_over,
                    });
                }
                continue;
            }
            return Ok(Gate::Busy {
                retry_after: (self.lease - age).min(MAX_BUSY_WAIT),
            });
        }
        Err(err(ClaimIoError::KeptChanging))
    }

    /// The first create of each command's claim, all outstanding at once on `publisher`
    /// (one wait for a fetched batch, on the thread that splits it, instead of a round
    /// trip inside each worker's cycle). `Some` where the create landed; `None` where it
    /// did not: the key exists (another replica's claim, or one of ours), another worker
    /// here has the command, or no answer came in time. For those the worker runs its
    /// gate from the start, and [`Claims::acquire`] reads what is there and decides as it
    /// always does (a create of ours that landed unanswered it takes back at once).
    pub fn create_many(
        self: &Arc<Self>,
        publisher: &mut Publisher,
        commands: &[(&TenantId, &WorkId)],
    ) -> Vec<Option<Won>> {
        let mut sent = Vec::with_capacity(commands.len());
        for (n, (tenant, command)) in commands.iter().enumerate() {
            let key = claim_key(tenant, command);
            if !self.in_flight.lock().insert(key.clone()) {
                sent.push(None);
                continue;
            }
            let subject = format!("$KV.{}.{key}", self.bucket);
            // Before the claim's own time, and before `publish` may wait for room: the
            // age [`Claims::adopt`] goes by is never less than the lease's.
            let created = std::time::Instant::now();
            // No message id: a create is a compare-and-set on "no entry yet", sent once,
            // so none can be stored twice or answered as another's duplicate.
            publisher.publish_compare_and_set(n as u64, &subject, cas_headers(0), self.fresh());
            sent.push(Some(Won {
                claims: Arc::clone(self),
                key: Some(key),
                revision: 0,
                created,
            }));
        }
        let mut landed = vec![None; commands.len()];
        for c in publisher.finish() {
            if let (Ok(ack), Some(slot)) = (c.result, landed.get_mut(c.tag as usize)) {
                *slot = Some(ack.seq);
            }
        }
        sent.into_iter()
            .zip(landed)
            .map(|(won, revision)| {
                // One not landed is dropped here, which lets go of its key.
                let mut won = won?;
                won.revision = revision?;
                Some(won)
            })
            .collect()
    }

    /// The publisher [`Claims::create_many`] sends on: a batch's creates outstanding at
    /// once, each sent once (the answer of one lost, [`Claims::acquire`] reads it back).
    pub fn create_publisher(nc: &nats::Connection) -> std::io::Result<Publisher> {
        Publisher::new(nc, CREATE_WINDOW, KV_TIMEOUT, 1)
    }

    /// The worker's hold of a claim [`Claims::create_many`] won for it, if it was
    /// created moments ago. The lease counts from the create, and a command can wait for
    /// a free worker: one that waited longer than [`adopt_within`] is let go (`None`), and
    /// the worker's [`Claims::acquire`] takes this replica's claim back by
    /// compare-and-set with a fresh time (or finds another replica took it over), so the
    /// lease still covers the whole call.
    pub fn adopt(&self, mut won: Won) -> Option<Held<'_>> {
        if won.created.elapsed() >= adopt_within(self.lease) {
            return None;
        }
        Some(Held {
            claims: self,
            key: won.key.take().unwrap_or_default(),
        })
    }

    /// A new claim of this replica, running.
    pub(crate) fn fresh(&self) -> Vec<u8> {
        encode(&Claim {
            owner: self.replica.clone(),
            at_ms: now_ms(),
            done: None,
        })
    }

    /// Writes the result into the claim held at `revision`. If the claim moved on (a
    /// replica took it over after our lease ran out), the other one's word stands.
    pub fn complete(
        &self,
        tenant: &TenantId,
        command: &WorkId,
        revision: u64,
        completion: &EffectCompletion,
    ) -> Result<(), ClaimError> {
        let write = self.completion(tenant, command, revision, completion);
        let key = claim_key(tenant, command);
        self.write(&key, &write.value, revision)
            .map(|_| ())
            .map_err(|e| ClaimError::Claim {
                key,
                source: e.into(),
            })
    }

    /// Whether the claim of `key` says done with this result event: how a completion
    /// write whose answer was lost, or refused as "wrong last sequence" on its re-send,
    /// learns that it landed after all.
    pub fn is_done_with(&self, key: &str, event_id: &str) -> bool {
        matches!(self.read(key), Ok(Some((_, Claim { done: Some(d), .. }))) if d.event_id == event_id)
    }

    /// For a command this replica has recorded: the write that marks its claim done, if
    /// the claim is still running under this replica (its completion write failed
    /// earlier). Without it, another replica would call again once the lease ran out.
    pub fn repair(
        &self,
        tenant: &TenantId,
        command: &WorkId,
        completion: &EffectCompletion,
    ) -> Option<ClaimWrite> {
        let (revision, claim) = self.read(&claim_key(tenant, command)).ok()??;
        (claim.done.is_none() && claim.owner == self.replica)
            .then(|| self.completion(tenant, command, revision, completion))
    }

    /// [`Claims::complete`] as a write for a caller that publishes it itself, with many
    /// outstanding (the effect-commit thread).
    pub fn completion(
        &self,
        tenant: &TenantId,
        command: &WorkId,
        revision: u64,
        completion: &EffectCompletion,
    ) -> ClaimWrite {
        let key = claim_key(tenant, command);
        ClaimWrite {
            subject: format!("$KV.{}.{key}", self.bucket),
            key,
            revision,
            value: encode(&Claim {
                owner: self.replica.clone(),
                at_ms: now_ms(),
                done: Some(Done {
                    event_id: completion.event_id.clone(),
                    result: completion.result.clone(),
                    recorded_at: completion.recorded_at.clone(),
                }),
            }),
        }
    }
}

/// A compare-and-set write of a claim, ready to publish: `value` to `subject` only if
/// the key's last revision is `revision` ([`Publisher::publish_compare_and_set`]: no
/// message id). A re-send after a lost answer is refused as "wrong last sequence" once
/// the first landed; the caller then reads the claim back ([`Claims::is_done_with`]).
#[derive(Debug, Clone)]
pub struct ClaimWrite {
    pub key: String,
    pub subject: String,
    pub revision: u64,
    pub value: Vec<u8>,
}

impl ClaimWrite {
    /// The header that makes it a compare-and-set.
    pub fn headers(&self) -> nats::header::HeaderMap {
        crate::nats_io::cas_headers(self.revision)
    }
}

impl Claims {
    /// The claim stored under `key` now, with its revision; `None` when there is none
    /// (never created, deleted or purged).
    fn read(&self, key: &str) -> Result<Option<(u64, Claim)>, ClaimIoError> {
        Ok(self
            .read_entry(key)?
            .and_then(|(revision, claim)| Some((revision, claim?))))
    }

    /// The key's last entry and its revision: a claim, or `None` for a delete or purge
    /// marker; `None` when the key has no entry at all.
    fn read_entry(&self, key: &str) -> Result<Option<(u64, Option<Claim>)>, ClaimIoError> {
        self.flusher.kick();
        let Some(entry) = self.kv.entry(key)? else {
            return Ok(None);
        };
        if entry.operation != nats::kv::Operation::Put {
            return Ok(Some((entry.revision, None)));
        }
        let claim = serde_json::from_slice(&entry.value).map_err(ClaimIoError::Unreadable)?;
        Ok(Some((entry.revision, Some(claim))))
    }

    /// A compare-and-set write of the claim, bounded in time.
    fn write(&self, key: &str, value: &[u8], revision: u64) -> std::io::Result<u64> {
        crate::nats_io::kv_write_via(
            &self.requester,
            &self.bucket,
            key,
            value,
            revision,
            KV_TIMEOUT,
        )
    }
}

/// How long the claims' flusher waits after a kick: long enough for the kicking worker
/// to have buffered its request (microseconds), far shorter than the client's 5 ms.
const FLUSH_LAG: Duration = Duration::from_micros(50);

/// How old a claim created ahead may be when its worker takes it: a second, or a tenth
/// of the lease when that is shorter.
fn adopt_within(lease: Duration) -> Duration {
    (lease / 10).min(Duration::from_secs(1))
}

/// Claim creates outstanding at once ([`Claims::create_many`]); more wait for answers.
const CREATE_WINDOW: usize = 256;

/// How long a claim write waits for JetStream (then its outcome is read back).
const KV_TIMEOUT: Duration = Duration::from_secs(5);

/// A busy command comes back at least this often, so a claim finished early is seen.
const MAX_BUSY_WAIT: Duration = Duration::from_secs(30);
/// When another worker of this process has the command: it will be done soon.
const LOCAL_BUSY: Duration = Duration::from_secs(1);

fn encode(claim: &Claim) -> Vec<u8> {
    // Strings and numbers only: serialising cannot fail.
    serde_json::to_vec(claim).unwrap_or_default()
}

/// `{tenant}.{command}`, each escaped to the characters KV keys allow
/// (`[-/_=a-zA-Z0-9]`; `.` separates the two): any other byte becomes `=XX`.
pub fn claim_key(tenant: &TenantId, command: &WorkId) -> String {
    format!(
        "{}.{}",
        escape_key(tenant.token()),
        escape_key(command.as_str())
    )
}

fn escape_key(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'/' {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_kv_keys_and_distinct() {
        let t: TenantId = "acme_1".parse().unwrap();
        let c: WorkId = "0192-ab=cd:x.y".parse().unwrap();
        let key = claim_key(&t, &c);
        assert_eq!(key, "acme_1.0192-ab=3Dcd=3Ax=2Ey");
        assert!(key
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-/_=.".contains(ch)));
        // The dot inside a command id is escaped: no other pair makes the same key.
        let other: TenantId = "acme_1".parse().unwrap();
        let c2: WorkId = "0192-ab=cd:x".parse().unwrap();
        assert_ne!(claim_key(&other, &c2), key);
        let single = TenantId::default();
        assert_eq!(claim_key(&single, &c), "_.0192-ab=3Dcd=3Ax=2Ey");
    }

    #[test]
    fn an_expired_claim_of_another_replica_is_taken_over_and_says_whose() {
        let server = crate::dev::NatsServer::start().unwrap();
        let nc = nats::connect(server.url()).unwrap();
        let (lease, day) = (Duration::from_millis(200), Duration::from_secs(86_400));
        let dead = Claims::open(&nc, "claims_takeover", lease, day, 1).unwrap();
        let alive = Claims::open(&nc, "claims_takeover", lease, day, 1).unwrap();
        let (tenant, command): (TenantId, WorkId) =
            ("acme".parse().unwrap(), "cmd-1".parse().unwrap());
        let Gate::Mine { taken_over, .. } = dead.acquire(&tenant, &command).unwrap() else {
            panic!("a fresh command's claim is ours");
        };
        assert_eq!(taken_over, None);
        assert!(matches!(
            alive.acquire(&tenant, &command).unwrap(),
            Gate::Busy { .. }
        ));
        std::thread::sleep(lease + Duration::from_millis(50));
        let Gate::Mine { taken_over, .. } = alive.acquire(&tenant, &command).unwrap() else {
            panic!("an expired claim is taken over");
        };
        let taken_over = taken_over.expect("it says it took one over");
        assert_eq!(taken_over.previous_owner, dead.replica);
        assert!(taken_over.age >= lease);
    }

    #[test]
    fn a_batch_of_creates_wins_the_free_keys_and_leaves_the_rest_to_acquire() {
        let server = crate::dev::NatsServer::start().unwrap();
        let nc = nats::connect(server.url()).unwrap();
        let day = Duration::from_secs(86_400);
        let open = || Arc::new(Claims::open(&nc, "claims_batch", day, day, 1).unwrap());
        let (ours, other) = (open(), open());
        let tenant: TenantId = "acme".parse().unwrap();
        let [c1, c2, c3]: [WorkId; 3] = ["cmd-1", "cmd-2", "cmd-3"].map(|c| c.parse().unwrap());
        let Gate::Mine { held: theirs, .. } = other.acquire(&tenant, &c2).unwrap() else {
            panic!("a fresh command's claim is the first asker's");
        };
        let mut publisher = Claims::create_publisher(&nc).unwrap();
        let batch = [
            (&tenant, &c1),
            (&tenant, &c2),
            (&tenant, &c3),
            (&tenant, &c1),
        ];
        let mut won = ours.create_many(&mut publisher, &batch).into_iter();
        let (w1, w2, w3, again) = (won.next(), won.next(), won.next(), won.next());
        let (Some(Some(w1)), Some(None), Some(Some(w3)), Some(None)) = (w1, w2, w3, again) else {
            panic!("free keys are won; another replica's, and one already in this batch, are not");
        };
        for (won, command) in [(&w1, &c1), (&w3, &c3)] {
            let entry = ours
                .kv
                .entry(&claim_key(&tenant, command))
                .unwrap()
                .unwrap();
            assert_eq!(
                won.revision, entry.revision,
                "the revision its completion compares against"
            );
        }
        // Held as a worker's claim is: no other worker here takes the command meanwhile.
        assert!(matches!(
            ours.acquire(&tenant, &c1).unwrap(),
            Gate::Busy { .. }
        ));
        let held = ours.adopt(w1);
        assert!(matches!(
            ours.acquire(&tenant, &c1).unwrap(),
            Gate::Busy { .. }
        ));
        drop(held);
        drop(w3);
        // Let go: a later delivery's worker finds its own replica's claim and takes it
        // back at once, as after a create whose answer was lost.
        for command in [&c1, &c3] {
            let Gate::Mine { taken_over, .. } = ours.acquire(&tenant, command).unwrap() else {
                panic!("this replica's claim, held by no worker, is taken back");
            };
            assert_eq!(taken_over, None);
        }
        // Not created again in a later batch: the key exists, whoever holds it.
        let again = ours.create_many(&mut publisher, &[(&tenant, &c1), (&tenant, &c2)]);
        assert!(again.iter().all(Option::is_none));
        // The one another replica holds is decided by `acquire`, as before.
        assert!(matches!(
            ours.acquire(&tenant, &c2).unwrap(),
            Gate::Busy { .. }
        ));
        drop(theirs);
    }

    #[test]
    fn a_claim_created_ahead_that_waited_is_taken_back_with_a_fresh_time() {
        let server = crate::dev::NatsServer::start().unwrap();
        let nc = nats::connect(server.url()).unwrap();
        let (lease, day) = (Duration::from_millis(1_000), Duration::from_secs(86_400));
        let claims = Arc::new(Claims::open(&nc, "claims_adopt", lease, day, 1).unwrap());
        let (tenant, command): (TenantId, WorkId) =
            ("acme".parse().unwrap(), "cmd-1".parse().unwrap());
        let mut publisher = Claims::create_publisher(&nc).unwrap();
        let mut won = claims.create_many(&mut publisher, &[(&tenant, &command)]);
        let won = won.pop().flatten().expect("a free key is won");
        let key = claim_key(&tenant, &command);
        let (created, first) = claims.read(&key).unwrap().unwrap();
        std::thread::sleep(adopt_within(lease) + Duration::from_millis(50));
        assert!(
            claims.adopt(won).is_none(),
            "waited past a tenth of the lease"
        );
        let Gate::Mine {
            revision,
            taken_over,
            ..
        } = claims.acquire(&tenant, &command).unwrap()
        else {
            panic!("this replica's claim, held by no worker, is taken back");
        };
        assert_eq!(taken_over, None);
        let (now, claim) = claims.read(&key).unwrap().unwrap();
        assert_eq!(revision, now);
        assert!(now > created, "written again by compare-and-set");
        assert!(
            claim.at_ms > first.at_ms,
            "the lease counts from the take-back"
        );
    }

    #[test]
    fn a_claim_an_operator_deleted_or_purged_is_created_again() {
        let server = crate::dev::NatsServer::start().unwrap();
        let nc = nats::connect(server.url()).unwrap();
        let day = Duration::from_secs(86_400);
        let first = Claims::open(&nc, "claims_deleted", day, day, 1).unwrap();
        let other = Claims::open(&nc, "claims_deleted", day, day, 1).unwrap();
        let tenant: TenantId = "acme".parse().unwrap();
        for (command, forget) in [("cmd-1", "delete"), ("cmd-2", "purge")] {
            let command: WorkId = command.parse().unwrap();
            let Gate::Mine { held, .. } = first.acquire(&tenant, &command).unwrap() else {
                panic!("a fresh command's claim is the first asker's");
            };
            drop(held);
            let key = claim_key(&tenant, &command);
            match forget {
                "delete" => first.kv.delete(&key).unwrap(),
                _ => first.kv.purge(&key).unwrap(),
            }
            // No claim is left, only the marker: the next asker creates one over it.
            let Gate::Mine { taken_over, .. } = other.acquire(&tenant, &command).unwrap() else {
                panic!("a {forget}d claim is no claim");
            };
            assert_eq!(taken_over, None, "nothing was taken over ({forget})");
            assert!(
                first.read(&key).unwrap().is_some(),
                "created again ({forget})"
            );
        }
    }

    #[test]
    fn a_running_claim_of_this_replica_is_repaired_and_read_back_as_done() {
        let server = crate::dev::NatsServer::start().unwrap();
        let nc = nats::connect(server.url()).unwrap();
        let day = Duration::from_secs(86_400);
        let claims = Claims::open(&nc, "claims_repair", Duration::from_secs(60), day, 1).unwrap();
        let (tenant, command): (TenantId, WorkId) =
            ("acme".parse().unwrap(), "cmd-1".parse().unwrap());
        let Gate::Mine { revision, held, .. } = claims.acquire(&tenant, &command).unwrap() else {
            panic!("a fresh command's claim is ours");
        };
        drop(held);
        let completion = EffectCompletion {
            event_id: "ev-1".into(),
            result: RawJson::of(&serde_json::json!({"ok": true})).unwrap(),
            recorded_at: "2026-11-27T10:00:00Z".into(),
        };
        let key = claim_key(&tenant, &command);
        assert!(!claims.is_done_with(&key, "ev-1"), "still running");
        // As after a completion write that failed: the claim runs, owned by this replica.
        let write = claims
            .repair(&tenant, &command, &completion)
            .expect("a running claim of ours is repaired");
        assert_eq!(write.revision, revision);
        let mut publisher =
            crate::nats_io::Publisher::new(&nc, 4, Duration::from_secs(5), 3).unwrap();
        for tag in 0..2 {
            // The second send is a re-send of the same write (its answer lost, say):
            // refused as "wrong last sequence", not stored again; the claim reads back as
            // done.
            let (subject, value) = (&write.subject, write.value.clone());
            publisher.publish_compare_and_set(tag, subject, write.headers(), value);
            let outcome = publisher.finish();
            assert_eq!(outcome.len(), 1);
            if tag == 0 {
                assert!(outcome[0].result.is_ok(), "{:?}", outcome[0].result);
            } else {
                assert!(
                    matches!(
                        &outcome[0].result,
                        Err(crate::nats_io::PublishError::Rejected(_))
                    ),
                    "{:?}",
                    outcome[0].result
                );
            }
            assert!(claims.is_done_with(&key, "ev-1"));
        }
        assert!(
            !claims.is_done_with(&key, "ev-2"),
            "done with another result"
        );
        assert!(
            claims.repair(&tenant, &command, &completion).is_none(),
            "a done claim needs no repair"
        );
    }
}
