//! What a node sees of its ring's claims: the watch of every claim, applied without going back.

use std::collections::BTreeMap;
use std::sync::Arc;

use cluster_core::coordination::{
    Coordinator, OwnershipClaim, WatchEvent, WatchStart, WatchStream, WatchTarget,
};
use tokio_util::sync::CancellationToken;

use super::partition_of_key;

/// Opens a watch, retrying until it opens or `stop` fires.
pub(super) async fn open_watch(
    coord: &Arc<dyn Coordinator>,
    target: WatchTarget,
    stop: &CancellationToken,
) -> Option<WatchStream> {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return None,
            w = coord.watch(target.clone(), WatchStart::Now) => match w {
                Ok(w) => return Some(w),
                Err(e) => {
                    tracing::debug!(error = %e, "ring watch failed; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return None,
                        _ = tokio::time::sleep(crate::timing::pace::SAFETY_WATCH_REOPEN) => {}
                    }
                }
            },
        }
    }
}

/// Applies a claims-watch event to the claim of each partition, never going back in revision:
/// a claim this node made (and recorded at once) is newer than a snapshot taken before it, and a
/// delete of an older claim does not erase a newer one.
pub(super) fn apply_claims(
    coord: &dyn Coordinator,
    claims: &mut [Option<OwnershipClaim>],
    event: WatchEvent,
) {
    fn newer(current: &Option<OwnershipClaim>, revision: u64) -> bool {
        current.as_ref().is_some_and(|c| c.token.get() > revision)
    }
    match event {
        WatchEvent::Snapshot { entries, revision } => {
            let mut seen: BTreeMap<u32, OwnershipClaim> = BTreeMap::new();
            for e in entries {
                if let (Some(p), Some(c)) = (partition_of_key(&e.key), coord.claim_from_entry(&e)) {
                    seen.insert(p, c);
                }
            }
            for (p, slot) in claims.iter_mut().enumerate() {
                if !newer(slot, revision.0) {
                    *slot = seen.remove(&(p as u32));
                }
            }
        }
        WatchEvent::Put(e) => {
            if let (Some(p), Some(c)) = (partition_of_key(&e.key), coord.claim_from_entry(&e))
                && let Some(slot) = claims.get_mut(p as usize)
                && !newer(slot, c.token.get())
            {
                *slot = Some(c);
            }
        }
        WatchEvent::Delete { key, revision } => {
            if let Some(p) = partition_of_key(&key)
                && let Some(slot) = claims.get_mut(p as usize)
                && !newer(slot, revision.0)
            {
                *slot = None;
            }
        }
    }
}
