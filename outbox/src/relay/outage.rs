//! Broker outages: the relay pauses publishing instead of spending the events' attempts.
//!
//! The outbox's first promise is that the broker may be down without hurting the
//! application: orders keep committing, their events wait in the table. So when a batch's
//! sends fail because the broker or the network is away ([`super::Fault::Outage`]),
//! the failed rows are left as they were (no attempt counted, nothing parked), and every claim
//! loop of this process waits with a growing backoff before it tries again. Each later batch is
//! the probe: the first acknowledgement ends the outage, and the rows go out in order, on their
//! own. Parking stays for an event that cannot be published, not for a broker that is down.
//!
//! The state is visible: a log line when an outage starts and when it ends (with its length),
//! the `outbox_relay_paused` gauge, and the status page.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::backoff::Backoff;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// The process's view of the broker: publishing or paused. One per process, since every
/// database's relay publishes to the same broker.
#[derive(Clone)]
pub struct Outage {
    state: Arc<Mutex<State>>,
}

struct State {
    paused: Option<Paused>,
    backoff: Backoff,
}

struct Paused {
    since: DateTime<Utc>,
    started: Instant,
    last_error: String,
}

/// What the status page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PublishingState {
    Publishing,
    /// The broker is unreachable: publishing pauses, no event spends attempts.
    Paused {
        since: DateTime<Utc>,
        /// For the log and the tests; not shown on the open status page (a broker's error
        /// may name its address).
        #[serde(skip)]
        last_error: String,
    },
}

impl Default for Outage {
    fn default() -> Self {
        Self::new(Duration::from_millis(200), Duration::from_secs(5))
    }
}

impl Outage {
    /// `first` is the pause after the first failed batch; it doubles up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        metrics::gauge!("outbox_relay_paused").set(0.0);
        Self {
            state: Arc::new(Mutex::new(State {
                paused: None,
                backoff: Backoff::new(first, max),
            })),
        }
    }

    /// A batch found the broker away: pause, or stay paused. How long the calling loop waits
    /// before its next batch, which is the next probe.
    pub fn failed(&self, error: &str) -> Duration {
        let mut state = self.lock();
        match &mut state.paused {
            Some(paused) => paused.last_error = error.to_owned(),
            None => {
                tracing::error!(%error, "broker unavailable: publishing paused; no event spends attempts until it is back");
                metrics::gauge!("outbox_relay_paused").set(1.0);
                metrics::counter!("outbox_relay_outages_total").increment(1);
                state.paused = Some(Paused {
                    since: Utc::now(),
                    started: Instant::now(),
                    last_error: error.to_owned(),
                });
            }
        }
        state.backoff.next_delay()
    }

    /// The broker acknowledged a send: publishing resumes, if it was paused.
    pub fn acknowledged(&self) {
        let mut state = self.lock();
        if let Some(paused) = state.paused.take() {
            tracing::info!(
                paused_for = ?paused.started.elapsed(), last_error = %paused.last_error,
                "broker back: publishing resumed"
            );
            metrics::gauge!("outbox_relay_paused").set(0.0);
        }
        state.backoff.reset();
    }

    pub fn state(&self) -> PublishingState {
        match &self.lock().paused {
            None => PublishingState::Publishing,
            Some(paused) => PublishingState::Paused {
                since: paused.since,
                last_error: paused.last_error.clone(),
            },
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update leaves the state whole: a panic elsewhere cannot tear it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_pauses_with_growing_waits_until_the_broker_acknowledges() {
        let outage = Outage::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(outage.state(), PublishingState::Publishing);
        let first = outage.failed("timed out");
        let mut later = first;
        for _ in 0..6 {
            later = outage.failed("all brokers down");
        }
        assert!(first <= Duration::from_millis(100));
        assert!(later >= Duration::from_millis(500), "{later:?}");
        let PublishingState::Paused { last_error, .. } = outage.state() else {
            panic!("paused after failed batches");
        };
        assert_eq!(last_error, "all brokers down");
        outage.acknowledged();
        assert_eq!(outage.state(), PublishingState::Publishing);
        // The backoff starts over with the next outage.
        assert!(outage.failed("timed out") <= Duration::from_millis(100));
    }
}
