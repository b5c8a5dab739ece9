//! The relay: claim unpublished outbox rows, publish them to the broker, mark them published.
//!
//! # One batch, step by step
//! 1. **Claim.** In a transaction, `select … for update skip locked` the oldest unpublished
//!    rows (by `seq`) that are due and not stuck behind an earlier event of their aggregate
//!    (see "A claim that cannot be starved"). The row locks are held until this transaction
//!    ends, so a second relay instance skips these rows instead of publishing them twice. (A
//!    claim that released its locks before publishing — running the select outside the
//!    transaction — is the classic bug that makes two relays publish the same row.)
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
//!    Every send goes through [`Broker`], the seam tests use to inject faults.
//! 4. **Mark.** Acknowledged rows get `published_at`; a row the broker refused gets
//!    `attempts + 1`, its error and a `next_attempt_at` with exponential backoff, and the later
//!    rows of its aggregate wait behind it. A row whose send failed because the broker is away
//!    is left as it was and the relay pauses (`outage.rs`). Then commit.
//!
//! # A claim that cannot be starved
//! The claim skips every row with an earlier pending row of its aggregate that is *stuck*:
//! parked, or waiting for its retry (`next_attempt_at` in the future). Those rows could only be
//! deferred (step 2), and when one aggregate had more of them than a claim takes, every batch
//! claimed just them, published nothing, and every other aggregate waited: one poison event
//! with a backlog was an outage of the whole outbox. Now a claim holds only rows that can go,
//! so every other aggregate's due events go out in the next batch, whatever the backlog.
//!
//! Why it is correct: a skipped row is never published before its stuck predecessor (it is not
//! claimed at all), and it becomes claimable the moment that predecessor is due, retried,
//! published or skipped. Rows held by another instance still defer in step 2, as before: that
//! aggregate is being published, not stuck. What it costs: one probe per candidate row into
//! `outbox_stuck`, a partial index of the failed-and-unpublished rows only, which is empty
//! while the broker takes everything (BENCHMARKS.md has the throughput with it).
//!
//! # A batch deadline inside the lease
//! A batch's sends end by `lease / 2` after its claim: a row not acknowledged by then is
//! recorded as a failed attempt (with backoff), the rows after it wait, and the marks commit
//! well before PostgreSQL would end the claim's session. (When the broker acknowledged nothing
//! at all in the batch, the silence is the broker's, and it counts as an outage instead.) A
//! slow broker thus costs retries of the slow rows, not a republish of the whole batch.
//! Creating a new topic can take seconds, so it never happens inside the claim: a claim that
//! finds a topic the relay has not seen rolls back, creates it, and claims again; a topic that
//! cannot be created is a failed attempt of the rows it concerns, which park like any other
//! failure.
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
//! no longer mark anything. Each send is bounded by a third of the lease and the batch by half
//! of it, so a healthy relay never runs into it.
//!
//! # Parking, and what an operator can do
//! Only a failure of the event itself counts an attempt (`broker::Fault`); a broker that is
//! away pauses the relay and parks nothing (`outage.rs`). After `RELAY_MAX_ATTEMPTS` failed
//! attempts a row is *parked*: kept with its last error, no longer retried, reported on the
//! status page and in `outbox_parked`. It still blocks the later events of its aggregate —
//! publishing them would break the order. [`admin`] retries it (after a
//! fix) or skips it (the aggregate goes on without it), one by one or in bulk.
//!
//! # Pipelining
//! While one batch waits for the broker's acknowledgements, the database has nothing to do,
//! and while it is claimed and marked the broker idles. So an instance runs `RELAY_PIPELINE`
//! claim loops (default 2): one batch is claimed and marked while another is being published.
//! To the claim they are just two more instances: `skip locked` keeps their rows apart, and
//! the gate of step 2 keeps an aggregate's order across them.
//!
//! # Waking up
//! Writers send `NOTIFY outbox` right after their commit ([`crate::Writer::commit`]); an idle
//! relay `LISTEN`s and claims after a short debounce. While events flow it claims every
//! `busy_poll` instead, and while a backlog lasts at once: `wake.rs` has the rules and why.
//!
//! # Retention
//! [`Relay::delete_expired`] removes published and skipped rows older than the retention in
//! small batches (`for update skip locked`, short transactions), so it never blocks inserts.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{backoff::Backoff, envelope::EventHeaders, topics::TopicNames};
use chrono::{DateTime, Utc};
use futures::future::join_all;
use secrecy::SecretString;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub mod admin;
mod broker;
mod hold;
pub mod outage;
mod settings;
pub mod wake;

