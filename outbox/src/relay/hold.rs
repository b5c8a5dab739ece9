//! Holding the relay by hand: an operator's hold (not to be mistaken for the pause of a broker
//! outage, `outage.rs`), and the walkthrough's way to show an outbox
//! row before the relay marks it.
//!
//! While a relay is held, the services go on committing and their events wait in the outbox
//! with `published_at` null, exactly as during a broker outage; releasing it publishes them, in
//! order. Holding is per process (every database this process relays): with several relay
//! instances, hold each, or the others go on claiming.
//!
//! [`Hold::hold`] returns once no batch is in flight, so an event committed after it returns
//! is not published until [`Hold::release`]: every claim of the relay's loop ([`super::Relay::run`])
//! takes a read permit and checks the switch under it, and the hold takes the write lock once,
//! after turning the switch. [`super::Relay::relay_batch`], the single step tests drive by hand,
//! does not look at the switch.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{watch, OwnedRwLockReadGuard, RwLock};
use tokio_util::sync::CancellationToken;

/// Whether the relay claims events or holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Switch {
    Relaying,
    /// Held by an operator: events wait in the outbox until it is released.
    Held,
}

/// The process's switch; shared by every claim loop through [`super::Outlet`].
#[derive(Clone)]
pub struct Hold {
    switch: Arc<watch::Sender<Switch>>,
    batches: Arc<RwLock<()>>,
}

impl Default for Hold {
    fn default() -> Self {
        metrics::gauge!("outbox_relay_held").set(0.0);
        Self {
            switch: Arc::new(watch::Sender::new(Switch::Relaying)),
            batches: Arc::default(),
        }
    }
}

impl Hold {
    pub fn state(&self) -> Switch {
        *self.switch.borrow()
    }

    /// Holds the relay; returns when no batch is in flight any more. Answers the state it was in.
    pub async fn hold(&self) -> Switch {
        let was = self.switch.send_replace(Switch::Held);
        metrics::gauge!("outbox_relay_held").set(1.0);
        // Batches that passed the switch before it turned hold read permits; wait them out.
        drop(self.batches.write().await);
        if was == Switch::Relaying {
            tracing::info!("relay held by an operator: events wait in the outbox");
        }
        was
    }

    /// Lets the relay claim again. Answers the state it was in.
    pub fn release(&self) -> Switch {
        let was = self.switch.send_replace(Switch::Relaying);
        metrics::gauge!("outbox_relay_held").set(0.0);
        if was == Switch::Held {
            tracing::info!("relay released");
        }
        was
    }

    /// Waits until the relay may claim, and answers the permit a batch holds while it runs;
    /// `None` on shutdown.
    pub(crate) async fn permit(
        &self,
        shutdown: &CancellationToken,
    ) -> Option<OwnedRwLockReadGuard<()>> {
        let mut changes = self.switch.subscribe();
        loop {
            let permit = self.batches.clone().read_owned().await;
            if *changes.borrow_and_update() == Switch::Relaying {
                return Some(permit);
            }
            drop(permit);
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return None },
                () = shutdown.cancelled() => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_hold_waits_for_the_batch_in_flight_and_holds_the_next() {
        let hold = Hold::default();
        let shutdown = CancellationToken::new();
        let batch = hold.permit(&shutdown).await.expect("relaying");

        let pausing = tokio::spawn({
            let hold = hold.clone();
            async move { hold.hold().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !pausing.is_finished(),
            "hold returned while a batch was in flight"
        );
        drop(batch);
        assert_eq!(pausing.await.unwrap(), Switch::Relaying);
        assert_eq!(hold.state(), Switch::Held);

        let next = tokio::spawn({
            let hold = hold.clone();
            let shutdown = shutdown.clone();
            async move { hold.permit(&shutdown).await.is_some() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!next.is_finished(), "a held relay started a batch");
        assert_eq!(hold.release(), Switch::Held);
        assert!(next.await.unwrap(), "released relay got no permit");
    }

    #[tokio::test]
    async fn shutdown_ends_the_wait_of_a_held_relay() {
        let hold = Hold::default();
        hold.hold().await;
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        assert!(hold.permit(&shutdown).await.is_none());
    }
}
