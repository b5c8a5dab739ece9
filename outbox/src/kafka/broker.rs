//! The relay's [`Broker`] on Kafka: an idempotent producer (`acks=all`), and which of
//! librdkafka's errors are an outage and which are the event's fault.

use std::time::Duration;

use futures::{future::BoxFuture, FutureExt};
use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    producer::FutureRecord,
};

use super::{breaks_producer, producer_config, KafkaConfig, Producer};
use crate::relay::{Broker, Outgoing, RelaySettings, Relays, SendError};

/// The relay's broker: Kafka through an idempotent producer (`acks=all`).
pub struct KafkaBroker {
    producer: Producer,
    config: KafkaConfig,
}

impl KafkaBroker {
    /// The relay's broker on Kafka: [`producer_config`], with every delivery bounded by
    /// [`RelaySettings::send_timeout`] (a third of the lease, see [`crate::relay`]).
    pub fn connect(config: &KafkaConfig, settings: &RelaySettings) -> Result<Self, KafkaError> {
        let mut producer = producer_config(config);
        producer.set(
            "message.timeout.ms",
            settings.send_timeout().as_millis().to_string(),
        );
        Ok(Self::new(Producer::new(producer)?, config.clone()))
    }

    /// A broker on a producer of the caller's (tests give it one with settings of theirs).
    pub fn new(producer: Producer, config: KafkaConfig) -> Self {
        Self { producer, config }
    }

    /// The producer it sends with, for the process's health check and its flush at shutdown.
    pub fn producer(&self) -> Producer {
        self.producer.clone()
    }
}

impl KafkaConfig {
    /// The relay's front on Kafka: a [`KafkaBroker`] for `settings`, this config's topic
    /// names, and no database yet ([`Relays::database`] adds them).
    pub fn relays(&self, settings: RelaySettings) -> Result<Relays, KafkaError> {
        let broker = KafkaBroker::connect(self, &settings)?;
        Ok(Relays::new(broker, self.topics(), settings))
    }
}

impl Broker for KafkaBroker {
    fn send<'a>(&'a self, event: Outgoing<'a>) -> BoxFuture<'a, Result<(), SendError>> {
        async move {
            let record = FutureRecord::to(event.topic)
                .key(event.key)
                .payload(event.payload)
                .headers(super::record_headers(&event.headers));
            // The delivery is bounded by the producer's `message.timeout.ms` (a third of the
            // lease); a producer the broker rejects is replaced by the producer.
            self.producer
                .send(record, Duration::from_secs(5))
                .await
                .map_err(|error| classify(&error))
        }
        .boxed()
    }

    fn create_topic<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), SendError>> {
        async move {
            super::ensure_topics(&self.config, &[topic.to_owned()])
                .await
                .map_err(|error| classify(&error))
        }
        .boxed()
    }

    fn flush(&self, timeout: Duration) -> BoxFuture<'_, ()> {
        self.producer.flush(timeout).boxed()
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
    use crate::relay::Fault;

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
