//! bus-mem's integration tests, one binary for all of them (one link instead of one per
//! file): each module is one area, named as its file.

mod contract;
mod object_store_contract;
