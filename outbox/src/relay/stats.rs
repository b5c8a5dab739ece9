//! What the status page and the `outbox_*` gauges show of one database's outbox, whichever
//! [`Source`](super::Source) reads it (each source counts its own way); a source that tails a
//! log (the WAL) adds where it stands in it.

/// Pending work of one database, as the status page and the gauges show it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stats {
    pub pending: i64,
    pub parked: i64,
    pub oldest_pending_age_seconds: f64,
    pub published_per_second: f64,
    /// Where a source that tails the database's log stands in it; none for polling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<LogStats>,
}

/// Where a source that tails the database's log stands: what it costs the database, and how
/// far behind the newest commit it is.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogStats {
    pub reader: Reading,
    /// Log the database keeps for this source and cannot remove until it confirms, in bytes.
    /// It grows while the relay is down or stuck: the number an operator watches.
    pub retained_bytes: i64,
    /// Log written since the last position the source confirmed, in bytes: its lag to the
    /// newest commit.
    pub lag_bytes: i64,
    /// Events read from the log and not yet published: they count in `pending` too.
    pub read_ahead: usize,
}

/// What the reader of a log-tailing source does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Reading {
    /// Not reading yet, or reconnecting after an error (the relay's log says which).
    Connecting,
    /// It reads the log.
    Streaming,
    /// Another instance reads it; this one takes over when that one goes.
    Standby,
    /// Stopped on shutdown.
    Stopped,
}
