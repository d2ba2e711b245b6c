//! `NatsObjectStore`: the ObjectStore port over a JetStream Object Store bucket.
//!
//! Objects are chunked into the bucket's stream; a put publishes the chunks, then the
//! description (rolled up per name), so an object is visible only once whole. A get reads the
//! description, then the chunks it names, and checks the SHA-256 digest; when an overwrite
//! purges those chunks mid-read it starts again from the new description, so a reader gets one
//! whole version. Every call is bounded by the call timeout and maps transport trouble to
//! `Unavailable`.
//!
//! Reads never use JetStream's direct get, which any replica may answer, including a follower
//! that has not stored the latest write yet: a standby deciding where to seal a generation, or
//! a restore, must see every acknowledged object. Descriptions and chunks are read with the
//! stream's message-get API, which only the stream leader answers.

use std::sync::Arc;
use std::time::Duration;
use std::time::SystemTime;

use async_nats::jetstream;
use async_nats::jetstream::object_store::{self as nats_os, DeleteErrorKind, ObjectMetadata};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::stream::StorageType;
use async_trait::async_trait;
use cluster_core::object_store::{
    Object, ObjectInfo, ObjectName, ObjectOperation, ObjectStore, ObjectStoreError, ObjectStores,
};
use futures::StreamExt;

use crate::config::NatsBusConfig;

/// Chunk size for puts: large enough for few round trips, well under the default max payload.
const CHUNK_SIZE: usize = 256 * 1024;

/// How a bucket is created when it does not exist yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectBucketSpec {
    /// The bucket's name (`[A-Za-z0-9_-]`), e.g. `Namespace::bucket()`.
    pub name: String,
    /// Copies kept (1, or 3 on a cluster for durability without `sync_interval: always`).
    pub replicas: usize,
    /// The bucket's size limit in bytes; `None` for no limit.
    pub max_bytes: Option<u64>,
}

impl ObjectBucketSpec {
    /// One replica, no size limit.
    pub fn new(name: impl Into<String>) -> ObjectBucketSpec {
        ObjectBucketSpec {
            name: name.into(),
            replicas: 1,
            max_bytes: None,
        }
    }
}

/// The ObjectStore port over a NATS Object Store bucket. Cheap to clone.
#[derive(Clone)]
pub struct NatsObjectStore {
    client: async_nats::Client,
    bucket: nats_os::ObjectStore,
    /// The bucket's stream, for reading descriptions and chunks through its leader (no
    /// consumer per read).
    stream: jetstream::stream::Stream,
    name: String,
    call_timeout: Duration,
}

impl std::fmt::Debug for NatsObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsObjectStore")
            .field("bucket", &self.name)
            .field("state", &self.client.connection_state())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NatsCallFailed(String);

fn unavailable(operation: ObjectOperation, e: impl std::fmt::Display) -> ObjectStoreError {
    ObjectStoreError::unavailable(operation, NatsCallFailed(e.to_string()))
}

fn to_info(info: &nats_os::ObjectInfo) -> Option<ObjectInfo> {
    let name = ObjectName::new(info.name.clone()).ok()?;
    Some(ObjectInfo {
        name,
        size: info.size as u64,
        digest: info.digest.clone(),
        modified: info.modified.map(|t| {
            SystemTime::UNIX_EPOCH + Duration::from_nanos(t.unix_timestamp_nanos().max(0) as u64)
        }),
    })
}

/// A connection for object stores: reconnects forever, every request bounded by the call
/// timeout.
async fn connect_client(config: &NatsBusConfig) -> Result<async_nats::Client, ObjectStoreError> {
    let op = ObjectOperation::Open;
    let options = config.connect_options();
    match tokio::time::timeout(
        config.connect_timeout * 2,
        options.connect(config.url.as_str()),
    )
    .await
    {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(unavailable(op, e)),
        Err(_) => Err(ObjectStoreError::timed_out(op, config.connect_timeout * 2)),
    }
}

/// Opens NATS Object Store buckets by name on one connection, creating missing ones with the
/// same replicas and size limit.
#[derive(Clone)]
pub struct NatsObjectStores {
    client: async_nats::Client,
    call_timeout: Duration,
    replicas: usize,
    max_bytes: Option<u64>,
}

impl std::fmt::Debug for NatsObjectStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsObjectStores")
            .field("replicas", &self.replicas)
            .field("max_bytes", &self.max_bytes)
            .field("state", &self.client.connection_state())
            .finish()
    }
}

impl NatsObjectStores {
    /// Connects; buckets are created with `replicas` copies (1, or 3 on a cluster) and no size
    /// limit.
    pub async fn connect(
        config: NatsBusConfig,
        replicas: usize,
    ) -> Result<NatsObjectStores, ObjectStoreError> {
        let client = connect_client(&config).await?;
        Ok(NatsObjectStores::new(client, config.call_timeout, replicas))
    }

