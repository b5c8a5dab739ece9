//! Which partitions this instance owns, and handing them over cleanly: the consumer group's
//! side of scaling out.
//!
//! In a consumer group the broker shares a topic's partitions among the instances of a
//! service. When one instance dies, its partitions move to the others after its session
//! times out; when one joins or leaves, they are shared anew. This context hears every such
//! rebalance, logs it, and keeps the gauge `kafka_consumer_assigned_partitions{consumer}`
//! current, so an operator (and the failure lab's scale-out scenario) can see who owns what.
//!
//! **A revocation waits for the work in hand.** Without that, a revoked partition's task would
//! go on through the messages already queued for it while the partition's new owner starts
//! from the last committed offset: two instances handling one partition at once. The inbox
//! would stop double effects, not reordering between them. So a revocation is not completed
//! in the callback: it is passed to the consumer loop ([`crate::kafka`]), which stops handing
//! out the revoked partitions' messages, lets each one's message in hand finish (its offset
//! stored), commits, and only then gives the partitions up ([`Rebalances::give_up`]); the group
//! waits for that before it assigns them elsewhere. Assignments take effect at once.

use std::sync::Mutex;

use rdkafka::{
    client::ClientContext,
    consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol},
    error::KafkaResult,
    types::RDKafkaRespErr,
    TopicPartitionList,
};
use tokio::sync::mpsc;

/// The consumer every service runs: rebalances are logged, counted and handed over cleanly.
pub(super) type GroupConsumer = rdkafka::consumer::StreamConsumer<Rebalances>;

/// The consumer context of every service: rebalances are logged, counted, and revocations
/// handed to the consumer loop.
pub struct Rebalances {
    consumer: String,
    revocations: mpsc::UnboundedSender<TopicPartitionList>,
    /// A revocation handed to the consumer loop and not given up yet. The group waits for it,
    /// so it must be given up even if the loop ends first ([`Rebalances::give_up_pending`]).
    pending: Mutex<Option<TopicPartitionList>>,
}

impl Rebalances {
    /// `revocations` receives every revoked set; whoever reads it must call
    /// [`Rebalances::give_up`] once the partitions' work is done. With the receiver gone (the
    /// loop has ended, the consumer is closing) partitions are given up at once.
    pub fn new(consumer: &str, revocations: mpsc::UnboundedSender<TopicPartitionList>) -> Self {
        Self {
            consumer: consumer.to_owned(),
            revocations,
            pending: Mutex::new(None),
        }
    }

    /// Gives up a revocation the consumer loop received but did not complete (it ended, or
    /// its task was aborted), so that the group is not left waiting for this member.
    pub fn give_up_pending<C: Consumer<Self>>(&self, consumer: &C) {
        let pending = self.lock_pending().take();
        if let Some(revoked) = pending {
            if let Err(error) = self.give_up(consumer, &revoked) {
                tracing::warn!(consumer = %self.consumer, %error, "could not give up revoked partitions");
            }
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Option<TopicPartitionList>> {
        // Only ever replaced whole: a panic elsewhere cannot leave it torn.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Completes a revocation: the group may now assign `revoked` elsewhere.
    pub fn give_up<C: Consumer<Self>>(
        &self,
        consumer: &C,
        revoked: &TopicPartitionList,
    ) -> KafkaResult<()> {
        self.lock_pending().take();
        let given_up = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_unassign(revoked),
            _ => consumer.unassign(),
        };
        self.observe(consumer);
        given_up
    }

    pub(crate) fn record(&self, owned: usize, partitions: String) {
        metrics::gauge!("kafka_consumer_assigned_partitions", "consumer" => self.consumer.clone())
            .set(owned as f64);
        tracing::info!(consumer = %self.consumer, owned, %partitions, "partitions assigned");
    }

    /// Logs and counts the current assignment. After the eager protocol's revoke it is empty,
    /// after its assign it is the whole new share: read it rather than add up deltas.
    fn observe<C: Consumer<Self>>(&self, consumer: &C) {
        match consumer.assignment() {
            Ok(list) => {
                let partitions = list
                    .elements()
                    .iter()
                    .map(|e| format!("{}/{}", e.topic(), e.partition()))
                    .collect::<Vec<_>>()
                    .join(",");
                self.record(list.count(), partitions);
            }
            Err(error) => {
                tracing::warn!(consumer = %self.consumer, %error, "cannot read the assignment")
            }
        }
    }
}

impl ClientContext for Rebalances {}

impl ConsumerContext for Rebalances {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let outcome = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let assigned = match consumer.rebalance_protocol() {
                    RebalanceProtocol::Cooperative => consumer.incremental_assign(partitions),
                    _ => consumer.assign(partitions),
                };
                self.observe(consumer);
                assigned
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(
                    consumer = %self.consumer, revoked = partitions.count(),
                    "partitions revoked; handing them over once their messages in hand are done"
                );
                *self.lock_pending() = Some(partitions.clone());
                match self.revocations.send(partitions.clone()) {
                    Ok(()) => Ok(()),
                    Err(_) => self.give_up(consumer, partitions),
                }
            }
            error => {
                tracing::warn!(consumer = %self.consumer, ?error, "rebalance failed; giving up the assignment");
                self.give_up(consumer, partitions)
            }
        };
        if let Err(error) = outcome {
            tracing::warn!(consumer = %self.consumer, %error, "rebalance step failed");
        }
    }
}
