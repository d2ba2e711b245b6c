//! The shared in-memory state: keys with revisions, leases with expiry, history, watchers.
// Lease expiry is a timer: it sleeps on tokio's clock (which paused-time tests drive), and the Clock port has no sleep to drive it with.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, Weak};
use std::time::Duration;

use cluster_core::coordination::{
    ConflictDetail, CoordError, CoordResult, Expect, Key, KeyPrefix, KvEntry, LeaseId, WatchEvent,
    WatchTarget,
};
use cluster_core::ids::Revision;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

struct LeaseRecord {
    ttl: Duration,
    expires: Instant,
    keys: BTreeSet<String>,
}

struct Watcher {
    target: WatchTarget,
    tx: mpsc::UnboundedSender<WatchEvent>,
}

/// Everything the store holds. All access goes through [`MemStore::lock`].
pub(crate) struct State {
    revision: u64,
    entries: BTreeMap<String, KvEntry>,
    leases: HashMap<String, LeaseRecord>,
    next_lease: u64,
    history: VecDeque<WatchEvent>,
    compacted: u64,
    watchers: Vec<Watcher>,
    pub(crate) down: bool,
}

/// The store shared by every handle.
pub(crate) struct MemStore {
    state: Mutex<State>,
    /// Wakes the reaper when a lease's expiry moves earlier.
    pub(crate) lease_changed: Notify,
}

impl MemStore {
    pub(crate) fn new() -> Self {
        MemStore {
            state: Mutex::new(State {
                revision: 0,
                entries: BTreeMap::new(),
                leases: HashMap::new(),
                next_lease: 1,
                history: VecDeque::new(),
                compacted: 0,
                watchers: Vec::new(),
                down: false,
            }),
            lease_changed: Notify::new(),
        }
    }

    /// Locks the state, first expiring every lease that is due.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.expire_due(Instant::now());
        state
    }
}

/// Deletes expired leases in the background, so watchers see expiries without other traffic.
pub(crate) async fn reap(store: Weak<MemStore>) {
    loop {
        let next = {
            let Some(store) = store.upgrade() else { return };
            let state = store.lock();
            state.leases.values().map(|l| l.expires).min()
        };
        let Some(store) = store.upgrade() else { return };
        let changed = store.lease_changed.notified();
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = changed => {}
                }
            }
            None => changed.await,
        }
        drop(store.lock());
    }
}

impl State {
    fn next_revision(&mut self) -> Revision {
        self.revision += 1;
        Revision(self.revision)
    }

    /// The current store revision.
    pub(crate) fn revision(&self) -> Revision {
        Revision(self.revision)
    }

    fn record(&mut self, event: WatchEvent) {
        self.watchers.retain(|w| !w.tx.is_closed());
        for w in &self.watchers {
            let key = match &event {
                WatchEvent::Put(e) => &e.key,
                WatchEvent::Delete { key, .. } => key,
                WatchEvent::Snapshot { .. } => continue,
            };
            if w.target.matches(key) {
                let _ = w.tx.send(event.clone());
            }
        }
        self.history.push_back(event);
    }

    fn expire_due(&mut self, now: Instant) {
        let due: Vec<String> = self
            .leases
            .iter()
            .filter(|(_, l)| l.expires <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            tracing::debug!(lease = %id, "mem lease expired");
            self.drop_lease(&id);
        }
    }

    fn drop_lease(&mut self, id: &str) {
        if let Some(lease) = self.leases.remove(id) {
            for path in lease.keys {
                self.remove_entry(&path);
            }
        }
    }

    fn remove_entry(&mut self, path: &str) -> bool {
        let Some(entry) = self.entries.remove(path) else {
            return false;
        };
        if let Some(lease) = entry
            .lease
            .as_ref()
            .and_then(|l| self.leases.get_mut(l.as_str()))
        {
            lease.keys.remove(path);
        }
        let revision = self.next_revision();
        self.record(WatchEvent::Delete {
            key: entry.key,
            revision,
        });
        true
    }

    pub(crate) fn grant(&mut self, ttl: Duration) -> LeaseId {
        let id = format!("mem-lease-{}", self.next_lease);
        self.next_lease += 1;
        self.leases.insert(
            id.clone(),
            LeaseRecord {
                ttl,
                expires: Instant::now() + ttl,
                keys: BTreeSet::new(),
            },
        );
        LeaseId::new(id)
    }

