//! Tenant placement over saga shards (`tenancy.placement_bucket`). Operators put
//! `tenant → {"shard": "b"}` into a NATS KV bucket; each shard serves the tenants placed
//! on it and hands a moved tenant to its new shard without a restart of the process.
//!
//! A tenant's saga state lives in one shard's store, so moving it moves the state:
//!
//! 1. The bucket also keeps who *owns* each tenant's state (`owner.{tenant}`; no tenant
//!    id contains a dot). A shard serves a tenant only while it owns it.
//! 2. The owner sees the tenant placed elsewhere: it drains its pipeline (nothing of the
//!    tenant in flight), exports the tenant's records into the handover object store
//!    (`{bucket}_HANDOVER`, object `{tenant}`, marked with the owner's name), deletes
//!    them from its store, and goes on without the tenant.
//! 3. The new shard sees the tenant placed on it but owned by another: it waits for
//!    that owner's handover object, then (drained) imports it, takes ownership
//!    (compare-and-set on the owner record), deletes the object and serves the tenant
//!    from its per-tenant consumers, which carry the tenant's stream position with them.
//!
//! Every step is repeatable after a crash: an export is redone by an owner that still
//! owns, an import by a shard that does not own yet. A tenant placed on a shard and owned
//! by nobody is new: the shard takes ownership and serves it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Seek};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::Store;
use crate::types::TenantId;

#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    #[error("placement bucket {bucket}: {message}")]
    Bucket { bucket: String, message: String },
    #[error("handover of tenant {tenant}: {message}")]
    Handover { tenant: String, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Assignment {
    shard: String,
}

/// Handover objects say which owner wrote them, at which revision of its ownership:
/// an object left over from an earlier move of the same tenant never passes for this one.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Mark {
    from: String,
    owner_revision: u64,
}

const OWNER_PREFIX: &str = "owner.";

/// What this shard should do, from one reading of the bucket.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Tenants to serve: placed here and owned here (or by nobody: new).
    pub serve: BTreeSet<TenantId>,
    /// Owned here, placed elsewhere: export and hand over.
    pub release: BTreeSet<TenantId>,
    /// Placed here, owned by another shard whose handover object is ready.
    pub import: BTreeSet<TenantId>,
    /// Placed here, owned by another shard that has not handed it over yet.
    pub waiting: BTreeSet<TenantId>,
}

impl Plan {
    /// Whether carrying it out changes what the running pipeline serves.
    pub fn changes(&self, serving: &BTreeSet<TenantId>) -> bool {
        !self.release.is_empty() || !self.import.is_empty() || &self.serve != serving
    }
}

pub struct Placement {
    nc: nats::Connection,
    js: nats::jetstream::JetStream,
    kv: nats::kv::Store,
    handover: nats::object_store::ObjectStore,
    shard: String,
    bucket: String,
}

impl Placement {
    /// Opens (or creates) the placement bucket and its handover object store.
    pub fn open(
        nc: &nats::Connection,
        bucket: &str,
        shard: &str,
        replicas: usize,
    ) -> Result<Placement, PlacementError> {
        let js = nats::jetstream::new(nc.clone());
        let err = |e: std::io::Error| PlacementError::Bucket {
            bucket: bucket.to_string(),
            message: e.to_string(),
        };
        let config = nats::kv::Config {
            bucket: bucket.to_string(),
            description: "Runner tenant placement: tenant -> {\"shard\": name}".into(),
            history: 5,
            num_replicas: replicas,
            storage: nats::jetstream::StorageType::File,
            ..Default::default()
        };
        let kv = crate::nats_io::key_value(&js, &config).map_err(err)?;
        let objects = format!("{bucket}_HANDOVER");
        let handover = match js.object_store(&objects) {
            Ok(h) => h,
            Err(_) => js
                .create_object_store(&nats::object_store::Config {
                    bucket: objects.clone(),
                    description: Some("Runner tenant handovers between shards".into()),
                    num_replicas: replicas,
                    storage: nats::jetstream::StorageType::File,
                    ..Default::default()
                })
                .or_else(|_| js.object_store(&objects))
                .map_err(err)?,
        };
        Ok(Placement {
            nc: nc.clone(),
            js,
            kv,
            handover,
            shard: shard.to_string(),
            bucket: bucket.to_string(),
        })
    }

    fn bucket_err(&self, e: impl std::fmt::Display) -> PlacementError {
        PlacementError::Bucket {
            bucket: self.bucket.clone(),
            message: e.to_string(),
        }
    }

