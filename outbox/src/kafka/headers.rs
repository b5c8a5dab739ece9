//! The event's headers on a Kafka record, and the [`Envelope`] read back from one: the
//! Kafka side of [`crate::envelope`].

use rdkafka::message::{Header, Headers, Message, OwnedHeaders};

use crate::envelope::{Envelope, EventHeaders};

/// The event's headers ([`EventHeaders::pairs`]) as a Kafka record's headers.
pub fn record_headers(headers: &EventHeaders<'_>) -> OwnedHeaders {
    let mut record = OwnedHeaders::new_with_capacity(6);
    for (key, value) in headers.pairs() {
        record = record.insert(Header {
            key,
            value: Some(value),
        });
    }
    record
}

/// [`Envelope::from_parts`] of a Kafka message.
pub fn envelope<M: Message>(message: &M) -> Result<Envelope, String> {
    let headers = message.headers();
    Envelope::from_parts(
        |name| {
            headers
                .and_then(|h| h.iter().find(|h| h.key == name))
                .and_then(|h| h.value)
        },
        message.payload(),
    )
}

#[cfg(test)]
mod tests {
    use rdkafka::message::{OwnedMessage, Timestamp};
    use uuid::Uuid;

    use super::*;

    fn message(headers: &[(&str, &str)], payload: &[u8]) -> OwnedMessage {
        let mut h = OwnedHeaders::new();
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        OwnedMessage::new(
            Some(payload.to_vec()),
            None,
            "t".into(),
            Timestamp::NotAvailable,
            0,
            0,
            Some(h),
        )
    }

    #[test]
    fn reads_id_type_and_payload_from_headers() {
        let id = Uuid::now_v7();
        let m = message(
            &[("id", &format!("\"{id}\"")), ("type", "OrderPlaced")],
            b"{}",
        );
        let e = envelope(&m).unwrap();
        assert_eq!(e.id, id);
        assert_eq!(e.event_type, "OrderPlaced");
        assert_eq!(e.payload, b"{}");
    }

    #[test]
    fn rejects_messages_that_are_not_events() {
        let no_id = message(&[("type", "OrderPlaced")], b"{}");
        assert!(envelope(&no_id).unwrap_err().contains("id"));
        let bad_id = message(&[("id", "nope"), ("type", "X")], b"{}");
        assert!(envelope(&bad_id).unwrap_err().contains("not a UUID"));
    }
}
