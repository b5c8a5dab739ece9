//! The dead-letter topic: a message that is not an event, or fails for good, is copied there
//! with the reason and its origin in headers, and only then is its offset stored.

use std::time::Duration;

use rdkafka::{
    message::{Header, Headers, OwnedHeaders, OwnedMessage},
    producer::FutureRecord,
    Message,
};
use tokio_util::sync::CancellationToken;

use super::Producer;
use crate::{
    backoff::Backoff,
    consume::{dead_lettering, Incoming},
    envelope::header,
};

/// What became of a message that had to be dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DeadLetter {
    /// The broker acknowledged its copy on the dead-letter topic: its offset may be stored.
    Copied,
    /// Stopped (shutdown or revocation) while the copy was still failing: the message must
    /// come again.
    Interrupted,
}

/// Copies the message, with the reason and its origin in headers, to the dead-letter topic.
pub(super) async fn dead_letter(
    producer: &Producer,
    topic: &str,
    group: &str,
    message: &OwnedMessage,
    reason: &str,
    stop: &CancellationToken,
) -> DeadLetter {
    dead_lettering(message.origin(), reason);
    let mut headers = OwnedHeaders::new();
    if let Some(original) = message.headers() {
        for h in original.iter() {
            headers = headers.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    let (partition, offset) = (
        message.partition().to_string(),
        message.offset().to_string(),
    );
    for (key, value) in [
        (header::DLQ_REASON, reason),
        (header::DLQ_TOPIC, message.topic()),
        (header::DLQ_PARTITION, partition.as_str()),
        (header::DLQ_OFFSET, offset.as_str()),
        (header::DLQ_GROUP, group),
    ] {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    // The offset is stored after this returns `Copied`, so the copy must be acknowledged
    // first: retry until it is, or until stopped (then the message is delivered again).
    loop {
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(topic).headers(headers.clone());
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        let sent = tokio::select! {
            // Stop waiting: the copy may still arrive, and the message then comes again and
            // is copied twice, which a dead-letter topic allows (at least once).
            _ = stop.cancelled() => return DeadLetter::Interrupted,
            sent = producer.send(record, Duration::from_secs(10)) => sent,
        };
        match sent {
            Ok(()) => return DeadLetter::Copied,
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, ?delay, "dead-letter publish failed; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return DeadLetter::Interrupted,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}
