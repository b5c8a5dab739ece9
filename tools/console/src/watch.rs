//! The one poller: reads the sources every `poll` and publishes a snapshot when the flow
//! changed. Pages subscribe to it ([`tokio::sync::watch`]), so a hundred open pages cost the
//! databases what one does.

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{flow::Snapshot, sources::Sources};

pub type Snapshots = watch::Receiver<Arc<Snapshot>>;

/// Starts the poller; it stops on `shutdown`.
pub fn spawn(sources: Sources, poll: Duration, shutdown: CancellationToken) -> Snapshots {
    let (tx, rx) = watch::channel(Arc::new(Snapshot::empty()));
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
                let changed = !current.same_flow(&next);
                if changed {
                    *current = Arc::new(next);
                }
                changed
            });
        }
    });
    rx
}
