//! The consumer core: what every broker's consumer loop does with one message, written once.
//!
//! "At least once" is made safe here. For each message, in its partition's (or subject's)
//! order, the adapter's loop calls [`handle`], which:
//! 1. turns the message into an [`Envelope`], or gives it up as not an event
//!    ([`Handling::Rejected`]);
//! 2. calls the service's [`EventHandler`], which applies the event and records it in the
//!    inbox ([`crate::inbox`]) in one database transaction;
//! 3. retries a transient failure (the database down) on the same message with backoff, so
//!    nothing is skipped, telling the broker it is still at work ([`Incoming::still_working`]);
//!    a permanent one (a payload that will never parse) is [`Handling::Rejected`] with the
//!    reason, and the loop copies the message to its dead-letter topic so that one bad
//!    message cannot stop the partition.
//!
//! The adapter acknowledges a message (stores its Kafka offset, acks it on JetStream) **only
//! after** [`Handling::Handled`], or after its dead-letter copy was stored. A crash before the
//! acknowledgement redelivers the message, and the inbox makes that a no-op.
//!
//! A handler that panics has a bug, not a bad message: [`Handling::Panicked`] makes the
//! adapter's consumer stop without acknowledging and start again, so the message comes again,
//! loudly, instead of the service going on without it. The adapters are
//! `kafka::run_consumer` and `nats::run_consumer`; this module names neither.

use std::{future::Future, panic::AssertUnwindSafe, time::Duration};

use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    backoff::Backoff,
    envelope::Envelope,
    handler::{EventHandler, HandleError},
};

/// A message as the consumer core sees it, whatever broker it came from.
pub trait Incoming: Send + Sync {
    /// The event in the message, or why it is not one.
    fn envelope(&self) -> Result<Envelope, String>;

    /// Where it came from: its topic, and its position there, for logs and metrics.
    fn origin(&self) -> Origin<'_>;

    /// Tells the broker the message is still being worked on (between retries), so that it is
    /// not handed to another instance meanwhile. Kafka needs nothing: a partition has one owner.
    fn still_working(&self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}

/// Where a message came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub topic: &'a str,
    /// Kafka's partition; `None` where the broker has none (a JetStream subject).
    pub partition: Option<i32>,
    /// The offset, or the stream sequence.
    pub offset: i64,
}

/// What became of a message in the consumer core: what its loop does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handling {
    /// Applied (or recognised as applied before): acknowledge it.
    Handled,
    /// Not an event, or failing for good: copy it to the dead-letter topic with the reason,
    /// then acknowledge it.
    Rejected(String),
    /// Stopped (shutdown, or a Kafka partition taken away) while retrying: leave it
    /// unacknowledged, so it comes again, here or at the new owner.
    Stopped,
    /// The handler panicked: leave it unacknowledged and restart the consumer.
    Panicked(String),
}

/// Runs `handler` on `message` until it succeeds, fails for good, panics, or `stop` comes.
pub async fn handle<H: EventHandler>(
    handler: &H,
    message: &impl Incoming,
    stop: &CancellationToken,
) -> Handling {
    let envelope = match message.envelope() {
        Ok(envelope) => envelope,
        Err(reason) => return Handling::Rejected(reason),
    };
    let origin = message.origin();
    let span = tracing::info_span!(
        "event",
        id = %envelope.id,
        r#type = %envelope.event_type,
        topic = origin.topic,
        partition = origin.partition,
        offset = origin.offset,
        trace_id = envelope.traceparent.as_deref().map(crate::trace::trace_id).unwrap_or(""),
    );
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
    async move {
        loop {
            let handled = AssertUnwindSafe(handler.handle(&envelope))
                .catch_unwind()
                .await;
            match handled {
                Ok(Ok(())) => {
                    metrics::counter!("events_consumed_total", "type" => envelope.event_type.clone())
                        .increment(1);
                    return Handling::Handled;
                }
                Ok(Err(HandleError::Permanent(reason))) => return Handling::Rejected(reason),
                Ok(Err(HandleError::Transient(error))) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, ?delay, "event handling failed; retrying");
                    message.still_working().await;
                    tokio::select! {
                        _ = stop.cancelled() => return Handling::Stopped,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Err(panic) => return Handling::Panicked(panic_message(panic.as_ref())),
            }
        }
    }
    // The span follows the future across awaits (an `enter` guard would not).
    .instrument(span)
    .await
}

/// Counts a message on its way to the dead-letter topic, and says why.
pub fn dead_lettering(origin: Origin<'_>, reason: &str) {
    tracing::error!(
        reason,
        topic = origin.topic,
        partition = origin.partition,
        offset = origin.offset,
        "dead-lettering message"
    );
    metrics::counter!("events_dead_lettered_total", "topic" => origin.topic.to_owned())
        .increment(1);
}

/// What a panic said, for the log.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    format!("handler panicked: {message}")
}
