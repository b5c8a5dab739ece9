//! Kafka plumbing: topic creation, producer settings, and the idempotent consumer loop.
//!
//! The consumer loop is where "at least once" is made safe. For each message it:
//! 1. turns it into an [`Envelope`] — or dead-letters it when it is not an event;
//! 2. calls the service's [`EventHandler`], which applies the event and records it in the
//!    inbox in one database transaction;
//! 3. commits the Kafka offset **only after** the handler's transaction committed.
//!
//! A crash between 2 and 3 redelivers the message; the inbox makes that a no-op. Transient
//! failures (database down) are retried with backoff on the same message, so nothing is
//! skipped; permanent ones (a payload that will never parse) go to the dead-letter topic
//! with the reason, so one bad message cannot stop the partition.

use std::{future::Future, time::Duration};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{CommitMode, Consumer, StreamConsumer},
    error::{KafkaError, RDKafkaErrorCode},
    message::{BorrowedMessage, Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer},
    ClientConfig, Message, Offset, TopicPartitionList,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    config::{Assignment, KafkaConfig},
    envelope::{header, Envelope},
};

/// How a handler failed, which decides what the loop does with the message.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Will fail again on every retry (bad payload, unknown type): dead-letter it.
    #[error("permanent: {0}")]
    Permanent(String),
    /// May work later (database or network down): retry the same message with backoff.
    #[error("transient: {0}")]
    Transient(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<sqlx::Error> for HandleError {
    fn from(e: sqlx::Error) -> Self {
        // A violated constraint (SQLSTATE class 23) means this event conflicts with the data,
        // and retrying would block the partition forever; everything else is worth a retry.
        match &e {
            sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("23")) => {
                HandleError::Permanent(format!("constraint violated: {db}"))
            }
            _ => HandleError::Transient(Box::new(e)),
        }
    }
}

impl From<mongodb::error::Error> for HandleError {
    fn from(e: mongodb::error::Error) -> Self {
        HandleError::Transient(Box::new(e))
    }
}

/// A service's business reaction to events. Implementations apply the event and record it in
/// the inbox in one transaction, so calling `handle` twice with one event changes nothing the
/// second time.
pub trait EventHandler: Send + Sync + 'static {
    fn handle(&self, event: &Envelope) -> impl Future<Output = Result<(), HandleError>> + Send;
}

/// Producer settings for publishing events: nothing lost, nothing reordered.
pub fn producer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.brokers)
        // Idempotence: broker-side dedup of producer retries, and order kept per partition
        // even when a send is retried. It implies acks=all; we say so anyway.
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // Give up on one send after this long; the relay then records the failure and retries
        // the row later instead of holding its batch forever.
        .set("message.timeout.ms", "10000")
        .set("linger.ms", "5");
    config
}

pub fn producer(kafka: &KafkaConfig) -> Result<FutureProducer, KafkaError> {
    producer_config(kafka).create()
}

/// Creates the topics that do not exist yet. Our local broker does not auto-create topics,
/// and a consumer subscribed to a missing topic would just wait.
pub async fn ensure_topics(kafka: &KafkaConfig, topics: &[String]) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .create()?;
    let new_topics: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, kafka.partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                tracing::error!(%topic, ?code, "could not create topic");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    Ok(())
}

/// Asks the broker for its metadata: the health checks' "is Kafka reachable?".
pub async fn ping(producer: &FutureProducer) -> Result<(), KafkaError> {
    let producer = producer.clone();
    tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(None, Duration::from_secs(3))
            .map(|_| ())
    })
    .await
    .unwrap_or(Err(KafkaError::Canceled))
}

/// What a consumer loop needs to know.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub kafka: KafkaConfig,
    /// The consumer's name: its group id (after the topic prefix), its dead-letter topic's name,
    /// and by convention its name in the inbox.
    pub name: String,
    pub topics: Vec<String>,
}

