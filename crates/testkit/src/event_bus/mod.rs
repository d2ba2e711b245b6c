//! The contract suite every `EventBus` adapter must pass.
//!
//! An adapter's tests provide a [`BusHarness`] (fresh bus clients plus a way to take the bus
//! down) and call [`event_bus_contract_suite!`](crate::event_bus_contract_suite), which expands
//! to one `#[test]` per case:
//!
//! ```ignore
//! // crates/bus-mem/tests/integration/contract.rs
//! testkit::event_bus_contract_suite!(MemHarness::start());
//! ```
//!
//! Each case works in its own stream and subject prefix, so cases sharing a server never see
//! each other's messages. Cases assert order and outcomes; time limits only bound a hang.

mod cases_consume;
mod cases_outage;
mod cases_publish;
mod harness;

pub use harness::{BusHarness, Fixture, expect_nothing, fixture, message, recv};

/// Every case of the suite, by name.
pub mod cases {
    pub use super::cases_consume::*;
    pub use super::cases_outage::*;
    pub use super::cases_publish::*;
}

/// Expands to one `#[tokio::test]` per contract case, each on a fresh harness from `$harness`
/// (an expression evaluating to a future of a [`BusHarness`]).
#[macro_export]
macro_rules! event_bus_contract_suite {
    ($harness:expr) => {
        $crate::event_bus_contract_suite!(@cases $harness;
            publish_then_consume_round_trip,
            duplicate_message_id_is_stored_once,
            per_subject_order_under_concurrent_publishers,
            filters_select_subjects,
            nak_redelivers_with_a_higher_count,
            term_stops_redelivery,
            unacked_delivery_comes_back_after_ack_wait,
            durable_consumer_resumes_after_its_last_ack,
            position_and_read_show_outstanding_deliveries,
            read_next_matching_skips_other_subjects,
            exclusive_consumer_delivers_to_one_subscriber_at_a_time,
            oversized_message_is_refused,
            invalid_specs_are_refused,
            bus_down_gives_unavailable_and_keeps_acked_messages,
        );
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::init_tracing();
                let _slot = $crate::test_slot().await;
                let mut harness = $harness.await;
                $crate::event_bus::cases::$case(&mut harness).await;
            }
        )*
    };
}
