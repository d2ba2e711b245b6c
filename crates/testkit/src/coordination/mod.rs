//! The contract suite every `Coordinator` adapter must pass.
//!
//! An adapter's tests provide a [`CoordHarness`] (a fresh store plus ways to fault it) and call
//! [`coordination_contract_suite!`](crate::coordination_contract_suite), which expands to one
//! `#[test]` per case, so each failure is reported and can be filtered on its own:
//!
//! ```ignore
//! // crates/coord-etcd/tests/integration/contract.rs
//! testkit::coordination_contract_suite!(my_harness::EtcdHarness::start());
//! ```
//!
//! The cases assert order and outcomes, never latency: "the holder's lost signal fired before
//! the next term began", "tokens strictly increase". Time limits in the cases only bound a hang.

mod cases_election;
mod cases_kv;
mod cases_lease;
mod cases_membership;
mod cases_outage;
mod cases_watch;
mod harness;

pub use crate::wait::eventually;
pub use harness::{ClientFault, CoordHarness, TimingProfile, fresh_namespace, key};

/// Every case of the suite, by name. The macro generates one test per name.
pub mod cases {
    pub use super::cases_election::*;
    pub use super::cases_kv::*;
    pub use super::cases_lease::*;
    pub use super::cases_membership::*;
    pub use super::cases_outage::*;
    pub use super::cases_watch::*;
}

/// Expands to one `#[tokio::test]` per contract case, each on a fresh harness from `$harness`
/// (an expression evaluating to a future of a [`CoordHarness`]).
#[macro_export]
macro_rules! coordination_contract_suite {
    ($harness:expr) => {
        $crate::coordination_contract_suite!(@cases $harness;
            lease_grant_renew_revoke,
            lease_expiry_deletes_bound_keys,
            session_outlives_its_ttl_by_renewing,
            session_lost_fires_before_store_expiry,
            kv_put_get_list_delete,
            kv_conditional_writes,
            put_if_held_refuses_superseded_claim,
            watch_snapshot_then_changes_in_order,
            watch_full_history_and_compaction,
            watch_survives_store_restart,
            watch_sees_every_delete_of_one_expiry,
            election_resign_hands_over_with_larger_token,
            election_killed_holder_replaced_with_larger_token,
            election_blackholed_holder_loses_before_successor_leads,
            election_healed_holder_does_not_lead_again,
            election_never_two_leaders,
            election_observe_reports_changes,
            membership_duplicate_id_refused_until_lease_ends,
            membership_watch_joins_updates_leaves,
            claims_conflict_transfer_release,
            claims_tokens_increase_over_alternating_claims,
            claim_vanishes_with_its_lease,
            lock_excludes_and_tokens_grow,
            store_down_gives_unavailable,
        );
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::init_tracing();
                let _slot = $crate::test_slot().await;
                let mut harness = $harness.await;
                $crate::coordination::cases::$case(&mut harness).await;
            }
        )*
    };
}