    pub(crate) fn renew(&mut self, lease: &LeaseId) -> CoordResult<Duration> {
        let record = self
            .leases
            .get_mut(lease.as_str())
            .ok_or_else(|| lost(lease))?;
        record.expires = Instant::now() + record.ttl;
        Ok(record.ttl)
    }

    pub(crate) fn revoke(&mut self, lease: &LeaseId) {
        self.drop_lease(lease.as_str());
    }

    pub(crate) fn get(&self, key: &Key) -> Option<KvEntry> {
        self.entries.get(&key.path()).cloned()
    }

    pub(crate) fn list(&self, prefix: &KeyPrefix) -> Vec<KvEntry> {
        let start = prefix.path();
        self.entries
            .range(start.clone()..)
            .take_while(|(path, _)| path.starts_with(&start))
            .map(|(_, e)| e.clone())
            .collect()
    }

    fn check(&self, key: &Key, expect: Expect) -> CoordResult<Option<&KvEntry>> {
        let current = self.entries.get(&key.path());
        let detail = match (expect, current) {
            (Expect::Any, _) => None,
            (Expect::Absent, None) => None,
            (Expect::Absent, Some(e)) => Some(ConflictDetail::Exists {
                revision: e.revision,
            }),
            (Expect::Revision(r), Some(e)) if e.revision == r => None,
            (Expect::Revision(expected), found) => Some(ConflictDetail::RevisionMoved {
                expected,
                found: found.map(|e| e.revision),
            }),
        };
        match detail {
            None => Ok(current),
            Some(detail) => Err(CoordError::Conflict {
                key: key.path(),
                detail,
            }),
        }
    }

    pub(crate) fn put(
        &mut self,
        key: &Key,
        value: Vec<u8>,
        expect: Expect,
        lease: Option<&LeaseId>,
    ) -> CoordResult<Revision> {
        if let Some(lease) = lease
            && !self.leases.contains_key(lease.as_str())
        {
            return Err(lost(lease));
        }
        let created = self.check(key, expect)?.and_then(|e| e.created);
        let path = key.path();
        if let Some(old) = self.entries.get(&path).and_then(|e| e.lease.clone())
            && let Some(record) = self.leases.get_mut(old.as_str())
        {
            record.keys.remove(&path);
        }
        let revision = self.next_revision();
        let entry = KvEntry {
            key: key.clone(),
            value,
            revision,
            created: Some(created.unwrap_or(revision)),
            lease: lease.cloned(),
        };
        if let Some(record) = lease.and_then(|l| self.leases.get_mut(l.as_str())) {
            record.keys.insert(path.clone());
        }
        self.entries.insert(path, entry.clone());
        self.record(WatchEvent::Put(entry));
        Ok(revision)
    }

    pub(crate) fn delete(&mut self, key: &Key, expect: Expect) -> CoordResult<bool> {
        self.check(key, expect)?;
        Ok(self.remove_entry(&key.path()))
    }

    /// Registers a watcher; returns its first events (snapshot or replayed history).
    pub(crate) fn watch(
        &mut self,
        target: WatchTarget,
        after: Option<Revision>,
        tx: mpsc::UnboundedSender<WatchEvent>,
    ) -> CoordResult<()> {
        match after {
            None => {
                let entries = match &target {
                    WatchTarget::Key(k) => self.get(k).into_iter().collect(),
                    WatchTarget::Prefix(p) => self.list(p),
                };
                let _ = tx.send(WatchEvent::Snapshot {
                    entries,
                    revision: self.revision(),
                });
            }
            Some(after) => {
                if after.0 < self.compacted {
                    return Err(CoordError::Compacted {
                        requested: Revision(after.0 + 1),
                        compacted: Revision(self.compacted),
                    });
                }
                for event in &self.history {
                    let key = match event {
                        WatchEvent::Put(e) => &e.key,
                        WatchEvent::Delete { key, .. } => key,
                        WatchEvent::Snapshot { .. } => continue,
                    };
                    if event.revision() > after && target.matches(key) {
                        let _ = tx.send(event.clone());
                    }
                }
            }
        }
        self.watchers.push(Watcher { target, tx });
        Ok(())
    }

    /// Drops history up to and including `revision`.
    pub(crate) fn compact(&mut self, revision: Revision) {
        let upto = revision.0.min(self.revision);
        self.history.retain(|e| e.revision().0 > upto);
        self.compacted = self.compacted.max(upto);
    }
}

fn lost(lease: &LeaseId) -> CoordError {
    CoordError::LeaseLost {
        lease: lease.clone(),
    }
}
