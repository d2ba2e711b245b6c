//! The Consul test server's state: the KV table with its graveyard, sessions, lock-delays and
//! the index, with the documented semantics of each operation. No I/O: the HTTP layer
//! ([`super::http`]) calls in with the current time and serialises the answers.
//!
//! Indexes follow Consul's state store: every write takes the next raft index; a table's index
//! is the raft index of its last change; a single-key read answers with the KV table's index
//! (KV entries and tombstones), a prefix read with the largest index under the prefix
//! (entries and tombstones), falling back to the table's index when there is none. So a prefix
//! index can go backwards when tombstones are reaped, exactly as Consul's documentation warns.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Lock-delays longer than this are cut to it (Consul's `MaxLockDelay`).
pub(crate) const MAX_LOCK_DELAY: Duration = Duration::from_secs(60);

/// The longest session TTL Consul accepts.
pub(crate) const MAX_SESSION_TTL: Duration = Duration::from_secs(86_400);

/// The only node health check this server knows (the agent's gossip check).
pub(crate) const SERF_HEALTH: &str = "serfHealth";

/// One KV entry, as Consul's `DirEntry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) value: Vec<u8>,
    pub(crate) flags: u64,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
    pub(crate) lock_index: u64,
    pub(crate) session: Option<String>,
}

/// What happens to a session's locks when it is invalidated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behavior {
    Release,
    Delete,
}

impl Behavior {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Behavior::Release => "release",
            Behavior::Delete => "delete",
        }
    }
}

/// A session.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) node: String,
    pub(crate) lock_delay: Duration,
    pub(crate) behavior: Behavior,
    pub(crate) ttl: Option<Duration>,
    /// The TTL as the client wrote it, returned verbatim as Consul does.
    pub(crate) ttl_text: String,
    pub(crate) node_checks: Vec<String>,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
    /// When the session's TTL timer fires, if it has a TTL.
    pub(crate) expires_at: Option<Instant>,
}

/// What a client asked for when creating a session (already validated by the HTTP layer).
#[derive(Debug, Clone)]
pub(crate) struct SessionRequest {
    pub(crate) name: String,
    pub(crate) node: String,
    pub(crate) lock_delay: Duration,
    pub(crate) behavior: Behavior,
    pub(crate) ttl: Option<Duration>,
    pub(crate) ttl_text: String,
    pub(crate) node_checks: Vec<String>,
}

/// A KV operation: the verbs of `/v1/txn`, which the `/v1/kv` endpoint also maps onto.
#[derive(Debug, Clone)]
pub(crate) enum KvOp {
    Set {
        key: String,
        value: Vec<u8>,
        flags: u64,
    },
    Cas {
        key: String,
        value: Vec<u8>,
        flags: u64,
        index: u64,
    },
    Lock {
        key: String,
        value: Vec<u8>,
        flags: u64,
        session: String,
    },
    Unlock {
        key: String,
        value: Vec<u8>,
        flags: u64,
        session: String,
    },
    Get {
        key: String,
    },
    GetOrEmpty {
        key: String,
    },
    GetTree {
        key: String,
    },
    CheckIndex {
        key: String,
        index: u64,
    },
    CheckSession {
        key: String,
        session: String,
    },
    CheckNotExists {
        key: String,
    },
    Delete {
        key: String,
    },
    DeleteTree {
        key: String,
    },
    DeleteCas {
        key: String,
        index: u64,
    },
}

impl KvOp {
    fn is_write(&self) -> bool {
        !matches!(
            self,
            KvOp::Get { .. }
                | KvOp::GetOrEmpty { .. }
                | KvOp::GetTree { .. }
                | KvOp::CheckIndex { .. }
                | KvOp::CheckSession { .. }
                | KvOp::CheckNotExists { .. }
        )
    }
}

/// A failed operation of a transaction: its position and why, as in Consul's `Errors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TxnError {
    pub(crate) op_index: usize,
    pub(crate) what: String,
}

