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

use chrono::{DateTime, NaiveDateTime, Utc};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, ReplicationEvent};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;
use uuid::Uuid;

use super::{
    pgoutput::{self, Change, Relation, Value},
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

/// The positions of the outbox's columns in an Insert, by name: the table may have columns
/// the relay does not read, in any order.
#[derive(Debug, Clone)]
struct Columns {
    id: Column,
    aggregatetype: Column,
    aggregateid: Column,
    event_type: Column,
    payload: Column,
    tracingspancontext: Option<Column>,
    schema_version: Option<Column>,
    seq: Column,
    attempts: Option<Column>,
    created_at: Column,
}

/// One column: where its value is in an Insert, and its name for errors.
#[derive(Debug, Clone, Copy)]
struct Column {
    at: usize,
    name: &'static str,
}

impl Columns {
    /// `None` for a table that is not the outbox.
    fn of(relation: &Relation) -> Result<Option<Self>, WalError> {
        if relation.name != "outbox" {
            return Ok(None);
        }
        let find = |name: &'static str| {
            let at = relation.columns.iter().position(|c| c == name)?;
            Some(Column { at, name })
        };
        let need = |name: &'static str| find(name).ok_or(WalError::MissingColumn(name));
        Ok(Some(Self {
            id: need("id")?,
            aggregatetype: need("aggregatetype")?,
            aggregateid: need("aggregateid")?,
            event_type: need("type")?,
            payload: need("payload")?,
            tracingspancontext: find("tracingspancontext"),
            schema_version: find("schema_version"),
            seq: need("seq")?,
            attempts: find("attempts"),
            created_at: need("created_at")?,
        }))
    }

    fn event(&self, values: &[Value]) -> Result<PendingEvent, WalError> {
        let row = Row(values);
        let id = row.required(self.id)?;
        let created_at = row.required(self.created_at)?;
        Ok(PendingEvent {
            id: Uuid::parse_str(&id).map_err(|e| WalError::BadValue("id", e.to_string()))?,
            aggregatetype: row.required(self.aggregatetype)?,
            aggregateid: row.required(self.aggregateid)?,
            event_type: row.required(self.event_type)?,
            payload: row.required(self.payload)?,
            tracingspancontext: match self.tracingspancontext {
                Some(column) => row.text(column)?,
                None => None,
            },
            // The columns' own defaults when a table predates them.
            schema_version: row.number_or(self.schema_version, 1)?,
            seq: row.number(self.seq)?,
            attempts: row.number_or(self.attempts, 0)?,
            created_at: parse_timestamptz(&created_at)
                .ok_or(WalError::BadValue("created_at", created_at))?,
        })
    }
}

/// An Insert's values, read as the outbox's columns.
struct Row<'a>(&'a [Value]);

impl Row<'_> {
    fn text(&self, column: Column) -> Result<Option<String>, WalError> {
        match self.0.get(column.at) {
            Some(Value::Text(bytes)) => String::from_utf8(bytes.to_vec())
                .map(Some)
                .map_err(|_| WalError::BadValue(column.name, "not UTF-8".into())),
            Some(Value::Null) => Ok(None),
            Some(Value::Unchanged) | None => Err(WalError::BadValue(column.name, "missing".into())),
        }
    }

    fn required(&self, column: Column) -> Result<String, WalError> {
        self.text(column)?
            .ok_or_else(|| WalError::BadValue(column.name, "null".into()))
    }

    fn number<T: std::str::FromStr<Err = std::num::ParseIntError>>(
        &self,
        column: Column,
    ) -> Result<T, WalError> {
        self.required(column)?
            .parse()
            .map_err(|e: std::num::ParseIntError| WalError::BadValue(column.name, e.to_string()))
    }

    /// The number in `column`, or `default` when the table has no such column or it is null.
    fn number_or<T: std::str::FromStr<Err = std::num::ParseIntError>>(
        &self,
        column: Option<Column>,
        default: T,
    ) -> Result<T, WalError> {
        match column {
            Some(column) if self.text(column)?.is_some() => self.number(column),
            _ => Ok(default),
        }
    }
}

/// A `timestamptz` in `DateStyle=ISO` at `TimeZone=UTC`: `2026-12-04 03:11:39.122368+00`.
fn parse_timestamptz(text: &str) -> Option<DateTime<Utc>> {
    let local = text.strip_suffix("+00")?;
    NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
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
    fn timestamps_parse_in_the_pinned_format_only() {
        let t = parse_timestamptz("2026-12-04 03:11:39.122368+00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-04T03:11:39.122368+00:00");
        let whole = parse_timestamptz("2026-12-04 03:11:39+00").unwrap();
        assert_eq!(whole.timestamp_subsec_micros(), 0);
        assert_eq!(parse_timestamptz("2026-12-04 03:11:39.1+01"), None);
        assert_eq!(parse_timestamptz("Fri Dec 04 03:11:39 2026 UTC"), None);
    }

    #[test]
    fn the_postgres_epoch_is_2000() {
        assert_eq!(postgres_time(0).to_rfc3339(), "2000-01-01T00:00:00+00:00");
        assert_eq!(
            postgres_time(1_000_000).to_rfc3339(),
            "2000-01-01T00:00:01+00:00"
        );
    }
}
