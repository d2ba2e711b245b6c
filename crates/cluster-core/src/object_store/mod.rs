//! The ObjectStore port: named, immutable-once-written blobs in one bucket.
//!
//! | item | what |
//! | --- | --- |
//! | [`ObjectStore`] | the port: put, get, head, list by prefix, delete |
//! | [`ObjectName`] | a validated name (`[A-Za-z0-9._=/-]`, at most [`MAX_NAME_LEN`] bytes) |
//! | [`ObjectInfo`], [`Object`] | what the store says about an object, and an object with its bytes |
//! | [`ObjectStoreError`], [`ObjectOperation`] | why a call failed; `is_retryable` tells an outage from a refusal |
//! | [`ObjectStores`] | opens buckets by name (one backend, many buckets) |
//!
//! One store value is one bucket (for NATS: one Object Store bucket, named by
//! [`Namespace::bucket`](crate::naming::Namespace::bucket)). Adapters: `bus-nats`'s
//! `NatsObjectStore`, `store-dir`'s `DirObjectStore`, `bus-mem`'s `MemObjectStore`; every
//! adapter passes `testkit::object_store`'s contract suite. Their [`ObjectStores`]:
//! `NatsObjectStores`, `DirObjectStores`.

mod object_error;
mod object_info;
mod object_name;
// Named after the trait it holds, like the other ports' files.
#[allow(clippy::module_inception)]
mod object_store;
mod object_stores;

pub use object_error::{ObjectErrorSource, ObjectOperation, ObjectStoreError};
pub use object_info::{Object, ObjectInfo};
pub use object_name::{MAX_NAME_LEN, NAME_CHARSET, ObjectName};
pub use object_store::ObjectStore;
pub use object_stores::ObjectStores;