    /// Reads the bucket: placements and owners, with the owners' revisions.
    #[allow(clippy::type_complexity)]
    fn read(
        &self,
    ) -> Result<
        (
            BTreeMap<TenantId, String>,
            BTreeMap<TenantId, (String, u64)>,
        ),
        PlacementError,
    > {
        let mut placed = BTreeMap::new();
        let mut owners = BTreeMap::new();
        for key in self.keys()? {
            let Some(entry) = self.kv.entry(&key).map_err(|e| self.bucket_err(e))? else {
                continue;
            };
            if entry.operation != nats::kv::Operation::Put {
                continue;
            }
            let (tenant, is_owner) = match key.strip_prefix(OWNER_PREFIX) {
                Some(t) => (t, true),
                None => (key.as_str(), false),
            };
            let Ok(tenant) = TenantId::new(tenant) else {
                log::warn!(key = key.as_str(); "placement key is not a tenant id; ignored");
                continue;
            };
            let Ok(a) = serde_json::from_slice::<Assignment>(&entry.value) else {
                log::warn!(key = key.as_str(); "placement value is not {{\"shard\": name}}; ignored");
                continue;
            };
            if is_owner {
                owners.insert(tenant, (a.shard, entry.revision));
            } else {
                placed.insert(tenant, a.shard);
            }
        }
        Ok((placed, owners))
    }

    /// The bucket's keys, from its stream's subjects (one bounded request; the client's
    /// own key listing waits without limit for a consumer that may never answer).
    fn keys(&self) -> Result<Vec<String>, PlacementError> {
        let prefix = format!("$KV.{}.", self.bucket);
        let request = serde_json::json!({ "subjects_filter": format!("{prefix}>") }).to_string();
        let reply = self
            .nc
            .request_timeout(
                &format!("$JS.API.STREAM.INFO.KV_{}", self.bucket),
                request,
                KV_TIMEOUT,
            )
            .map_err(|e| self.bucket_err(e))?;
        let info: serde_json::Value =
            serde_json::from_slice(&reply.data).map_err(|e| self.bucket_err(e))?;
        if let Some(error) = info.get("error") {
            return Err(self.bucket_err(error));
        }
        let subjects = info["state"]["subjects"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        Ok(subjects
            .keys()
            .filter_map(|s| s.strip_prefix(&prefix).map(str::to_string))
            .collect())
    }

    /// What this shard should serve, release and import now.
    pub fn plan(&self, store: &Store) -> Result<Plan, PlacementError> {
        let (placed, owners) = self.read()?;
        let mut plan = Plan::default();
        for (tenant, (owner, revision)) in &owners {
            if *owner == self.shard && placed.get(tenant).is_some_and(|s| *s != self.shard) {
                // Handed over already (its object is there, from us) and nothing of it
                // left here: only the new shard has something to do.
                let handed_over = self.handed_over(tenant, owner, *revision)?;
                let left_here = store.has_tenant(tenant).map_err(|e| self.bucket_err(e))?;
                if !handed_over || left_here {
                    plan.release.insert(tenant.clone());
                }
            }
        }
        for (tenant, shard) in &placed {
            if *shard != self.shard {
                continue;
            }
            match owners.get(tenant) {
                None => {
                    plan.serve.insert(tenant.clone());
                }
                Some((owner, _)) if *owner == self.shard => {
                    plan.serve.insert(tenant.clone());
                }
                Some((owner, revision)) => {
                    if self.handed_over(tenant, owner, *revision)? {
                        plan.import.insert(tenant.clone());
                        plan.serve.insert(tenant.clone());
                    } else {
                        plan.waiting.insert(tenant.clone());
                    }
                }
            }
        }
        Ok(plan)
    }

    /// Whether the tenant's handover object is there, written by `owner` while it owned
    /// the tenant at `owner_revision`.
    fn handed_over(
        &self,
        tenant: &TenantId,
        owner: &str,
        owner_revision: u64,
    ) -> Result<bool, PlacementError> {
        let want = Mark {
            from: owner.to_string(),
            owner_revision,
        };
        Ok(match self.handover.info(tenant.as_str()) {
            Ok(info) if !info.deleted => info
                .description
                .and_then(|d| serde_json::from_str::<Mark>(&d).ok())
                .is_some_and(|m| m == want),
            _ => false,
        })
    }

    /// Carries out the plan's hand-offs; the pipeline must be drained. Returns the
    /// tenants to serve: a new tenant only once its ownership is recorded, an imported
    /// one only once its import committed. A hand-off that fails is logged and left for
    /// the next plan (the tenant is not served meanwhile).
    pub fn apply(
        &self,
        plan: &Plan,
        store: &Store,
        scratch: &std::path::Path,
    ) -> Result<BTreeSet<TenantId>, PlacementError> {
        let (_, owners) = self.read()?;
        for tenant in &plan.release {
            let Some((owner, revision)) = owners.get(tenant).filter(|(o, _)| *o == self.shard)
            else {
                continue;
            };
            if let Err(e) = self.release(tenant, owner, *revision, store, scratch) {
                log::error!(tenant_id = tenant.as_str(), error = e.to_string(); "tenant handover failed; trying again later");
            }
        }
        // Releasing changes no owner record: the same reading serves below.
        let mut serve = BTreeSet::new();
        for tenant in &plan.serve {
            let owned = match owners.get(tenant) {
                Some((owner, _)) if *owner == self.shard => true,
                Some((owner, revision)) if plan.import.contains(tenant) => {
                    match self.import(tenant, owner, *revision, store) {
                        Ok(done) => done,
                        Err(e) => {
                            log::error!(tenant_id = tenant.as_str(), error = e.to_string(); "tenant import failed; trying again later");
                            false
                        }
                    }
                }
                Some(_) => false,
                None => self.take_new(tenant),
            };
            if owned {
                serve.insert(tenant.clone());
            }
        }
        Ok(serve)
    }

    fn handover_err(tenant: &TenantId, message: impl std::fmt::Display) -> PlacementError {
        PlacementError::Handover {
            tenant: tenant.to_string(),
            message: message.to_string(),
        }
    }

    fn release(
        &self,
        tenant: &TenantId,
        owner: &str,
        owner_revision: u64,
        store: &Store,
        scratch: &std::path::Path,
    ) -> Result<(), PlacementError> {
        let fail = |m: &dyn std::fmt::Display| Self::handover_err(tenant, m);
        if self.handed_over(tenant, owner, owner_revision)? {
            // The export is already there (a crash came between writing it and deleting
            // the records here): finish the job, never overwrite it with what is left.
            store.delete_tenant(tenant).map_err(|e| fail(&e))?;
            return Ok(());
        }
        let path = scratch.join(format!("handover-{tenant}.jsonl"));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| fail(&e))?;
        let records = store
            .export_tenant(tenant, &mut std::io::BufWriter::new(&mut file))
            .map_err(|e| fail(&e))?;
        file.rewind().map_err(|e| fail(&e))?;
        let mark = serde_json::to_string(&Mark {
            from: owner.to_string(),
            owner_revision,
        })
        .map_err(|e| fail(&e))?;
        let meta = nats::object_store::ObjectMeta {
            name: tenant.to_string(),
            description: Some(mark),
            link: None,
        };
        self.handover.put(meta, &mut file).map_err(|e| fail(&e))?;
        let _ = std::fs::remove_file(&path);
        store.delete_tenant(tenant).map_err(|e| fail(&e))?;
        log::warn!(tenant_id = tenant.as_str(), records = records, shard = self.shard.as_str();
            "tenant placed on another shard: its records were handed over and removed here");
        Ok(())
    }

