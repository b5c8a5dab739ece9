//! When a claim loop claims next: the relay's pace.
//!
//! - **A backlog** (the last batch was full): at once.
//! - **Events flowing** (the last batch published some): again after `busy_poll` (20 ms), which
//!   gathers the commits of that window into one batch. Notifications are ignored meanwhile,
//!   by this loop and by the database's idle loops: the claim after the pause takes what they
//!   announce. Reacting to every commit instead made batches of one or two rows, each costing
//!   a claim, a mark and a broker round trip (measured in back-to-back runs at 200 orders/s:
//!   PostgreSQL's CPU 49 % -> 44 % of a core, p99 from order to inventory about a tenth lower).
//! - **Idle**: on a writer's `NOTIFY outbox` (sent right after its commit by
//!   `outbox::Writer::commit`) or the source's own wake-up ([`super::Source::wake`]: the WAL
//!   reader's, when it read an event), after `debounce` (5 ms) so that a burst is one batch;
//!   or every `poll_interval`, the fallback for a lost notification or a writer that sends
//!   none.
//! - **A failed batch** (database or broker unreachable): after a backoff.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sqlx::{postgres::PgListener, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{BatchReport, RelaySettings};

/// When one database's loops last published: while that is recent, events are flowing and
/// the loop that published will claim again shortly, so the others need not wake up.
#[derive(Debug, Clone, Default)]
pub struct Flow(Arc<Mutex<Option<Instant>>>);

impl Flow {
    fn published(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    fn within(&self, window: Duration) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() < window)
    }
}

/// What a claim loop learnt from its last batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A full batch that published: more is waiting.
    Backlog,
    /// Some events published: more are probably on their way.
    Flowing,
    /// Nothing to publish.
    Idle,
    /// The batch failed; wait this long.
    Failed(Duration),
}

impl Outcome {
    pub fn of(report: &BatchReport, batch_size: i64) -> Self {
        match report.published {
            0 => Self::Idle,
            _ if report.claimed as i64 >= batch_size => Self::Backlog,
            _ => Self::Flowing,
        }
    }
}

/// One claim loop's wake-up source: its `LISTEN` connection (when enabled) and the
/// database's [`Flow`].
pub struct Pace {
    database: String,
    pool: PgPool,
    settings: RelaySettings,
    flow: Flow,
    listener: Option<PgListener>,
    /// The source's wake-up, if it has one.
    wake: Option<Arc<Notify>>,
}

impl Pace {
    pub fn new(
        database: String,
        pool: PgPool,
        settings: RelaySettings,
        flow: Flow,
        wake: Option<Arc<Notify>>,
    ) -> Self {
        Self {
            database,
            pool,
            settings,
            flow,
            listener: None,
            wake,
        }
    }

    /// Waits until the loop should claim again; `false` once `shutdown` fired.
    pub async fn next(&mut self, outcome: Outcome, shutdown: &CancellationToken) -> bool {
        if self.settings.notify && self.listener.is_none() {
            self.listener = self.listen().await;
        }
        let pause = match outcome {
            Outcome::Backlog => return !shutdown.is_cancelled(),
            Outcome::Flowing => {
                self.flow.published();
                self.settings.busy_poll
            }
            Outcome::Failed(delay) => delay,
            Outcome::Idle => return self.idle(shutdown).await,
        };
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(pause) => {}
        }
        self.drain();
        true
    }

    /// Idle: the first notification that no busy loop covers, or the poll interval.
    async fn idle(&mut self, shutdown: &CancellationToken) -> bool {
        let poll = tokio::time::sleep(self.settings.poll_interval);
        tokio::pin!(poll);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = &mut poll => return true,
                () = woken(self.wake.as_deref()) => {
                    if !self.flow.within(self.settings.busy_poll) {
                        tokio::time::sleep(self.settings.debounce).await;
                        return true;
                    }
                }
                notified = notification(&mut self.listener) => match notified {
                    // Another loop of this database publishes and claims again shortly.
                    Ok(()) if self.flow.within(self.settings.busy_poll) => self.drain(),
                    Ok(()) => {
                        // Let the rest of a burst of commits arrive, then take them in one batch.
                        tokio::time::sleep(self.settings.debounce).await;
                        self.drain();
                        return true;
                    }
                    Err(error) => {
                        tracing::warn!(database = %self.database, %error, "LISTEN connection lost; polling until it is back");
                        self.listener = None;
                    }
                }
            }
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await.ok()?;
        listener.listen(crate::writer::WAKE_CHANNEL).await.ok()?;
        Some(listener)
    }

    /// Drops the notifications already received: the claim that follows takes what they
    /// announce.
    fn drain(&mut self) {
        if let Some(listener) = &mut self.listener {
            while listener.next_buffered().is_some() {}
        }
    }
}

/// The source's next wake-up; never, for a source without one.
async fn woken(wake: Option<&Notify>) {
    match wake {
        Some(wake) => wake.notified().await,
        None => std::future::pending().await,
    }
}

/// The next notification; never, without a listener.
async fn notification(listener: &mut Option<PgListener>) -> Result<(), sqlx::Error> {
    match listener {
        Some(l) => l.recv().await.map(|_| ()),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_of_a_batch() {
        let report = |claimed, published| BatchReport {
            claimed,
            published,
            ..BatchReport::default()
        };
        assert_eq!(Outcome::of(&report(0, 0), 10), Outcome::Idle);
        assert_eq!(Outcome::of(&report(4, 0), 10), Outcome::Idle);
        assert_eq!(Outcome::of(&report(4, 3), 10), Outcome::Flowing);
        assert_eq!(Outcome::of(&report(10, 9), 10), Outcome::Backlog);
    }

    #[test]
    fn a_flow_is_recent_only_within_its_window() {
        let flow = Flow::default();
        assert!(!flow.within(Duration::from_secs(1)));
        flow.published();
        assert!(flow.within(Duration::from_secs(1)));
        std::thread::sleep(Duration::from_millis(20));
        assert!(!flow.within(Duration::from_millis(10)));
    }
}
