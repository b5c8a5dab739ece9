//! How the relay paces, retries, parks and cleans up: its settings, with their defaults. The
//! shop's services read them from `RELAY_*` environment variables; each field's doc names its
//! variable.

use std::time::Duration;

use crate::config::ConfigError;

#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Rows claimed per transaction.
    pub batch_size: i64,
    /// Claims in flight per database: one batch is claimed and marked while another is
    /// published.
    pub pipeline: usize,
    /// How often to look for rows when no notification arrives (the fallback for a lost
    /// `NOTIFY`, e.g. while the listening connection was reconnecting).
    pub poll_interval: Duration,
    /// Wake up on `NOTIFY outbox` (true) or rely on polling alone (false, for comparison).
    pub notify: bool,
    /// After a `NOTIFY`, wait this long before claiming, so a burst of commits is one batch.
    pub debounce: Duration,
    /// While events flow (the last batch published some), claim again after this pause,
    /// whatever the notifications say: one claim per commit would make batches of one row.
    pub busy_poll: Duration,
    /// First retry delay after a failed publish; doubles per attempt up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Failed attempts after which an event is parked (kept, not retried, reported).
    pub max_attempts: i32,
    /// How long a claim may stay silent. The claim transaction's session gets this as
    /// `idle_in_transaction_session_timeout`: an instance that hangs while holding rows is
    /// cut off by PostgreSQL, its locks drop, and another instance takes the rows over.
    /// A send is given at most a third of it and a batch half, so a healthy instance never
    /// hits it.
    pub lease: Duration,
    /// Published (and skipped) rows older than this are deleted.
    pub retention: Duration,
    /// How often the cleaner runs, and how many rows one delete takes.
    pub retention_interval: Duration,
    pub retention_batch: i64,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            batch_size: 500,
            pipeline: 2,
            poll_interval: Duration::from_millis(500),
            notify: true,
            debounce: Duration::from_millis(5),
            busy_poll: Duration::from_millis(20),
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(60),
            max_attempts: 10,
            lease: Duration::from_secs(30),
            retention: Duration::from_secs(7 * 24 * 3600),
            retention_interval: Duration::from_secs(60),
            retention_batch: 1000,
        }
    }
}

impl RelaySettings {
    /// Rejects settings that would stall the relay or defeat the lease.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |name: &str, value: String, reason: &str| ConfigError {
            name: name.into(),
            value,
            reason: reason.into(),
        };
        if self.batch_size < 1 {
            return Err(bad(
                "RELAY_BATCH_SIZE",
                self.batch_size.to_string(),
                "must be at least 1",
            ));
        }
        if !(1..=16).contains(&self.pipeline) {
            return Err(bad(
                "RELAY_PIPELINE",
                self.pipeline.to_string(),
                "must be between 1 and 16",
            ));
        }
        if self.max_attempts < 1 {
            return Err(bad(
                "RELAY_MAX_ATTEMPTS",
                self.max_attempts.to_string(),
                "must be at least 1",
            ));
        }
        if self.retention_batch < 1 {
            return Err(bad(
                "RELAY_RETENTION_BATCH",
                self.retention_batch.to_string(),
                "must be at least 1",
            ));
        }
        if self.lease < Duration::from_secs(3) {
            return Err(bad(
                "RELAY_LEASE_MS",
                self.lease.as_millis().to_string(),
                "must be at least 3000 (a send gets a third of it, at least 1 s)",
            ));
        }
        Ok(())
    }

    /// The producer's delivery timeout: a third of the lease, at least one second.
    pub fn send_timeout(&self) -> Duration {
        (self.lease / 3).max(Duration::from_secs(1))
    }

    /// How long a batch may publish after its claim: half the lease, so the marks commit well
    /// before PostgreSQL ends the claim's session, and after one full send timeout.
    pub fn batch_deadline(&self) -> Duration {
        self.lease / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_would_stall_the_relay_are_refused() {
        assert!(RelaySettings::default().validate().is_ok());
        let zero_batch = RelaySettings {
            batch_size: 0,
            ..RelaySettings::default()
        };
        assert_eq!(zero_batch.validate().unwrap_err().name, "RELAY_BATCH_SIZE");
        let short_lease = RelaySettings {
            lease: Duration::from_millis(500),
            ..RelaySettings::default()
        };
        assert_eq!(short_lease.validate().unwrap_err().name, "RELAY_LEASE_MS");
        assert_eq!(
            RelaySettings::default().send_timeout(),
            Duration::from_secs(10)
        );
    }
}
