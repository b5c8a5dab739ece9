//! The relay's seam to the broker: the one place where an outbox row leaves the database.
//!
//! The relay publishes through the small [`Broker`] trait; [`Kafka`] is the implementation it
//! runs with. Tests wrap it to fail, delay or hang chosen sends, which is how the relay's
//! guarantees are checked under faults a real broker produces only by luck.
//!
//! A failed send says whose fault it was ([`Fault`]), because the relay answers the two
//! differently: a broker that is down pauses publishing and costs no event an attempt; an
//! event the broker will not take counts an attempt and is parked after `RELAY_MAX_ATTEMPTS`.

use std::time::Duration;

use futures::{future::BoxFuture, FutureExt};
use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    producer::FutureRecord,
};
use shared::{
    config::KafkaConfig,
    envelope::EventHeaders,
    kafka::{breaks_producer, Publisher},
};

/// One outbox row on its way to the broker.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub topic: &'a str,
    /// The aggregate id: one partition per aggregate, so the broker keeps its order.
    pub key: &'a str,
    pub payload: &'a str,
    pub headers: EventHeaders<'a>,
}

/// Whose fault a failed send was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The broker or the network: every event would fail alike (unreachable, timed out, no
    /// leader, the producer rejected). The relay pauses; the event keeps its attempts.
    Outage,
    /// This event: too large, malformed, its topic not allowed or not creatable. It counts an
    /// attempt, and is parked after `RELAY_MAX_ATTEMPTS`.
    Event,
}

/// A send (or a topic creation) that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct SendError {
    pub fault: Fault,
    pub reason: String,
}

impl SendError {
    pub fn outage(reason: impl Into<String>) -> Self {
        Self {
            fault: Fault::Outage,
            reason: reason.into(),
        }
    }

    pub fn event(reason: impl Into<String>) -> Self {
        Self {
            fault: Fault::Event,
            reason: reason.into(),
        }
    }
}

/// Where the relay publishes. `send` resolves once the broker acknowledged the event (or
/// refused it); the relay never has two events of one aggregate in flight.
pub trait Broker: Send + Sync + 'static {
    fn send<'a>(&'a self, event: Outgoing<'a>) -> BoxFuture<'a, Result<(), SendError>>;

    /// Makes sure `topic` exists. Called outside any claim transaction: it may be slow.
    fn create_topic<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), SendError>>;
}

/// The relay's broker: Kafka through an idempotent producer (`acks=all`).
pub struct Kafka {
    publisher: Publisher,
    config: KafkaConfig,
}

impl Kafka {
    pub fn new(publisher: Publisher, config: KafkaConfig) -> Self {
        Self { publisher, config }
    }
}

impl Broker for Kafka {
    fn send<'a>(&'a self, event: Outgoing<'a>) -> BoxFuture<'a, Result<(), SendError>> {
        async move {
            let record = FutureRecord::to(event.topic)
                .key(event.key)
                .payload(event.payload)
                .headers(event.headers.to_kafka());
            // The delivery is bounded by the producer's `message.timeout.ms` (a third of the
            // lease); a producer the broker rejects is replaced by the publisher.
            self.publisher
                .send(record, Duration::from_secs(5))
                .await
                .map_err(|error| classify(&error))
        }
        .boxed()
    }

    fn create_topic<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), SendError>> {
        async move {
            shared::kafka::ensure_topics(&self.config, &[topic.to_owned()])
                .await
                .map_err(|error| classify(&error))
        }
        .boxed()
    }
}

/// Tells an outage from an event the broker will not take. Anything not known to be the
/// broker's or the network's counts against the event: an unknown error then parks after
/// `RELAY_MAX_ATTEMPTS`, where calling it an outage could pause the relay for good.
pub fn classify(error: &KafkaError) -> SendError {
    use RDKafkaErrorCode as C;
    let code = match error {
        KafkaError::MessageProduction(code) | KafkaError::AdminOp(code) => Some(*code),
        // The producer went away (shutdown, replaced) before the broker answered.
        KafkaError::Canceled => return SendError::outage(error.to_string()),
        _ => error.rdkafka_error_code(),
    };
    let outage = breaks_producer(error)
        || matches!(
            code,
            Some(
                C::BrokerTransportFailure
                    | C::Resolve
                    | C::MessageTimedOut
                    | C::OperationTimedOut
                    | C::AllBrokersDown
                    | C::QueueFull
                    | C::TimedOutQueue
                    | C::LeaderNotAvailable
                    | C::NotLeaderForPartition
                    | C::RequestTimedOut
                    | C::BrokerNotAvailable
                    | C::ReplicaNotAvailable
                    | C::NetworkException
                    | C::NotEnoughReplicas
                    | C::NotEnoughReplicasAfterAppend
                    | C::KafkaStorageError
            )
        );
    if outage {
        SendError::outage(error.to_string())
    } else {
        SendError::event(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_being_away_is_an_outage_and_a_bad_event_is_the_events_fault() {
        let produce = |code| classify(&KafkaError::MessageProduction(code)).fault;
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::NotLeaderForPartition,
            // nisshi's answer to a producer epoch it does not know: the producer is replaced.
            RDKafkaErrorCode::Unknown,
        ] {
            assert_eq!(produce(code), Fault::Outage, "{code:?}");
        }
        for code in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::InvalidRecord,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::PolicyViolation,
            RDKafkaErrorCode::InvalidTopic,
        ] {
            assert_eq!(produce(code), Fault::Event, "{code:?}");
        }
        let create = classify(&KafkaError::AdminOp(RDKafkaErrorCode::PolicyViolation));
        assert_eq!(create.fault, Fault::Event);
        let away = classify(&KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut));
        assert_eq!(away.fault, Fault::Outage);
    }
}
