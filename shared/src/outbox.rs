//! The producing side of the pattern: write an event into the caller's open transaction.
//!
//! There is deliberately no "publish" here. The function takes the transaction the business
//! change is in, so the event exists if and only if that change commits. Publishing is the
//! relay's job (`outbox-processor`), which reads these rows later.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::events::DomainEvent;

/// Appends `event` to the outbox inside the caller's transaction and returns its event id.
///
/// The id is a UUIDv7 (time-ordered) so the primary-key index stays append-mostly.
/// `traceparent` (W3C) lets one trace span the request, the relay and the consumer; Debezium
/// reads the same column (`tracingspancontext`).
pub async fn write<E: DomainEvent>(
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
