//! The `outbox` table as the relay's [`Source`]: steps 1, 2 and the writes of step 4 (see the
//! module docs of [`crate::relay`]). A claim is a transaction holding row locks on due rows;
//! the marks are written in that transaction, and its commit releases the claim.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::{AfterFailure, Batch, Marks, PendingEvent, RelayError, Source, Stats};

/// The relay's source when it polls: the `outbox` table of one database.
#[derive(Clone)]
pub struct OutboxTable {
    pub(super) pool: PgPool,
    /// `outbox`, or a table of the same columns (the WAL relay's `outbox_wal_held`).
    pub(super) table: &'static str,
}

impl OutboxTable {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            table: "outbox",
        }
    }

    /// Another table of the outbox's columns, claimed and marked as the polling relay does
    /// its rows: the WAL relay's held events.
    #[cfg_attr(not(feature = "wal"), allow(dead_code))]
    pub(crate) fn named(pool: PgPool, table: &'static str) -> Self {
        Self { pool, table }
    }
}

impl Source for OutboxTable {
    type Held = Transaction<'static, Postgres>;

    /// Steps 1 and 2: locks the oldest due rows that are not behind a stuck event of their
    /// aggregate, and keeps, per aggregate, those before its gate.
    async fn claim(&self, limit: i64) -> Result<Option<Batch<Self::Held>>, RelayError> {
        let mut tx = self.pool.begin().await?;
        let table = self.table;
        let rows: Vec<PendingEvent> = sqlx::query_as(&format!(
            "select o.id, o.aggregatetype, o.aggregateid, o.type, o.payload::text as payload,
                    o.tracingspancontext, o.schema_version, o.seq, o.attempts, o.created_at
             from {table} o
             where o.published_at is null and o.skipped_at is null and o.parked_at is null
               and (o.next_attempt_at is null or o.next_attempt_at <= now())
               -- Not behind a stuck event of its aggregate (parked, or waiting for its
               -- retry): it could only be deferred, and would starve every other aggregate.
               and not exists (
                   select 1 from {table} s
                   where s.aggregatetype = o.aggregatetype and s.aggregateid = o.aggregateid
                     and s.seq < o.seq
                     and s.published_at is null and s.skipped_at is null
                     and (s.parked_at is not null or s.next_attempt_at > now()))
             order by o.seq
             limit $1
             for update of o skip locked"
        ))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(None);
        }

        // Per aggregate, the earliest pending row we did not claim (held by another
        // instance, backing off, or parked) is a gate: only rows before it may go now.
        let claimed_ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let aggregates: HashSet<(&str, &str)> = rows
            .iter()
            .map(|r| (r.aggregatetype.as_str(), r.aggregateid.as_str()))
            .collect();
        let (types, ids): (Vec<&str>, Vec<&str>) = aggregates.into_iter().unzip();
        // Per aggregate, walk its pending rows in seq order (the by-aggregate index) and stop
        // at the first one that is not ours.
        let gates: Vec<(String, String, i64)> = sqlx::query_as(&format!(
            "select c.aggregatetype, c.aggregateid, g.seq
             from unnest($1::text[], $2::text[]) as c(aggregatetype, aggregateid)
             cross join lateral (
                 select o.seq from {table} o
                 where o.aggregatetype = c.aggregatetype and o.aggregateid = c.aggregateid
                   and o.published_at is null and o.skipped_at is null
                   and o.id <> all($3)
                 order by o.seq
                 limit 1
             ) g"
        ))
        .bind(&types)
        .bind(&ids)
        .bind(&claimed_ids)
        .fetch_all(&mut *tx)
        .await?;
        let gates: HashMap<(String, String), i64> =
            gates.into_iter().map(|(t, a, seq)| ((t, a), seq)).collect();

        // Chains: the publishable rows of each aggregate, in seq order.
        let mut chains: HashMap<(String, String), Vec<PendingEvent>> = HashMap::new();
        let mut deferred = 0;
        for row in rows {
            let key = (row.aggregatetype.clone(), row.aggregateid.clone());
            if gates.get(&key).is_some_and(|gate| row.seq > *gate) {
                deferred += 1;
                continue;
            }
            chains.entry(key).or_default().push(row);
        }
        Ok(Some(Batch {
            held: tx,
            chains: chains.into_values().collect(),
            deferred,
        }))
    }

    /// The writes of step 4, in the claim's transaction, then its commit.
    async fn mark(&self, mut tx: Self::Held, marks: Marks) -> Result<(), RelayError> {
        for failure in &marks.failed {
            sqlx::query(&format!(
                "update {}
                 set attempts = attempts + 1, last_error = $2,
                     -- From now, not from the claim's start (now()), which may be most of
                     -- a batch deadline ago.
                     next_attempt_at = clock_timestamp() + make_interval(secs => $3),
                     parked_at = case when $4 then now() end
                 where id = $1",
                self.table
            ))
            .bind(failure.id)
            .bind(&failure.reason)
            .bind(failure.retry_in.as_secs_f64())
            .bind(failure.then == AfterFailure::Park)
            .execute(&mut *tx)
            .await?;
        }
        if !marks.published.is_empty() {
            // clock_timestamp(), not now(): the claim transaction started before the sends, and
            // `published_at - created_at` should say how long an event waited for the relay.
            sqlx::query(&format!(
                "update {}
                 set published_at = clock_timestamp(), attempts = attempts + 1, last_error = null,
                     next_attempt_at = null
                 where id = any($1)",
                self.table
            ))
            .bind(&marks.published)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn stats(&self) -> Result<Stats, RelayError> {
        self.table_stats().await
    }

    async fn delete_expired(&self, retention: Duration, batch: i64) -> Result<u64, RelayError> {
        self.delete_done(retention, batch).await
    }
}

impl OutboxTable {
    /// The table's counts: pending, parked, the oldest pending, and rows published in the
    /// last 10 s.
    async fn table_stats(&self) -> Result<Stats, RelayError> {
        let table = self.table;
        let (pending, parked, oldest, recent): (i64, i64, Option<f64>, i64) =
            sqlx::query_as(&format!(
                "select
                 (select count(*) from {table}
                  where published_at is null and skipped_at is null and parked_at is null),
                 (select count(*) from {table}
                  where published_at is null and skipped_at is null and parked_at is not null),
                 -- The row the relay claims next (the pending index, in seq order) rather
                 -- than min(created_at), which reads every pending row: with a backlog of
                 -- 100,000 that made this query 50 ms, every 2 s.
                 (select extract(epoch from now() - created_at)::float8 from {table}
                  where published_at is null and skipped_at is null and parked_at is null
                  order by seq limit 1),
                 (select count(*) from {table} where published_at > now() - interval '10 seconds')"
            ))
            .fetch_one(&self.pool)
            .await?;
        Ok(Stats {
            pending,
            parked,
            oldest_pending_age_seconds: oldest.unwrap_or(0.0),
            published_per_second: recent as f64 / 10.0,
            log: None,
        })
    }
}