pub use broker::{Broker, Fault, Outgoing, SendError};
pub use hold::{Hold, Switch};
pub use outage::{Outage, PublishingState};
pub use settings::RelaySettings;
use wake::{Flow, Outcome, Pace};

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchReport {
    pub claimed: usize,
    pub published: usize,
    /// Refused by the broker or past the deadline: an attempt counted.
    pub failed: usize,
    /// Claimed but left for later: an earlier event of the same aggregate was not
    /// publishable yet (held by another instance, waiting for a retry, or failed just now),
    /// or the broker was away (no attempt counted).
    pub deferred: usize,
    /// Set when the broker was away: publishing pauses this long before the next batch.
    pub pause: Option<Duration>,
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
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // Only ever extended: a panic elsewhere cannot leave the set torn.
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_known(&self, topic: &str) -> bool {
        self.lock().contains(topic)
    }
}

/// What every database's relay in a process shares: the broker, the topics created so far,
/// whether the broker is away, and whether an operator holds the relay.
#[derive(Clone)]
pub struct Publishing {
    pub broker: Arc<dyn Broker>,
    pub names: TopicNames,
    pub topics: Arc<Topics>,
    pub outage: Outage,
    pub hold: Hold,
}

impl Publishing {
    pub fn new(broker: Arc<dyn Broker>, names: TopicNames) -> Self {
        Self {
            broker,
            names,
            topics: Arc::default(),
            outage: Outage::default(),
            hold: Hold::default(),
        }
    }

    /// Publishing to Kafka through `publisher`: what the shop's relay runs with.
    #[cfg(feature = "kafka")]
    pub fn kafka(publisher: crate::kafka::Publisher, kafka: crate::kafka::KafkaConfig) -> Self {
        let names = kafka.topics();
        Self::new(
            Arc::new(crate::kafka::KafkaBroker::new(publisher, kafka)),
            names,
        )
    }

    /// Creates the topics, one by one; the ones that could not be created, with why.
    async fn create_topics(&self, topics: HashSet<String>) -> HashMap<String, SendError> {
        let mut failed = HashMap::new();
        for topic in topics {
            match self.broker.create_topic(&topic).await {
                Ok(()) => {
                    self.topics.lock().insert(topic);
                }
                Err(error) => {
                    tracing::warn!(%topic, %error, "topic could not be created");
                    failed.insert(topic, error);
                }
            }
        }
        failed
    }
}

/// A relay's tasks, started by [`Relay::start`].
#[must_use = "a relay that is not waited for may be cut off in the middle of a batch"]
pub struct Running {
    name: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Waits until the tasks have stopped (after the shutdown token was cancelled): every
    /// batch in progress has committed its marks by then.
    pub async fn stopped(self) {
        for task in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(database = %self.name, %error, "relay task panicked");
            }
        }
    }
}

/// Relays one database's outbox.
#[derive(Clone)]
pub struct Relay {
    pub name: String,
    pool: PgPool,
    settings: RelaySettings,
    publishing: Publishing,
    /// Shared by this database's claim loops (see `wake`).
    flow: Flow,
}

impl Relay {
    pub fn new(
        name: String,
        pool: PgPool,
        settings: RelaySettings,
        publishing: Publishing,
    ) -> Self {
        Self {
            name,
            pool,
            settings,
            publishing,
            flow: Flow::default(),
        }
    }

