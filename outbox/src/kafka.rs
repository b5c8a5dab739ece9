//! Kafka plumbing: topic creation, producer settings, and the idempotent consumer loop.
//!
//! The consumer loop is where "at least once" is made safe. It fetches messages and hands each
//! one to a task for its partition, so partitions are handled concurrently and every partition
//! strictly in order. For each message the partition's task:
//! 1. turns it into an [`Envelope`] — or dead-letters it when it is not an event;
//! 2. calls the service's [`EventHandler`] ([`crate::handler`]), which applies the event and records it in the
//!    inbox in one database transaction;
//! 3. stores the Kafka offset **only after** the handler's transaction committed; stored
//!    offsets are committed to the broker every second and when the consumer closes.
//!
//! A partition whose worker is behind (retrying a failing message) is paused, so its queue
//! stays bounded while the loop goes on fetching for the others and answering rebalances.
//!
//! A crash between 2 and 3 redelivers the message; the inbox makes that a no-op. A partition
//! taken away by a rebalance is handed over only after its message in hand is done and
//! committed (`assignment.rs`), so two instances never handle one partition at once. Transient
//! failures (database down) are retried with backoff on the same message, so nothing is
//! skipped; permanent ones (a payload that will never parse) go to the dead-letter topic
//! with the reason, so one bad message cannot stop the partition.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{CommitMode, Consumer, StreamConsumer},
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, Headers, OwnedHeaders, OwnedMessage},
    producer::{FutureProducer, FutureRecord, Producer},
    ClientConfig, Message, Offset, TopicPartitionList,
};
use tokio::{
    sync::mpsc::{self, error::TrySendError},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    backoff::Backoff,
    envelope::{header, Envelope},
    handler::{EventHandler, HandleError},
};

mod assignment;
mod broker;
mod config;
mod lag;
mod publisher;
pub use assignment::Rebalances;
pub use broker::{classify, KafkaBroker};
pub use config::{Assignment, KafkaConfig, DEFAULT_FETCH_WAIT_MS};
pub use lag::{GroupLag, LagProbe, PartitionLag};
pub use publisher::{breaks_producer, Generation, Publisher};

/// The consumer every service runs: rebalances are logged, counted and handed over cleanly
/// (see [`assignment`]).
type GroupConsumer = StreamConsumer<Rebalances>;

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
        .set("linger.ms", "5")
        // The Java client's partitioner (murmur2 of the key; a keyless message goes anywhere),
        // not librdkafka's default (crc32). Debezium and every Java producer partition so, and
        // a key must land on the same partition whichever relay published it: switching
        // relays would otherwise move most aggregates to another partition, where their next
        // events could overtake the ones still queued on the old one.
        .set("partitioner", "murmur2_random");
    config
}

pub fn producer(kafka: &KafkaConfig) -> Result<FutureProducer, KafkaError> {
    producer_config(kafka).create()
}

/// How long a silent group member keeps its partitions: the time a crashed instance's
/// partitions wait before they move to the others. 6 s is the least Apache Kafka accepts by
/// default (`group.min.session.timeout.ms`).
pub const SESSION_TIMEOUT_MS: u32 = 6000;

/// Consumer settings of every service: manual commits after the handler, short waits.
pub fn consumer_config(kafka: &KafkaConfig, group_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    // librdkafka's own debug contexts (e.g. `cgrp` for group membership), for diagnosis.
    if let Ok(debug) = std::env::var("KAFKA_DEBUG") {
        config.set("debug", debug);
    }
    config
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", group_id)
        // An offset is *stored* by hand, only after the handler's transaction committed, and
        // the stored offsets are committed in the background every second (and on close).
        // One broker write per partition per second instead of one per message; a crash
        // loses at most a second of commits, which means redeliveries the inbox absorbs.
        .set("enable.auto.offset.store", "false")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        // A new group starts from the beginning, so no event published before it joined is lost.
        .set("auto.offset.reset", "earliest")
        // How long the broker may hold a fetch when there is nothing to read. Events hop
        // through three consumers on their way, so on a broker that answers late, each
        // wait adds up end to end (see `KafkaConfig::fetch_wait_ms`).
        .set("fetch.wait.max.ms", kafka.fetch_wait_ms.to_string())
        // A consumer that crashes never says goodbye: the group waits for its session to
        // expire (and, on some brokers, for the rebalance timeout, which is
        // max.poll.interval.ms) before its partitions move on. Keep both short so a crash
        // stalls its partitions for seconds, not minutes. The consumer loop polls all the
        // time (a partition that is behind is paused, not waited for), so only a hand-over
        // waiting on a handler call longer than max.poll.interval.ms takes an instance out of
        // the group; it rejoins, and the inbox absorbs its redelivered message.
        .set("session.timeout.ms", SESSION_TIMEOUT_MS.to_string())
        .set("heartbeat.interval.ms", "1500")
        .set("max.poll.interval.ms", "20000");
    config
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
    let handler = Arc::new(handler);
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

/// Why a consumer stopped before shutdown; the loop restarts it with backoff.
#[derive(Debug, thiserror::Error)]
enum ConsumeError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// A partition's task died (a handler panicked). Its message was not committed, so the
    /// restarted consumer gets it again; a handler that always panics on it restarts forever,
    /// loudly, instead of the service going on without consuming.
    #[error("a partition task stopped: {0}")]
    Worker(String),
}