    /// Imports the tenant's records and takes ownership; false if the owner changed
    /// meanwhile (the next plan sorts it out).
    fn import(
        &self,
        tenant: &TenantId,
        from: &str,
        owner_revision: u64,
        store: &Store,
    ) -> Result<bool, PlacementError> {
        let fail = |m: &dyn std::fmt::Display| Self::handover_err(tenant, m);
        if store.has_tenant(tenant).map_err(|e| fail(&e))? {
            // An earlier import got this far before a crash: the records are the
            // export's (nothing was served since), so drop and import them again.
            store.delete_tenant(tenant).map_err(|e| fail(&e))?;
        }
        let object = self.handover.get(tenant.as_str()).map_err(|e| fail(&e))?;
        let records = store
            .import_tenant(tenant, BufReader::new(object))
            .map_err(|e| fail(&e))?;
        let me = owner_value(&self.shard);
        let key = format!("{OWNER_PREFIX}{tenant}");
        let written = crate::nats_io::kv_write(&self.js, &self.bucket, &key, &me, owner_revision, KV_TIMEOUT)
                .is_ok()
                // A write whose answer was lost may have landed: read it back.
                || self.read()?.1.get(tenant).is_some_and(|(o, _)| *o == self.shard);
        if !written {
            log::warn!(tenant_id = tenant.as_str(); "tenant ownership changed during its import; trying again later");
            store.delete_tenant(tenant).map_err(|e| fail(&e))?;
            return Ok(false);
        }
        let _ = self.handover.delete(tenant.as_str());
        log::warn!(tenant_id = tenant.as_str(), records = records, from = from, shard = self.shard.as_str();
            "tenant handed over to this shard: its records were imported");
        Ok(true)
    }

    /// Records this shard as the owner of a tenant nobody owned.
    fn take_new(&self, tenant: &TenantId) -> bool {
        let key = format!("{OWNER_PREFIX}{tenant}");
        let me = owner_value(&self.shard);
        let created =
            crate::nats_io::kv_write(&self.js, &self.bucket, &key, &me, 0, KV_TIMEOUT).is_ok();
        if created {
            log::info!(tenant_id = tenant.as_str(), shard = self.shard.as_str(); "new tenant placed on this shard");
        }
        created
    }

    /// The bucket's last sequence: unchanged means no placement changed.
    pub fn version(&self) -> Result<u64, PlacementError> {
        self.js
            .stream_info(format!("KV_{}", self.bucket))
            .map(|s| s.state.last_seq)
            .map_err(|e| self.bucket_err(e))
    }
}

fn owner_value(shard: &str) -> Vec<u8> {
    serde_json::to_vec(&Assignment {
        shard: shard.to_string(),
    })
    .unwrap_or_default()
}

/// How long an owner-record write waits for JetStream (a timed-out one is retried by
/// the next plan, which reads what landed).
const KV_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a shard reads the bucket.
pub const POLL: Duration = Duration::from_secs(1);
