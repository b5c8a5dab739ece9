//! The consuming side of the pattern: an idempotent consumer ("inbox").
//!
//! Kafka delivers at least once, so every consumer must expect duplicates (a relay that
//! crashed between the broker's ack and marking the row, a consumer that crashed before
//! committing its offset, a rebalance). The cure is to record the event id in the same
//! database transaction as the change: if the record already exists, the change was applied.

use sqlx::PgConnection;
use uuid::Uuid;

/// Records that `consumer` processed `event_id`, in the caller's transaction.
///
/// Returns `true` when this is the first time (go on and apply the event) and `false` when
/// it was already processed (skip it, and commit nothing else). The `on conflict do nothing`
/// makes two concurrent deliveries safe too: the second waits for the first transaction and
/// then sees the row.
pub async fn record(
    tx: &mut PgConnection,
    consumer: &str,
    event_id: Uuid,
    event_type: &str,
) -> Result<bool, sqlx::Error> {
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
    Ok(inserted == 1)
}
