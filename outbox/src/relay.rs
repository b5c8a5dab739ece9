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
//! while the broker takes everything (docs/benchmarks.md has the throughput with it).
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
//! [`Relay::delete_expired`] removes what its source is done with and is older than the
//! retention, in small batches of short transactions, so it never blocks inserts: for the
//! table, its published and skipped rows.
//!
//! # Layout
//! The relay has two seams. It reads its events from a [`Source`], which claims them and
//! records their fate: [`OutboxTable`] (`table.rs`) is steps 1 and 2 above and the writes of
//! step 4, on the `outbox` table; a source that tails the WAL is another one. It sends
//! through a [`Broker`], which adapters implement (`kafka::KafkaBroker`, `nats::NatsBroker`);
//! this module names none of them. The rest is the core, the same for every source and
//! broker, one file per step: `claim.rs` (topics before the sends), `publish.rs` (3),
//! `mark.rs` (what 4 records), then `retention.rs` and `stats.rs`, whose queries are the
//! source's too. [`Outlet`] is what every database's relay in a process shares, and
//! [`AnySource`] lets [`Relays`] hold relays whose sources a process picks when it starts.

use std::time::Duration;

use crate::backoff::Backoff;
use futures::future::join_all;
use secrecy::SecretString;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub mod admin;
mod any_source;
mod broker;
mod claim;
mod gauges;
mod hold;
mod mark;
mod outage;
mod outlet;
mod publish;
mod relays;
mod retention;
mod settings;
mod source;
mod stats;
mod table;
mod wake;

pub use any_source::{AnyHeld, AnySource};
pub use broker::{Broker, Fault, Outgoing, SendError};
pub use claim::Claim;
pub use hold::{Hold, Switch};
pub use outage::{Outage, PublishingState};
pub use outlet::{Outlet, Topics};
pub use publish::Sends;
pub use relays::Relays;
pub use settings::RelaySettings;
pub use source::{AfterFailure, Batch, Failure, Marks, PendingEvent, Source};
pub use stats::{LogStats, Reading, Stats};
pub use table::OutboxTable;
use wake::{Flow, Outcome, Pace};

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A [`Source`] that reads its events some other way than through sqlx failed.
    #[error("event source: {0}")]
    Source(Box<dyn std::error::Error + Send + Sync>),
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

/// A relay's tasks, started by [`Relay::start`] or [`Relays::start`].
#[must_use = "a relay that is not waited for may be cut off in the middle of a batch"]
pub struct Running {
    tasks: Vec<(String, tokio::task::JoinHandle<()>)>,
    /// Flushed, for at most this long, once every task has stopped.
    flush: Option<(std::sync::Arc<dyn Broker>, Duration)>,
}

impl Running {
    fn flushing(broker: std::sync::Arc<dyn Broker>, timeout: Duration) -> Self {
        Self {
            tasks: Vec::new(),
            flush: Some((broker, timeout)),
        }
    }

    fn join(&mut self, other: Running) {
        self.tasks.extend(other.tasks);
    }

    /// Waits until the tasks have stopped (after the shutdown token was cancelled): every
    /// batch in progress has committed its marks by then. Then flushes the broker, if these
    /// are a [`Relays`]'.
    pub async fn stopped(self) {
        for (name, task) in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(database = %name, %error, "relay task panicked");
            }
        }
        if let Some((broker, timeout)) = self.flush {
            broker.flush(timeout).await;
        }
    }
}

/// Relays one database's outbox: claims its events from a [`Source`] (by default the
/// `outbox` table, polled) and publishes them through the [`Outlet`]'s broker.
#[derive(Clone)]
pub struct Relay<S = OutboxTable> {
    pub name: String,
    /// The database's pool, for what the relay does with the table whatever the source:
    /// retention, the gauges and the wake-up `LISTEN`.
    pool: PgPool,
    source: S,
    settings: RelaySettings,
    outlet: Outlet,
    /// Shared by this database's claim loops (see `wake`).
    flow: Flow,
}

impl Relay {
    /// A relay that polls the `outbox` table of `pool`'s database ([`OutboxTable`]).
    pub fn new(name: String, pool: PgPool, settings: RelaySettings, outlet: Outlet) -> Self {
        let table = OutboxTable::new(pool.clone());
        Self::with_source(name, pool, table, settings, outlet)
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
        outlet: Outlet,
    ) -> Result<Self, sqlx::Error> {
        Self::connect_with(name, url, settings, outlet, OutboxTable::new)
    }
}

impl<S: Source> Relay<S> {
    /// [`Relay::connect`], with the source that `source` makes from the relay's pool (the WAL
    /// source, say) instead of the polled table.
    pub fn connect_with(
        name: impl Into<String>,
        url: &SecretString,
        settings: RelaySettings,
        outlet: Outlet,
        source: impl FnOnce(PgPool) -> S,
    ) -> Result<Self, sqlx::Error> {
        let connections = u32::try_from(settings.pipeline * 2 + 2).unwrap_or(u32::MAX);
        let pool = crate::db::connect_lazy(url, connections, settings.lease)?;
        let source = source(pool.clone());
        Ok(Self::with_source(
            name.into(),
            pool,
            source,
            settings,
            outlet,
        ))
    }
    /// A relay that claims its events from `source`; `pool` is the same database's.
    pub fn with_source(
        name: String,
        pool: PgPool,
        source: S,
        settings: RelaySettings,
        outlet: Outlet,
    ) -> Self {
        Self {
            name,
            pool,
            source,
            settings,
            outlet,
            flow: Flow::default(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Starts everything this database's relay does, in the current process: its source's
    /// background work ([`Source::run`]), its claim loops ([`Relay::run`]), retention ([`Relay::run_cleaner`]) and gauges ([`Relay::run_gauges`]).
    /// They stop on `shutdown`; [`Running::stopped`] waits for that. The standalone relay starts
    /// one per database; a service that embeds the relay starts one for its own database.
    pub fn start(&self, shutdown: &CancellationToken) -> Running {
        let tasks = [
            tokio::spawn(self.source.clone().run(shutdown.clone())),
            tokio::spawn(self.clone().run(shutdown.clone())),
            tokio::spawn(self.clone().run_cleaner(shutdown.clone())),
            tokio::spawn(self.clone().run_gauges(shutdown.clone())),
        ];
        Running {
            tasks: tasks.map(|task| (self.name.clone(), task)).into(),
            flush: None,
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

    /// One claim after another, at the pace `wake.rs` sets.
    async fn claim_loop(self, shutdown: CancellationToken) {
        let mut pace = Pace::new(
            self.name.clone(),
            self.pool.clone(),
            self.settings.clone(),
            self.flow.clone(),
            self.source.wake(),
        );
        let mut errors = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        // Rows may be waiting from before the start: claim at once, as after a full batch.
        let mut outcome = Outcome::Backlog;
        while pace.next(outcome, &shutdown).await {
            // Held by an operator: wait here, claiming nothing (`hold.rs`).
            let Some(_permit) = self.outlet.hold.permit(&shutdown).await else {
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
        let published = self.publish(&claim).await;
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
}
