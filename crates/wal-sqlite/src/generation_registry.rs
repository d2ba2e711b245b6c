//! `GenerationRegistry`: generation records in the coordinator, changed only by CAS.
//!
//! Keys in the app's `wal` namespace: `head` (`{"current": g}`) and `gen/{g:016x}` (a
//! [`GenerationRecord`]). Starting a generation creates its record (`Expect::Absent`, numbered
//! past every existing record), then (after the replicator wrote its manifest) moves the head: with the primary's [`Fence`] (`put_if_held`, so a fenced-out primary cannot; on a
//! store without `put_if_held` across namespaces, a fence check then a CAS on the head's
//! revision) or by CAS on the head's revision when there is no election. Sealing a generation is a CAS on its
//! record's revision; a seal, once written, is never changed.

use std::sync::Arc;

use cluster_core::coordination::{
    ConflictDetail, CoordError, Expect, Fence, Key, KeyPrefix, KvEntry, KvStore,
};
use cluster_core::ids::{FencingToken, Revision};
use cluster_core::naming::Namespace;
use serde::{Deserialize, Serialize};

use crate::error::{ReplicationError, ReplicationResult};
use crate::generation::{FenceRecord, GenerationRecord};

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Head {
    current: u64,
}

/// Generation records of one replicated database.
#[derive(Clone)]
pub struct GenerationRegistry {
    kv: Arc<dyn KvStore>,
    namespace: Namespace,
}

impl std::fmt::Debug for GenerationRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerationRegistry")
            .field("namespace", &self.namespace)
            .finish()
    }
}

