//! Reading the outbox from PostgreSQL's write-ahead log instead of polling the table
//! (feature `wal`): the groundwork of the relay's WAL mode.
//!
//! Polling costs a claim query and an update per row, and its order is `seq` order. Logical
//! replication hands over each committed insert once, in commit order, and costs the database
//! one walsender. Three parts, each usable alone:
//!
//! - [`slot`]: the publication (inserts into `outbox`, nothing else) and the replication slot,
//!   what the slot retains, and the database's `max_slot_wal_keep_size`.
//! - [`OutboxStream`] (`stream.rs`): the committed inserts as [`relay::PendingEvent`]s, framed
//!   by their transactions, with the position to confirm after each; a restart reads again
//!   from the last confirmed position, so confirming only what the broker acknowledged keeps
//!   the relay at least once.
//! - `pgoutput.rs`: the decoder of the two `pgoutput` messages that matter here, and
//!   `row.rs`: an Insert's values as the outbox's columns.
//!
//! The replication client is `pgwire-replication`: it reports to the server exactly the
//! position it is told is safe and nothing else, and when the relay stops taking events it
//! stops reading while still answering the server, so a slow broker bounds memory instead
//! of breaking the connection.
//!
//! [`relay::PendingEvent`]: crate::relay::PendingEvent

mod commits;
mod held;
mod pgoutput;
mod reader;
mod row;
pub mod slot;
mod source;
mod stats;
mod stream;
mod throughput;
mod window;

pub use pgoutput::DecodeError;
pub use pgwire_replication::Lsn;
pub use slot::{SlotCreated, SlotState, WalKeep};
pub use source::{Claimed, ReaderState, WalSettings, WalSource};
pub use stream::{OutboxStream, StreamConfig, WalEvent};

/// Where the WAL relay keeps the events it could not publish, and the later events of their
/// aggregates (`migrations/0006_outbox_wal_held.sql`, and [`WalSource`]).
pub(crate) const HELD_TABLE: &str = "outbox_wal_held";

/// What can go wrong reading the outbox from the WAL.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(
        "{0:?} is not a valid slot name (lower-case letters, digits, underscores; at most 63)"
    )]
    BadName(String),
    #[error("not a postgres:// URL the WAL stream can use: {0}")]
    BadUrl(String),
    /// Slot names are the cluster's: one of this name reads another database.
    #[error("the replication slot {0} belongs to another database of the cluster")]
    SlotElsewhere(String),
    /// Stopped before the server was told the last confirmed position: the next reader
    /// gets again what was confirmed since (duplicates, never loss).
    #[error("stopped with {confirmed} confirmed but only {reported} reported to the server")]
    Unreported { confirmed: Lsn, reported: Lsn },
    /// Another connection streams from the slot: another relay instance, which this one
    /// stands by for.
    #[error("the replication slot is in use by another connection: {0}")]
    SlotInUse(String),
    /// The slot is gone, or PostgreSQL invalidated it (it removed WAL the slot still needed).
    /// Events committed since the slot's last confirmed position are not in any slot now:
    /// they are still rows of the outbox table (unless the writer removes them), and must be
    /// published from there before a new slot takes over.
    #[error("the replication slot cannot be read: {0}")]
    SlotUnusable(String),
    #[error("replication: {0}")]
    Replication(pgwire_replication::PgWireError),
    /// The server ended the stream without being asked to.
    #[error("the server ended the replication stream")]
    Ended,
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("an insert into a table the stream was not told about (relation {0})")]
    UnknownRelation(u32),
    #[error("an insert outside a transaction: the stream is not what it should be")]
    OutsideTransaction,
    #[error("the outbox table has no column {0}")]
    MissingColumn(&'static str),
    #[error("outbox column {0}: {1}")]
    BadValue(&'static str, String),
}

impl WalError {
    /// Sorts the client's errors by the SQLSTATE the server gave, which it passes on only in
    /// the message text.
    fn from_replication(error: pgwire_replication::PgWireError) -> Self {
        let sqlstate = match &error {
            pgwire_replication::PgWireError::Server(message) => message
                .rsplit_once("(SQLSTATE ")
                .and_then(|(_, code)| code.strip_suffix(')'))
                .map(str::to_owned),
            _ => None,
        };
        let message = error.to_string();
        match sqlstate.as_deref() {
            // object_in_use: "replication slot ... is active for PID ..."
            Some("55006") => Self::SlotInUse(message),
            // object_not_in_prerequisite_state: "cannot read from logical replication slot"
            // (invalidated); undefined_object: "replication slot ... does not exist". The same
            // codes name other things too (a missing publication, wal_level), which are not
            // the slot's fault.
            Some("55000") if message.contains("cannot read from logical replication slot") => {
                Self::SlotUnusable(message)
            }
            Some("42704") if message.contains("replication slot") => Self::SlotUnusable(message),
            _ => Self::Replication(error),
        }
    }
}