async fn consume<H: EventHandler>(
    settings: &ConsumerSettings,
    handler: &Arc<H>,
    shutdown: &CancellationToken,
) -> Result<(), ConsumeError> {
    let dead_letter_topic = settings.kafka.dead_letter_topic(&settings.name);
    let group_id = settings.kafka.group_id(&settings.name);
    let mut all_topics = settings.topics.clone();
    all_topics.push(dead_letter_topic.clone());
    ensure_topics(&settings.kafka, &all_topics).await?;

    let (revoke, revocations) = mpsc::unbounded_channel();
    let consumer: GroupConsumer = consumer_config(&settings.kafka, &group_id)
        .create_with_context(Rebalances::new(&settings.name, revoke))?;
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
            consumer
                .context()
                .record(all.count(), "every partition".into());
        }
    }
    let consumer = Arc::new(consumer);
    let worker = Arc::new(PartitionWorker {
        consumer: consumer.clone(),
        handler: handler.clone(),
        dead_letters: Publisher::new(producer_config(&settings.kafka))?,
        dead_letter_topic,
        group: group_id.clone(),
    });
    tracing::info!(group = %group_id, ?topics, "consumer started");

    // One task per partition: order only matters within a partition (one aggregate, one key,
    // one partition), so partitions are handled concurrently and each one strictly in order.
    // The loop below only fetches and hands each message to its partition's queue.
    let mut partitions: HashMap<(String, i32), Partition> = HashMap::new();
    let mut workers = JoinSet::new();
    // Partitions paused with a message held back, each waiting for room in its queue.
    let mut waiting_for_room = FuturesUnordered::new();
    // Declared after the consumer and the workers, so dropped before them when this future is
    // dropped (the task aborted): a revocation received but not completed is given up, and
    // the one that closing the consumer triggers completes at once, instead of the group
    // waiting for a loop that is gone.
    let mut revocations = revocations;
    let _handover = PendingRevocation(consumer.clone());
    let mut failure: Option<String> = None;
    let mut errors_in_a_row: u64 = 0;
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => break,
            // A worker ends when its partition is revoked, or when it dies.
            Some(ended) = workers.join_next() => match ended {
                Ok(()) => continue,
                Err(_) => {
                    failure = Some(task_failure(ended));
                    break;
                }
            },
            Some(revoked) = revocations.recv() => {
                hand_over(&consumer, &mut partitions, &revoked).await;
                continue;
            }
            Some(room) = waiting_for_room.next(), if !waiting_for_room.is_empty() => {
                release(&consumer, &mut partitions, room);
                continue;
            }
            message = consumer.recv() => message,
        };
        let message = match message {
            Ok(message) => {
                errors_in_a_row = 0;
                message.detach()
            }
            // librdkafka reports what fails while it reconnects on its own, and queues the
            // reports: a minute without a broker left hundreds of them. Waiting half a second
            // after each one delayed the first message after the broker's return by as long
            // again (order-service rejoined 100 s after a 60 s outage), so they are drained at
            // once; only a long run of errors with no message between them is slowed down.
            Err(error) => {
                errors_in_a_row += 1;
                if errors_in_a_row == 1 || errors_in_a_row.is_multiple_of(100) {
                    tracing::warn!(%error, errors_in_a_row, "kafka consumer error; retrying");
                    if errors_in_a_row > 1 {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                } else {
                    tracing::debug!(%error, errors_in_a_row, "kafka consumer error; retrying");
                }
                continue;
            }
        };
        let key = (message.topic().to_owned(), message.partition());
        let partition = partitions.entry(key.clone()).or_insert_with(|| {
            let (queue, rx) = mpsc::channel(PARTITION_QUEUE);
            let stop = shutdown.child_token();
            let done = CancellationToken::new();
            workers.spawn(
                worker
                    .clone()
                    .run(rx, stop.clone(), done.clone().drop_guard()),
            );
            Partition {
                queue,
                stop,
                done,
                held: None,
            }
        });
        if partition.held.is_some() {
            // librdkafka drops what it fetched before the pause, so this cannot happen; if it
            // did, dropping the message would lose it (the consumer's position is past it).
            // Start again from the committed offsets instead: the inbox absorbs the replay.
            failure = Some(format!(
                "{}/{} delivered a message while paused",
                key.0, key.1
            ));
            break;
        }
        match partition.queue.try_reserve() {
            Ok(room) => room.send(message),
            // The partition is behind (its worker is retrying a failing message): hold this
            // message and pause the partition, but keep polling. The loop must go on serving
            // the other partitions and the group's rebalances, which only arrive while the
            // consumer is polled; waiting here stalled every partition of the instance and
            // every rebalance of the group.
            Err(TrySendError::Full(())) => {
                if let Err(error) = consumer.pause(&single(&key)) {
                    tracing::warn!(%error, topic = %key.0, partition = key.1, "could not pause a partition that is behind");
                }
                partition.held = Some(message);
                // The second handle tells, when room comes, whether this queue is still the
                // partition's (it may have been revoked, and assigned again, meanwhile).
                let (queue, waited_on) = (partition.queue.clone(), partition.queue.clone());
                waiting_for_room.push(async move { (key, waited_on, queue.reserve_owned().await) });
            }
            // The worker is gone (it died: `join_next` reports why). The message was not
            // handled, so it is not committed either.
            Err(TrySendError::Closed(())) => {}
        }
    }
    // Let every worker finish the message in hand. What is still queued was never committed,
    // so it is delivered again after a restart. Without the receiver, the revocation that
    // closing the consumer triggers completes at once.
    drop(partitions);
    drop(revocations);
    while let Some(ended) = workers.join_next().await {
        if matches!(&ended, Err(e) if e.is_panic()) {
            failure.get_or_insert(task_failure(ended));
        }
    }
    match failure {
        Some(reason) if !shutdown.is_cancelled() => Err(ConsumeError::Worker(reason)),
        _ => {
            tracing::info!(group = %group_id, "consumer stopped");
            Ok(())
        }
    }
}

