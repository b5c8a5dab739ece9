//! The WAL source's reader: the one task per instance that holds the replication slot, reads
//! committed inserts into the window, and confirms the slot as far as the window allows. An
//! instance whose slot another connection holds stands by; a broken connection reads again
//! from the slot's confirmed position.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{
    held, slot,
    source::{ReaderState, WalSource},
    OutboxStream, WalError, WalEvent,
};
use crate::backoff::Backoff;

impl WalSource {
    /// The reader: streams until `shutdown`, standing by or reconnecting as needed.
    pub(super) async fn read(self, shutdown: CancellationToken) {
        let mut errors = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let slot_name = self.inner.settings.stream.slot.clone();
        loop {
            let pause = match self.stream(&shutdown).await {
                Ok(()) => break,
                Err(WalError::SlotInUse(_)) => {
                    if self.state() != ReaderState::Standby {
                        tracing::info!(slot = %slot_name, "the slot is in use elsewhere: standing by");
                    }
                    self.set_state(ReaderState::Standby);
                    self.inner.settings.standby_retry
                }
                Err(error) => {
                    let delay = errors.next_delay();
                    tracing::warn!(slot = %slot_name, %error, ?delay, "WAL stream failed; reading again from the slot");
                    self.set_state(ReaderState::Connecting {
                        last_error: Some(error.to_string()),
                    });
                    delay
                }
            };
            self.window().restart();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        self.set_state(ReaderState::Stopped);
    }

    /// One connection's stream; `Ok` on shutdown.
    async fn stream(&self, shutdown: &CancellationToken) -> Result<(), WalError> {
        let pool = &self.inner.pool;
        let config = &self.inner.settings.stream;
        slot::ensure_publication(pool, &config.slot).await?;
        if slot::ensure_slot(pool, &config.slot).await? == slot::SlotCreated::Created {
            let moved = held::take_over_pending(pool).await?;
            tracing::info!(slot = %config.slot, moved, "slot created: the outbox's pending rows go first, from the held table");
        }
        let mut stream = OutboxStream::start(config).await?;
        // Taken only now that this instance holds the slot: what another held meanwhile.
        *self.inner.holding.lock().await = held::aggregates(pool).await?;
        self.set_state(ReaderState::Streaming);
        tracing::info!(slot = %config.slot, "streaming the outbox from the WAL");
        if slot::wal_keep_limit(pool).await? == slot::WalKeep::Unlimited {
            // docs/wal-relay.md, "Slot safety".
            tracing::warn!(slot = %config.slot, "max_slot_wal_keep_size is unlimited (-1): while this relay is down or stuck, its slot keeps every WAL segment until the disk is full; set a limit, and watch outbox_log_retained_bytes");
        }
        let mut confirm = self.inner.confirm.subscribe();
        let mut heartbeat = tokio::time::interval(self.inner.settings.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let room = self.window().has_room();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    stream.confirm(*confirm.borrow_and_update());
                    return stream.stop().await;
                }
                _ = confirm.changed() => stream.confirm(*confirm.borrow_and_update()),
                _ = self.inner.room.notified(), if !room => {}
                _ = heartbeat.tick() => {
                    if self.window().is_settled() {
                        slot::heartbeat(pool).await?;
                    }
                }
                event = stream.next(), if room => match event? {
                    None => return Err(WalError::Ended),
                    Some(WalEvent::Begin { .. }) => self.window().begin(),
                    Some(WalEvent::Event(event)) => {
                        self.window().push(event);
                        self.inner.wake.notify_one();
                    }
                    Some(WalEvent::Commit { end, .. }) => {
                        let mut window = self.window();
                        window.commit(end);
                        self.advance(&mut window);
                    }
                    Some(WalEvent::Idle { position }) => {
                        if self.window().is_settled() {
                            stream.confirm(position);
                        }
                    }
                },
            }
        }
    }
}
