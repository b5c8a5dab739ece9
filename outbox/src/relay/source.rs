//! The relay's seam to where its events come from, beside [`Broker`](super::Broker), its seam
//! to where they go.
//!
//! A [`Source`] does two things. It *claims*: it hands the relay the events that may go now,
//! grouped per aggregate and oldest first, and keeps them from every other relay instance
//! until they are marked. And it *marks*: it records what became of each one, published or
//! failed, with when to try again or that it is parked. Everything in between is the core's
//! and the same for every source: the topics, the sends in order per aggregate, the batch
//! deadline, what counts as an attempt or an outage, when to park, the metrics.
//!
//! [`OutboxTable`](super::OutboxTable) is the source the relay runs with: it polls the
//! `outbox` table, claims under row locks and marks in the same transaction. A source that
//! tails the WAL is another implementation of this trait, and a test can wrap either.

use std::{future::Future, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{RelayError, Stats};

/// One event a source handed the relay: an outbox row, whichever way it was read.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PendingEvent {
    pub id: Uuid,
    pub aggregatetype: String,
    pub aggregateid: String,
    #[sqlx(rename = "type")]
    pub event_type: String,
    pub payload: String,
    pub tracingspancontext: Option<String>,
    pub schema_version: i32,
    pub seq: i64,
    /// Failed attempts so far: the core parks the event when one more reaches the limit.
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

/// What a source claimed for one batch.
pub struct Batch<H> {
    /// Whatever keeps these events from other relay instances until they are marked: for the
    /// table, the transaction that holds their row locks. Dropping it is what a crash does,
    /// and the events go to the next claim.
    pub held: H,
    /// Per aggregate, the events that may go now, oldest first. Two chains never share an
    /// aggregate.
    pub chains: Vec<Vec<PendingEvent>>,
    /// Events claimed but left for later, because an earlier event of their aggregate may not
    /// go yet.
    pub deferred: usize,
}

/// What became of a batch's events, for the source to record.
#[derive(Debug, Default)]
pub struct Marks {
    /// Acknowledged by the broker.
    pub published: Vec<Uuid>,
    /// Refused by the broker, or not acknowledged by the batch deadline: each counts an
    /// attempt. Events that are in neither list stay as they were.
    pub failed: Vec<Failure>,
}

/// An event that failed an attempt.
#[derive(Debug)]
pub struct Failure {
    pub id: Uuid,
    pub reason: String,
    /// Backoff before the next attempt, counted from the mark.
    pub retry_in: Duration,
    pub then: AfterFailure,
}

/// What an event that failed an attempt does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// It is tried again after its backoff.
    Retry,
    /// It had its last attempt: it waits for an operator ([`super::admin`]), and the later
    /// events of its aggregate wait behind it.
    Park,
}

/// Where the relay's events come from, and where their fate is written.
pub trait Source: Clone + Send + Sync + 'static {
    /// What keeps a claim's events from other instances ([`Batch::held`]).
    type Held: Send + Sync + 'static;

    /// Claims up to `limit` events that may go now; `None` when there is none.
    fn claim(
        &self,
        limit: i64,
    ) -> impl Future<Output = Result<Option<Batch<Self::Held>>, RelayError>> + Send;

    /// Records `marks` for the claim `held` and releases it. Until this returns `Ok`, nothing
    /// of the batch is recorded: a relay that dies before then sends the events again (at
    /// least once).
    fn mark(
        &self,
        held: Self::Held,
        marks: Marks,
    ) -> impl Future<Output = Result<(), RelayError>> + Send;

    /// What waits, what is parked and how fast events go out, for the status page and the
    /// `outbox_*` gauges.
    fn stats(&self) -> impl Future<Output = Result<Stats, RelayError>> + Send;

    /// Deletes what the source keeps of events that are done with and older than `retention`,
    /// at most `batch` rows per short transaction, so that a writer never waits for it.
    /// Returns how many it deleted.
    fn delete_expired(
        &self,
        retention: Duration,
        batch: i64,
    ) -> impl Future<Output = Result<u64, RelayError>> + Send;

    /// What the source does in the background while the relay runs (the WAL source's reader),
    /// until `shutdown`. [`super::Relay::start`] runs it beside the claim loops. Nothing, for
    /// a source that only answers claims.
    fn run(self, shutdown: CancellationToken) -> impl Future<Output = ()> + Send {
        let _ = shutdown;
        async {}
    }

    /// Notified when the source has new events: an idle claim loop claims then, besides on a
    /// writer's `NOTIFY` and its poll interval. `None` when only those announce events.
    fn wake(&self) -> Option<Arc<Notify>> {
        None
    }
}