/// The whole state.
#[derive(Debug)]
pub(crate) struct Store {
    raft_index: u64,
    kvs_index: u64,
    tombstones_index: u64,
    sessions_index: u64,
    kv: BTreeMap<String, Entry>,
    graveyard: BTreeMap<String, u64>,
    sessions: BTreeMap<String, Session>,
    lock_delays: HashMap<String, Instant>,
}

/// Where a session's TTL timer fires: anywhere between one and two TTLs from now. Consul only
/// promises not to invalidate before the TTL and may take up to twice as long.
pub(crate) fn session_deadline(now: Instant, ttl: Duration) -> Instant {
    now + ttl + ttl.mul_f64(fastrand::f64())
}

impl Store {
    /// An empty store; the index starts at 1 (Consul's index is never 0 once it runs).
    pub(crate) fn new() -> Store {
        Store {
            raft_index: 1,
            kvs_index: 0,
            tombstones_index: 0,
            sessions_index: 0,
            kv: BTreeMap::new(),
            graveyard: BTreeMap::new(),
            sessions: BTreeMap::new(),
            lock_delays: HashMap::new(),
        }
    }

    /// The raft index: only ever grows.
    pub(crate) fn raft_index(&self) -> u64 {
        self.raft_index
    }

    fn next_index(&mut self) -> u64 {
        self.raft_index += 1;
        self.raft_index
    }

    fn kvs_table_index(&self) -> u64 {
        self.kvs_index.max(self.tombstones_index).max(1)
    }

    /// A single key and the index of the read.
    pub(crate) fn kv_get(&self, key: &str) -> (u64, Option<Entry>) {
        (self.kvs_table_index(), self.kv.get(key).cloned())
    }