/// Gives up, when dropped, a revocation the consumer loop received but did not complete.
struct PendingRevocation(Arc<GroupConsumer>);

impl Drop for PendingRevocation {
    fn drop(&mut self) {
        self.0.context().give_up_pending(self.0.as_ref());
    }
}

/// A partition this instance is working on: its queue, and its worker's stop and done signals.
struct Partition {
    queue: mpsc::Sender<OwnedMessage>,
    /// Cancelled on revocation (and, as a child of the shutdown token, on shutdown).
    stop: CancellationToken,
    /// Cancelled when the worker has ended, whatever ended it.
    done: CancellationToken,
    /// The message that found the queue full; while set, the partition is paused.
    held: Option<OwnedMessage>,
}

/// A partition's queue has room again: hand it the held message and resume the partition.
/// Stale when the partition was revoked meanwhile (the permit is then for a queue that is gone).
fn release(
    consumer: &GroupConsumer,
    partitions: &mut HashMap<(String, i32), Partition>,
    (key, waited_on, room): Room,
) {
    let Some(partition) = partitions
        .get_mut(&key)
        .filter(|p| p.queue.same_channel(&waited_on))
    else {
        return;
    };
    let (Ok(room), Some(message)) = (room, partition.held.take()) else {
        return;
    };
    room.send(message);
    if let Err(error) = consumer.resume(&single(&key)) {
        tracing::warn!(%error, topic = %key.0, partition = key.1, "could not resume a partition");
    }
}

/// What waiting for room in a paused partition's queue gives: the partition, the queue waited
/// on, and the room (or the queue's end).
type Room = (
    (String, i32),
    mpsc::Sender<OwnedMessage>,
    Result<mpsc::OwnedPermit<OwnedMessage>, mpsc::error::SendError<()>>,
);

/// A partition list of one partition (no offset), for pause and resume.
fn single((topic, partition): &(String, i32)) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, *partition);
    list
}

/// A rebalance takes partitions away: stop handing out their messages, let each one's message
/// in hand finish (its offset stored), commit, and only then let the group move them. Their
/// queued messages were never handled; the new owner reads them from the committed offset.
async fn hand_over(
    consumer: &GroupConsumer,
    partitions: &mut HashMap<(String, i32), Partition>,
    revoked: &TopicPartitionList,
) {
    let mut finishing = Vec::new();
    for element in revoked.elements() {
        let key = (element.topic().to_owned(), element.partition());
        if let Some(partition) = partitions.remove(&key) {
            if partition.held.is_some() {
                // Not carried over if the partition comes back to this instance.
                if let Err(error) = consumer.resume(&single(&key)) {
                    tracing::warn!(%error, "could not resume a revoked partition");
                }
            }
            partition.stop.cancel();
            finishing.push(partition.done);
        }
    }
    futures::future::join_all(finishing.iter().map(CancellationToken::cancelled)).await;
    // Synchronously, so the new owner starts right after the last message handled here.
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => {
            tracing::warn!(%error, "commit before handing partitions over failed; their last messages may be redelivered")
        }
    }
    if let Err(error) = consumer.context().give_up(consumer, revoked) {
        tracing::warn!(%error, "could not give up revoked partitions");
    }
}

