//! NATS JetStream as the broker (feature `nats`): the relay's [`NatsBroker`] and a consumer
//! loop ([`run_consumer`]) that hands each event to the same [`crate::handler::EventHandler`]
//! as the Kafka loop does.
//!
//! How the pattern maps onto JetStream:
//! - **A topic is a stream.** Each topic name ([`crate::topics::TopicNames`], the same names
//!   as on Kafka) is a subject, captured by a stream of its own, named after it
//!   ([`stream_name`]). The relay creates the stream the first time it sees the topic, as it
//!   creates Kafka topics.
//! - **De-duplication by the broker.** The relay sends every event with `Nats-Msg-Id` set to its
//!   event id, so a re-publish after a relay crash (published, not yet marked) is dropped by the
//!   stream within its duplicate window ([`DUPLICATE_WINDOW`]). Consumers still record events in
//!   their inbox: a redelivery to a consumer is not a re-publish.
//! - **Order.** A stream keeps the order in which it stored messages, and the relay sends one
//!   aggregate's events one after another, each after the previous one's ack. A consumer group
//!   is a durable pull consumer with at most one unacknowledged message
//!   (`max_ack_pending = 1`): instances of a service share it, and one message is in hand at a
//!   time across all of them, so every aggregate's events are applied in order. JetStream has
//!   no partitions to spread a group over; that one message in flight is the price of order.
//! - **Acks.** A message is acknowledged only after its handler's transaction committed, or
//!   after its dead-letter copy was stored; a message in hand when the process dies comes again
//!   after the ack wait ([`ACK_WAIT`]).

use std::time::Duration;

use async_nats::jetstream::{self, stream::Stream};

use crate::topics::TopicNames;

mod broker;
mod consumer;
pub use broker::NatsBroker;
pub use consumer::{run_consumer, NatsConsumerSettings};

/// How long a stream remembers message ids to drop a re-published event.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// How long a message may stay in hand without an ack or a progress signal before JetStream
/// delivers it again. A handler retrying a transient failure signals progress each time.
pub const ACK_WAIT: Duration = Duration::from_secs(30);

/// NATS settings of the relay and the consumers.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// `NATS_URL`: `host:port`, or a `nats://` URL.
    pub url: String,
    /// `NATS_TOPIC_PREFIX`: prepended to every subject, like `KAFKA_TOPIC_PREFIX`.
    pub topic_prefix: String,
}

impl NatsConfig {
    pub fn topics(&self) -> TopicNames {
        TopicNames::new(&self.topic_prefix)
    }

    /// A client that connects in the background and reconnects on its own, so that a relay or
    /// a consumer starts while the server is away (its first sends then fail as an outage).
    pub async fn connect(&self) -> Result<async_nats::Client, async_nats::ConnectError> {
        async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect()
            .connect(self.url.as_str())
            .await
    }
}

/// The stream that captures `subject`: stream names may not hold `.` (or wildcards and
/// whitespace), so every character but letters, digits, `-` and `_` becomes `_`.
pub fn stream_name(subject: &str) -> String {
    subject
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Creates the stream for `subject` unless it exists.
pub async fn ensure_stream(
    jetstream: &jetstream::Context,
    subject: &str,
) -> Result<Stream, jetstream::context::CreateStreamError> {
    jetstream
        .get_or_create_stream(jetstream::stream::Config {
            name: stream_name(subject),
            subjects: vec![subject.to_owned()],
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_named_after_their_subject() {
        assert_eq!(
            stream_name("test-1a.outbox.event.order"),
            "test-1a_outbox_event_order"
        );
        assert_eq!(
            stream_name("inventory-service.dlq"),
            "inventory-service_dlq"
        );
    }
}
