//! The Kafka consumer loop: it fetches messages and hands each one to a worker for its
//! partition ([`super::worker`]), so partitions are handled concurrently and every partition
//! strictly in order.
//!
//! A partition whose worker is behind (retrying a failing message) is paused, so its queue
//! stays bounded while the loop goes on fetching for the others and answering rebalances. A
//! partition taken away by a rebalance is handed over only after its message in hand is done
//! and committed (`assignment.rs`), so two instances never handle one partition at once.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::{
    consumer::{CommitMode, Consumer},
    error::{KafkaError, RDKafkaErrorCode},
    message::OwnedMessage,
    Message, Offset, TopicPartitionList,
};
use tokio::{
    sync::mpsc::{self, error::TrySendError, UnboundedReceiver},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;

use super::{
    assignment::GroupConsumer,
    consumer_config, ensure_topics,
    worker::{PartitionWorker, WorkerEnd, PARTITION_QUEUE},
    Assignment, KafkaConfig, Producer, Rebalances,
};
use crate::{backoff::Backoff, consume::panic_message, handler::EventHandler};

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
    /// A partition's worker stopped (its handler panicked). Its message was not committed, so
    /// the restarted consumer gets it again; a handler that always panics on it restarts
    /// forever, loudly, instead of the service going on without consuming.
    #[error("a partition task stopped: {0}")]
    Worker(String),
}

/// Joins the group (or takes every partition), then runs the loop until shutdown or failure.
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
        dead_letters: Producer::new(super::producer_config(&settings.kafka))?,
        dead_letter_topic,
        group: group_id.clone(),
    });
    tracing::info!(group = %group_id, ?topics, "consumer started");
    let ended = Loop {
        consumer: consumer.clone(),
        worker,
        shutdown: shutdown.clone(),
        partitions: HashMap::new(),
        workers: JoinSet::new(),
        errors_in_a_row: 0,
    }
    .run(revocations)
    .await;
    match ended {
        Some(reason) if !shutdown.is_cancelled() => Err(ConsumeError::Worker(reason)),
        _ => {
            tracing::info!(group = %group_id, "consumer stopped");
            Ok(())
        }
    }
}

/// One consumer's loop: the partitions it works on and their workers. Each branch of the
/// loop's `select!` is a method.
struct Loop<H> {
    consumer: Arc<GroupConsumer>,
    worker: Arc<PartitionWorker<H>>,
    shutdown: CancellationToken,
    // One task per partition: order only matters within a partition (one aggregate, one key,
    // one partition), so partitions are handled concurrently and each one strictly in order.
    partitions: HashMap<(String, i32), Partition>,
    workers: JoinSet<WorkerEnd>,
    errors_in_a_row: u64,
}

/// What the loop does after a branch: go on, or stop (with why, when it is a failure).
enum Next {
    Continue,
    Stop(Option<String>),
}

impl<H: EventHandler> Loop<H> {
    /// Runs until shutdown or a worker's failure; returns the failure, if any.
    async fn run(
        mut self,
        mut revocations: UnboundedReceiver<TopicPartitionList>,
    ) -> Option<String> {
        // Partitions paused with a message held back, each waiting for room in its queue.
        let mut waiting_for_room = FuturesUnordered::new();
        // Dropped before the consumer and the workers when this future is dropped (the task
        // aborted): a revocation received but not completed is given up, and the one that
        // closing the consumer triggers completes at once, instead of the group waiting for a
        // loop that is gone.
        let _handover = PendingRevocation(self.consumer.clone());
        let mut failure = loop {
            let next = tokio::select! {
                _ = self.shutdown.cancelled() => Next::Stop(None),
                // A worker ends when its partition is revoked, or when it dies.
                Some(ended) = self.workers.join_next() => worker_ended(ended),
                Some(revoked) = revocations.recv() => {
                    self.hand_over(&revoked).await;
                    Next::Continue
                }
                Some(room) = waiting_for_room.next(), if !waiting_for_room.is_empty() => {
                    self.release(room);
                    Next::Continue
                }
                message = self.consumer.recv() => match message {
                    Ok(message) => {
                        self.errors_in_a_row = 0;
                        self.dispatch(message.detach(), &mut waiting_for_room)
                    }
                    Err(error) => self.consumer_error(error).await,
                },
            };
            if let Next::Stop(failure) = next {
                break failure;
            }
        };
        // Let every worker finish the message in hand. What is still queued was never
        // committed, so it is delivered again after a restart. Without the receiver, the
        // revocation that closing the consumer triggers completes at once.
        self.partitions.clear();
        drop(revocations);
        while let Some(ended) = self.workers.join_next().await {
            if let Next::Stop(Some(reason)) = worker_ended(ended) {
                failure.get_or_insert(reason);
            }
        }
        failure
    }

