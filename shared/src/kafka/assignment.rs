//! Which partitions this instance owns: the consumer group's side of scaling out.
//!
//! In a consumer group the broker shares a topic's partitions among the instances of a
//! service. When one instance dies, its partitions move to the others after its session
//! times out; when it comes back, they are shared again. This context hears every such
//! rebalance, logs it, and keeps the gauge `kafka_consumer_assigned_partitions{consumer}`
//! current, so an operator (and the failure lab's scale-out scenario) can see who owns what.

use rdkafka::{
    client::ClientContext,
    consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance},
};

/// The consumer context of every service: rebalances are logged and counted.
pub struct AssignmentObserver {
    consumer: String,
}

impl AssignmentObserver {
    pub fn new(consumer: &str) -> Self {
        Self {
            consumer: consumer.to_owned(),
        }
    }

    pub(crate) fn record(&self, owned: usize, partitions: String) {
        metrics::gauge!("kafka_consumer_assigned_partitions", "consumer" => self.consumer.clone())
            .set(owned as f64);
        tracing::info!(consumer = %self.consumer, owned, %partitions, "partitions assigned");
    }
}

impl ClientContext for AssignmentObserver {}

impl ConsumerContext for AssignmentObserver {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => {
                tracing::info!(consumer = %self.consumer, revoked = list.count(), "partitions revoked");
            }
            Rebalance::Error(error) => {
                tracing::warn!(consumer = %self.consumer, %error, "rebalance failed");
            }
            Rebalance::Assign(_) => {}
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        // After the eager protocol's revoke the assignment is empty, after its assign it is
        // the whole new share: read it rather than add up deltas.
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
