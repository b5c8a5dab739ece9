//! Step 4 of a batch: decide what the broker's answers mean, and have the [`Source`] record
//! it. A failure counts an attempt and backs off, and the last one parks; an outage counts
//! none and pauses the relay.

use std::{collections::HashMap, time::Duration};

use uuid::Uuid;

use super::{
    claim::Claim, publish::Sends, AfterFailure, BatchReport, Failure, Fault, Marks, PendingEvent,
    Relay, RelayError, RelaySettings, SendError, Source,
};

impl<S: Source> Relay<S> {
    /// Step 4: records what happened through the source, which releases the claim.
    #[doc(hidden)] // A test hook: the steps one by one, to crash between them.
    pub async fn mark(
        &self,
        claim: Claim<S::Held>,
        published: Sends,
    ) -> Result<BatchReport, RelayError> {
        let claimed = claim.claimed();
        let Claim { batch, .. } = claim;
        let mut deferred = batch.deferred;
        let events: HashMap<Uuid, &PendingEvent> =
            batch.chains.iter().flatten().map(|e| (e.id, e)).collect();
        let acked: Vec<Uuid> = published
            .0
            .iter()
            .flat_map(|o| o.acked.iter().copied())
            .collect();
        // A send still unanswered at the deadline is the event's problem when the broker
        // answered others meanwhile; when it answered none, the broker is what is silent.
        let silent = acked.is_empty();
        let mut failures = Vec::new();
        let mut outage: Option<SendError> = None;
        for outcome in published.0 {
            deferred += outcome.held_back;
            let Some((id, error)) = outcome.failed else {
                continue;
            };
            let Some(event) = events.get(&id) else {
                continue;
            };
            if error.fault == Fault::Outage || (outcome.past_deadline && silent) {
                // Not the event's fault: it keeps its attempts and goes first once the broker
                // is back.
                deferred += 1;
                outage.get_or_insert(error);
                continue;
            }
            failures.push(self.failure(event, error));
        }
        let (published, failed) = (acked.len(), failures.len());
        let marks = Marks {
            published: acked,
            failed: failures,
        };
        self.source.mark(batch.held, marks).await?;

        metrics::counter!("outbox_published_total", "database" => self.name.clone())
            .increment(published as u64);
        metrics::counter!("outbox_publish_failures_total", "database" => self.name.clone())
            .increment(failed as u64);
        let pause = match outage {
            Some(error) => Some(self.outlet.outage.failed(&error.reason)),
            None => {
                if published > 0 {
                    self.outlet.outage.acknowledged();
                }
                None
            }
        };
        Ok(BatchReport {
            claimed,
            published,
            failed,
            deferred,
            pause,
        })
    }

    /// A failed attempt of `event`: its backoff, and whether it was the last.
    fn failure(&self, event: &PendingEvent, error: SendError) -> Failure {
        let attempts = event.attempts + 1;
        let then = if attempts >= self.settings.max_attempts {
            AfterFailure::Park
        } else {
            AfterFailure::Retry
        };
        let retry_in = retry_delay(&self.settings, event.attempts);
        if then == AfterFailure::Park {
            metrics::counter!("outbox_parked_total", "database" => self.name.clone()).increment(1);
            tracing::error!(
                database = %self.name, id = %event.id, r#type = %event.event_type,
                aggregateid = %event.aggregateid, attempts, %error,
                "event parked after too many failed attempts; its aggregate waits for an operator"
            );
        } else {
            tracing::warn!(
                database = %self.name, id = %event.id, r#type = %event.event_type,
                aggregateid = %event.aggregateid, attempts, %error, delay = ?retry_in,
                "publish failed; the aggregate's later events wait behind it"
            );
        }
        Failure {
            id: event.id,
            reason: error.reason,
            retry_in,
            then,
        }
    }
}

/// Exponential backoff with jitter from the row's attempt count, so that many failed rows
/// do not all come due in the same instant.
fn retry_delay(settings: &RelaySettings, attempts: i32) -> Duration {
    let attempt = u32::try_from(attempts).unwrap_or(0);
    crate::backoff::backoff_delay(settings.retry_base, settings.retry_max, attempt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_and_is_capped() {
        let settings = RelaySettings {
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(2),
            ..RelaySettings::default()
        };
        assert!(retry_delay(&settings, 0) <= Duration::from_millis(100));
        let third = retry_delay(&settings, 3);
        assert!(third >= Duration::from_millis(400) && third <= Duration::from_millis(800));
        assert!(retry_delay(&settings, 1000) <= Duration::from_secs(2));
    }
}
