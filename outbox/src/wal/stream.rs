//! The outbox's inserts as they are committed, read off a replication slot: each transaction
//! that inserted outbox rows is a [`WalEvent::Begin`], its events one by one, and a
//! [`WalEvent::Commit`] whose `end` is the position to confirm once all of them are safe. A
//! transaction of 100k rows arrives row by row; nothing here holds more than one. A
//! transaction without outbox rows (PostgreSQL before 15 sends those too) is only an
//! [`WalEvent::Idle`] at its end.
//!
//! The slot keeps everything after the position last confirmed ([`OutboxStream::confirm`]):
//! a relay that crashes reads again from there, so confirming only what the broker
//! acknowledged is what makes the WAL mode at least once.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, ReplicationEvent};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

use super::{
    pgoutput::{self, Change},
    row::Columns,
    WalError,
};
use crate::relay::PendingEvent;

/// Where to stream from.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// The relayed database, as a `postgres://` URL.
    pub url: SecretString,
    /// The slot, and the publication of the same name ([`super::slot`]).
    pub slot: String,
    /// How often the client reports its confirmed position to the server, also when idle.
    pub status_interval: Duration,
    /// Events the client reads ahead of the relay. When they are not taken, it stops reading
    /// and the walsender waits: memory stays bounded whatever a transaction's size.
    pub read_ahead: usize,
}

impl StreamConfig {
    pub fn new(url: SecretString, slot: impl Into<String>) -> Self {
        Self {
            url,
            slot: slot.into(),
            status_interval: Duration::from_secs(1),
            read_ahead: 1024,
        }
    }
}

/// What the stream says next.
#[derive(Debug, Clone, PartialEq)]
pub enum WalEvent {
    /// A transaction that inserted outbox rows. `commit` identifies it (its commit record's
    /// position), and is the same each time the transaction is read again.
    Begin {
        commit: Lsn,
        committed_at: DateTime<Utc>,
    },
    /// One inserted row, in the order of the transaction's inserts.
    Event(PendingEvent),
    /// The transaction's end: confirming `end` releases it and everything before it.
    Commit { commit: Lsn, end: Lsn },
    /// The server's position with nothing of ours before it that was not shown: a quiet
    /// database's slot may be confirmed this far when nothing is in flight.
    Idle { position: Lsn },
}

/// A replication connection holding the slot.
pub struct OutboxStream {
    client: ReplicationClient,
    columns: HashMap<u32, Option<Columns>>,
    /// The transaction being read, until its Commit.
    open: Option<Open>,
    /// An event to hand out after the Begin handed out first.
    queued: Option<WalEvent>,
    confirmed: Lsn,
    status_interval: Duration,
}

impl OutboxStream {
    /// Connects and starts streaming from the slot's confirmed position. Fails with
    /// [`WalError::SlotInUse`] while another connection holds the slot.
    pub async fn start(config: &StreamConfig) -> Result<Self, WalError> {
        super::slot::check_name(&config.slot)?;
        let url = url::Url::parse(config.url.expose_secret())
            .map_err(|e| WalError::BadUrl(e.to_string()))?;
        // What the stream cannot do must not be dropped silently: a TLS connection asked for
        // and a plain one made would be the worst of these.
        for (key, value) in url.query_pairs() {
            let fine = match key.as_ref() {
                "sslmode" => matches!(value.as_ref(), "disable" | "allow" | "prefer"),
                "application_name" | "connect_timeout" => true,
                _ => false,
            };
            if !fine {
                return Err(WalError::BadUrl(format!(
                    "{key}={value} is not supported by the replication connection (no TLS, no socket paths)"
                )));
            }
        }
        let decode = |part: &str| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = decode(url.username());
        if user.is_empty() {
            return Err(WalError::BadUrl("no user name".into()));
        }
        let host = url
            .host_str()
            .unwrap_or("127.0.0.1")
            .trim_start_matches('[')
            .trim_end_matches(']');
        let database = url.path().trim_start_matches('/');
        let replication = ReplicationConfig::new(
            host,
            user,
            decode(url.password().unwrap_or("")),
            decode(database),
            config.slot.clone(),
            config.slot.as_str(),
        )
        .with_port(url.port().unwrap_or(5432))
        // Values arrive as the server's text output: pin the formats they are parsed in.
        .with_options("-c DateStyle=ISO -c TimeZone=UTC -c extra_float_digits=3")
        .with_status_interval(config.status_interval)
        .with_wakeup_interval(config.status_interval)
        .with_buffer_size(config.read_ahead.max(1))
        .with_application_name(format!("outbox-relay {}", config.slot));
        let mut client = ReplicationClient::connect(replication)
            .await
            .map_err(WalError::from_replication)?;
        client
            .wait_started()
            .await
            .map_err(WalError::from_replication)?;
        Ok(Self {
            client,
            columns: HashMap::new(),
            open: None,
            queued: None,
            confirmed: Lsn::ZERO,
            status_interval: config.status_interval,
        })
    }

