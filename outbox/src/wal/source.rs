//! The WAL as the relay's [`Source`]: the relay core claims, publishes and marks as it does
//! with the polling source, and this file turns that into a replication slot's terms.
//!
//! - **A reader task** ([`Source::run`]) holds the slot and reads committed inserts into a
//!   bounded [`Window`]. It confirms the slot up to the end of the last transaction whose
//!   events are all safe, so a crash repeats only what the broker may not have acknowledged.
//!   When another instance holds the slot, it stands by and tries again every
//!   [`WalSettings::standby_retry`]; when the connection breaks, it reads again from the
//!   confirmed position.
//! - **A claim** takes, per aggregate, its events in commit order, and none of an aggregate that
//!   another batch holds. No row is locked and no query runs while nothing fails: that is the
//!   cost the WAL mode saves.
//! - **A failure** cannot wait in the stream: the slot could not move past it, and a parked
//!   event would keep the WAL of the whole cluster until an operator came. So the failed
//!   event and every later event of its aggregate go to `outbox_wal_held` (same columns as
//!   `outbox`), and they are *held* there: retried with backoff, parked, and retried or skipped
//!   by an operator exactly as the polling relay does with its rows ([`crate::relay::admin`]
//!   acts on both tables). While an aggregate has held events, its new events join them, so
//!   its order is kept; once they are all published or skipped, the aggregate streams again.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    held,
    throughput::Throughput,
    window::{Aggregate, Ordinal, Window},
    Lsn, StreamConfig, WalError, HELD_TABLE,
};
use crate::relay::{Batch, Failure, Marks, OutboxTable, PendingEvent, RelayError, Source, Stats};

/// How the WAL source reads.
#[derive(Debug, Clone)]
pub struct WalSettings {
    /// The slot and how to reach it.
    pub stream: StreamConfig,
    /// Events read ahead of the broker at most; the reader waits beyond it.
    pub window: usize,
    /// How often an instance that stands by tries to take the slot.
    pub standby_retry: Duration,
    /// How often an idle slot gets a heartbeat, so that it does not hold the cluster's WAL.
    pub heartbeat: Duration,
}

impl WalSettings {
    pub const DEFAULT_WINDOW: usize = 4096;
    pub const DEFAULT_STANDBY_RETRY: Duration = Duration::from_secs(1);
    pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);

    /// The defaults, reading `stream`.
    pub fn new(stream: StreamConfig) -> Self {
        Self {
            stream,
            window: Self::DEFAULT_WINDOW,
            standby_retry: Self::DEFAULT_STANDBY_RETRY,
            heartbeat: Self::DEFAULT_HEARTBEAT,
        }
    }
}

/// What the reader is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReaderState {
    /// Not streaming yet, or reconnecting after `last_error`.
    Connecting { last_error: Option<String> },
    /// It holds the slot and reads from it.
    Streaming,
    /// Another connection holds the slot: this instance takes over when it goes.
    Standby,
    /// Stopped on shutdown.
    Stopped,
}

/// The relay's source in WAL mode. Cheap to clone: every clone is the same source.
#[derive(Clone)]
pub struct WalSource {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) pool: PgPool,
    pub(super) settings: WalSettings,
    pub(super) held: OutboxTable,
    pub(super) window: Mutex<Window>,
    /// Aggregates with events in the held table that are neither published nor skipped. Its
    /// lock also orders claims and marks, so that no event of such an aggregate streams past
    /// them.
    pub(super) holding: tokio::sync::Mutex<HashSet<Aggregate>>,
    /// The reader waits here for room in the window.
    pub(super) room: Notify,
    /// The relay's claim loops wait here for events.
    pub(super) wake: Arc<Notify>,
    /// The position the slot may be confirmed to, for the reader.
    pub(super) confirm: watch::Sender<Lsn>,
    pub(super) state: Mutex<ReaderState>,
    /// Events published from the stream lately, for the status page's rate.
    pub(super) published: Mutex<Throughput>,
}