/// Consumes `settings.topics` until `shutdown` fires, handing each message to `handler`.
///
/// When the broker cannot be reached at start, it keeps trying with backoff instead of
/// exiting: the service's HTTP side (and its outbox) keeps working while Kafka is away.
pub async fn run_consumer<H: EventHandler>(
    settings: ConsumerSettings,
    handler: H,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    while !shutdown.is_cancelled() {
        match consume(&settings, &handler, &shutdown).await {
            Ok(()) => break,
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::error!(%error, ?delay, consumer = %settings.name, "consumer failed; restarting");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

async fn consume<H: EventHandler>(
    settings: &ConsumerSettings,
    handler: &H,
    shutdown: &CancellationToken,
) -> Result<(), KafkaError> {
    let dead_letter_topic = settings.kafka.dead_letter_topic(&settings.name);
    let group_id = format!("{}{}", settings.kafka.topic_prefix, settings.name);
    let mut all_topics = settings.topics.clone();
    all_topics.push(dead_letter_topic.clone());
    ensure_topics(&settings.kafka, &all_topics).await?;

    let mut config = ClientConfig::new();
    // librdkafka's own debug contexts (e.g. `cgrp` for group membership), for diagnosis.
    if let Ok(debug) = std::env::var("KAFKA_DEBUG") {
        config.set("debug", debug);
    }

    let consumer: StreamConsumer = config
        .set("bootstrap.servers", &settings.kafka.brokers)
        .set("group.id", &group_id)
        // We commit by hand, after the handler's transaction: never before.
        .set("enable.auto.commit", "false")
        // A new group starts from the beginning, so no event published before it joined is lost.
        .set("auto.offset.reset", "earliest")
        // Don't let the broker hold a fetch for long when there is little to read: events
        // hop through three consumers on their way, and each wait adds up end to end.
        .set("fetch.wait.max.ms", "50")
        // A consumer that crashes never says goodbye: the group waits for its session to
        // expire (and, on some brokers, for the rebalance timeout, which is
        // max.poll.interval.ms) before its partitions move on. Keep both short so a crash
        // stalls its partitions for seconds, not minutes. A handler retrying a transient error
        // for longer than max.poll.interval.ms is taken out of the group and rejoins: its
        // uncommitted message is redelivered, and the inbox makes that harmless.
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1500")
        .set("max.poll.interval.ms", "20000")
        .create()?;
    let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
    match settings.kafka.assignment {
        Assignment::Group => consumer.subscribe(&topics)?,
        Assignment::Manual => {
            // Every partition, resuming from the group's committed offsets: no group
            // membership, so no rebalance to wait for after a crash. One instance only.
            let mut all = TopicPartitionList::new();
            for topic in &topics {
                let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
                for t in metadata.topics() {
                    for p in t.partitions() {
                        all.add_partition_offset(topic, p.id(), Offset::Stored)?;
                    }
                }
            }
            consumer.assign(&all)?;
        }
    }
    let dead_letters = producer(&settings.kafka)?;
    tracing::info!(group = %group_id, ?topics, "consumer started");

    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => break,
            message = consumer.recv() => message,
        };
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "kafka consumer error; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let Some(outcome) = process(&message, handler, shutdown).await else {
            break; // Shut down mid-retry: leave the offset uncommitted so the message comes back.
        };
        if let Err(reason) = outcome {
            let group = &group_id;
            dead_letter(
                &dead_letters,
                &dead_letter_topic,
                group,
                &message,
                &reason,
                shutdown,
            )
            .await;
        }
        // Commit asynchronously: the commit is only ever issued after the handler's
        // transaction committed, which is what at-least-once needs. If it is lost (a crash, a
        // broker hiccup) the message comes again and the inbox turns that into a no-op, so
        // waiting for the broker's answer here would buy nothing but a round trip per message.
        if let Err(error) = consumer.commit_message(&message, CommitMode::Async) {
            tracing::warn!(%error, "offset commit failed; the message may be redelivered");
        }
    }
    tracing::info!(group = %group_id, "consumer stopped");
    Ok(())
}

/// Runs the handler until it succeeds or fails permanently (`Some(Err(reason))`).
/// Returns `None` when shutdown interrupted the retries.
async fn process<H: EventHandler>(
    message: &BorrowedMessage<'_>,
    handler: &H,
    shutdown: &CancellationToken,
) -> Option<Result<(), String>> {
    let envelope = match Envelope::from_message(message) {
        Ok(envelope) => envelope,
        Err(reason) => return Some(Err(reason)),
    };
    let span = tracing::info_span!(
        "event",
        id = %envelope.id,
        r#type = %envelope.event_type,
        topic = message.topic(),
        partition = message.partition(),
        offset = message.offset(),
        trace_id = envelope.traceparent.as_deref().map(crate::trace::trace_id).unwrap_or(""),
    );
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
    async move {
        loop {
            match handler.handle(&envelope).await {
                Ok(()) => {
                    metrics::counter!("events_consumed_total", "type" => envelope.event_type.clone())
                        .increment(1);
                    return Some(Ok(()));
                }
                Err(HandleError::Permanent(reason)) => return Some(Err(reason)),
                Err(HandleError::Transient(error)) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, ?delay, "event handling failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
    // The span follows the future across awaits (an `enter` guard would not).
    .instrument(span)
    .await
}

/// Copies the message, with the reason and its origin in headers, to the dead-letter topic.
async fn dead_letter(
    producer: &FutureProducer,
    topic: &str,
    group: &str,
    message: &BorrowedMessage<'_>,
    reason: &str,
    shutdown: &CancellationToken,
) {
    tracing::error!(
        reason,
        topic = message.topic(),
        partition = message.partition(),
        offset = message.offset(),
        "dead-lettering message"
    );
    metrics::counter!("events_dead_lettered_total", "topic" => message.topic().to_owned())
        .increment(1);
    let mut headers = OwnedHeaders::new();
    if let Some(original) = message.headers() {
        for h in original.iter() {
            headers = headers.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    let (partition, offset) = (
        message.partition().to_string(),
        message.offset().to_string(),
    );
    for (key, value) in [
        (header::DLQ_REASON, reason),
        (header::DLQ_TOPIC, message.topic()),
        (header::DLQ_PARTITION, partition.as_str()),
        (header::DLQ_OFFSET, offset.as_str()),
        (header::DLQ_GROUP, group),
    ] {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    // The offset is committed after this returns, so the copy must be acknowledged first:
    // retry until it is (or we are shutting down, and the message will be redelivered).
    loop {
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(topic).headers(headers.clone());
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        match producer.send(record, Duration::from_secs(10)).await {
            Ok(_) => return,
            Err((error, _)) => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, ?delay, "dead-letter publish failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Exponential backoff with full jitter: spreads retries of many clients over time instead of
/// having them hammer a recovering server in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let delay = backoff_delay(self.base, self.max, self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// The delay before retry number `attempt` (0-based): `base * 2^attempt`, capped at `max`,
/// then scaled by a random factor in [0.5, 1].
pub fn backoff_delay(base: Duration, max: Duration, attempt: u32) -> Duration {
    let ceiling = base
        .saturating_mul(2u32.saturating_pow(attempt.min(30)))
        .min(max);
    ceiling.mul_f64(rand::random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..20 {
            assert!(b.next_delay() <= Duration::from_secs(1));
        }
        let late = b.next_delay();
        assert!(late >= Duration::from_millis(500), "{late:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