    /// The next event; `None` when the stream ended because it was stopped.
    pub async fn next(&mut self) -> Result<Option<WalEvent>, WalError> {
        if let Some(event) = self.queued.take() {
            return Ok(Some(event));
        }
        loop {
            let Some(event) = self
                .client
                .recv()
                .await
                .map_err(WalError::from_replication)?
            else {
                return Ok(None);
            };
            match event {
                ReplicationEvent::Begin {
                    final_lsn,
                    commit_time_micros,
                    ..
                } => {
                    self.open = Some(Open {
                        commit: final_lsn,
                        committed_at: postgres_time(commit_time_micros),
                        announced: false,
                    });
                }
                ReplicationEvent::Commit { lsn, end_lsn, .. } => {
                    let announced = self.open.take().is_some_and(|open| open.announced);
                    return Ok(Some(if announced {
                        WalEvent::Commit {
                            commit: lsn,
                            end: end_lsn,
                        }
                    } else {
                        WalEvent::Idle { position: end_lsn }
                    }));
                }
                ReplicationEvent::XLogData { data, .. } => match pgoutput::decode(data)? {
                    Change::Relation(relation) => {
                        let columns = Columns::of(&relation)?;
                        self.columns.insert(relation.id, columns);
                    }
                    Change::Insert { relation, values } => {
                        let event = match self.columns.get(&relation) {
                            Some(Some(columns)) => WalEvent::Event(columns.event(&values)?),
                            // Another table of the publication: not an outbox row.
                            Some(None) => continue,
                            None => return Err(WalError::UnknownRelation(relation)),
                        };
                        let open = self.open.as_mut().ok_or(WalError::OutsideTransaction)?;
                        if open.announced {
                            return Ok(Some(event));
                        }
                        open.announced = true;
                        self.queued = Some(event);
                        return Ok(Some(WalEvent::Begin {
                            commit: open.commit,
                            committed_at: open.committed_at,
                        }));
                    }
                    Change::Other(_) => {}
                },
                // Inside a transaction the server may already be past its commit: only
                // between transactions is its position safe to confirm.
                ReplicationEvent::KeepAlive { wal_end, .. } if self.open.is_none() => {
                    return Ok(Some(WalEvent::Idle { position: wal_end }))
                }
                ReplicationEvent::Message {
                    transactional: false,
                    lsn,
                    ..
                } if self.open.is_none() => return Ok(Some(WalEvent::Idle { position: lsn })),
                ReplicationEvent::StoppedAt { .. } => return Ok(None),
                _ => {}
            }
        }
    }

    /// Reports that everything up to `position` is safe (published, or kept elsewhere): the
    /// server may remove that WAL, and a restart reads from there. Monotonic: a lower
    /// position than one confirmed before changes nothing.
    pub fn confirm(&mut self, position: Lsn) {
        self.confirmed = self.confirmed.max(position);
        self.client.update_applied_lsn(position);
    }

    /// Stops streaming, once the server was told the last confirmed position (the client
    /// reports it within a status interval, and stopping does not report it again).
    pub async fn stop(mut self) -> Result<(), WalError> {
        let metrics = self.client.metrics();
        let deadline = tokio::time::Instant::now() + 3 * self.status_interval;
        while metrics.last_applied_lsn() < self.confirmed && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let reported = metrics.last_applied_lsn();
        self.client
            .shutdown()
            .await
            .map_err(WalError::from_replication)?;
        if reported < self.confirmed {
            return Err(WalError::Unreported {
                confirmed: self.confirmed,
                reported,
            });
        }
        Ok(())
    }
}

/// A transaction between its Begin and its Commit.
#[derive(Debug, Clone, Copy)]
struct Open {
    commit: Lsn,
    committed_at: DateTime<Utc>,
    /// Whether its Begin was handed out: only once it has an outbox row.
    announced: bool,
}

/// PostgreSQL's times count microseconds from 2000-01-01 UTC.
fn postgres_time(micros: i64) -> DateTime<Utc> {
    const UNIX_TO_POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;
    DateTime::from_timestamp_micros(micros.saturating_add(UNIX_TO_POSTGRES_EPOCH_MICROS))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_postgres_epoch_is_2000() {
        assert_eq!(postgres_time(0).to_rfc3339(), "2000-01-01T00:00:00+00:00");
        assert_eq!(
            postgres_time(1_000_000).to_rfc3339(),
            "2000-01-01T00:00:01+00:00"
        );
    }
}
