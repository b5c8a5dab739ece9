//! A partition's worker: its messages one after another, through the consumer core
//! ([`crate::consume::handle`]), the dead-letter topic for what fails for good, then the
//! offset store (committed by the next background commit).

use std::sync::Arc;

use rdkafka::{consumer::Consumer, message::OwnedMessage, Message, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    assignment::GroupConsumer,
    dead_letter::{dead_letter, DeadLetter},
    Producer,
};
use crate::{
    consume::{handle, Handling, Incoming, Origin},
    envelope::Envelope,
    handler::EventHandler,
};

/// Messages fetched ahead per partition, waiting for that partition's worker.
pub(super) const PARTITION_QUEUE: usize = 256;

/// Why a worker ended.
#[derive(Debug)]
pub(super) enum WorkerEnd {
    /// Its queue closed or it was stopped (revocation, shutdown).
    Done,
    /// Its handler panicked: the consumer restarts, and the message comes again.
    Panicked(String),
}

/// Handles one partition's messages in order.
pub(super) struct PartitionWorker<H> {
    pub(super) consumer: Arc<GroupConsumer>,
    pub(super) handler: Arc<H>,
    pub(super) dead_letters: Producer,
    pub(super) dead_letter_topic: String,
    pub(super) group: String,
}

impl<H: EventHandler> PartitionWorker<H> {
    /// Handles the partition's messages until its queue closes or `stop` (revocation or
    /// shutdown); `_done` signals the end, however it comes.
    pub(super) async fn run(
        self: Arc<Self>,
        mut queue: mpsc::Receiver<OwnedMessage>,
        stop: CancellationToken,
        _done: tokio_util::sync::DropGuard,
    ) -> WorkerEnd {
        while let Some(message) = queue.recv().await {
            if stop.is_cancelled() {
                break; // Not handled, not committed: it comes again, here or at the new owner.
            }
            match handle(self.handler.as_ref(), &message, &stop).await {
                Handling::Handled => {}
                Handling::Rejected(reason) => {
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
                // Stopped mid-retry: leave the offset uncommitted so it comes back.
                Handling::Stopped => break,
                Handling::Panicked(reason) => return WorkerEnd::Panicked(reason),
            }
            self.store_offset(&message);
        }
        WorkerEnd::Done
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

impl Incoming for OwnedMessage {
    fn envelope(&self) -> Result<Envelope, String> {
        super::headers::envelope(self)
    }

    fn origin(&self) -> Origin<'_> {
        Origin {
            topic: self.topic(),
            partition: Some(self.partition()),
            offset: self.offset(),
        }
    }
}