    /// A fetched message goes to its partition's queue; a full queue pauses the partition.
    fn dispatch(
        &mut self,
        message: OwnedMessage,
        waiting_for_room: &mut FuturesUnordered<futures::future::BoxFuture<'static, Room>>,
    ) -> Next {
        let key = (message.topic().to_owned(), message.partition());
        let partition = self.partitions.entry(key.clone()).or_insert_with(|| {
            let (queue, rx) = mpsc::channel(PARTITION_QUEUE);
            let stop = self.shutdown.child_token();
            let done = CancellationToken::new();
            self.workers.spawn(self.worker.clone().run(
                rx,
                stop.clone(),
                done.clone().drop_guard(),
            ));
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
            return Next::Stop(Some(format!(
                "{}/{} delivered a message while paused",
                key.0, key.1
            )));
        }
        match partition.queue.try_reserve() {
            Ok(room) => room.send(message),
            // The partition is behind (its worker is retrying a failing message): hold this
            // message and pause the partition, but keep polling. The loop must go on serving
            // the other partitions and the group's rebalances, which only arrive while the
            // consumer is polled; waiting here stalled every partition of the instance and
            // every rebalance of the group.
            Err(TrySendError::Full(())) => {
                if let Err(error) = self.consumer.pause(&single(&key)) {
                    tracing::warn!(%error, topic = %key.0, partition = key.1, "could not pause a partition that is behind");
                }
                partition.held = Some(message);
                // The second handle tells, when room comes, whether this queue is still the
                // partition's (it may have been revoked, and assigned again, meanwhile).
                let (queue, waited_on) = (partition.queue.clone(), partition.queue.clone());
                waiting_for_room.push(Box::pin(async move {
                    (key, waited_on, queue.reserve_owned().await)
                }));
            }
            // The worker is gone (it died: `join_next` reports why). The message was not
            // handled, so it is not committed either.
            Err(TrySendError::Closed(())) => {}
        }
        Next::Continue
    }

    /// librdkafka reports what fails while it reconnects on its own, and queues the reports:
    /// a minute without a broker left hundreds of them. Waiting half a second after each one
    /// delayed the first message after the broker's return by as long again (order-service
    /// rejoined 100 s after a 60 s outage), so they are drained at once; only a long run of
    /// errors with no message between them is slowed down.
    async fn consumer_error(&mut self, error: KafkaError) -> Next {
        self.errors_in_a_row += 1;
        let errors_in_a_row = self.errors_in_a_row;
        if errors_in_a_row == 1 || errors_in_a_row.is_multiple_of(100) {
            tracing::warn!(%error, errors_in_a_row, "kafka consumer error; retrying");
            if errors_in_a_row > 1 {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        } else {
            tracing::debug!(%error, errors_in_a_row, "kafka consumer error; retrying");
        }
        Next::Continue
    }

    /// A partition's queue has room again: hand it the held message and resume the
    /// partition. Stale when the partition was revoked meanwhile (the permit is then for a
    /// queue that is gone).
    fn release(&mut self, (key, waited_on, room): Room) {
        let Some(partition) = self
            .partitions
            .get_mut(&key)
            .filter(|p| p.queue.same_channel(&waited_on))
        else {
            return;
        };
        let (Ok(room), Some(message)) = (room, partition.held.take()) else {
            return;
        };
        room.send(message);
        if let Err(error) = self.consumer.resume(&single(&key)) {
            tracing::warn!(%error, topic = %key.0, partition = key.1, "could not resume a partition");
        }
    }

    /// A rebalance takes partitions away: stop handing out their messages, let each one's
    /// message in hand finish (its offset stored), commit, and only then let the group move
    /// them. Their queued messages were never handled; the new owner reads them from the
    /// committed offset.
    async fn hand_over(&mut self, revoked: &TopicPartitionList) {
        let mut finishing = Vec::new();
        for element in revoked.elements() {
            let key = (element.topic().to_owned(), element.partition());
            if let Some(partition) = self.partitions.remove(&key) {
                if partition.held.is_some() {
                    // Not carried over if the partition comes back to this instance.
                    if let Err(error) = self.consumer.resume(&single(&key)) {
                        tracing::warn!(%error, "could not resume a revoked partition");
                    }
                }
                partition.stop.cancel();
                finishing.push(partition.done);
            }
        }
        futures::future::join_all(finishing.iter().map(CancellationToken::cancelled)).await;
        // Synchronously, so the new owner starts right after the last message handled here.
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => {
                tracing::warn!(%error, "commit before handing partitions over failed; their last messages may be redelivered")
            }
        }
        if let Err(error) = self
            .consumer
            .context()
            .give_up(self.consumer.as_ref(), revoked)
        {
            tracing::warn!(%error, "could not give up revoked partitions");
        }
    }
}

/// What a worker's end means for the loop: a revoked partition's worker ends quietly, a
/// worker whose handler panicked stops the consumer.
fn worker_ended(ended: Result<WorkerEnd, tokio::task::JoinError>) -> Next {
    match ended {
        Ok(WorkerEnd::Done) => Next::Continue,
        Ok(WorkerEnd::Panicked(reason)) => Next::Stop(Some(reason)),
        Err(error) if error.is_panic() => {
            Next::Stop(Some(panic_message(error.into_panic().as_ref())))
        }
        Err(error) => Next::Stop(Some(error.to_string())),
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
