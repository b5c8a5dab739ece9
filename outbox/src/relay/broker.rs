//! The relay's seam to the broker: the one place where an outbox row leaves the database.
//!
//! The relay publishes through the small [`Broker`] trait; `kafka::KafkaBroker` (feature
//! `kafka`) is the implementation the shop runs with, and any other broker is one more. Tests wrap it to fail, delay or hang chosen sends, which is how the relay's
//! guarantees are checked under faults a real broker produces only by luck.
//!
//! A failed send says whose fault it was ([`Fault`]), because the relay answers the two
//! differently: a broker that is down pauses publishing and costs no event an attempt; an
//! event the broker will not take counts an attempt and is parked after `RELAY_MAX_ATTEMPTS`.

use futures::future::BoxFuture;

use crate::envelope::EventHeaders;

/// One outbox row on its way to the broker.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub topic: &'a str,
    /// The aggregate id: one partition per aggregate, so the broker keeps its order.
    pub key: &'a str,
    pub payload: &'a str,
    pub headers: EventHeaders<'a>,
}

/// Whose fault a failed send was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The broker or the network: every event would fail alike (unreachable, timed out, no
    /// leader, the producer rejected). The relay pauses; the event keeps its attempts.
    Outage,
    /// This event: too large, malformed, its topic not allowed or not creatable. It counts an
    /// attempt, and is parked after `RELAY_MAX_ATTEMPTS`.
    Event,
}

/// A send (or a topic creation) that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct SendError {
    pub fault: Fault,
    pub reason: String,
}

impl SendError {
    pub fn outage(reason: impl Into<String>) -> Self {
        Self {
            fault: Fault::Outage,
            reason: reason.into(),
        }
    }

    pub fn event(reason: impl Into<String>) -> Self {
        Self {
            fault: Fault::Event,
            reason: reason.into(),
        }
    }
}

/// Where the relay publishes. `send` resolves once the broker acknowledged the event (or
/// refused it); the relay never has two events of one aggregate in flight.
pub trait Broker: Send + Sync + 'static {
    fn send<'a>(&'a self, event: Outgoing<'a>) -> BoxFuture<'a, Result<(), SendError>>;

    /// Makes sure `topic` exists. Called outside any claim transaction: it may be slow.
    fn create_topic<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), SendError>>;

    /// Hands over whatever the broker's client still queues, for at most `timeout`; called
    /// once at shutdown, after the last batch marked. A client that queues nothing (every
    /// `send` waits for its acknowledgement) has nothing to do.
    fn flush(&self, timeout: std::time::Duration) -> BoxFuture<'_, ()> {
        let _ = timeout;
        Box::pin(async {})
    }
}
