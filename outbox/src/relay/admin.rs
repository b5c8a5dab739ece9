//! What an operator can do about parked events, as library calls: list them, retry them after
//! a fix, or skip one. The shop's relay serves these over HTTP (`/admin/*`); a service that
//! embeds the relay can call them from its own admin surface.
//!
//! A parked event blocks the later events of its aggregate (publishing them would break the
//! order), so these are the only ways forward: **retry** (the row is due again at once, its
//! attempt count reset) or **skip** (the row is kept with `skipped_at`, never published, and its
//! aggregate goes on). Every statement acts only on a row that is parked and neither published
//! nor skipped since (`parked_at is not null and published_at is null and skipped_at is null`),
//! so none can touch a row the others would not.
//!
//! Each one reads or changes both tables where a parked event can be: `outbox` (the polling
//! relay's) and `outbox_wal_held` (the WAL relay's, `crate::wal`). The one a relay does not use
//! is empty, so the same calls serve either mode. A change is written once and made on both
//! (`on_both_tables`), so that the two can never be treated differently.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// A parked event, as an operator sees it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ParkedEvent {
    /// The relay's name for the database the event is in.
    #[sqlx(default)]
    pub database: String,
    pub id: Uuid,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub event_type: String,
    pub aggregatetype: String,
    pub aggregateid: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub parked_at: Option<DateTime<Utc>>,
}

/// Which parked events a list or a bulk retry takes; every field narrows, none means all. An
/// empty time range (`parked_from` not before `parked_to`) takes nothing.
#[derive(Debug, Clone, Default)]
pub struct ParkedFilter {
    /// Only events whose last error contains this text (case-sensitive).
    pub error: Option<String>,
    /// Only events parked at or after this time.
    pub parked_from: Option<DateTime<Utc>>,
    /// Only events parked before this time.
    pub parked_to: Option<DateTime<Utc>>,
}

/// What became of a request to retry or skip one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Acted {
    /// Done: the event is due again (retry) or will never be published (skip).
    Done,
    /// No parked event has this id (never parked, or published, skipped or retried since).
    NotParked,
}

impl Acted {
    fn of(rows_affected: u64) -> Self {
        if rows_affected == 0 {
            Self::NotParked
        } else {
            Self::Done
        }
    }
}

/// The rows every statement here acts on: parked, and neither published nor skipped since.
const PARKED: &str = "parked_at is not null and published_at is null and skipped_at is null";

/// The rows a [`ParkedFilter`] takes, bound as $1 (the error text), $2 and $3 (the range).
const FILTERED: &str = "(position($1 in coalesce(last_error, '')) > 0 or $1 is null)
    and ($2::timestamptz is null or parked_at >= $2)
    and ($3::timestamptz is null or parked_at < $3)";

/// What a retry sets: due again at once, its attempts reset.
const DUE_AGAIN: &str = "parked_at = null, attempts = 0, next_attempt_at = null";

/// `update … set {set}` on the [`PARKED`] rows that `rows` takes, in `outbox` and in
/// `outbox_wal_held`, in one statement that returns how many rows it changed.
fn on_both_tables(set: &str, rows: &str) -> String {
    format!(
        "with polled as (update outbox set {set} where {PARKED} and {rows} returning 1),
              held as (update outbox_wal_held set {set} where {PARKED} and {rows} returning 1)
         select (select count(*) from polled) + (select count(*) from held)"
    )
}

/// The parked events of the database behind `pool` that `filter` takes, oldest first, each
/// labelled with `database`.
pub async fn parked(
    pool: &PgPool,
    database: &str,
    filter: &ParkedFilter,
) -> Result<Vec<ParkedEvent>, sqlx::Error> {
    let mut events: Vec<ParkedEvent> = sqlx::query_as(&format!(
        "select id, type, aggregatetype, aggregateid, attempts, last_error, created_at, parked_at
         from (select 0 as held, id, type, aggregatetype, aggregateid, attempts, last_error,
                      created_at, parked_at, published_at, skipped_at, seq
               from outbox
               union all
               select 1, id, type, aggregatetype, aggregateid, attempts, last_error,
                      created_at, parked_at, published_at, skipped_at, seq
               from outbox_wal_held) o
         where {PARKED} and {FILTERED}
         order by held, seq"
    ))
    .bind(&filter.error)
    .bind(filter.parked_from)
    .bind(filter.parked_to)
    .fetch_all(pool)
    .await?;
    for e in &mut events {
        e.database = database.to_owned();
    }
    Ok(events)
}

/// Every parked event `filter` takes is due again at once, attempts reset; how many. Each
/// aggregate's events still go out in order: the relay claims them by `seq`.
pub async fn retry_parked(pool: &PgPool, filter: &ParkedFilter) -> Result<u64, sqlx::Error> {
    let done: i64 = sqlx::query_scalar(&on_both_tables(DUE_AGAIN, FILTERED))
        .bind(&filter.error)
        .bind(filter.parked_from)
        .bind(filter.parked_to)
        .fetch_one(pool)
        .await?;
    Ok(done.unsigned_abs())
}

/// Every parked event of one aggregate is due again at once; how many.
pub async fn retry_aggregate(
    pool: &PgPool,
    aggregatetype: &str,
    aggregateid: &str,
) -> Result<u64, sqlx::Error> {
    let done: i64 = sqlx::query_scalar(&on_both_tables(
        DUE_AGAIN,
        "aggregatetype = $1 and aggregateid = $2",
    ))
    .bind(aggregatetype)
    .bind(aggregateid)
    .fetch_one(pool)
    .await?;
    Ok(done.unsigned_abs())
}

/// Retries the event `id` if it is parked: due again now, attempts reset.
pub async fn retry(pool: &PgPool, id: Uuid) -> Result<Acted, sqlx::Error> {
    let done: i64 = sqlx::query_scalar(&on_both_tables(DUE_AGAIN, "id = $1"))
        .bind(id)
        .fetch_one(pool)
        .await?;
    Ok(Acted::of(done.unsigned_abs()))
}

/// Skips the event `id` if it is parked: never published, no longer blocking its aggregate. It
/// stays in the table (until retention) for the record.
pub async fn skip(pool: &PgPool, id: Uuid) -> Result<Acted, sqlx::Error> {
    let done: i64 = sqlx::query_scalar(&on_both_tables("skipped_at = now()", "id = $1"))
        .bind(id)
        .fetch_one(pool)
        .await?;
    Ok(Acted::of(done.unsigned_abs()))
}
