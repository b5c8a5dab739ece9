//! The relay: claim unpublished outbox rows, publish them to Kafka, mark them published.
//!
//! # One batch, step by step
//! 1. **Claim.** In a transaction, `select … for update skip locked` the oldest unpublished
//!    rows (by `seq`) that are due. The row locks are held until this transaction ends, so a
//!    second relay instance skips these rows instead of publishing them twice. (A claim that
//!    released its locks before publishing — running the select outside the transaction —
//!    is the classic bug that makes two relays publish the same row.)
//! 2. **Keep order per aggregate.** `skip locked` alone would let instance B publish event 2
//!    of an order while instance A still holds event 1. So for every aggregate in the claim,
//!    we look up the earliest unpublished row of that aggregate that we did *not* claim
//!    (held by another instance, or waiting for a retry) and publish only the claimed rows
//!    before it. The rest stay unpublished and are picked up, in order, by a later batch.
//! 3. **Publish.** The rows of one aggregate are sent one after the other, each only after the
//!    broker acknowledged the previous one (`acks=all`, idempotent producer), so a failure
//!    can never let a later event overtake an earlier one. Different aggregates are sent
//!    concurrently. Key = `aggregateid` (one partition per aggregate, so Kafka keeps the
//!    order too), value = `payload`, headers = `id`, `type`, `aggregatetype`, `aggregateid`
//!    and `traceparent`; topic = `outbox.event.<aggregatetype>`, as Debezium names it.
//! 4. **Mark.** Acknowledged rows get `published_at`; a failed row gets `attempts + 1`, its
//!    error and a `next_attempt_at` with exponential backoff, and the later rows of its
//!    aggregate wait behind it. Then commit.
//!
//! # What a crash does
//! The marks commit after the acknowledgements. A relay that dies after the broker's ack
//! but before the commit publishes those rows again when they are next claimed: at least
//! once, never lost. Consumers' inboxes make the duplicate harmless. A relay that dies while
//! holding a claim loses its connection, PostgreSQL drops its locks, and another instance
//! claims the rows.
//!
//! # Leases: an instance that hangs
//! The claim *is* the lease: row locks held by a transaction. A relay that crashes closes its
//! connection and PostgreSQL releases the locks at once. A relay that hangs (a frozen VM, a
//! network partition) would hold them forever, so the claim's session runs with
//! `idle_in_transaction_session_timeout = RELAY_LEASE_MS`: when it stays silent that long,
//! PostgreSQL ends the session, the rows are free for another instance, and the hung one can
//! no longer mark anything. Each send is bounded by a third of the lease, so a healthy relay
//! never runs into it.
//!
//! # Parking, and what an operator can do
//! After `RELAY_MAX_ATTEMPTS` failed attempts a row is *parked*: kept with its last error,
//! no longer retried, reported on the status page and in `outbox_parked`. It still blocks the
//! later events of its aggregate — publishing them would break the order. The admin API
//! (`admin.rs`) retries it (after a fix) or skips it (the aggregate goes on without it).
//!
//! # Pipelining
//! While one batch waits for the broker's acknowledgements, the database has nothing to do,
//! and while it is claimed and marked the broker idles. So an instance runs `RELAY_PIPELINE`
//! claim loops (default 2): one batch is claimed and marked while another is being published.
//! To the claim they are just two more instances: `skip locked` keeps their rows apart, and
//! the gate of step 2 keeps an aggregate's order across them.
//!
//! # Waking up
//! Writers send `NOTIFY outbox` right after their commit (`shared::outbox::commit`); an idle
//! relay `LISTEN`s and claims after a short debounce. While events flow it claims every
//! `busy_poll` instead, and while a backlog lasts at once: `wake.rs` has the rules and why.
//!
//! # Retention
//! [`Relay::delete_expired`] removes published and skipped rows older than the retention in
//! small batches (`for update skip locked`, short transactions), so it never blocks inserts.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures::future::join_all;
use rdkafka::{
    error::KafkaError,
    producer::{FutureProducer, FutureRecord},
};
use shared::{
    config::KafkaConfig,
    envelope::EventHeaders,
    kafka::{breaks_producer, Backoff, Publisher},
};
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    config::RelaySettings,
    wake::{Flow, Outcome, Pace},
};

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchReport {
    pub claimed: usize,
    pub published: usize,
    pub failed: usize,
    /// Claimed but left for later: an earlier event of the same aggregate was not
    /// publishable yet (held by another instance, waiting for a retry, or failed just now).
    pub deferred: usize,
}