impl WalSource {
    /// A source for the database behind `pool`; the reader starts with the relay
    /// ([`Source::run`]).
    pub fn new(pool: PgPool, settings: WalSettings) -> Self {
        let window = Window::new(settings.window);
        Self {
            inner: Arc::new(Inner {
                held: OutboxTable::named(pool.clone(), HELD_TABLE),
                pool,
                settings,
                window: Mutex::new(window),
                holding: tokio::sync::Mutex::new(HashSet::new()),
                room: Notify::new(),
                wake: Arc::new(Notify::new()),
                confirm: watch::Sender::new(Lsn::ZERO),
                state: Mutex::new(ReaderState::Connecting { last_error: None }),
                published: Mutex::new(Throughput::default()),
            }),
        }
    }

    /// What the reader is doing now.
    pub fn state(&self) -> ReaderState {
        lock(&self.inner.state).clone()
    }

    /// Events read off the slot and not yet safe.
    pub fn in_window(&self) -> usize {
        self.window().live()
    }

    pub(super) fn window(&self) -> MutexGuard<'_, Window> {
        lock(&self.inner.window)
    }

    pub(super) fn set_state(&self, state: ReaderState) {
        *lock(&self.inner.state) = state;
    }

    /// Tells the reader how far the slot may go now.
    pub(super) fn advance(&self, window: &mut Window) {
        if let Some(end) = window.confirmable() {
            self.inner.confirm.send_if_modified(|at| {
                let moved = end > *at;
                *at = (*at).max(end);
                moved
            });
        }
        self.inner.room.notify_one();
    }

    /// Moves the unclaimed events of held aggregates into the held table.
    async fn hold_arrivals(&self, holding: &HashSet<Aggregate>) -> Result<(), RelayError> {
        let moved = self.window().claim_held(holding);
        if moved.is_empty() {
            return Ok(());
        }
        let claim = Claimed::new(self.clone(), moved.iter().map(|(o, e)| (*o, e.id)));
        let mut tx = self.inner.pool.begin().await?;
        held::insert(&mut tx, moved.into_iter().map(|(_, e)| (e, None)).collect()).await?;
        tx.commit().await?;
        claim.done_all();
        Ok(())
    }
}

impl Source for WalSource {
    type Held = Claimed;

    async fn claim(&self, limit: i64) -> Result<Option<Batch<Self::Held>>, RelayError> {
        let mut holding = self.inner.holding.lock().await;
        let mut held_batch = None;
        if !holding.is_empty() {
            *holding = held::aggregates(&self.inner.pool).await?;
            self.hold_arrivals(&holding).await?;
            held_batch = self.inner.held.claim(limit).await?;
        }
        let (mut chains, mut deferred, tx) = match held_batch {
            Some(batch) => (batch.chains, batch.deferred, Some(batch.held)),
            None => (Vec::new(), 0, None),
        };
        let used: usize = chains.iter().map(Vec::len).sum::<usize>() + deferred;
        let left = usize::try_from(limit).unwrap_or(0).saturating_sub(used);
        let taken = self.window().claim(left, &holding);
        drop(holding);
        let claim = Claimed::new(
            self.clone(),
            taken.chains.iter().flatten().map(|(o, e)| (*o, e.id)),
        )
        .with_transaction(tx);
        deferred += taken.deferred;
        chains.extend(
            taken
                .chains
                .into_iter()
                .map(|chain| chain.into_iter().map(|(_, e)| e).collect()),
        );
        if chains.is_empty() && deferred == 0 {
            return Ok(None);
        }
        Ok(Some(Batch {
            held: claim,
            chains,
            deferred,
        }))
    }

