//! Step 3 of a batch: send the claimed chains, aggregates concurrently and each aggregate's
//! rows one after another, each after the broker acknowledged the one before, until the
//! batch's deadline. Nothing is marked here.

use std::collections::HashMap;

use chrono::Utc;
use futures::future::join_all;
use tokio::time::Instant;
use uuid::Uuid;

use super::{claim::Claim, Outgoing, PendingEvent, Relay, SendError, Source};
use crate::envelope::EventHeaders;

/// What the broker acknowledged of a claim.
#[doc(hidden)]
pub struct Sends(pub(super) Vec<ChainOutcome>);

#[derive(Default)]
pub(super) struct ChainOutcome {
    pub(super) acked: Vec<Uuid>,
    pub(super) failed: Option<(Uuid, SendError)>,
    /// Rows after the failed one, not attempted so they cannot overtake it.
    pub(super) held_back: usize,
    /// The failed row was still unanswered at the batch's deadline.
    pub(super) past_deadline: bool,
}

impl<S: Source> Relay<S> {
    /// Step 3: publishes the claimed chains, aggregates concurrently, each aggregate's rows
    /// strictly one after another, until the batch's deadline. Marks nothing.
    #[doc(hidden)] // A test hook: the steps one by one, to crash between them.
    pub async fn publish(&self, claim: &Claim<S::Held>) -> Sends {
        let deadline = claim.started + self.settings.batch_deadline();
        Sends(
            join_all(
                claim
                    .batch
                    .chains
                    .iter()
                    .map(|chain| self.send_chain(chain, &claim.topic_failures, deadline)),
            )
            .await,
        )
    }

    async fn send_chain(
        &self,
        chain: &[PendingEvent],
        topic_failures: &HashMap<String, SendError>,
        deadline: Instant,
    ) -> ChainOutcome {
        let mut outcome = ChainOutcome::default();
        let Some(first) = chain.first() else {
            return outcome;
        };
        let topic = self.outlet.names.topic_for(&first.aggregatetype);
        if let Some(error) = topic_failures.get(&topic) {
            outcome.failed = Some((first.id, error.clone()));
            outcome.held_back = chain.len() - 1;
            return outcome;
        }
        if !self.outlet.topics.is_known(&topic) {
            // A new aggregate type committed between the topic creation and the second claim:
            // the next batch creates its topic.
            outcome.held_back = chain.len();
            return outcome;
        }
        for (i, row) in chain.iter().enumerate() {
            let sent = tokio::time::timeout_at(deadline, self.send_row(&topic, row)).await;
            match sent {
                Ok(Ok(())) => {
                    // Commit (well, insert) to broker acknowledgement.
                    let latency = (Utc::now() - row.created_at).to_std().unwrap_or_default();
                    metrics::histogram!("outbox_publish_latency_seconds", "database" => self.name.clone())
                        .record(latency.as_secs_f64());
                    outcome.acked.push(row.id);
                }
                Ok(Err(error)) => {
                    outcome.held_back = chain.len() - i - 1;
                    outcome.failed = Some((row.id, error));
                    break;
                }
                Err(_) => {
                    let reason = format!(
                        "not acknowledged within the batch deadline ({} ms)",
                        self.settings.batch_deadline().as_millis()
                    );
                    outcome.held_back = chain.len() - i - 1;
                    outcome.failed = Some((row.id, SendError::event(reason)));
                    outcome.past_deadline = true;
                    break;
                }
            }
        }
        outcome
    }

    /// Sends one row and waits for the broker's acknowledgement.
    async fn send_row(&self, topic: &str, row: &PendingEvent) -> Result<(), SendError> {
        let (id, version) = (row.id.to_string(), row.schema_version.to_string());
        let headers = EventHeaders {
            id: &id,
            event_type: &row.event_type,
            aggregate_type: &row.aggregatetype,
            aggregate_id: &row.aggregateid,
            schema_version: &version,
            traceparent: row.tracingspancontext.as_deref(),
        };
        self.outlet
            .broker
            .send(Outgoing {
                topic,
                key: &row.aggregateid,
                payload: &row.payload,
                headers,
            })
            .await
    }
}
