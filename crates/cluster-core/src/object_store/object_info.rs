//! What a store says about an object.

use std::time::SystemTime;

use crate::object_store::object_name::ObjectName;

/// An object's description: name, size and, where the store keeps them, digest and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The name.
    pub name: ObjectName,
    /// The size in bytes.
    pub size: u64,
    /// The store's digest of the bytes (`SHA-256=...` for NATS), where it keeps one.
    pub digest: Option<String>,
    /// When the object was last written, by the store's clock, where it keeps one.
    pub modified: Option<SystemTime>,
}

/// An object with its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Its description.
    pub info: ObjectInfo,
    /// Its bytes.
    pub data: Vec<u8>,
}
