//! An outbox row as the WAL carries it: an Insert's values, by the column names its Relation
//! gave, turned into the same [`PendingEvent`] the table source reads with `payload::text`.
//! Values are the server's text output, in the formats the stream pins (`DateStyle=ISO`,
//! `TimeZone=UTC`).

use chrono::{DateTime, NaiveDateTime, Utc};
use uuid::Uuid;

use super::{
    pgoutput::{Relation, Value},
    WalError,
};
use crate::relay::PendingEvent;

/// The positions of the outbox's columns in an Insert, by name: the table may have columns
/// the relay does not read, in any order.
#[derive(Debug, Clone)]
pub(super) struct Columns {
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
    pub(super) fn of(relation: &Relation) -> Result<Option<Self>, WalError> {
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

    pub(super) fn event(&self, values: &[Value]) -> Result<PendingEvent, WalError> {
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
}
