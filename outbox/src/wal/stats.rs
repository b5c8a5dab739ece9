//! What the WAL relay shows on the status page and in the gauges, and what its retention
//! deletes. Its pending events are those read off the slot and not yet safe, plus the held
//! ones; what the slot has not delivered yet shows as its lag in bytes, since counting it
//! would mean reading the WAL twice. No row of `outbox` is ever marked in this mode.

use std::time::Duration;

use chrono::Utc;

use super::{
    slot,
    source::{ReaderState, WalSource},
};
use crate::relay::{LogStats, OutboxTable, Reading, RelayError, Source, Stats};

impl ReaderState {
    fn reading(&self) -> Reading {
        match self {
            Self::Connecting { .. } => Reading::Connecting,
            Self::Streaming => Reading::Streaming,
            Self::Standby => Reading::Standby,
            Self::Stopped => Reading::Stopped,
        }
    }
}

impl WalSource {
    /// The held table's counts, with the window's events and the slot's position added.
    pub(super) async fn wal_stats(&self) -> Result<Stats, RelayError> {
        let held = Source::stats(&self.inner.held).await?;
        let slot_state =
            slot::slot_state(&self.inner.pool, &self.inner.settings.stream.slot).await?;
        let (read_ahead, oldest) = {
            let window = self.window();
            (window.live(), window.oldest())
        };
        let streamed_age = oldest
            .map(|at| (Utc::now() - at).num_milliseconds() as f64 / 1000.0)
            .unwrap_or(0.0);
        let streamed_rate = super::source::lock(&self.inner.published).per_second();
        Ok(Stats {
            pending: held.pending + i64::try_from(read_ahead).unwrap_or(i64::MAX),
            parked: held.parked,
            oldest_pending_age_seconds: held.oldest_pending_age_seconds.max(streamed_age),
            published_per_second: held.published_per_second + streamed_rate,
            log: Some(LogStats {
                reader: self.state().reading(),
                retained_bytes: slot_state.as_ref().map_or(0, |s| s.retained_bytes),
                lag_bytes: slot_state.as_ref().map_or(0, |s| s.unconfirmed_bytes),
                read_ahead,
            }),
        })
    }

    /// Retention in WAL mode: the held table's published and skipped rows, as polling deletes
    /// its own, and the outbox's rows older than the retention. Those were never marked, and
    /// deleting them takes nothing from the stream: the WAL holds each insert whole. What it
    /// does bound is a recovery: a new slot republishes the rows the table still has.
    pub(super) async fn wal_delete_expired(
        &self,
        retention: Duration,
        batch: i64,
    ) -> Result<u64, RelayError> {
        let handed_over = OutboxTable::new(self.inner.pool.clone());
        let mut total = Source::delete_expired(&self.inner.held, retention, batch).await?;
        // Rows a polling relay published, or that a new slot handed over to the held table.
        total += Source::delete_expired(&handed_over, retention, batch).await?;
        loop {
            // The first `batch` kept rows in `seq` order (the pending index), of which those
            // past the retention: a bounded read each time, even when none has expired.
            let deleted = sqlx::query(
                "delete from outbox where id in (
                     select id from (
                         select id, created_at from outbox
                         where published_at is null and skipped_at is null and parked_at is null
                         order by seq limit $2) first
                     where created_at < now() - make_interval(secs => $1))",
            )
            .bind(retention.as_secs_f64())
            .bind(batch)
            .execute(&self.inner.pool)
            .await?
            .rows_affected();
            total += deleted;
            if deleted < u64::try_from(batch).unwrap_or(0) {
                return Ok(total);
            }
        }
    }
}
