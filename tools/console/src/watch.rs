//! The one poller: reads the sources every `poll` and publishes a snapshot when the flow
//! changed, or every few seconds when it did not. Pages subscribe to it
//! ([`tokio::sync::watch`]), so a hundred open pages cost the databases what one does.

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{flow::Snapshot, sources::Sources};

pub type Snapshots = watch::Receiver<Arc<Snapshot>>;

/// The longest the pages go without a snapshot, even when nothing changed.
const HEARTBEAT: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

/// Reads a first snapshot, then starts the poller (and the lag reader); they stop on
/// `shutdown`.
pub async fn spawn(sources: Sources, poll: Duration, shutdown: CancellationToken) -> Snapshots {
    sources.spawn_lag_reader(shutdown.clone());
    let (tx, rx) = watch::channel(Arc::new(sources.snapshot().await));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(poll);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let next = sources.snapshot().await;
            tx.send_if_modified(|current| {
                // A quiet system still gets a fresh snapshot now and then, so the page's time
                // shows the poller is alive.
                let due = !current.same_flow(&next) || next.at - current.at >= HEARTBEAT;
                if due {
                    *current = Arc::new(next);
                }
                due
            });
        }
    });
    rx
}