#[derive(Debug, sqlx::FromRow)]
struct OutboxRow {
    id: Uuid,
    aggregatetype: String,
    aggregateid: String,
    #[sqlx(rename = "type")]
    event_type: String,
    payload: String,
    tracingspancontext: Option<String>,
    schema_version: i32,
    seq: i64,
    attempts: i32,
    created_at: DateTime<Utc>,
}

/// Topics known to exist. The local broker does not auto-create topics, so the relay creates
/// each topic the first time it sees its aggregate type.
#[derive(Debug, Default)]
pub struct Topics {
    known: Mutex<HashSet<String>>,
}

impl Topics {
    async fn ensure(&self, kafka: &KafkaConfig, wanted: HashSet<String>) -> Result<(), RelayError> {
        let mut known = self.known.lock().await;
        let missing: Vec<String> = wanted.into_iter().filter(|t| !known.contains(t)).collect();
        if !missing.is_empty() {
            shared::kafka::ensure_topics(kafka, &missing).await?;
            known.extend(missing);
        }
        Ok(())
    }
}

/// Relays one database's outbox.
#[derive(Clone)]
pub struct Relay {
    pub name: String,
    pool: PgPool,
    publisher: Publisher,
    kafka: KafkaConfig,
    settings: RelaySettings,
    topics: Arc<Topics>,
    /// Shared by this database's claim loops (see `wake`).
    flow: Flow,
}

impl Relay {
    pub fn new(
        name: String,
        pool: PgPool,
        publisher: Publisher,
        kafka: KafkaConfig,
        settings: RelaySettings,
        topics: Arc<Topics>,
    ) -> Self {
        Self {
            name,
            pool,
            publisher,
            kafka,
            settings,
            topics,
            flow: Flow::default(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs batches until `shutdown`, `RELAY_PIPELINE` claims at a time (see "Pipelining" in
    /// the module docs). A batch in progress is finished (it is short: one transaction), so
    /// shutdown never leaves a row published but unmarked on purpose.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(database = %self.name, pipeline = self.settings.pipeline, "relay started");
        join_all((0..self.settings.pipeline).map(|_| self.clone().claim_loop(shutdown.clone())))
            .await;
        tracing::info!(database = %self.name, "relay stopped");
    }

    /// One claim after another, at the pace [`crate::wake`] sets.
    async fn claim_loop(self, shutdown: CancellationToken) {
        let mut pace = Pace::new(
            self.name.clone(),
            self.pool.clone(),
            self.settings.clone(),
            self.flow.clone(),
        );
        let mut errors = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        // Rows may be waiting from before the start: claim at once, as after a full batch.
        let mut outcome = Outcome::Backlog;
        while pace.next(outcome, &shutdown).await {
            outcome = match self.relay_batch().await {
                Ok(report) => {
                    errors.reset();
                    Outcome::of(&report, self.settings.batch_size)
                }
                Err(error) => {
                    let delay = errors.next_delay();
                    tracing::warn!(database = %self.name, %error, ?delay, "relay batch failed");
                    Outcome::Failed(delay)
                }
            };
        }
    }

    /// Claims, publishes and marks one batch; the unit the loop repeats, and what tests call
    /// to drain an outbox step by step.
    pub async fn relay_batch(&self) -> Result<BatchReport, RelayError> {
        let started = std::time::Instant::now();
        let Some(claim) = self.claim().await? else {
            return Ok(BatchReport::default());
        };
        let claimed = started.elapsed();
        let published = self.publish_claimed(&claim).await?;
        let sent = started.elapsed();
        let report = self.mark(claim, published).await?;
        // Where a batch's time goes: what to look at before tuning batch size or producer.
        tracing::debug!(
            database = %self.name, ?report,
            claim_ms = claimed.as_millis(),
            publish_ms = (sent - claimed).as_millis(),
            mark_ms = (started.elapsed() - sent).as_millis(),
            "batch"
        );
        Ok(report)
    }

    /// Step 1 and 2: claims due rows and keeps, per aggregate, those before its gate.
    /// `None` when there is nothing to do. Dropping the claim without [`Relay::mark`] is what
    /// a crash does: the locks go, the rows stay unpublished.
    pub async fn claim(&self) -> Result<Option<Claim>, RelayError> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<OutboxRow> = sqlx::query_as(
            "select id, aggregatetype, aggregateid, type, payload::text as payload,
                    tracingspancontext, schema_version, seq, attempts, created_at
             from outbox
             where published_at is null and skipped_at is null and parked_at is null
               and (next_attempt_at is null or next_attempt_at <= now())
             order by seq
             limit $1
             for update skip locked",
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
        }))
    }

