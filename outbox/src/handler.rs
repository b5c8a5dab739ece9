//! The consumer's side of a handler: what a service implements to react to events, and how
//! it says that an event failed, which decides what the consumer core ([`crate::consume`]) does
//! with the message: retry it, or dead-letter it.

use std::future::Future;

use crate::envelope::{Envelope, UndecodablePayload};

/// How a handler failed, which decides what the loop does with the message.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Will fail again on every retry (bad payload, unknown type): dead-letter it.
    #[error("permanent: {0}")]
    Permanent(String),
    /// May work later (database or network down): retry the same message with backoff.
    #[error("transient: {0}")]
    Transient(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<sqlx::Error> for HandleError {
    fn from(e: sqlx::Error) -> Self {
        // A violated constraint (SQLSTATE class 23) means this event conflicts with the data,
        // and retrying would block the partition forever; everything else is worth a retry.
        match &e {
            sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("23")) => {
                HandleError::Permanent(format!("constraint violated: {db}"))
            }
            _ => HandleError::Transient(Box::new(e)),
        }
    }
}

impl From<UndecodablePayload> for HandleError {
    fn from(e: UndecodablePayload) -> Self {
        HandleError::Permanent(e.to_string())
    }
}

impl HandleError {
    /// A failure of a store or a network that may work on a retry, for stores this crate does
    /// not know (a MongoDB, an HTTP API): `.map_err(HandleError::transient)?`.
    pub fn transient(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        HandleError::Transient(Box::new(error))
    }
}

/// A service's business reaction to events. Implementations apply the event and record it in
/// the inbox in one transaction, so calling `handle` twice with one event changes nothing the
/// second time.
pub trait EventHandler: Send + Sync + 'static {
    fn handle(&self, event: &Envelope) -> impl Future<Output = Result<(), HandleError>> + Send;
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn a_payload_of_the_wrong_shape_is_permanent() {
        let id = Uuid::now_v7().to_string();
        let headers = [("id", id.as_bytes()), ("type", b"T".as_slice())];
        let header = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        let e = Envelope::from_parts(header, Some(b"[1]")).unwrap();
        #[derive(Debug, serde::Deserialize)]
        struct Placed {
            #[allow(dead_code)]
            order_id: Uuid,
        }
        let err = HandleError::from(e.decode::<Placed>().unwrap_err());
        assert!(matches!(err, HandleError::Permanent(_)));
    }
}
