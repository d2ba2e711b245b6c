//! A fence: the key and token that prove a holder still holds something.

use crate::coordination::key::Key;
use crate::ids::FencingToken;

/// Proof of holding: `key` exists at revision `token`.
///
/// Ownership claims, leaderships and locks each give one ([`OwnershipClaim::fence`],
/// [`Leadership::fence`], [`LockHold::fence`]). A write made on a holder's behalf carries it, and
/// the store commits the write only while the fence still stands (`put_if_held`).
///
/// [`OwnershipClaim::fence`]: crate::coordination::OwnershipClaim::fence
/// [`Leadership::fence`]: crate::coordination::Leadership::fence
/// [`LockHold::fence`]: crate::coordination::LockHold::fence
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fence {
    /// The key whose revision is the token.
    pub key: Key,
    /// The token: the key's revision when it was taken.
    pub token: FencingToken,
}
