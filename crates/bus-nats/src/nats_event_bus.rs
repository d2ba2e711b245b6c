//! `NatsEventBus`: the EventBus port over JetStream.

use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::AckPolicy;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::PriorityPolicy;
use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::StorageType;
use async_trait::async_trait;
use cluster_core::event::BusAck;
use cluster_core::event::BusError;
use cluster_core::event::BusMessage;
use cluster_core::event::BusOperation;
use cluster_core::event::ConsumerPosition;
use cluster_core::event::DeliveryStream;
use cluster_core::event::EventBus;
use cluster_core::event::StoredMessage;
use cluster_core::event::StreamSpec;
use cluster_core::event::SubjectFilter;
use cluster_core::event::SubscriptionSpec;

use crate::config::NatsBusConfig;
use crate::nats_delivery::NatsDeliveryStream;
use crate::nats_delivery::PRIORITY_GROUP;
use crate::nats_error;

/// The EventBus port over NATS JetStream. Cheap to clone; clones share the connection.
///
/// Streams use file storage. An acknowledged publish is durable only with `replicas: 3` on a
/// cluster, or on a server running with `sync_interval: always` (see docs/event-bus.md).
#[derive(Clone)]
pub struct NatsEventBus {
    client: async_nats::Client,
    js: jetstream::Context,
    config: NatsBusConfig,
}

impl std::fmt::Debug for NatsEventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsEventBus")
            .field("url", &self.config.url)
            .field("state", &self.client.connection_state())
            .finish()
    }
}

impl NatsEventBus {
    /// Connects; fails as unavailable when no server answers within the connect timeout.
    pub async fn connect(config: NatsBusConfig) -> Result<NatsEventBus, BusError> {
        let options = config.connect_options();
        let connect = options.connect(config.url.as_str());
        let client = match tokio::time::timeout(config.connect_timeout * 2, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(BusError::unavailable(BusOperation::Subscribe, e)),
            Err(_) => {
                return Err(nats_error::timed_out(
                    BusOperation::Subscribe,
                    config.connect_timeout * 2,
                ));
            }
        };
        let mut js = jetstream::new(client.clone());
        js.set_timeout(config.call_timeout);
        Ok(NatsEventBus { client, js, config })
    }

    /// The underlying client, for RPC and for benchmarks against raw JetStream.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    async fn bounded<T, F>(&self, operation: BusOperation, f: F) -> Result<T, BusError>
    where
        F: Future<Output = Result<T, BusError>>,
    {
        match tokio::time::timeout(self.config.call_timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(nats_error::timed_out(operation, self.config.call_timeout)),
        }
    }
}

#[async_trait]
impl EventBus for NatsEventBus {
    async fn ensure_stream(&self, spec: &StreamSpec) -> Result<(), BusError> {
        spec.validate()?;
        let config = jetstream::stream::Config {
            name: spec.name.clone(),
            subjects: spec
                .subjects
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
            storage: StorageType::File,
            num_replicas: spec.replicas,
            duplicate_window: spec.duplicate_window,
            max_age: spec.max_age.unwrap_or(Duration::ZERO),
            ..Default::default()
        };
        self.bounded(BusOperation::Provision, async {
            self.js
                .create_or_update_stream(config)
                .await
                .map(|_| ())
                .map_err(|e| nats_error::api_error(BusOperation::Provision, e))
        })
        .await
    }

    async fn publish(&self, message: BusMessage) -> Result<BusAck, BusError> {
        let max = self.max_payload();
        if message.payload.len() > max {
            return Err(BusError::PayloadTooLarge {
                size: message.payload.len(),
                max,
            });
        }
        let subject = message.subject.as_str().to_owned();
        let size = message.payload.len();
        self.bounded(BusOperation::Publish, async {
            let publish = PublishMessage::build()
                .payload(message.payload.into())
                .message_id(&message.message_id);
            let ack = self
                .js
                .send_publish(subject.clone(), publish)
                .await
                .map_err(|e| nats_error::publish_error(e, &subject))?
                .await
                .map_err(|e| nats_error::publish_error(e, &subject))?;
            Ok(BusAck {
                stream: ack.stream,
                sequence: ack.sequence,
                duplicate: ack.duplicate,
            })
        })
        .await
        .map_err(|e| match e {
            BusError::PayloadTooLarge { .. } => BusError::PayloadTooLarge { size, max },
            other => other,
        })
    }