    /// Step 3: publishes the claimed chains, aggregates concurrently, each aggregate's rows
    /// strictly one after another. Marks nothing.
    pub async fn publish_claimed(&self, claim: &Claim) -> Result<Published, RelayError> {
        let topics = claim
            .chains
            .iter()
            .filter_map(|chain| chain.first())
            .map(|row| self.kafka.topic_for(&row.aggregatetype))
            .collect();
        self.topics.ensure(&self.kafka, topics).await?;
        let sender = self.publisher.producer();
        let outcomes = join_all(
            claim
                .chains
                .iter()
                .map(|chain| self.publish_chain(&sender.producer, chain)),
        )
        .await;
        // A broker that rejects the producer itself rejects every later send too: replace it
        // (see `shared::kafka::Publisher`). The failed rows are retried like any other failure.
        if let Some(error) = outcomes
            .iter()
            .filter_map(|o| o.failed.as_ref().map(|(_, e)| e))
            .find(|e| breaks_producer(e))
        {
            self.publisher.replace(&sender, error);
        }
        Ok(Published(outcomes))
    }

    /// Step 4: records what happened, in the transaction that holds the claim, and commits.
    pub async fn mark(
        &self,
        claim: Claim,
        published: Published,
    ) -> Result<BatchReport, RelayError> {
        let Claim {
            mut tx,
            chains,
            claimed,
            mut deferred,
        } = claim;
        let rows: HashMap<Uuid, &OutboxRow> = chains.iter().flatten().map(|r| (r.id, r)).collect();
        let mut acked: Vec<Uuid> = Vec::new();
        let mut failed = 0;
        for outcome in published.0 {
            acked.extend(&outcome.acked);
            deferred += outcome.held_back;
            let Some((id, error)) = outcome.failed else {
                continue;
            };
            let Some(row) = rows.get(&id) else { continue };
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
                     next_attempt_at = now() + make_interval(secs => $3),
                     parked_at = case when $4 then now() end
                 where id = $1",
            )
            .bind(id)
            .bind(error.to_string())
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
        let report = BatchReport {
            claimed,
            published: acked.len(),
            failed,
            deferred,
        };
        Ok(report)
    }

    async fn publish_chain(&self, producer: &FutureProducer, chain: &[OutboxRow]) -> ChainOutcome {
        let mut outcome = ChainOutcome::default();
        for (i, row) in chain.iter().enumerate() {
            match self.publish(producer, row).await {
                Ok(()) => {
                    // Commit (well, insert) to broker acknowledgement.
                    let latency = (Utc::now() - row.created_at).to_std().unwrap_or_default();
                    metrics::histogram!("outbox_publish_latency_seconds", "database" => self.name.clone())
                        .record(latency.as_secs_f64());
                    outcome.acked.push(row.id);
                }
                Err(error) => {
                    outcome.held_back = chain.len() - i - 1;
                    outcome.failed = Some((row.id, error));
                    break;
                }
            }
        }
        outcome
    }

    /// Sends one row and waits for the broker's acknowledgement.
    async fn publish(&self, producer: &FutureProducer, row: &OutboxRow) -> Result<(), KafkaError> {
        let (id, version) = (row.id.to_string(), row.schema_version.to_string());
        let headers = EventHeaders {
            id: &id,
            event_type: &row.event_type,
            aggregate_type: &row.aggregatetype,
            aggregate_id: &row.aggregateid,
            schema_version: &version,
            traceparent: row.tracingspancontext.as_deref(),
        }
        .to_kafka();
        let topic = self.kafka.topic_for(&row.aggregatetype);
        let record = FutureRecord::to(&topic)
            .key(&row.aggregateid)
            .payload(&row.payload)
            .headers(headers);
        // The queue timeout only bounds waiting for room in the local queue; the delivery
        // itself is bounded by the producer's `message.timeout.ms` (a third of the lease).
        producer
            .send(record, Duration::from_secs(5))
            .await
            .map(|_| ())
            .map_err(|(error, _)| error)
    }