    /// Every entry under `prefix` (sorted by key) and the index of the read.
    pub(crate) fn kv_list(&self, prefix: &str) -> (u64, Vec<Entry>) {
        let entries: Vec<Entry> = self
            .kv
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, e)| e.clone())
            .collect();
        (self.prefix_index(prefix, &entries), entries)
    }

    fn prefix_index(&self, prefix: &str, entries: &[Entry]) -> u64 {
        if prefix.is_empty() {
            return self.kvs_table_index();
        }
        let newest_entry = entries.iter().map(|e| e.modify_index).max().unwrap_or(0);
        let newest_tombstone = self
            .graveyard
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, i)| *i)
            .max()
            .unwrap_or(0);
        match newest_entry.max(newest_tombstone) {
            0 => self.kvs_table_index(),
            index => index,
        }
    }

    /// The keys under `prefix`, cut after `separator` when given (sorted, deduplicated).
    pub(crate) fn kv_keys(&self, prefix: &str, separator: Option<&str>) -> (u64, Vec<String>) {
        let (index, entries) = self.kv_list(prefix);
        let mut keys: Vec<String> = Vec::new();
        for e in entries {
            let key = match separator.filter(|s| !s.is_empty()) {
                Some(sep) => match e.key[prefix.len()..].find(sep) {
                    Some(at) => e.key[..prefix.len() + at + sep.len()].to_owned(),
                    None => e.key,
                },
                None => e.key,
            };
            if keys.last() != Some(&key) {
                keys.push(key);
            }
        }
        (index, keys)
    }

    /// Whether a lock-delay still blocks acquiring `key`.
    fn lock_delayed(&self, key: &str, now: Instant) -> bool {
        self.lock_delays.get(key).is_some_and(|until| *until > now)
    }

    fn write_entry(&mut self, idx: u64, mut entry: Entry) {
        entry.modify_index = idx;
        self.graveyard.remove(&entry.key);
        self.kv.insert(entry.key.clone(), entry);
        self.kvs_index = idx;
    }

    fn delete_entry(&mut self, idx: u64, key: &str) -> bool {
        if self.kv.remove(key).is_some() {
            self.graveyard.insert(key.to_owned(), idx);
            self.kvs_index = idx;
            self.tombstones_index = idx;
            true
        } else {
            false
        }
    }

    fn set(&mut self, idx: u64, key: &str, value: Vec<u8>, flags: u64) {
        // A plain write keeps the lock: "an update that does not include the acquire parameter
        // will proceed normally even if another session has locked the key".
        let entry = match self.kv.get(key) {
            Some(existing) => Entry {
                value,
                flags,
                ..existing.clone()
            },
            None => Entry {
                key: key.to_owned(),
                value,
                flags,
                create_index: idx,
                modify_index: idx,
                lock_index: 0,
                session: None,
            },
        };
        self.write_entry(idx, entry);
    }

    /// Applies one KV operation at `idx`. `Ok(None)` is the operation's plain failure (the KV
    /// endpoint answers `false`); `Err` is an error message; `Ok(Some(results))` succeeded.
    fn apply(&mut self, idx: u64, op: &KvOp, now: Instant) -> Result<Option<Vec<Entry>>, String> {
        let one = |e: Option<&Entry>| e.cloned().into_iter().collect::<Vec<_>>();
        match op {
            KvOp::Set { key, value, flags } => {
                self.set(idx, key, value.clone(), *flags);
                Ok(Some(one(self.kv.get(key))))
            }
            KvOp::Cas {
                key,
                value,
                flags,
                index,
            } => {
                let ok = match self.kv.get(key) {
                    None => *index == 0,
                    Some(e) => *index != 0 && e.modify_index == *index,
                };
                if !ok {
                    return Ok(None);
                }
                self.set(idx, key, value.clone(), *flags);
                Ok(Some(one(self.kv.get(key))))
            }
            KvOp::Lock {
                key,
                value,
                flags,
                session,
            } => {
                if session.is_empty() {
                    return Err("missing session".to_owned());
                }
                if self.lock_delayed(key, now) {
                    return Ok(None);
                }
                if !self.sessions.contains_key(session) {
                    return Err(format!("invalid session {session:?}"));
                }
                let entry = match self.kv.get(key) {
                    Some(existing) => match &existing.session {
                        Some(holder) if holder == session => Entry {
                            value: value.clone(),
                            flags: *flags,
                            ..existing.clone()
                        },
                        Some(_) => return Ok(None),
                        None => Entry {
                            value: value.clone(),
                            flags: *flags,
                            lock_index: existing.lock_index + 1,
                            session: Some(session.clone()),
                            ..existing.clone()
                        },
                    },
                    None => Entry {
                        key: key.clone(),
                        value: value.clone(),
                        flags: *flags,
                        create_index: idx,
                        modify_index: idx,
                        lock_index: 1,
                        session: Some(session.clone()),
                    },
                };
                self.write_entry(idx, entry);
                Ok(Some(one(self.kv.get(key))))
            }
            KvOp::Unlock {
                key,
                value,
                flags,
                session,
            } => {
                let Some(existing) = self.kv.get(key) else {
                    return Ok(None);
                };
                if existing.session.as_deref() != Some(session.as_str()) {
                    return Ok(None);
                }
                let entry = Entry {
                    value: value.clone(),
                    flags: *flags,
                    session: None,
                    ..existing.clone()
                };
                self.write_entry(idx, entry);
                Ok(Some(one(self.kv.get(key))))
            }
            KvOp::Get { key } => match self.kv.get(key) {
                Some(e) => Ok(Some(vec![e.clone()])),
                None => Err(format!("key {key:?} doesn't exist")),
            },
            KvOp::GetOrEmpty { key } => Ok(Some(one(self.kv.get(key)))),
            KvOp::GetTree { key } => Ok(Some(self.kv_list(key).1)),
            KvOp::CheckIndex { key, index } => match self.kv.get(key) {
                None => Err(format!("key {key:?} doesn't exist")),
                Some(e) if e.modify_index != *index => Err(format!(
                    "current modify index {} != {index}",
                    e.modify_index
                )),
                Some(e) => Ok(Some(vec![e.clone()])),
            },
            KvOp::CheckSession { key, session } => match self.kv.get(key) {
                None => Err(format!("key {key:?} doesn't exist")),
                Some(e) if e.session.as_deref() != Some(session.as_str()) => Err(format!(
                    "failed session check for key {key:?}, current session {:?} != {session:?}",
                    e.session.as_deref().unwrap_or("")
                )),
                Some(e) => Ok(Some(vec![e.clone()])),
            },
            KvOp::CheckNotExists { key } => match self.kv.get(key) {
                Some(_) => Err(format!("key {key:?} exists")),
                None => Ok(Some(Vec::new())),
            },
            KvOp::Delete { key } => {
                self.delete_entry(idx, key);
                Ok(Some(Vec::new()))
            }
            KvOp::DeleteTree { key } => {
                let doomed: Vec<String> = self
                    .kv
                    .range(key.clone()..)
                    .take_while(|(k, _)| k.starts_with(key.as_str()))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in doomed {
                    self.delete_entry(idx, &k);
                }
                Ok(Some(Vec::new()))
            }
            KvOp::DeleteCas { key, index } => match self.kv.get(key) {
                // As Consul's state store: a missing key counts as deleted.
                None => Ok(Some(Vec::new())),
                Some(e) if e.modify_index != *index => Ok(None),
                Some(_) => {
                    self.delete_entry(idx, key);
                    Ok(Some(Vec::new()))
                }
            },
        }
    }

    /// The `/v1/kv` endpoint's write: one operation, `Ok(true|false)` or an error message.
    pub(crate) fn kv_write(&mut self, op: &KvOp, now: Instant) -> Result<bool, String> {
        let idx = self.next_index();
        let saved = self.save();
        match self.apply(idx, op, now) {
            Ok(Some(_)) => Ok(true),
            Ok(None) => {
                self.restore(saved);
                Ok(false)
            }
            Err(e) => {
                self.restore(saved);
                Err(e)
            }
        }
    }

    /// A transaction: every operation or none. Read-only transactions take no index. Each
    /// result says whether it carries its value (only `get` and `get-tree` results do).
    pub(crate) fn txn(
        &mut self,
        ops: &[KvOp],
        now: Instant,
    ) -> Result<Vec<(Entry, bool)>, Vec<TxnError>> {
        let writes = ops.iter().any(KvOp::is_write);
        let idx = if writes {
            self.next_index()
        } else {
            self.raft_index
        };
        let saved = self.save();
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for (op_index, op) in ops.iter().enumerate() {
            match self.apply(idx, op, now) {
                Ok(Some(entries)) => {
                    let with_value = matches!(
                        op,
                        KvOp::Get { .. } | KvOp::GetOrEmpty { .. } | KvOp::GetTree { .. }
                    );
                    results.extend(entries.into_iter().map(|e| (e, with_value)));
                }
                Ok(None) => errors.push(TxnError {
                    op_index,
                    what: failure_message(op),
                }),
                Err(what) => errors.push(TxnError { op_index, what }),
            }
        }
        if errors.is_empty() {
            Ok(results)
        } else {
            self.restore(saved);
            Err(errors)
        }
    }

    fn save(&self) -> Saved {
        Saved {
            kvs_index: self.kvs_index,
            tombstones_index: self.tombstones_index,
            kv: self.kv.clone(),
            graveyard: self.graveyard.clone(),
        }
    }

    fn restore(&mut self, saved: Saved) {
        self.kvs_index = saved.kvs_index;
        self.tombstones_index = saved.tombstones_index;
        self.kv = saved.kv;
        self.graveyard = saved.graveyard;
    }

    /// Creates a session; returns it.
    pub(crate) fn create_session(&mut self, request: SessionRequest, now: Instant) -> Session {
        let idx = self.next_index();
        let session = Session {
            id: new_uuid(),
            name: request.name,
            node: request.node,
            lock_delay: request.lock_delay,
            behavior: request.behavior,
            ttl: request.ttl,
            ttl_text: request.ttl_text,
            node_checks: request.node_checks,
            create_index: idx,
            modify_index: idx,
            expires_at: request.ttl.map(|ttl| session_deadline(now, ttl)),
        };
        self.sessions.insert(session.id.clone(), session.clone());
        self.sessions_index = idx;
        session
    }

    /// Restarts a session's TTL timer; `None` if the session does not exist.
    pub(crate) fn renew_session(&mut self, id: &str, now: Instant) -> Option<Session> {
        let session = self.sessions.get_mut(id)?;
        session.expires_at = session.ttl.map(|ttl| session_deadline(now, ttl));
        Some(session.clone())
    }

    /// Destroys a session (idempotent), applying its behavior and lock-delay to its locks.
    pub(crate) fn destroy_session(&mut self, id: &str, now: Instant) -> bool {
        if !self.sessions.contains_key(id) {
            return false;
        }
        let idx = self.next_index();
        self.invalidate(idx, id, now);
        true
    }

    fn invalidate(&mut self, idx: u64, id: &str, now: Instant) {
        let Some(session) = self.sessions.remove(id) else {
            return;
        };
        self.sessions_index = idx;
        let held: Vec<String> = self
            .kv
            .values()
            .filter(|e| e.session.as_deref() == Some(id))
            .map(|e| e.key.clone())
            .collect();
        let delay = session.lock_delay.min(MAX_LOCK_DELAY);
        for key in held {
            match session.behavior {
                Behavior::Release => {
                    if let Some(existing) = self.kv.get(&key) {
                        let entry = Entry {
                            session: None,
                            ..existing.clone()
                        };
                        self.write_entry(idx, entry);
                    }
                }
                Behavior::Delete => {
                    self.delete_entry(idx, &key);
                }
            }
            if !delay.is_zero() {
                self.lock_delays.insert(key, now + delay);
            }
        }
    }

    /// Invalidates every session whose TTL timer has fired; returns whether any did.
    pub(crate) fn expire_sessions(&mut self, now: Instant) -> bool {
        let expired: Vec<String> = self
            .sessions
            .values()
            .filter(|s| s.expires_at.is_some_and(|at| at <= now))
            .map(|s| s.id.clone())
            .collect();
        for id in &expired {
            let idx = self.next_index();
            self.invalidate(idx, id, now);
        }
        self.lock_delays.retain(|_, until| *until > now);
        !expired.is_empty()
    }

    /// What a new leader does: every session's TTL timer starts again from now.
    pub(crate) fn reset_session_timers(&mut self, now: Instant) {
        for session in self.sessions.values_mut() {
            session.expires_at = session.ttl.map(|ttl| session_deadline(now, ttl));
        }
    }

    /// Removes every tombstone (Consul reaps them after a while); a raft operation.
    pub(crate) fn reap_tombstones(&mut self) {
        let idx = self.next_index();
        self.graveyard.clear();
        self.tombstones_index = idx;
    }

    /// One session and the index of the sessions table.
    pub(crate) fn session(&self, id: &str) -> (u64, Option<Session>) {
        (self.sessions_index.max(1), self.sessions.get(id).cloned())
    }

    /// Every session (optionally of one node) and the index of the sessions table.
    pub(crate) fn sessions(&self, node: Option<&str>) -> (u64, Vec<Session>) {
        let list = self
            .sessions
            .values()
            .filter(|s| node.is_none_or(|n| s.node == n))
            .cloned()
            .collect();
        (self.sessions_index.max(1), list)
    }
}

