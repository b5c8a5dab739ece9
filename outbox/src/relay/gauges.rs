//! The `outbox_pending`, `outbox_parked` and `outbox_oldest_pending_age_seconds` gauges, and
//! for a source that tails a log `outbox_log_retained_bytes` and `outbox_log_lag_bytes`: the
//! source's [`Stats`](super::Stats), read every few seconds.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Relay, RelayError, Source, Stats};

impl<S: Source> Relay<S> {
    /// Counts for the status page and the gauges, from the source.
    pub async fn stats(&self) -> Result<Stats, RelayError> {
        self.source.stats().await
    }

    /// Updates the `outbox_*` gauges every few seconds until shutdown.
    pub async fn run_gauges(self, shutdown: CancellationToken) {
        loop {
            if let Ok(stats) = self.stats().await {
                let db = self.name.clone();
                metrics::gauge!("outbox_pending", "database" => db.clone())
                    .set(stats.pending as f64);
                metrics::gauge!("outbox_parked", "database" => db.clone()).set(stats.parked as f64);
                metrics::gauge!("outbox_oldest_pending_age_seconds", "database" => db.clone())
                    .set(stats.oldest_pending_age_seconds);
                if let Some(log) = stats.log {
                    metrics::gauge!("outbox_log_retained_bytes", "database" => db.clone())
                        .set(log.retained_bytes as f64);
                    metrics::gauge!("outbox_log_lag_bytes", "database" => db)
                        .set(log.lag_bytes as f64);
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }
}
