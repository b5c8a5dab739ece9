//! Step 4 of a batch: record what the broker acknowledged, refused or left unanswered, in the
//! transaction that holds the claim, and commit. A failure counts an attempt and backs off;
//! an outage counts none and pauses the relay.

use std::{collections::HashMap, time::Duration};

use uuid::Uuid;

use super::{
    claim::{Claim, OutboxRow},
    publish::Sends,
    BatchReport, Fault, Relay, RelayError, RelaySettings, SendError,
};

impl Relay {
    /// Step 4: records what happened, in the transaction that holds the claim, and commits.
    #[doc(hidden)] // A test hook: the steps one by one, to crash between them.
    pub async fn mark(&self, claim: Claim, published: Sends) -> Result<BatchReport, RelayError> {
        let Claim {
            mut tx,
            chains,
            claimed,
            mut deferred,
            ..
        } = claim;
        let rows: HashMap<Uuid, &OutboxRow> = chains.iter().flatten().map(|r| (r.id, r)).collect();
        let acked: Vec<Uuid> = published
            .0
            .iter()
            .flat_map(|o| o.acked.iter().copied())
            .collect();
        // A send still unanswered at the deadline is the event's problem when the broker
        // answered others meanwhile; when it answered none, the broker is what is silent.
        let silent = acked.is_empty();
        let mut failed = 0;
        let mut outage: Option<SendError> = None;
        for outcome in published.0 {
            deferred += outcome.held_back;
            let Some((id, error)) = outcome.failed else {
                continue;
            };
            let Some(row) = rows.get(&id) else { continue };
            if error.fault == Fault::Outage || (outcome.past_deadline && silent) {
                // Not the event's fault: it keeps its attempts and goes first once the broker
                // is back.
                deferred += 1;
                outage.get_or_insert(error);
                continue;
            }
            failed += 1;
            let attempts = row.attempts + 1;
            let park = attempts >= self.settings.max_attempts;
            let delay = retry_delay(&self.settings, row.attempts);
            if park {
                metrics::counter!("outbox_parked_total", "database" => self.name.clone())
                    .increment(1);
                tracing::error!(
                    database = %self.name, id = %row.id, r#type = %row.event_type,
                    aggregateid = %row.aggregateid, attempts, %error,
                    "event parked after too many failed attempts; its aggregate waits for an operator"
                );
            } else {
                tracing::warn!(
                    database = %self.name, id = %row.id, r#type = %row.event_type,
                    aggregateid = %row.aggregateid, attempts, %error, ?delay,
                    "publish failed; the aggregate's later events wait behind it"
                );
            }
            sqlx::query(
                "update outbox
                 set attempts = attempts + 1, last_error = $2,
                     -- From now, not from the claim's start (now()), which may be most of
                     -- a batch deadline ago.
                     next_attempt_at = clock_timestamp() + make_interval(secs => $3),
                     parked_at = case when $4 then now() end
                 where id = $1",
            )
            .bind(id)
            .bind(&error.reason)
            .bind(delay.as_secs_f64())
            .bind(park)
            .execute(&mut *tx)
            .await?;
        }
        if !acked.is_empty() {
            // clock_timestamp(), not now(): the claim transaction started before the sends, and
            // `published_at - created_at` should say how long an event waited for the relay.
            sqlx::query(
                "update outbox
                 set published_at = clock_timestamp(), attempts = attempts + 1, last_error = null,
                     next_attempt_at = null
                 where id = any($1)",
            )
            .bind(&acked)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;

        metrics::counter!("outbox_published_total", "database" => self.name.clone())
            .increment(acked.len() as u64);
        metrics::counter!("outbox_publish_failures_total", "database" => self.name.clone())
            .increment(failed as u64);
        let pause = match outage {
            Some(error) => Some(self.outlet.outage.failed(&error.reason)),
            None => {
                if !acked.is_empty() {
                    self.outlet.outage.acknowledged();
                }
                None
            }
        };
        Ok(BatchReport {
            claimed,
            published: acked.len(),
            failed,
            deferred,
            pause,
        })
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
