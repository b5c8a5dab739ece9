//! The consuming side of the pattern: an idempotent consumer ("inbox").
//!
//! Kafka delivers at least once, so every consumer must expect duplicates (a relay that
//! crashed between the broker's ack and marking the row, a consumer that crashed before
//! committing its offset, a rebalance). The cure is to record the event id in the same
//! database transaction as the change: if the record already exists, the change was applied.

use sqlx::PgConnection;
use uuid::Uuid;

/// Whether an event reached a consumer for the first time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a duplicate must not be applied again"]
pub enum Recorded {
    /// First delivery: apply the event, in the same transaction.
    First,
    /// Already applied by an earlier delivery: skip it, and commit nothing else.
    Duplicate,
}

/// Records that `consumer` processed `event_id`, in the caller's transaction.
///
/// The `on conflict do nothing` makes two concurrent deliveries safe too: the second waits
/// for the first transaction and then sees the row, so it is a [`Recorded::Duplicate`].
pub async fn record(
    tx: &mut PgConnection,
    consumer: &str,
    event_id: Uuid,
    event_type: &str,
) -> Result<Recorded, sqlx::Error> {
    let inserted = sqlx::query(
        "insert into processed_events (consumer, event_id, event_type) values ($1, $2, $3)
         on conflict (consumer, event_id) do nothing",
    )
    .bind(consumer)
    .bind(event_id)
    .bind(event_type)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(if inserted == 1 {
        Recorded::First
    } else {
        Recorded::Duplicate
    })
}
