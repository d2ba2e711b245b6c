//! The membership part of the port: nodes register under their lease and watch each other.
//!
//! A member record lives at `{members namespace}/{node id}`, bound to the node's lease, so a node
//! that dies leaves the membership when its lease expires, seen by every watcher as a delete.
//! The default methods build this on [`KvStore`] and [`WatchStore`]; a backend overrides them
//! only if it must.

use std::collections::BTreeMap;
use std::collections::HashMap;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::coordination::error::{CoordError, CoordResult};
use crate::coordination::key::{Key, KeyPrefix};
use crate::coordination::kv_store::{Expect, KvEntry, KvStore};
use crate::coordination::lease_store::LeaseId;
use crate::coordination::watch_store::{WatchEvent, WatchStart, WatchStore, WatchTarget};
use crate::ids::{NodeId, Revision};
use crate::naming::Namespace;

/// What a node says about itself when it joins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// The node's id, unique among live members.
    pub node: NodeId,
    /// Where to reach it (e.g. `10.0.0.5:7400`).
    pub address: String,
    /// Labels for placement (`zone=a`, `disk=ssd`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Free-form metadata (version, start time).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// A change of membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipEvent {
    /// Every live member now; replaces what the watcher knew.
    Snapshot(Vec<MemberInfo>),
    /// A node joined.
    Joined(MemberInfo),
    /// A member changed its record (labels, address).
    Updated(MemberInfo),
    /// A node left: deregistered, or its lease expired.
    Left(NodeId),
}

/// A stream of membership changes.
pub type MembershipStream = BoxStream<'static, CoordResult<MembershipEvent>>;

fn member_key(ns: &Namespace, node: &NodeId) -> CoordResult<Key> {
    Key::new(ns.clone(), node.as_str())
}

fn encode(member: &MemberInfo) -> CoordResult<Vec<u8>> {
    serde_json::to_vec(member)
        .map_err(|e| CoordError::bad_request(format!("encoding member record: {e}")))
}

/// Decodes a member record; `None` for a value that is not one (foreign or corrupt keys are
/// skipped, not fatal to a watcher).
pub fn decode_member(entry: &KvEntry) -> Option<MemberInfo> {
    serde_json::from_slice(&entry.value).ok()
}

/// Node membership.
///
/// Contract: `register` fails with [`CoordError::NodeIdInUse`] while another live lease holds
/// the id; a record disappears when its lease ends; `watch_members` starts with a snapshot and
/// reports joins, updates and leaves in store order.
#[async_trait]
pub trait MembershipStore: KvStore + WatchStore {
    /// Registers `member` bound to `lease`.
    async fn register(
        &self,
        ns: &Namespace,
        member: &MemberInfo,
        lease: &LeaseId,
    ) -> CoordResult<Revision> {
        let key = member_key(ns, &member.node)?;
        match self
            .put(&key, encode(member)?, Expect::Absent, Some(lease))
            .await
        {
            Err(CoordError::Conflict { .. }) => Err(CoordError::NodeIdInUse {
                node: member.node.clone(),
            }),
            other => other,
        }
    }

    /// Rewrites this node's own record (same lease); fails with `LeaseLost` if it is not ours.
    async fn update_member(
        &self,
        ns: &Namespace,
        member: &MemberInfo,
        lease: &LeaseId,
    ) -> CoordResult<Revision> {
        let key = member_key(ns, &member.node)?;
        let current = self.get(&key).await?;
        match current {
            Some(entry) if entry.lease.as_ref() == Some(lease) => {
                self.put(
                    &key,
                    encode(member)?,
                    Expect::Revision(entry.revision),
                    Some(lease),
                )
                .await
            }
            _ => Err(CoordError::LeaseLost {
                lease: lease.clone(),
            }),
        }
    }

    /// Removes this node's own record; a record held by another lease is left alone.
    async fn deregister(&self, ns: &Namespace, node: &NodeId, lease: &LeaseId) -> CoordResult<()> {
        let key = member_key(ns, node)?;
        if let Some(entry) = self.get(&key).await?
            && entry.lease.as_ref() == Some(lease)
        {
            match self.delete(&key, Expect::Revision(entry.revision)).await {
                Ok(_) | Err(CoordError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Every live member, sorted by node id.
    async fn members(&self, ns: &Namespace) -> CoordResult<Vec<MemberInfo>> {
        let entries = self.list(&KeyPrefix::all(ns.clone())).await?;
        Ok(entries.iter().filter_map(decode_member).collect())
    }

    /// Membership changes, starting with a snapshot.
    async fn watch_members(&self, ns: &Namespace) -> CoordResult<MembershipStream> {
        let watch = self
            .watch(
                WatchTarget::Prefix(KeyPrefix::all(ns.clone())),
                WatchStart::Now,
            )
            .await?;
        Ok(membership_events(watch))
    }
}

/// Turns a watch of a members namespace into membership events.
pub fn membership_events(watch: crate::coordination::WatchStream) -> MembershipStream {
    let mut known: HashMap<Key, MemberInfo> = HashMap::new();
    watch
        .filter_map(move |item| {
            let out = match item {
                Err(e) => Some(Err(e)),
                Ok(WatchEvent::Snapshot { entries, .. }) => {
                    known = entries
                        .iter()
                        .filter_map(|e| decode_member(e).map(|m| (e.key.clone(), m)))
                        .collect();
                    let mut all: Vec<MemberInfo> = known.values().cloned().collect();
                    all.sort_by(|a, b| a.node.cmp(&b.node));
                    Some(Ok(MembershipEvent::Snapshot(all)))
                }
                Ok(WatchEvent::Put(entry)) => decode_member(&entry).map(|member| {
                    let previous = known.insert(entry.key.clone(), member.clone());
                    Ok(match previous {
                        Some(_) => MembershipEvent::Updated(member),
                        None => MembershipEvent::Joined(member),
                    })
                }),
                Ok(WatchEvent::Delete { key, .. }) => known
                    .remove(&key)
                    .map(|member| Ok(MembershipEvent::Left(member.node))),
            };
            futures::future::ready(out)
        })
        .boxed()
}