    /// Deletes published and skipped rows older than the retention, `retention_batch` rows
    /// per short transaction, until none is left. Returns how many it deleted.
    pub async fn delete_expired(&self) -> Result<u64, RelayError> {
        let mut total = 0;
        loop {
            let deleted = sqlx::query(
                "delete from outbox where id in (
                     select id from outbox
                     where published_at < now() - make_interval(secs => $1)
                        or skipped_at < now() - make_interval(secs => $1)
                     limit $2
                     for update skip locked)",
            )
            .bind(self.settings.retention.as_secs_f64())
            .bind(self.settings.retention_batch)
            .execute(&self.pool)
            .await?
            .rows_affected();
            total += deleted;
            if deleted < u64::try_from(self.settings.retention_batch).unwrap_or(0) {
                break;
            }
        }
        if total > 0 {
            metrics::counter!("outbox_deleted_total", "database" => self.name.clone())
                .increment(total);
            tracing::info!(database = %self.name, deleted = total, "retention: old rows deleted");
        }
        Ok(total)
    }

    /// Runs [`Relay::delete_expired`] every `retention_interval` until shutdown.
    pub async fn run_cleaner(self, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.delete_expired().await {
                tracing::warn!(database = %self.name, %error, "retention run failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.settings.retention_interval) => {}
            }
        }
    }

    /// Counts for the status page and the gauges.
    pub async fn stats(&self) -> Result<Stats, RelayError> {
        let (pending, parked, oldest, recent): (i64, i64, Option<f64>, i64) = sqlx::query_as(
            "select
                 (select count(*) from outbox
                  where published_at is null and skipped_at is null and parked_at is null),
                 (select count(*) from outbox
                  where published_at is null and skipped_at is null and parked_at is not null),
                 -- The row the relay claims next (the pending index, in seq order) rather
                 -- than min(created_at), which reads every pending row: with a backlog of
                 -- 100,000 that made this query 50 ms, every 2 s.
                 (select extract(epoch from now() - created_at)::float8 from outbox
                  where published_at is null and skipped_at is null and parked_at is null
                  order by seq limit 1),
                 (select count(*) from outbox where published_at > now() - interval '10 seconds')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Stats {
            pending,
            parked,
            oldest_pending_age_seconds: oldest.unwrap_or(0.0),
            published_per_second: recent as f64 / 10.0,
        })
    }

    /// Updates the `outbox_pending`, `outbox_parked` and `outbox_oldest_pending_age_seconds`
    /// gauges every few seconds until shutdown.
    pub async fn run_gauges(self, shutdown: CancellationToken) {
        loop {
            if let Ok(stats) = self.stats().await {
                let db = self.name.clone();
                metrics::gauge!("outbox_pending", "database" => db.clone())
                    .set(stats.pending as f64);
                metrics::gauge!("outbox_parked", "database" => db.clone()).set(stats.parked as f64);
                metrics::gauge!("outbox_oldest_pending_age_seconds", "database" => db)
                    .set(stats.oldest_pending_age_seconds);
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }
}

/// Pending work of one database, as the status page and the gauges show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Stats {
    pub pending: i64,
    pub parked: i64,
    pub oldest_pending_age_seconds: f64,
    pub published_per_second: f64,
}

/// Rows claimed by one transaction, grouped into per-aggregate chains.
pub struct Claim {
    tx: Transaction<'static, Postgres>,
    chains: Vec<Vec<OutboxRow>>,
    claimed: usize,
    deferred: usize,
}

/// What the broker acknowledged of a claim.
pub struct Published(Vec<ChainOutcome>);

#[derive(Default)]
struct ChainOutcome {
    acked: Vec<Uuid>,
    failed: Option<(Uuid, KafkaError)>,
    /// Rows after the failed one, not attempted so they cannot overtake it.
    held_back: usize,
}

/// Exponential backoff with jitter from the row's attempt count, so that many failed rows
/// do not all come due in the same instant.
fn retry_delay(settings: &RelaySettings, attempts: i32) -> Duration {
    let attempt = u32::try_from(attempts).unwrap_or(0);
    shared::kafka::backoff_delay(settings.retry_base, settings.retry_max, attempt)
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
