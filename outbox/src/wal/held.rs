//! The held table, `outbox_wal_held` (`migrations/0006_outbox_wal_held.sql`): where the WAL
//! relay keeps what cannot go with the stream. The relay core claims and marks it through an
//! [`OutboxTable`](crate::relay::OutboxTable) of that name, as polling does `outbox`; these
//! are the writes only the WAL source makes.

use std::collections::HashSet;

use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::{window::Aggregate, HELD_TABLE};
use crate::relay::{AfterFailure, Failure, PendingEvent};

/// The aggregates with held events that still block them (neither published nor skipped).
pub(super) async fn aggregates(pool: &PgPool) -> Result<HashSet<Aggregate>, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(&format!(
        "select distinct aggregatetype, aggregateid from {HELD_TABLE}
         where published_at is null and skipped_at is null"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Writes events into the held table in the order given; a failed one with its attempt. An
/// event already there (read again after a restart) stays as it is.
pub(super) async fn insert(
    tx: &mut Transaction<'static, Postgres>,
    rows: Vec<(PendingEvent, Option<&Failure>)>,
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut seen = HashSet::new();
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|(e, _)| seen.insert(e.id))
        .collect();
    let column =
        |f: fn(&(PendingEvent, Option<&Failure>)) -> Option<String>| -> Vec<Option<String>> {
            rows.iter().map(f).collect()
        };
    let ids: Vec<Uuid> = rows.iter().map(|(e, _)| e.id).collect();
    let aggregatetypes = column(|(e, _)| Some(e.aggregatetype.clone()));
    let aggregateids = column(|(e, _)| Some(e.aggregateid.clone()));
    let types = column(|(e, _)| Some(e.event_type.clone()));
    let payloads = column(|(e, _)| Some(e.payload.clone()));
    let spans = column(|(e, _)| e.tracingspancontext.clone());
    let errors = column(|(_, f)| f.map(|f| f.reason.clone()));
    let versions: Vec<i32> = rows.iter().map(|(e, _)| e.schema_version).collect();
    let created: Vec<chrono::DateTime<chrono::Utc>> =
        rows.iter().map(|(e, _)| e.created_at).collect();
    let attempts: Vec<i32> = rows.iter().map(|(_, f)| i32::from(f.is_some())).collect();
    let retry_in: Vec<Option<f64>> = rows
        .iter()
        .map(|(_, f)| f.map(|f| f.retry_in.as_secs_f64()))
        .collect();
    let parked: Vec<bool> = rows
        .iter()
        .map(|(_, f)| f.is_some_and(|f| f.then == AfterFailure::Park))
        .collect();
    sqlx::query(&format!(
        "insert into {HELD_TABLE} (id, aggregatetype, aggregateid, type, payload,
             tracingspancontext, schema_version, created_at, attempts, last_error,
             next_attempt_at, parked_at)
         select id, aggregatetype, aggregateid, type, payload::jsonb, span, version, created,
                attempts, error,
                case when retry_in is not null then clock_timestamp() + make_interval(secs => retry_in) end,
                case when parked then now() end
         from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::int4[], $8::timestamptz[], $9::int4[], $10::text[], $11::float8[],
                     $12::bool[])
              with ordinality as r(id, aggregatetype, aggregateid, type, payload, span, version,
                                   created, attempts, error, retry_in, parked, position)
         order by position
         on conflict (id) do nothing"
    ))
    .bind(&ids)
    .bind(&aggregatetypes)
    .bind(&aggregateids)
    .bind(&types)
    .bind(&payloads)
    .bind(&spans)
    .bind(&versions)
    .bind(&created)
    .bind(&attempts)
    .bind(&errors)
    .bind(&retry_in)
    .bind(&parked)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A new slot starts at the end of the WAL: rows committed before it are not in it. Those
/// still pending (the polling relay's backlog when a database switches to the WAL mode) move
/// to the held table, with their attempts and parking, and go out before any later event of
/// their aggregates. In `outbox` they are marked published: handed to the WAL relay, which
/// keeps their state from now on. A row committed just after the slot was made is both
/// moved and streamed; the held table's id keeps it from being queued twice.
pub(super) async fn take_over_pending(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let moved = sqlx::query(&format!(
        "insert into {HELD_TABLE} (id, aggregatetype, aggregateid, type, payload,
             tracingspancontext, schema_version, created_at, attempts, last_error,
             next_attempt_at, parked_at)
         select id, aggregatetype, aggregateid, type, payload, tracingspancontext,
                schema_version, created_at, attempts, last_error, next_attempt_at, parked_at
         from outbox
         where published_at is null and skipped_at is null
         order by seq
         on conflict (id) do nothing"
    ))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query(
        "update outbox set published_at = clock_timestamp()
         where published_at is null and skipped_at is null",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(moved)
}
