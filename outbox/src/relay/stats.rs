//! What the status page and the `outbox_pending`, `outbox_parked` and
//! `outbox_oldest_pending_age_seconds` gauges show of one database's outbox.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Relay, RelayError, Source};

/// Pending work of one database, as the status page and the gauges show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stats {
    pub pending: i64,
    pub parked: i64,
    pub oldest_pending_age_seconds: f64,
    pub published_per_second: f64,
}

impl<S: Source> Relay<S> {
    /// Counts for the status page and the gauges.
    pub async fn stats(&self) -> Result<Stats, RelayError> {
        let (pending, parked, oldest, recent): (i64, i64, Option<f64>, i64) = sqlx::query_as(
            "select
                 (select count(*) from outbox
                  where published_at is null and skipped_at is null and parked_at is null),
                 (select count(*) from outbox
                  where published_at is null and skipped_at is null and parked_at is not null),
                 -- The row the relay claims next (the pending index, in seq order) rather
                 -- than min(created_at), which reads every pending row: with a backlog of
                 -- 100,000 that made this query 50 ms, every 2 s.
                 (select extract(epoch from now() - created_at)::float8 from outbox
                  where published_at is null and skipped_at is null and parked_at is null
                  order by seq limit 1),
                 (select count(*) from outbox where published_at > now() - interval '10 seconds')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Stats {
            pending,
            parked,
            oldest_pending_age_seconds: oldest.unwrap_or(0.0),
            published_per_second: recent as f64 / 10.0,
        })
    }

    /// Updates the `outbox_pending`, `outbox_parked` and `outbox_oldest_pending_age_seconds`
    /// gauges every few seconds until shutdown.
    pub async fn run_gauges(self, shutdown: CancellationToken) {
        loop {
            if let Ok(stats) = self.stats().await {
                let db = self.name.clone();
                metrics::gauge!("outbox_pending", "database" => db.clone())
                    .set(stats.pending as f64);
                metrics::gauge!("outbox_parked", "database" => db.clone()).set(stats.parked as f64);
                metrics::gauge!("outbox_oldest_pending_age_seconds", "database" => db)
                    .set(stats.oldest_pending_age_seconds);
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }
}
