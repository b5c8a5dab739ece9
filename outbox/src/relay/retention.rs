//! Retention: what is done with goes after `RELAY_RETENTION`, in small batches of short
//! transactions (`for update skip locked`), so deleting never blocks a writer. Which rows are
//! done with is the [`Source`]'s to say: for the polling relay, the published and skipped rows.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{OutboxTable, Relay, RelayError, Source};

impl OutboxTable {
    /// Deletes published and skipped rows older than `retention`, `batch` rows per short
    /// transaction, until none is left.
    pub(super) async fn delete_done(
        &self,
        retention: Duration,
        batch: i64,
    ) -> Result<u64, RelayError> {
        let table = self.table;
        let mut total = 0;
        loop {
            let deleted = sqlx::query(&format!(
                "delete from {table} where id in (
                     select id from {table}
                     where published_at < now() - make_interval(secs => $1)
                        or skipped_at < now() - make_interval(secs => $1)
                     limit $2
                     for update skip locked)"
            ))
            .bind(retention.as_secs_f64())
            .bind(batch)
            .execute(&self.pool)
            .await?
            .rows_affected();
            total += deleted;
            if deleted < u64::try_from(batch).unwrap_or(0) {
                return Ok(total);
            }
        }
    }
}

impl<S: Source> Relay<S> {
    /// Deletes what the source no longer needs and is older than the retention
    /// ([`Source::delete_expired`]). Returns how many rows it deleted.
    pub async fn delete_expired(&self) -> Result<u64, RelayError> {
        let total = self
            .source
            .delete_expired(self.settings.retention, self.settings.retention_batch)
            .await?;
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
