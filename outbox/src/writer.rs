//! The producing side of the pattern: write an event into the caller's open transaction.
//!
//! There is deliberately no "publish" here. [`write_in_tx`] takes the transaction the business
//! change is in, so the event exists if and only if that change commits. Publishing is the
//! relay's job ([`crate::relay`]), which reads these rows later.
//!
//! [`commit`] then commits that transaction and wakes the relay, so it publishes at once
//! instead of at its next poll. The wake-up is a hint sent *after* the commit, never inside
//! the transaction: a NOTIFY inside it would hold a cluster-wide lock until the commit is on
//! disk and so make every writer wait for every other (see migration 0004). A lost hint (a
//! crash right after the commit) costs one poll interval, never an event.

use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::DomainEvent;

/// Appends `event` to the outbox inside the caller's transaction and returns its event id.
///
/// The id is a UUIDv7 (time-ordered) so the primary-key index stays append-mostly.
/// `traceparent` (W3C) lets one trace span the request, the relay and the consumer; Debezium
/// reads the same column (`tracingspancontext`).
pub async fn write_in_tx<E: DomainEvent>(
    tx: &mut PgConnection,
    event: &E,
    traceparent: Option<&str>,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    let payload = serde_json::to_value(event)
        .map_err(|e| sqlx::Error::Encode(format!("event {} to JSON: {e}", E::TYPE).into()))?;
    sqlx::query(
        "insert into outbox
             (id, aggregatetype, aggregateid, type, payload, tracingspancontext, schema_version)
         values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(E::AGGREGATE_TYPE)
    .bind(event.aggregate_id())
    .bind(E::TYPE)
    .bind(payload)
    .bind(traceparent)
    .bind(E::SCHEMA_VERSION)
    .execute(&mut *tx)
    .await?;
    Ok(id)
}

/// The channel the relay listens on.
pub const WAKE_CHANNEL: &str = "outbox";

/// Commits `tx`, which wrote events with [`write_in_tx`], then wakes the relay. Only the commit can
/// fail: once it succeeded the events are safe, and a wake-up that fails is logged, not
/// returned, since the relay's poll finds the rows anyway.
pub async fn commit(tx: Transaction<'_, Postgres>, pool: &PgPool) -> Result<(), sqlx::Error> {
    tx.commit().await?;
    wake_relay(pool).await;
    Ok(())
}

/// Sends the relay its wake-up (`NOTIFY outbox`) in a transaction of its own.
pub async fn wake_relay(pool: &PgPool) {
    if let Err(error) = sqlx::query("select pg_notify($1, '')")
        .bind(WAKE_CHANNEL)
        .execute(pool)
        .await
    {
        tracing::warn!(%error, "could not wake the relay; it will find the events at its next poll");
    }
}
