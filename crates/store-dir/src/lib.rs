//! `DirObjectStore`: the ObjectStore port over a local directory.
//!
//! One file per object, named by the object name with `/` written as `%` (a character names
//! never contain), so `a` and `a/b` can both exist. A put writes a hidden temporary file,
//! fsyncs it, renames it over the name and fsyncs the directory: readers see the old file or
//! the new one, and a crash leaves at most a stray temporary file, swept on open.
#![warn(missing_docs)]
#![warn(clippy::unwrap_used)]

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use cluster_core::object_store::{
    Object, ObjectInfo, ObjectName, ObjectOperation, ObjectStore, ObjectStoreError, ObjectStores,
};

const TEMP_PREFIX: &str = ".tmp-";

/// Objects as files in one directory, for tests and for users without NATS.
#[derive(Debug, Clone)]
pub struct DirObjectStore {
    root: Arc<PathBuf>,
}

/// Buckets as directories under one root: bucket `name` is `root/name`. Nodes that share the
/// root (one machine, or a shared filesystem) share the buckets.
#[derive(Debug, Clone)]
pub struct DirObjectStores {
    root: PathBuf,
}

impl DirObjectStores {
    /// Buckets under `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> DirObjectStores {
        DirObjectStores { root: root.into() }
    }
}

#[async_trait]
impl ObjectStores for DirObjectStores {
    async fn bucket(&self, name: &str) -> Result<Arc<dyn ObjectStore>, ObjectStoreError> {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(ObjectStoreError::refused(
                ObjectOperation::Open,
                format!("bucket name {name:?} is not [A-Za-z0-9_-]+"),
            ));
        }
        Ok(Arc::new(DirObjectStore::open(self.root.join(name))?))
    }
}

fn io_error(operation: ObjectOperation, e: std::io::Error) -> ObjectStoreError {
    ObjectStoreError::refused(operation, e.to_string())
}

fn file_name(name: &ObjectName) -> String {
    name.as_str().replace('/', "%")
}

fn object_name(file: &str) -> Option<ObjectName> {
    ObjectName::new(file.replace('%', "/")).ok()
}

fn info_of(name: ObjectName, meta: &std::fs::Metadata) -> ObjectInfo {
    ObjectInfo {
        name,
        size: meta.len(),
        digest: None,
        modified: meta.modified().ok(),
    }
}

impl DirObjectStore {
    /// Opens (creating if needed) the directory `root` as a bucket; removes temporary files
    /// left by an interrupted put.
    pub fn open(root: impl Into<PathBuf>) -> Result<DirObjectStore, ObjectStoreError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| io_error(ObjectOperation::Open, e))?;
        let entries = std::fs::read_dir(&root).map_err(|e| io_error(ObjectOperation::Open, e))?;
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(DirObjectStore {
            root: Arc::new(root),
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    async fn blocking<T, F>(&self, operation: ObjectOperation, f: F) -> Result<T, ObjectStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Path) -> Result<T, ObjectStoreError> + Send + 'static,
    {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || f(&root))
            .await
            .map_err(|e| ObjectStoreError::refused(operation, format!("worker failed: {e}")))?
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl ObjectStore for DirObjectStore {
    async fn put(&self, name: &ObjectName, data: Vec<u8>) -> Result<ObjectInfo, ObjectStoreError> {
        let name = name.clone();
        self.blocking(ObjectOperation::Put, move |root| {
            use std::io::Write;
            let op = ObjectOperation::Put;
            let temp = root.join(format!("{TEMP_PREFIX}{:016x}", fastrand::u64(..)));
            let result = (|| {
                let mut file = std::fs::File::create(&temp)?;
                file.write_all(&data)?;
                file.sync_all()?;
                let target = root.join(file_name(&name));
                std::fs::rename(&temp, &target)?;
                sync_dir(root)?;
                std::fs::metadata(&target)
            })();
            match result {
                Ok(meta) => Ok(info_of(name, &meta)),
                Err(e) => {
                    let _ = std::fs::remove_file(&temp);
                    Err(io_error(op, e))
                }
            }
        })
        .await
    }

    async fn get(&self, name: &ObjectName) -> Result<Option<Object>, ObjectStoreError> {
        let name = name.clone();
        self.blocking(ObjectOperation::Get, move |root| {
            use std::io::Read;
            let path = root.join(file_name(&name));
            // Open once, then read and describe the same file: a concurrent rename cannot mix
            // two versions.
            let mut file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_error(ObjectOperation::Get, e)),
            };
            let meta = file
                .metadata()
                .map_err(|e| io_error(ObjectOperation::Get, e))?;
            let mut data = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
            file.read_to_end(&mut data)
                .map_err(|e| io_error(ObjectOperation::Get, e))?;
            Ok(Some(Object {
                info: info_of(name, &meta),
                data,
            }))
        })
        .await
    }

    async fn head(&self, name: &ObjectName) -> Result<Option<ObjectInfo>, ObjectStoreError> {
        let name = name.clone();
        self.blocking(ObjectOperation::Get, move |root| {
            match std::fs::metadata(root.join(file_name(&name))) {
                Ok(meta) => Ok(Some(info_of(name, &meta))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io_error(ObjectOperation::Get, e)),
            }
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectStoreError> {
        let prefix = prefix.to_owned();
        self.blocking(ObjectOperation::List, move |root| {
            let op = ObjectOperation::List;
            let mut out = Vec::new();
            for entry in std::fs::read_dir(root).map_err(|e| io_error(op, e))? {
                let entry = entry.map_err(|e| io_error(op, e))?;
                let file = entry.file_name();
                let file = file.to_string_lossy();
                if file.starts_with('.') {
                    continue;
                }
                let Some(name) = object_name(&file) else {
                    continue;
                };
                if !name.as_str().starts_with(&prefix) {
                    continue;
                }
                match entry.metadata() {
                    Ok(meta) => out.push(info_of(name, &meta)),
                    // Deleted between readdir and stat.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error(op, e)),
                }
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await
    }

    async fn delete(&self, name: &ObjectName) -> Result<bool, ObjectStoreError> {
        let name = name.clone();
        self.blocking(
            ObjectOperation::Delete,
            move |root| match std::fs::remove_file(root.join(file_name(&name))) {
                Ok(()) => {
                    sync_dir(root).map_err(|e| io_error(ObjectOperation::Delete, e))?;
                    Ok(true)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(io_error(ObjectOperation::Delete, e)),
            },
        )
        .await
    }
}