    /// Over an existing connection.
    pub fn new(
        client: async_nats::Client,
        call_timeout: Duration,
        replicas: usize,
    ) -> NatsObjectStores {
        NatsObjectStores {
            client,
            call_timeout,
            replicas,
            max_bytes: None,
        }
    }

    /// Each bucket created from now on is limited to `max_bytes`.
    pub fn max_bytes(mut self, max_bytes: u64) -> NatsObjectStores {
        self.max_bytes = Some(max_bytes);
        self
    }
}

#[async_trait]
impl ObjectStores for NatsObjectStores {
    async fn bucket(&self, name: &str) -> Result<Arc<dyn ObjectStore>, ObjectStoreError> {
        let spec = ObjectBucketSpec {
            name: name.to_owned(),
            replicas: self.replicas,
            max_bytes: self.max_bytes,
        };
        let store = NatsObjectStore::open(self.client.clone(), self.call_timeout, &spec).await?;
        Ok(Arc::new(store))
    }
}

impl NatsObjectStore {
    /// Connects and opens the bucket, creating it from `spec` if it does not exist.
    pub async fn connect(
        config: NatsBusConfig,
        spec: &ObjectBucketSpec,
    ) -> Result<NatsObjectStore, ObjectStoreError> {
        let client = connect_client(&config).await?;
        NatsObjectStore::open(client, config.call_timeout, spec).await
    }

    /// Opens the bucket on an existing connection, creating it from `spec` if needed.
    pub async fn open(
        client: async_nats::Client,
        call_timeout: Duration,
        spec: &ObjectBucketSpec,
    ) -> Result<NatsObjectStore, ObjectStoreError> {
        let op = ObjectOperation::Open;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(call_timeout);
        let open = async {
            match js.get_object_store(&spec.name).await {
                Ok(bucket) => Ok(bucket),
                Err(_) => js
                    .create_object_store(nats_os::Config {
                        bucket: spec.name.clone(),
                        storage: StorageType::File,
                        num_replicas: spec.replicas,
                        max_bytes: spec
                            .max_bytes
                            .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| {
                        // A refusal names the bucket config; anything else is transport.
                        if e.to_string().contains("timed out") {
                            unavailable(op, e)
                        } else {
                            ObjectStoreError::refused(op, e.to_string())
                        }
                    }),
            }
        };
        let bucket = tokio::time::timeout(call_timeout * 2, open)
            .await
            .map_err(|_| ObjectStoreError::timed_out(op, call_timeout * 2))??;
        let stream =
            tokio::time::timeout(call_timeout, js.get_stream(format!("OBJ_{}", spec.name)))
                .await
                .map_err(|_| ObjectStoreError::timed_out(op, call_timeout))?
                .map_err(|e| unavailable(op, e))?;
        Ok(NatsObjectStore {
            client,
            bucket,
            stream,
            name: spec.name.clone(),
            call_timeout,
        })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.name
    }

    async fn bounded<T, F>(
        &self,
        operation: ObjectOperation,
        limit: Duration,
        f: F,
    ) -> Result<T, ObjectStoreError>
    where
        F: Future<Output = Result<T, ObjectStoreError>>,
    {
        match tokio::time::timeout(limit, f).await {
            Ok(r) => r,
            Err(_) => Err(ObjectStoreError::timed_out(operation, limit)),
        }
    }

    /// Time allowed for moving `size` bytes: the call timeout plus a second per 32 MiB.
    fn budget(&self, size: usize) -> Duration {
        self.call_timeout + Duration::from_secs((size / (32 << 20)) as u64)
    }

    async fn info(
        &self,
        name: &ObjectName,
    ) -> Result<Option<nats_os::ObjectInfo>, ObjectStoreError> {
        use base64::Engine;
        let op = ObjectOperation::Get;
        // The bucket's own `info` uses a direct get when the stream allows it (async-nats
        // always creates object-store streams so): read the description from the leader.
        let encoded = base64::engine::general_purpose::URL_SAFE.encode(name.as_str());
        let subject = format!("$O.{}.M.{encoded}", self.name);
        self.bounded(op, self.call_timeout, async {
            match self.stream.get_last_raw_message_by_subject(&subject).await {
                Ok(message) => {
                    let info: nats_os::ObjectInfo = serde_json::from_slice(&message.payload)
                        .map_err(|e| ObjectStoreError::Corrupt {
                            name: name.to_string(),
                            detail: format!("unreadable description: {e}"),
                        })?;
                    Ok((!info.deleted).then_some(info))
                }
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
                Err(e) if e.kind() == LastRawMessageErrorKind::InvalidSubject => {
                    Err(ObjectStoreError::InvalidName {
                        name: name.to_string(),
                        reason: "rejected by the NATS object store",
                    })
                }
                Err(e) => Err(unavailable(op, e)),
            }
        })
        .await
    }
}

impl NatsObjectStore {
    /// Reads an object's chunks one leader-answered message get at a time and checks its digest.
    async fn read_chunks(&self, info: &nats_os::ObjectInfo) -> Result<Vec<u8>, ObjectStoreError> {
        use base64::Engine;
        use sha2::Digest;
        let op = ObjectOperation::Get;
        let subject = format!("$O.{}.C.{}", self.name, info.nuid);
        let mut data = Vec::with_capacity(info.size);
        let mut digest = sha2::Sha256::new();
        let mut next = None;
        for _ in 0..info.chunks {
            let message = match next {
                None => self.stream.get_next_raw_message_by_subject(&subject).await,
                Some(from) => {
                    self.stream
                        .get_first_raw_message_by_subject(&subject, from)
                        .await
                }
            }
            .map_err(|e| unavailable(op, e))?;
            digest.update(&message.payload);
            data.extend_from_slice(&message.payload);
            next = Some(message.sequence + 1);
        }
        let expected = info.digest.as_deref().unwrap_or_default();
        let actual = format!(
            "SHA-256={}",
            base64::engine::general_purpose::URL_SAFE.encode(digest.finalize())
        );
        if data.len() != info.size || (!expected.is_empty() && expected != actual) {
            return Err(ObjectStoreError::Corrupt {
                name: info.name.clone(),
                detail: format!(
                    "{} of {} bytes, digest {actual} (recorded {expected})",
                    data.len(),
                    info.size
                ),
            });
        }
        Ok(data)
    }
}

#[async_trait]
impl ObjectStore for NatsObjectStore {
    async fn put(&self, name: &ObjectName, data: Vec<u8>) -> Result<ObjectInfo, ObjectStoreError> {
        let op = ObjectOperation::Put;
        let limit = self.budget(data.len());
        self.bounded(op, limit, async {
            let meta = ObjectMetadata {
                name: name.to_string(),
                chunk_size: Some(CHUNK_SIZE),
                ..Default::default()
            };
            let mut reader: &[u8] = &data;
            let info = self
                .bucket
                .put(meta, &mut reader)
                .await
                .map_err(|e| unavailable(op, e))?;
            to_info(&info).ok_or_else(|| ObjectStoreError::refused(op, "stored under another name"))
        })
        .await
    }

