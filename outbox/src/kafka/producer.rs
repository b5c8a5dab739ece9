//! A Kafka producer that is replaced when the broker stops accepting it: the relay publishes
//! through one, and every consumer dead-letters through one.
//!
//! Both producers are idempotent: each has a producer id and an epoch, and the broker checks
//! every batch against them. When sends time out (the broker was frozen or unreachable for
//! longer than `message.timeout.ms`), librdkafka bumps the epoch itself and carries on
//! (KIP-360). Apache Kafka accepts that; the local broker (nisshi 0.6) does not, and answers
//! every later batch of that producer with an error, for good (seen in the failure lab's broker
//! freeze). A producer in librdkafka's fatal state is as stuck. So when a send fails because
//! the broker rejected the producer's identity, [`Producer::send`] starts a new producer,
//! which asks the broker for a new id. Order per aggregate is not at stake: the relay never
//! has two events of one aggregate in flight, and the failed send is retried like any other
//! failure.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    message::ToBytes,
    producer::{FutureProducer, FutureRecord},
    ClientConfig,
};

/// Hands out the current producer; replaces it when it is found broken.
#[derive(Clone)]
pub struct Producer {
    config: ClientConfig,
    current: Arc<Mutex<Generation>>,
}

/// One producer and which one it is, so that several senders that all found it broken
/// replace it once.
#[derive(Clone)]
pub struct Generation {
    pub generation: u64,
    pub producer: FutureProducer,
}

impl Producer {
    pub fn new(config: ClientConfig) -> Result<Self, KafkaError> {
        let producer = config.create()?;
        Ok(Self {
            config,
            current: Arc::new(Mutex::new(Generation {
                generation: 0,
                producer,
            })),
        })
    }

    /// The current producer, for what is not a send (a health check, a flush at shutdown).
    pub fn current(&self) -> Generation {
        self.lock().clone()
    }

    /// Hands over whatever the current producer still has queued, waiting at most
    /// `timeout`; at shutdown, after the relay's last marks committed.
    pub async fn flush(&self, timeout: Duration) {
        use rdkafka::producer::Producer as _;
        let producer = self.current().producer;
        let flushed = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::warn!("producer flush did not complete");
        }
    }

    /// Sends `record` with the current producer and waits for the broker's acknowledgement;
    /// `queue_timeout` bounds only the wait for room in the local queue. When the broker
    /// rejects the producer itself, the producer is replaced for the next send, and the error
    /// is returned like any other.
    pub async fn send<K, P>(
        &self,
        record: FutureRecord<'_, K, P>,
        queue_timeout: Duration,
    ) -> Result<(), KafkaError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let sender = self.current();
        match sender.producer.send(record, queue_timeout).await {
            Ok(_) => Ok(()),
            Err((error, _)) => {
                if breaks_producer(&error) {
                    self.replace(&sender, &error);
                }
                Err(error)
            }
        }
    }

    /// Replaces `broken` with a new producer, unless another sender did so already. The old
    /// one is dropped once the last sender using it is done with it.
    fn replace(&self, broken: &Generation, error: &KafkaError) {
        let mut current = self.lock();
        if current.generation != broken.generation {
            return;
        }
        match self.config.create::<FutureProducer>() {
            Ok(producer) => {
                tracing::warn!(
                    %error,
                    generation = broken.generation + 1,
                    "the broker rejects this producer's id or epoch; sending with a new producer"
                );
                *current = Generation {
                    generation: broken.generation + 1,
                    producer,
                };
            }
            Err(create) => {
                tracing::error!(%error, %create, "cannot create a new producer; keeping the old one");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generation> {
        // The guarded value is only ever swapped whole: a panic elsewhere cannot leave it torn.
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether a failed send says the producer, not the event, is the problem: the broker no
/// longer accepts its id, epoch or sequence, or librdkafka put it in its fatal state. "Unknown"
/// is what nisshi answers for an epoch it does not know.
pub fn breaks_producer(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::Unknown
                | RDKafkaErrorCode::UnknownProducerId
                | RDKafkaErrorCode::OutOfOrderSequenceNumber
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::InvalidProducerIdMapping
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::Fatal
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_about_the_producer_replace_it() {
        let produce = KafkaError::MessageProduction;
        assert!(breaks_producer(&produce(RDKafkaErrorCode::Unknown)));
        assert!(breaks_producer(&produce(
            RDKafkaErrorCode::OutOfOrderSequenceNumber
        )));
        assert!(breaks_producer(&produce(RDKafkaErrorCode::Fatal)));
        // The event's fault, or the broker merely away: a new producer would not help.
        assert!(!breaks_producer(&produce(
            RDKafkaErrorCode::MessageSizeTooLarge
        )));
        assert!(!breaks_producer(&produce(
            RDKafkaErrorCode::MessageTimedOut
        )));
        assert!(!breaks_producer(&KafkaError::Canceled));
    }

    #[test]
    fn a_broken_producer_is_replaced_once() {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", "127.0.0.1:1");
        let producer = Producer::new(config).expect("a producer needs no connection to exist");
        let first = producer.current();
        let error = KafkaError::MessageProduction(RDKafkaErrorCode::Unknown);
        producer.replace(&first, &error);
        let second = producer.current();
        assert_eq!(second.generation, 1);
        // A second sender that saw the first producer fail changes nothing more.
        producer.replace(&first, &error);
        assert_eq!(producer.current().generation, 1);
    }
}
