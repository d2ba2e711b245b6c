//! `Topology`: the platform's streams, named and configured in one place.
//!
//! Every component that creates or reads a platform stream (the runtime's audit sink, the
//! publisher's and consumer's set-up, the tests) takes its name and spec from here, so one
//! stream never goes by two names.

use std::time::Duration;

use super::BusError;
use super::EventBus;
use super::StreamSpec;
use super::Subjects;

/// How many copies JetStream keeps of each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Three replicas on a cluster: an ack means a quorum stored it.
    Replicated,
    /// One copy: durable only if the server runs with `sync_interval: always`.
    SingleServer,
}

/// The streams of one platform prefix: events (lifecycle + platform), dead letters, audit.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The subject builder.
    pub subjects: Subjects,
    /// Copies per event.
    pub durability: Durability,
    /// How long JetStream remembers message ids (2 minutes by default).
    pub duplicate_window: Duration,
}

impl Topology {
    /// The topology of `subjects`' prefix.
    pub fn new(subjects: Subjects, durability: Durability) -> Topology {
        Topology {
            subjects,
            durability,
            duplicate_window: Duration::from_secs(120),
        }
    }

    fn upper(&self) -> String {
        self.subjects
            .prefix()
            .as_str()
            .to_ascii_uppercase()
            .replace('-', "_")
    }

    /// `{PREFIX}_EVENTS`: lifecycle and platform events.
    pub fn events_stream(&self) -> String {
        format!("{}_EVENTS", self.upper())
    }

    /// `{PREFIX}_DEADLETTER`.
    pub fn dead_letter_stream(&self) -> String {
        format!("{}_DEADLETTER", self.upper())
    }

    /// `{PREFIX}_AUDIT`.
    pub fn audit_stream(&self) -> String {
        format!("{}_AUDIT", self.upper())
    }

    fn spec(&self, name: String, subjects: Vec<super::SubjectFilter>) -> StreamSpec {
        StreamSpec {
            replicas: match self.durability {
                Durability::Replicated => 3,
                Durability::SingleServer => 1,
            },
            duplicate_window: self.duplicate_window,
            ..StreamSpec::new(name, subjects)
        }
    }

    /// The audit stream's spec: `{PREFIX}_AUDIT` over `{prefix}.audit.>`.
    pub fn audit_spec(&self) -> StreamSpec {
        self.spec(self.audit_stream(), vec![self.subjects.all_audit()])
    }

    /// The stream specs.
    pub fn streams(&self) -> Vec<StreamSpec> {
        vec![
            self.spec(
                self.events_stream(),
                vec![self.subjects.all_lifecycle(), self.subjects.all_platform()],
            ),
            self.spec(
                self.dead_letter_stream(),
                vec![self.subjects.all_dead_letters()],
            ),
            self.audit_spec(),
        ]
    }

    /// Creates or updates every stream through the port (idempotent).
    pub async fn provision(&self, bus: &dyn EventBus) -> Result<(), BusError> {
        for spec in self.streams() {
            bus.ensure_stream(&spec).await?;
        }
        Ok(())
    }
}