    async fn mark(&self, mut claim: Claimed, marks: Marks) -> Result<(), RelayError> {
        // Acknowledged events are safe at once, whatever happens to the failures.
        let (streamed, held): (Vec<Uuid>, Vec<Uuid>) = marks
            .published
            .into_iter()
            .partition(|id| claim.ordinals.contains_key(id));
        claim.done(&streamed);
        lock(&self.inner.published).record(streamed.len());
        let (failed, held_failed): (Vec<Failure>, Vec<Failure>) = marks
            .failed
            .into_iter()
            .partition(|f| claim.ordinals.contains_key(&f.id));
        let held_marks = Marks {
            published: held,
            failed: held_failed,
        };
        if failed.is_empty() && claim.tx.is_none() {
            return Ok(());
        }
        let mut holding = self.inner.holding.lock().await;
        let mut tx = match claim.tx.take() {
            Some(tx) => tx,
            None => self.inner.pool.begin().await?,
        };
        // Each failed event, with every event of its aggregate read after it, moves to the
        // held table in commit order; the failed one carries its attempt.
        let failures: HashMap<Uuid, Failure> = failed.into_iter().map(|f| (f.id, f)).collect();
        let mut newly_held = HashSet::new();
        let mut rows = Vec::new();
        let mut moved = Vec::new();
        for event in claim.events_of(&failures) {
            let aggregate = (event.aggregatetype.clone(), event.aggregateid.clone());
            if !newly_held.insert(aggregate.clone()) {
                continue;
            }
            for (ordinal, event) in self.window().of_aggregate(&aggregate) {
                moved.push((ordinal, event.id));
                let failure = failures.get(&event.id);
                rows.push((event, failure));
            }
        }
        held::insert(&mut tx, rows).await?;
        self.inner.held.mark(tx, held_marks).await?;
        holding.extend(newly_held);
        drop(holding);
        let mut window = self.window();
        for (ordinal, id) in moved {
            window.done(ordinal);
            claim.ordinals.remove(&id);
        }
        self.advance(&mut window);
        Ok(())
    }

    async fn stats(&self) -> Result<Stats, RelayError> {
        self.wal_stats().await
    }

    async fn delete_expired(&self, retention: Duration, batch: i64) -> Result<u64, RelayError> {
        self.wal_delete_expired(retention, batch).await
    }

    fn run(self, shutdown: CancellationToken) -> impl std::future::Future<Output = ()> + Send {
        self.read(shutdown)
    }

    fn wake(&self) -> Option<Arc<Notify>> {
        Some(self.inner.wake.clone())
    }
}

/// What one batch claimed off the stream (and, while some aggregates are held, the held
/// table's transaction). Dropped without a mark, it gives its events back for the next claim.
pub struct Claimed {
    source: WalSource,
    ordinals: HashMap<Uuid, Ordinal>,
    tx: Option<Transaction<'static, Postgres>>,
}

impl Claimed {
    fn new(source: WalSource, events: impl Iterator<Item = (Ordinal, Uuid)>) -> Self {
        Self {
            source,
            ordinals: events.map(|(o, id)| (id, o)).collect(),
            tx: None,
        }
    }

    fn with_transaction(mut self, tx: Option<Transaction<'static, Postgres>>) -> Self {
        self.tx = tx;
        self
    }

    /// The claimed events among `failures`, as the window has them.
    fn events_of(&self, failures: &HashMap<Uuid, Failure>) -> Vec<PendingEvent> {
        let window = self.source.window();
        let mut events: Vec<(Ordinal, PendingEvent)> = failures
            .keys()
            .filter_map(|id| self.ordinals.get(id))
            .filter_map(|ordinal| window.event(*ordinal).map(|e| (*ordinal, e.clone())))
            .collect();
        events.sort_by_key(|(ordinal, _)| *ordinal);
        events.into_iter().map(|(_, e)| e).collect()
    }

    fn done(&mut self, ids: &[Uuid]) {
        let mut window = self.source.window();
        for id in ids {
            if let Some(ordinal) = self.ordinals.remove(id) {
                window.done(ordinal);
            }
        }
        self.source.advance(&mut window);
    }

    fn done_all(mut self) {
        let ids: Vec<Uuid> = self.ordinals.keys().copied().collect();
        self.done(&ids);
    }
}

impl Drop for Claimed {
    fn drop(&mut self) {
        if self.ordinals.is_empty() {
            return;
        }
        let mut window = self.source.window();
        for (_, ordinal) in self.ordinals.drain() {
            window.release(ordinal);
        }
        drop(window);
        self.source.inner.wake.notify_one();
        self.source.inner.room.notify_one();
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl From<WalError> for RelayError {
    fn from(error: WalError) -> Self {
        match error {
            WalError::Database(error) => RelayError::Database(error),
            other => RelayError::Source(Box::new(other)),
        }
    }
}
