//! The contract suite every `ObjectStore` adapter must pass.
//!
//! An adapter's tests provide an [`ObjectStoreHarness`] (fresh clients of one bucket, and a way
//! to take the store down where it has one) and call
//! [`object_store_contract_suite!`](crate::object_store_contract_suite), which expands to one
//! `#[test]` per case:
//!
//! ```ignore
//! // crates/store-dir/tests/integration/main.rs
//! testkit::object_store_contract_suite!(DirHarness::start());
//! ```
//!
//! Cases assert outcomes (bytes, order, absence), never latency; time limits only bound a hang.

mod cases_basic;
mod cases_outage;
mod harness;

pub use harness::{ObjectStoreHarness, name, pattern};

/// Every case of the suite, by name.
pub mod cases {
    pub use super::cases_basic::*;
    pub use super::cases_outage::*;
}

/// Expands to one `#[tokio::test]` per contract case, each on a fresh harness from `$harness`
/// (an expression evaluating to a future of an [`ObjectStoreHarness`]).
#[macro_export]
macro_rules! object_store_contract_suite {
    ($harness:expr) => {
        $crate::object_store_contract_suite!(@cases $harness;
            put_then_get_round_trip,
            missing_object_is_none,
            overwrite_replaces_the_whole_object,
            empty_and_large_objects_keep_their_bytes,
            list_filters_by_prefix_in_name_order,
            delete_is_idempotent_and_hides_the_object,
            another_client_reads_what_one_wrote,
            concurrent_puts_of_distinct_names_all_land,
            readers_never_see_a_partial_overwrite,
            store_down_gives_unavailable_and_keeps_objects,
        );
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::init_tracing();
                let _slot = $crate::test_slot().await;
                let mut harness = $harness.await;
                $crate::object_store::cases::$case(&mut harness).await;
            }
        )*
    };
}