    async fn get(&self, name: &ObjectName) -> Result<Option<Object>, ObjectStoreError> {
        let op = ObjectOperation::Get;
        // An overwrite purges the chunks a reader is following; it then starts over from the
        // new description. Bounded so a name overwritten without pause still ends.
        let mut last_error = None;
        for _ in 0..5 {
            let Some(described) = self.info(name).await? else {
                return Ok(None);
            };
            let limit = self.budget(described.size);
            let read = self
                .bounded(op, limit, self.read_chunks(&described))
                .await
                .map(|data| Some((described.clone(), data)));
            match read {
                Ok(None) => return Ok(None),
                Ok(Some((info, data))) if data.len() == info.size => {
                    let info = to_info(&info).ok_or_else(|| {
                        ObjectStoreError::refused(op, "object stored under an invalid name")
                    })?;
                    return Ok(Some(Object { info, data }));
                }
                Ok(Some((info, data))) => {
                    last_error = Some(ObjectStoreError::Corrupt {
                        name: name.to_string(),
                        detail: format!("read {} of {} bytes", data.len(), info.size),
                    });
                }
                Err(e) => {
                    // Retry only if the object changed under us; otherwise report.
                    match self.info(name).await {
                        Ok(Some(now)) if now.nuid != described.nuid => last_error = Some(e),
                        Ok(None) => return Ok(None),
                        _ => return Err(e),
                    }
                }
            }
        }
        Err(last_error.unwrap_or_else(|| unavailable(op, "object kept changing while read")))
    }

    async fn head(&self, name: &ObjectName) -> Result<Option<ObjectInfo>, ObjectStoreError> {
        Ok(self.info(name).await?.as_ref().and_then(to_info))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectStoreError> {
        let op = ObjectOperation::List;
        self.bounded(op, self.call_timeout * 2, async {
            let mut list = self.bucket.list().await.map_err(|e| unavailable(op, e))?;
            let mut out = Vec::new();
            while let Some(entry) = list.next().await {
                let entry = entry.map_err(|e| unavailable(op, e))?;
                if entry.deleted || !entry.name.starts_with(prefix) {
                    continue;
                }
                if let Some(info) = to_info(&entry) {
                    out.push(info);
                }
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await
    }

    async fn delete(&self, name: &ObjectName) -> Result<bool, ObjectStoreError> {
        let op = ObjectOperation::Delete;
        if self.info(name).await?.is_none() {
            return Ok(false);
        }
        self.bounded(op, self.call_timeout, async {
            match self.bucket.delete(name.as_str()).await {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == DeleteErrorKind::NotFound => Ok(false),
                Err(e) => Err(unavailable(op, e)),
            }
        })
        .await
    }

    fn max_object_size(&self) -> Option<u64> {
        None
    }
}
