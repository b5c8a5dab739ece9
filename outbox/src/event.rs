//! What an event is to the pattern: a payload that knows its type, its aggregate and the
//! aggregate's id. The writer fills the outbox row's columns from it; the application's own
//! event types (for the shop, the `contracts` crate) implement it.

use serde::{de::DeserializeOwned, Serialize};

/// Implemented by every event payload, so the outbox writer can fill the Debezium columns
/// (`aggregatetype`, `aggregateid`, `type`) without the caller repeating them.
pub trait DomainEvent: Serialize + DeserializeOwned {
    /// The `type` column and header, e.g. `OrderPlaced`.
    const TYPE: &'static str;
    /// The `aggregatetype` column; the relay derives the topic from it.
    const AGGREGATE_TYPE: &'static str;
    /// Version of the payload's shape, sent as the `schema-version` header. Bump it when a
    /// change is not backwards compatible, so consumers can tell old and new payloads apart.
    const SCHEMA_VERSION: i32 = 1;
    /// The `aggregateid` column, which becomes the Kafka message key.
    fn aggregate_id(&self) -> String;
}