struct Saved {
    kvs_index: u64,
    tombstones_index: u64,
    kv: BTreeMap<String, Entry>,
    graveyard: BTreeMap<String, u64>,
}

fn failure_message(op: &KvOp) -> String {
    match op {
        KvOp::Cas { key, .. } => format!("failed to set key {key:?}, index is stale"),
        KvOp::Lock { key, .. } => format!("failed to lock key {key:?}, lock is already held"),
        KvOp::Unlock { key, .. } => {
            format!("failed to unlock key {key:?}, lock isn't held, or is held by another session")
        }
        KvOp::DeleteCas { key, .. } => format!("failed to delete key {key:?}, index is stale"),
        other => format!("operation failed: {other:?}"),
    }
}

/// A random UUID in Consul's textual form.
fn new_uuid() -> String {
    let n = fastrand::u128(..);
    let hex = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Whether `id` looks like a UUID (Consul refuses malformed session ids).
pub(crate) fn is_uuid(id: &str) -> bool {
    id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(ttl: Option<Duration>, behavior: Behavior, lock_delay: Duration) -> SessionRequest {
        SessionRequest {
            name: String::new(),
            node: "n".into(),
            lock_delay,
            behavior,
            ttl,
            ttl_text: ttl.map(super::super::duration::format).unwrap_or_default(),
            node_checks: Vec::new(),
        }
    }

    fn lock(key: &str, session: &str) -> KvOp {
        KvOp::Lock {
            key: key.into(),
            value: b"v".to_vec(),
            flags: 0,
            session: session.into(),
        }
    }

    #[test]
    fn lock_index_counts_acquisitions_and_restarts_after_delete() {
        let now = Instant::now();
        let mut s = Store::new();
        let a = s.create_session(request(None, Behavior::Release, Duration::ZERO), now);
        assert_eq!(s.kv_write(&lock("k", &a.id), now), Ok(true));
        assert_eq!(s.kv_get("k").1.unwrap().lock_index, 1);
        assert_eq!(s.kv_write(&lock("k", &a.id), now), Ok(true));
        assert_eq!(
            s.kv_get("k").1.unwrap().lock_index,
            1,
            "re-acquire by holder"
        );
        let release = KvOp::Unlock {
            key: "k".into(),
            value: Vec::new(),
            flags: 0,
            session: a.id.clone(),
        };
        assert_eq!(s.kv_write(&release, now), Ok(true));
        assert_eq!(s.kv_write(&lock("k", &a.id), now), Ok(true));
        assert_eq!(s.kv_get("k").1.unwrap().lock_index, 2);
        assert_eq!(s.kv_write(&KvOp::Delete { key: "k".into() }, now), Ok(true));
        assert_eq!(s.kv_write(&lock("k", &a.id), now), Ok(true));
        assert_eq!(s.kv_get("k").1.unwrap().lock_index, 1);
    }

    #[test]
    fn invalidation_applies_behavior_and_lock_delay() {
        let now = Instant::now();
        let mut s = Store::new();
        let a = s.create_session(request(None, Behavior::Delete, Duration::from_secs(5)), now);
        let b = s.create_session(request(None, Behavior::Release, Duration::ZERO), now);
        assert_eq!(s.kv_write(&lock("k", &a.id), now), Ok(true));
        assert!(s.destroy_session(&a.id, now));
        assert!(s.kv_get("k").1.is_none(), "delete behavior");
        assert_eq!(s.kv_write(&lock("k", &b.id), now), Ok(false), "lock-delay");
        let later = now + Duration::from_secs(6);
        assert_eq!(s.kv_write(&lock("k", &b.id), later), Ok(true));
    }

    #[test]
    fn prefix_index_goes_backwards_when_tombstones_are_reaped() {
        let now = Instant::now();
        let mut s = Store::new();
        let set = |k: &str| KvOp::Set {
            key: k.into(),
            value: Vec::new(),
            flags: 0,
        };
        s.kv_write(&set("p/a"), now).unwrap();
        s.kv_write(&set("p/b"), now).unwrap();
        let (with_b, _) = s.kv_list("p/");
        s.kv_write(&KvOp::Delete { key: "p/b".into() }, now)
            .unwrap();
        let (after_delete, entries) = s.kv_list("p/");
        assert!(after_delete > with_b);
        assert_eq!(entries.len(), 1);
        s.reap_tombstones();
        let (after_reap, _) = s.kv_list("p/");
        assert!(after_reap < after_delete, "{after_reap} !< {after_delete}");
        assert!(s.raft_index() > after_delete, "the raft index only grows");
    }
}