    async fn subscribe(
        &self,
        spec: &SubscriptionSpec,
    ) -> Result<Box<dyn DeliveryStream>, BusError> {
        spec.validate()?;
        let config = pull::Config {
            durable_name: Some(spec.durable.clone()),
            filter_subjects: spec.filters.iter().map(|s| s.as_str().to_owned()).collect(),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: spec.ack_wait,
            max_deliver: i64::from(spec.max_deliver),
            max_ack_pending: i64::from(spec.max_ack_pending),
            priority_policy: if spec.exclusive.is_some() {
                PriorityPolicy::PinnedClient
            } else {
                PriorityPolicy::None
            },
            priority_groups: if spec.exclusive.is_some() {
                vec![PRIORITY_GROUP.to_owned()]
            } else {
                Vec::new()
            },
            priority_timeout: spec.exclusive.unwrap_or(Duration::ZERO),
            ..Default::default()
        };
        let consumer = self
            .bounded(BusOperation::Subscribe, async {
                self.js
                    .create_consumer_on_stream(config, spec.stream.as_str())
                    .await
                    .map_err(|e| nats_error::api_error(BusOperation::Subscribe, e))
            })
            .await?;
        Ok(Box::new(NatsDeliveryStream::new(
            consumer,
            spec.max_ack_pending,
            self.config.call_timeout,
            spec.exclusive,
        )))
    }

    async fn consumer_position(
        &self,
        stream: &str,
        durable: &str,
    ) -> Result<ConsumerPosition, BusError> {
        self.bounded(BusOperation::Receive, async {
            let stream = self
                .js
                .get_stream(stream)
                .await
                .map_err(|e| nats_error::api_error(BusOperation::Receive, e))?;
            let info = stream
                .consumer_info(durable)
                .await
                .map_err(|e| nats_error::api_error(BusOperation::Receive, e))?;
            Ok(ConsumerPosition {
                ack_floor: info.ack_floor.stream_sequence,
                delivered: info.delivered.stream_sequence,
            })
        })
        .await
    }

    async fn read(&self, stream: &str, sequence: u64) -> Result<Option<StoredMessage>, BusError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind as K;
        self.bounded(BusOperation::Receive, async {
            let stream = self
                .js
                .get_stream(stream)
                .await
                .map_err(|e| nats_error::api_error(BusOperation::Receive, e))?;
            match stream.get_raw_message(sequence).await {
                Ok(m) => Ok(Some(StoredMessage {
                    subject: m.subject.to_string(),
                    payload: m.payload.to_vec(),
                    sequence: m.sequence,
                })),
                Err(e) if matches!(e.kind(), K::NoMessageFound) => Ok(None),
                Err(e) => Err(nats_error::api_error(BusOperation::Receive, e)),
            }
        })
        .await
    }

    async fn read_next_matching(
        &self,
        stream: &str,
        from: u64,
        to: u64,
        filter: &SubjectFilter,
    ) -> Result<Option<StoredMessage>, BusError> {
        use async_nats::jetstream::stream::RawMessageErrorKind as K;
        if from > to {
            return Ok(None);
        }
        self.bounded(BusOperation::Receive, async {
            let stream = self
                .js
                .get_stream_no_info(stream)
                .await
                .map_err(|e| nats_error::api_error(BusOperation::Receive, e))?;
            // STREAM.MSG.GET with `seq` and `next_by_subj`: served by the stream leader (no
            // direct get, which a lagging replica may answer).
            match stream
                .get_first_raw_message_by_subject(filter.as_str(), from)
                .await
            {
                Ok(m) if m.sequence <= to => Ok(Some(StoredMessage {
                    subject: m.subject.to_string(),
                    payload: m.payload.to_vec(),
                    sequence: m.sequence,
                })),
                Ok(_) => Ok(None),
                Err(e) if matches!(e.kind(), K::NoMessageFound) => Ok(None),
                Err(e) => Err(nats_error::api_error(BusOperation::Receive, e)),
            }
        })
        .await
    }

    fn max_payload(&self) -> usize {
        // `Client::max_payload` reads the server's limit without cloning its whole info.
        self.client.max_payload()
    }
}
