//! What a consumer reads out of a broker's message: event id, type and payload.
//!
//! The relay (and Debezium's Outbox Event Router, configured as `docs/debezium.md` shows)
//! puts the outbox row's `payload` in the message value, `aggregateid` in the key, and the
//! [`header`]s in headers: `id`, `type`, `aggregatetype`, `aggregateid`, `schema-version`
//! and `traceparent`. A message without them cannot be deduplicated or dispatched, so it is not an
//! event: the consumer loop dead-letters it.

use serde::de::DeserializeOwned;
use uuid::Uuid;

/// Header names, shared by the relay (writing) and consumers (reading).
pub mod header {
    pub const ID: &str = "id";
    pub const TYPE: &str = "type";
    pub const AGGREGATE_TYPE: &str = "aggregatetype";
    pub const AGGREGATE_ID: &str = "aggregateid";
    pub const TRACEPARENT: &str = "traceparent";
    pub const SCHEMA_VERSION: &str = "schema-version";
    /// Added by a consumer when it dead-letters a message.
    pub const DLQ_REASON: &str = "dlq-reason";
    pub const DLQ_TOPIC: &str = "dlq-original-topic";
    pub const DLQ_PARTITION: &str = "dlq-original-partition";
    pub const DLQ_OFFSET: &str = "dlq-original-offset";
    pub const DLQ_GROUP: &str = "dlq-consumer-group";
}

/// The headers an event is published with: everything a consumer needs besides the payload.
/// The relay writes them from the outbox row's columns.
#[derive(Debug, Clone, Copy)]
pub struct EventHeaders<'a> {
    pub id: &'a str,
    pub event_type: &'a str,
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub schema_version: &'a str,
    /// W3C trace context, when the event was written inside a trace.
    pub traceparent: Option<&'a str>,
}

impl EventHeaders<'_> {
    /// The headers as (name, value) pairs, the optional ones only when present.
    pub fn pairs(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            (header::ID, Some(self.id)),
            (header::TYPE, Some(self.event_type)),
            (header::AGGREGATE_TYPE, Some(self.aggregate_type)),
            (header::AGGREGATE_ID, Some(self.aggregate_id)),
            (header::SCHEMA_VERSION, Some(self.schema_version)),
            (header::TRACEPARENT, self.traceparent),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.map(|v| (key, v)))
    }
}

#[derive(Debug, Clone)]
pub struct Envelope {
    pub id: Uuid,
    pub event_type: String,
    pub aggregate_id: Option<String>,
    pub traceparent: Option<String>,
    pub payload: Vec<u8>,
}

impl Envelope {
    /// Reads the envelope from a message's headers (`header(name)` gives a header's raw value)
    /// and value, or says why this message is not an event we can process. Every broker's
    /// consumer goes through here.
    pub fn from_parts<'m>(
        header: impl Fn(&str) -> Option<&'m [u8]>,
        payload: Option<&[u8]>,
    ) -> Result<Self, String> {
        let header = |name: &str| -> Result<Option<String>, String> {
            match header(name) {
                None => Ok(None),
                Some(bytes) => std::str::from_utf8(bytes)
                    // Debezium's JSON converter quotes string headers; accept both forms.
                    .map(|s| Some(s.trim_matches('"').to_owned()))
                    .map_err(|_| format!("header {name:?} is not UTF-8")),
            }
        };
        let id = header(header::ID)?.ok_or("missing header \"id\"")?;
        let id = Uuid::parse_str(&id).map_err(|e| format!("header \"id\" is not a UUID: {e}"))?;
        let event_type = header(header::TYPE)?.ok_or("missing header \"type\"")?;
        let payload = payload.ok_or("message has no value")?.to_vec();
        Ok(Self {
            id,
            event_type,
            aggregate_id: header(header::AGGREGATE_ID)?,
            traceparent: header(header::TRACEPARENT)?,
            payload,
        })
    }

    /// Parses the payload as `T`. A payload that does not match its declared type will not
    /// match on a retry either: a handler's `?` turns this into a permanent failure (dead
    /// letter, see [`crate::handler::HandleError`]).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, UndecodablePayload> {
        serde_json::from_slice(&self.payload).map_err(|e| {
            UndecodablePayload(format!(
                "payload of {} does not parse: {e}",
                self.event_type
            ))
        })
    }
}

/// A payload that does not parse as its event type.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UndecodablePayload(String);