fn decode<T: for<'de> Deserialize<'de>>(entry: &KvEntry) -> ReplicationResult<T> {
    serde_json::from_slice(&entry.value).map_err(|e| ReplicationError::Conflict {
        generation: 0,
        detail: format!("unreadable record {}: {e}", entry.key),
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

impl GenerationRegistry {
    /// Records under `namespace` (normally the app's `wal` namespace).
    pub fn new(kv: Arc<dyn KvStore>, namespace: Namespace) -> GenerationRegistry {
        GenerationRegistry { kv, namespace }
    }

    fn head_key(&self) -> ReplicationResult<Key> {
        Ok(Key::new(self.namespace.clone(), "head")?)
    }

    fn record_key(&self, generation: u64) -> ReplicationResult<Key> {
        Ok(Key::new(
            self.namespace.clone(),
            format!("gen/{generation:016x}"),
        )?)
    }

    /// The current generation's record, with its revision.
    pub async fn current(&self) -> ReplicationResult<Option<(GenerationRecord, Revision)>> {
        let Some(head) = self.kv.get(&self.head_key()?).await? else {
            return Ok(None);
        };
        let head: Head = decode(&head)?;
        self.record(head.current).await
    }

    /// A generation's record, with its revision.
    pub async fn record(
        &self,
        generation: u64,
    ) -> ReplicationResult<Option<(GenerationRecord, Revision)>> {
        match self.kv.get(&self.record_key(generation)?).await? {
            Some(entry) => Ok(Some((decode(&entry)?, entry.revision))),
            None => Ok(None),
        }
    }

    /// Starts generation `record.generation` as the new head. With a fence, the head moves only
    /// while the fence stands; without, only if the head is still where it was read.
    pub async fn start(
        &self,
        record: &GenerationRecord,
        fence: Option<&Fence>,
    ) -> ReplicationResult<Revision> {
        let head = self.head().await?;
        let revision = self.register(record).await?;
        self.move_head(record.generation, fence, head).await?;
        Ok(revision)
    }

    /// The head: the current generation and the head key's revision.
    pub async fn head(&self) -> ReplicationResult<Option<(u64, Revision)>> {
        match self.kv.get(&self.head_key()?).await? {
            Some(entry) => Ok(Some((decode::<Head>(&entry)?.current, entry.revision))),
            None => Ok(None),
        }
    }

    /// The number for a new generation: past the head and past every record, so a record left
    /// by a start that never moved the head (an orphan) is skipped, never reused or blocking.
    pub async fn next_generation(&self, head: Option<u64>) -> ReplicationResult<u64> {
        let prefix = KeyPrefix::new(self.namespace.clone(), "gen/")?;
        let highest = self
            .kv
            .list(&prefix)
            .await?
            .iter()
            .filter_map(|e| {
                let name = e.key.name().strip_prefix("gen/")?;
                u64::from_str_radix(name, 16).ok()
            })
            .max()
            .unwrap_or(0);
        Ok(highest.max(head.unwrap_or(0)) + 1)
    }

    /// Creates the record of a generation not yet started (the first of its three steps:
    /// record, manifest, head). Until the head moves to it, no replica follows it.
    pub async fn register(&self, record: &GenerationRecord) -> ReplicationResult<Revision> {
        let generation = record.generation;
        match self
            .kv
            .put(
                &self.record_key(generation)?,
                encode(record),
                Expect::Absent,
                None,
            )
            .await
        {
            Ok(r) => Ok(r),
            Err(CoordError::Conflict { .. }) => Err(ReplicationError::Conflict {
                generation,
                detail: "the generation was already started".into(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves the head to `generation` (registered, its manifest written): with `fence`, only
    /// while it stands; without, only if the head is still at `seen` (read before the start).
    pub async fn move_head(
        &self,
        generation: u64,
        fence: Option<&Fence>,
        seen: Option<(u64, Revision)>,
    ) -> ReplicationResult<()> {
        let head_key = self.head_key()?;
        if let Some((current, _)) = seen
            && current >= generation
        {
            return Err(ReplicationError::Conflict {
                generation,
                detail: format!("head is already at generation {current}"),
            });
        }
        let value = encode(&Head {
            current: generation,
        });
        let expect = seen.map_or(Expect::Absent, |(_, r)| Expect::Revision(r));
        let moved = match fence {
            Some(fence) => match self.kv.put_if_held(&head_key, value.clone(), fence).await {
                // A store that cannot condition this write on the fence key (NATS KV: another
                // bucket): check the fence, then move the head by CAS. A successor moves the
                // head by CAS too, from the same revision, so at most one of the two moves; and
                // a primary past its term ships nothing (its lease deadline), whatever the head.
                Err(CoordError::Unsupported { .. }) => {
                    if self.kv.fence_holds(fence).await? {
                        self.kv.put(&head_key, value, expect, None).await
                    } else {
                        Err(CoordError::StaleToken {
                            resource: fence.key.path(),
                            presented: fence.token,
                            current: None,
                        })
                    }
                }
                r => r,
            },
            None => self.kv.put(&head_key, value, expect, None).await,
        };
        match moved {
            Ok(_) => Ok(()),
            Err(CoordError::StaleToken { presented, .. }) => {
                Err(ReplicationError::Fenced { token: presented })
            }
            Err(CoordError::Conflict { detail, .. }) => Err(ReplicationError::Conflict {
                generation,
                detail: detail.to_string(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Seals `generation` at `through` by CAS; returns the seal that stands (an earlier seal
    /// by someone else wins, and is returned instead).
    pub async fn seal(&self, generation: u64, through: u64) -> ReplicationResult<u64> {
        let key = self.record_key(generation)?;
        loop {
            let Some(entry) = self.kv.get(&key).await? else {
                return Err(ReplicationError::Conflict {
                    generation,
                    detail: "no record to seal".into(),
                });
            };
            let mut record: GenerationRecord = decode(&entry)?;
            if let Some(sealed) = record.sealed_through {
                return Ok(sealed);
            }
            record.sealed_through = Some(through);
            match self
                .kv
                .put(
                    &key,
                    encode(&record),
                    Expect::Revision(entry.revision),
                    None,
                )
                .await
            {
                Ok(_) => return Ok(through),
                Err(CoordError::Conflict {
                    detail: ConflictDetail::RevisionMoved { .. },
                    ..
                }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Seals `generation` at `through` like [`seal`](GenerationRegistry::seal), but only while
    /// `fence` (the sealing writer's term) holds: the fence is checked before each CAS, so a
    /// writer whose term ended seals nothing. A successor's seal is a CAS on the same revision,
    /// so at most one of the two lands.
    pub async fn seal_fenced(
        &self,
        generation: u64,
        through: u64,
        fence: Option<&Fence>,
    ) -> ReplicationResult<u64> {
        let key = self.record_key(generation)?;
        loop {
            let Some(entry) = self.kv.get(&key).await? else {
                return Err(ReplicationError::Conflict {
                    generation,
                    detail: "no record to seal".into(),
                });
            };
            let mut record: GenerationRecord = decode(&entry)?;
            if let Some(sealed) = record.sealed_through {
                return Ok(sealed);
            }
            if let Some(fence) = fence
                && !self.kv.fence_holds(fence).await?
            {
                return Err(ReplicationError::Fenced { token: fence.token });
            }
            record.sealed_through = Some(through);
            match self
                .kv
                .put(
                    &key,
                    encode(&record),
                    Expect::Revision(entry.revision),
                    None,
                )
                .await
            {
                Ok(_) => return Ok(through),
                Err(CoordError::Conflict {
                    detail: ConflictDetail::RevisionMoved { .. },
                    ..
                }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The generation on the head's chain that comes right after `generation`: walking from
    /// the head back through parents, the first whose parent is in `generation` or earlier (or
    /// that starts from a snapshot). `None` while the head is `generation` or older. Records
    /// never on the chain (starts that never became the head) are passed over.
    pub async fn successor_of(
        &self,
        generation: u64,
    ) -> ReplicationResult<Option<GenerationRecord>> {
        let Some((mut record, _)) = self.current().await? else {
            return Ok(None);
        };
        loop {
            if record.generation <= generation {
                return Ok(None);
            }
            match record.parent {
                Some(p) if p.generation > generation => match self.record(p.generation).await? {
                    Some((parent, _)) => record = parent,
                    None => return Ok(Some(record)),
                },
                _ => return Ok(Some(record)),
            }
        }
    }

    /// Whether the fence of `record` still stands: its key is still in the record's term.
    pub async fn fence_stands(&self, record: &GenerationRecord) -> ReplicationResult<bool> {
        let Some(fence) = &record.fence else {
            // Without an election there is one writer; nothing fences it out.
            return Ok(true);
        };
        let fence = Fence {
            key: Key::new(fence.namespace.clone(), fence.name.clone())?,
            token: FencingToken::new(record.token),
        };
        Ok(self.kv.fence_holds(&fence).await?)
    }
}

/// The record of a fence, for a generation record.
pub(crate) fn fence_record(fence: &Fence) -> FenceRecord {
    FenceRecord {
        namespace: fence.key.namespace().clone(),
        name: fence.key.name().to_owned(),
    }
}