/// What ended a partition task, for the log.
fn task_failure(ended: Result<(), tokio::task::JoinError>) -> String {
    match ended {
        Ok(()) => "ended".into(),
        Err(error) if error.is_panic() => {
            let panic = error.into_panic();
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            format!("handler panicked: {message}")
        }
        Err(error) => error.to_string(),
    }
}

/// Messages fetched ahead per partition, waiting for that partition's worker.
const PARTITION_QUEUE: usize = 256;

/// Handles one partition's messages in order: the handler, the dead-letter topic for what
/// fails for good, then the offset store (committed by the next background commit).
struct PartitionWorker<H> {
    consumer: Arc<GroupConsumer>,
    handler: Arc<H>,
    dead_letters: Publisher,
    dead_letter_topic: String,
    group: String,
}

impl<H: EventHandler> PartitionWorker<H> {
    /// Handles the partition's messages until its queue closes or `stop` (revocation or
    /// shutdown); `_done` signals the end, however it comes.
    async fn run(
        self: Arc<Self>,
        mut queue: mpsc::Receiver<OwnedMessage>,
        stop: CancellationToken,
        _done: tokio_util::sync::DropGuard,
    ) {
        while let Some(message) = queue.recv().await {
            if stop.is_cancelled() {
                break; // Not handled, not committed: it comes again, here or at the new owner.
            }
            let Some(outcome) = process(&message, self.handler.as_ref(), &stop).await else {
                break; // Stopped mid-retry: leave the offset uncommitted so it comes back.
            };
            if let Err(reason) = outcome {
                let copied = dead_letter(
                    &self.dead_letters,
                    &self.dead_letter_topic,
                    &self.group,
                    &message,
                    &reason,
                    &stop,
                )
                .await;
                if copied == DeadLetter::Interrupted {
                    // Neither handled nor dead-lettered: storing its offset would lose it.
                    break;
                }
            }
            self.store_offset(&message);
        }
    }

    /// Stores "next to read is offset + 1" for this message's partition, to be committed with
    /// the next background commit. It is only ever stored after the handler's transaction
    /// committed, which is what at-least-once needs; a commit lost to a crash means the
    /// message comes again, and the inbox turns that into a no-op.
    fn store_offset(&self, message: &OwnedMessage) {
        let mut offsets = TopicPartitionList::new();
        let next = offsets.add_partition_offset(
            message.topic(),
            message.partition(),
            Offset::Offset(message.offset() + 1),
        );
        if let Err(error) = next.and_then(|()| self.consumer.store_offsets(&offsets)) {
            // E.g. the partition was lost without a revocation (this instance was taken out
            // of the group): its new owner starts from the last commit and the inbox absorbs
            // what is delivered twice.
            tracing::warn!(%error, "offset store failed; the message may be redelivered");
        }
    }
}

/// Runs the handler until it succeeds or fails permanently (`Some(Err(reason))`).
/// Returns `None` when `stop` (shutdown, or the partition's revocation) interrupted the retries.
async fn process<H: EventHandler>(
    message: &OwnedMessage,
    handler: &H,
    stop: &CancellationToken,
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
                        _ = stop.cancelled() => return None,
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

/// What became of a message that had to be dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeadLetter {
    /// The broker acknowledged its copy on the dead-letter topic: its offset may be stored.
    Copied,
    /// Stopped (shutdown or revocation) while the copy was still failing: the message must
    /// come again.
    Interrupted,
}

/// Copies the message, with the reason and its origin in headers, to the dead-letter topic.
async fn dead_letter(
    publisher: &Publisher,
    topic: &str,
    group: &str,
    message: &OwnedMessage,
    reason: &str,
    stop: &CancellationToken,
) -> DeadLetter {
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
    // The offset is stored after this returns `Copied`, so the copy must be acknowledged
    // first: retry until it is, or until stopped (then the message is delivered again).
    loop {
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(topic).headers(headers.clone());
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        let sent = tokio::select! {
            // Stop waiting: the copy may still arrive, and the message then comes again and
            // is copied twice, which a dead-letter topic allows (at least once).
            _ = stop.cancelled() => return DeadLetter::Interrupted,
            sent = publisher.send(record, Duration::from_secs(10)) => sent,
        };
        match sent {
            Ok(()) => return DeadLetter::Copied,
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, ?delay, "dead-letter publish failed; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return DeadLetter::Interrupted,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}
