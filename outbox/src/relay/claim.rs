//! Steps 1 and 2 of a batch: claim due rows under row locks, and keep, per aggregate, only
//! those before its gate (see the module docs of [`crate::relay`]).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use tokio::time::Instant;
use uuid::Uuid;

use super::{Relay, RelayError, SendError};
use crate::topics::TopicNames;

#[derive(Debug, sqlx::FromRow)]
pub(super) struct OutboxRow {
    pub(super) id: Uuid,
    pub(super) aggregatetype: String,
    pub(super) aggregateid: String,
    #[sqlx(rename = "type")]
    pub(super) event_type: String,
    pub(super) payload: String,
    pub(super) tracingspancontext: Option<String>,
    pub(super) schema_version: i32,
    pub(super) seq: i64,
    pub(super) attempts: i32,
    pub(super) created_at: DateTime<Utc>,
}

/// Rows claimed by one transaction, grouped into per-aggregate chains.
#[doc(hidden)]
pub struct Claim {
    pub(super) tx: Transaction<'static, Postgres>,
    pub(super) chains: Vec<Vec<OutboxRow>>,
    pub(super) claimed: usize,
    pub(super) deferred: usize,
    /// When the claim's rows were locked: the batch deadline counts from here.
    pub(super) started: Instant,
    /// Topics that could not be created just before this claim: their rows fail.
    pub(super) topic_failures: HashMap<String, SendError>,
}

impl Claim {
    fn topics<'a>(&'a self, names: &'a TopicNames) -> impl Iterator<Item = String> + 'a {
        self.chains
            .iter()
            .filter_map(|chain| chain.first())
            .map(|row| names.topic_for(&row.aggregatetype))
    }
}

impl Relay {
    /// Step 1 and 2: claims due rows and keeps, per aggregate, those before its gate.
    /// `None` when there is nothing to do. Dropping the claim without [`Relay::mark`] is what
    /// a crash does: the locks go, the rows stay unpublished.
    ///
    /// A claim that needs a topic the relay has not created yet rolls back, creates it outside
    /// any transaction, and claims again (see "A batch deadline inside the lease").
    #[doc(hidden)] // A test hook: the steps one by one, to crash between them.
    pub async fn claim(&self) -> Result<Option<Claim>, RelayError> {
        let Some(claim) = self.claim_rows().await? else {
            return Ok(None);
        };
        let missing: HashSet<String> = claim
            .topics(&self.outlet.names)
            .filter(|topic| !self.outlet.topics.is_known(topic))
            .collect();
        if missing.is_empty() {
            return Ok(Some(claim));
        }
        drop(claim);
        let failed = self.outlet.create_topics(missing).await;
        let Some(mut claim) = self.claim_rows().await? else {
            return Ok(None);
        };
        claim.topic_failures = failed;
        Ok(Some(claim))
    }

    async fn claim_rows(&self) -> Result<Option<Claim>, RelayError> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<OutboxRow> = sqlx::query_as(
            "select o.id, o.aggregatetype, o.aggregateid, o.type, o.payload::text as payload,
                    o.tracingspancontext, o.schema_version, o.seq, o.attempts, o.created_at
             from outbox o
             where o.published_at is null and o.skipped_at is null and o.parked_at is null
               and (o.next_attempt_at is null or o.next_attempt_at <= now())
               -- Not behind a stuck event of its aggregate (parked, or waiting for its
               -- retry): it could only be deferred, and would starve every other aggregate.
               and not exists (
                   select 1 from outbox s
                   where s.aggregatetype = o.aggregatetype and s.aggregateid = o.aggregateid
                     and s.seq < o.seq
                     and s.published_at is null and s.skipped_at is null
                     and (s.parked_at is not null or s.next_attempt_at > now()))
             order by o.seq
             limit $1
             for update of o skip locked",
        )
        .bind(self.settings.batch_size)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let claimed = rows.len();

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
        let gates: Vec<(String, String, i64)> = sqlx::query_as(
            "select c.aggregatetype, c.aggregateid, g.seq
             from unnest($1::text[], $2::text[]) as c(aggregatetype, aggregateid)
             cross join lateral (
                 select o.seq from outbox o
                 where o.aggregatetype = c.aggregatetype and o.aggregateid = c.aggregateid
                   and o.published_at is null and o.skipped_at is null
                   and o.id <> all($3)
                 order by o.seq
                 limit 1
             ) g",
        )
        .bind(&types)
        .bind(&ids)
        .bind(&claimed_ids)
        .fetch_all(&mut *tx)
        .await?;
        let gates: HashMap<(String, String), i64> =
            gates.into_iter().map(|(t, a, seq)| ((t, a), seq)).collect();

        // Chains: the publishable rows of each aggregate, in seq order.
        let mut chains: HashMap<(String, String), Vec<OutboxRow>> = HashMap::new();
        let mut deferred = 0;
        for row in rows {
            let key = (row.aggregatetype.clone(), row.aggregateid.clone());
            if gates.get(&key).is_some_and(|gate| row.seq > *gate) {
                deferred += 1;
                continue;
            }
            chains.entry(key).or_default().push(row);
        }
        Ok(Some(Claim {
            tx,
            chains: chains.into_values().collect(),
            claimed,
            deferred,
            started: Instant::now(),
            topic_failures: HashMap::new(),
        }))
    }
}