    /// A relay for the database at `url`, named `name` in logs, metrics and the admin API,
    /// with a pool of its own: it connects on first use (so a relay starts, and serves its
    /// other databases, while one is down), has a connection for each claim loop's claim and
    /// `LISTEN` plus the cleaner's and the gauges', and its sessions end a transaction that
    /// stays idle longer than the lease (see "Leases" above).
    pub fn connect(
        name: impl Into<String>,
        url: &SecretString,
        settings: RelaySettings,
        publishing: Publishing,
    ) -> Result<Self, sqlx::Error> {
        let connections = u32::try_from(settings.pipeline * 2 + 2).unwrap_or(u32::MAX);
        let pool = crate::db::connect_lazy(url, connections, settings.lease)?;
        Ok(Self::new(name.into(), pool, settings, publishing))
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Starts everything this database's relay does, in the current process: its claim loops
    /// ([`Relay::run`]), retention ([`Relay::run_cleaner`]) and gauges ([`Relay::run_gauges`]).
    /// They stop on `shutdown`; [`Running::stopped`] waits for that. The standalone relay starts
    /// one per database; a service that embeds the relay starts one for its own database.
    pub fn start(&self, shutdown: &CancellationToken) -> Running {
        Running {
            name: self.name.clone(),
            tasks: vec![
                tokio::spawn(self.clone().run(shutdown.clone())),
                tokio::spawn(self.clone().run_cleaner(shutdown.clone())),
                tokio::spawn(self.clone().run_gauges(shutdown.clone())),
            ],
        }
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

    /// One claim after another, at the pace [`wake`] sets.
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
            // Held by an operator: wait here, claiming nothing (`hold.rs`).
            let Some(_permit) = self.publishing.hold.permit(&shutdown).await else {
                break;
            };
            outcome = match self.relay_batch().await {
                Ok(report) => {
                    errors.reset();
                    match report.pause {
                        Some(pause) => Outcome::Failed(pause),
                        None => Outcome::of(&report, self.settings.batch_size),
                    }
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
        let published = self.publish_claimed(&claim).await;
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
    ///
    /// A claim that needs a topic the relay has not created yet rolls back, creates it outside
    /// any transaction, and claims again (see "A batch deadline inside the lease").
    pub async fn claim(&self) -> Result<Option<Claim>, RelayError> {
        let Some(claim) = self.claim_rows().await? else {
            return Ok(None);
        };
        let missing: HashSet<String> = claim
            .topics(&self.publishing.names)
            .filter(|topic| !self.publishing.topics.is_known(topic))
            .collect();
        if missing.is_empty() {
            return Ok(Some(claim));
        }
        drop(claim);
        let failed = self.publishing.create_topics(missing).await;
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

    /// Step 3: publishes the claimed chains, aggregates concurrently, each aggregate's rows
    /// strictly one after another, until the batch's deadline. Marks nothing.
    pub async fn publish_claimed(&self, claim: &Claim) -> Published {
        let deadline = claim.started + self.settings.batch_deadline();
        Published(
            join_all(
                claim
                    .chains
                    .iter()
                    .map(|chain| self.publish_chain(chain, &claim.topic_failures, deadline)),
            )
            .await,
        )
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
            Some(error) => Some(self.publishing.outage.failed(&error.reason)),
            None => {
                if !acked.is_empty() {
                    self.publishing.outage.acknowledged();
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

    async fn publish_chain(
        &self,
        chain: &[OutboxRow],
        topic_failures: &HashMap<String, SendError>,
        deadline: Instant,
    ) -> ChainOutcome {
        let mut outcome = ChainOutcome::default();
        let Some(first) = chain.first() else {
            return outcome;
        };
        let topic = self.publishing.names.topic_for(&first.aggregatetype);
        if let Some(error) = topic_failures.get(&topic) {
            outcome.failed = Some((first.id, error.clone()));
            outcome.held_back = chain.len() - 1;
            return outcome;
        }
        if !self.publishing.topics.is_known(&topic) {
            // A new aggregate type committed between the topic creation and the second claim:
            // the next batch creates its topic.
            outcome.held_back = chain.len();
            return outcome;
        }
        for (i, row) in chain.iter().enumerate() {
            let sent = tokio::time::timeout_at(deadline, self.publish(&topic, row)).await;
            match sent {
                Ok(Ok(())) => {
                    // Commit (well, insert) to broker acknowledgement.
                    let latency = (Utc::now() - row.created_at).to_std().unwrap_or_default();
                    metrics::histogram!("outbox_publish_latency_seconds", "database" => self.name.clone())
                        .record(latency.as_secs_f64());
                    outcome.acked.push(row.id);
                }
                Ok(Err(error)) => {
                    outcome.held_back = chain.len() - i - 1;
                    outcome.failed = Some((row.id, error));
                    break;
                }
                Err(_) => {
                    let reason = format!(
                        "not acknowledged within the batch deadline ({} ms)",
                        self.settings.batch_deadline().as_millis()
                    );
                    outcome.held_back = chain.len() - i - 1;
                    outcome.failed = Some((row.id, SendError::event(reason)));
                    outcome.past_deadline = true;
                    break;
                }
            }
        }
        outcome
    }

    /// Sends one row and waits for the broker's acknowledgement.
    async fn publish(&self, topic: &str, row: &OutboxRow) -> Result<(), SendError> {
        let (id, version) = (row.id.to_string(), row.schema_version.to_string());
        let headers = EventHeaders {
            id: &id,
            event_type: &row.event_type,
            aggregate_type: &row.aggregatetype,
            aggregate_id: &row.aggregateid,
            schema_version: &version,
            traceparent: row.tracingspancontext.as_deref(),
        };
        self.publishing
            .broker
            .send(Outgoing {
                topic,
                key: &row.aggregateid,
                payload: &row.payload,
                headers,
            })
            .await
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
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// When the claim's rows were locked: the batch deadline counts from here.
    started: Instant,
    /// Topics that could not be created just before this claim: their rows fail.
    topic_failures: HashMap<String, SendError>,
}

impl Claim {
    fn topics<'a>(&'a self, names: &'a TopicNames) -> impl Iterator<Item = String> + 'a {
        self.chains
            .iter()
            .filter_map(|chain| chain.first())
            .map(|row| names.topic_for(&row.aggregatetype))
    }
}

/// What the broker acknowledged of a claim.
pub struct Published(Vec<ChainOutcome>);

#[derive(Default)]
struct ChainOutcome {
    acked: Vec<Uuid>,
    failed: Option<(Uuid, SendError)>,
    /// Rows after the failed one, not attempted so they cannot overtake it.
    held_back: usize,
    /// The failed row was still unanswered at the batch's deadline.
    past_deadline: bool,
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
