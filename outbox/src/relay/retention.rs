//! Retention: published and skipped rows go after `RELAY_RETENTION`, in small batches of
//! short transactions (`for update skip locked`), so deleting never blocks a writer.

use tokio_util::sync::CancellationToken;

use super::{Relay, RelayError, Source};

impl<S: Source> Relay<S> {
    /// Deletes published and skipped rows older than the retention, `retention_batch` rows
    /// per short transaction, until none is left. Returns how many it deleted.
    pub async fn delete_expired(&self) -> Result<u64, RelayError> {
        let mut total = 0;
        loop {
            let deleted = sqlx::query(
                "delete from outbox where id in (
                     select id from outbox
                     where published_at < now() - make_interval(secs => $1)
                        or skipped_at < now() - make_interval(secs => $1)
                     limit $2
                     for update skip locked)",
            )
            .bind(self.settings.retention.as_secs_f64())
            .bind(self.settings.retention_batch)
            .execute(&self.pool)
            .await?
            .rows_affected();
            total += deleted;
            if deleted < u64::try_from(self.settings.retention_batch).unwrap_or(0) {
                break;
            }
        }
        if total > 0 {
            metrics::counter!("outbox_deleted_total", "database" => self.name.clone())
                .increment(total);
            tracing::info!(database = %self.name, deleted = total, "retention: old rows deleted");
        }
        Ok(total)
    }

    /// Runs [`Relay::delete_expired`] every `retention_interval` until shutdown.
    pub async fn run_cleaner(self, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.delete_expired().await {
                tracing::warn!(database = %self.name, %error, "retention run failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.settings.retention_interval) => {}
            }
        }
    }
}
