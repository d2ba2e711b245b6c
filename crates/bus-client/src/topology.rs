//! `Topology`: the platform's streams, named and configured in one place.

use std::time::Duration;

use cluster_core::event::BusError;
use cluster_core::event::EventBus;
use cluster_core::event::StreamSpec;
use cluster_core::event::Subjects;

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

    /// The stream specs.
    pub fn streams(&self) -> Vec<StreamSpec> {
        let replicas = match self.durability {
            Durability::Replicated => 3,
            Durability::SingleServer => 1,
        };
        let spec = |name: String, subjects| StreamSpec {
            replicas,
            duplicate_window: self.duplicate_window,
            ..StreamSpec::new(name, subjects)
        };
        vec![
            spec(
                self.events_stream(),
                vec![self.subjects.all_lifecycle(), self.subjects.all_platform()],
            ),
            spec(
                self.dead_letter_stream(),
                vec![self.subjects.all_dead_letters()],
            ),
            spec(self.audit_stream(), vec![self.subjects.all_audit()]),
        ]
    }

    /// Creates or updates every stream (idempotent).
    pub async fn provision(&self, bus: &dyn EventBus) -> Result<(), BusError> {
        for spec in self.streams() {
            bus.ensure_stream(&spec).await?;
        }
        Ok(())
    }
}
