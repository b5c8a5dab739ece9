//! The relay's [`Broker`] on NATS JetStream: every event is published with `Nats-Msg-Id` = its
//! event id and counts as sent once the stream acknowledged it.

use async_nats::{
    header::NATS_MESSAGE_ID,
    jetstream::{
        self,
        context::{CreateStreamError, CreateStreamErrorKind, PublishError, PublishErrorKind},
    },
    HeaderMap,
};
use bytes::Bytes;
use futures::{future::BoxFuture, FutureExt};

use super::{ensure_stream, NatsConfig};
use crate::relay::{Broker, Outgoing, RelaySettings, SendError};

pub struct NatsBroker {
    jetstream: jetstream::Context,
}

impl NatsBroker {
    /// A broker whose publish acks (and stream creations) wait at most
    /// [`RelaySettings::send_timeout`], a third of the lease, like the Kafka producer's.
    pub async fn connect(
        config: &NatsConfig,
        settings: &RelaySettings,
    ) -> Result<Self, async_nats::ConnectError> {
        let client = config.connect().await?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(settings.send_timeout())
            .build(client);
        Ok(Self { jetstream })
    }
}

impl Broker for NatsBroker {
    fn send<'a>(&'a self, event: Outgoing<'a>) -> BoxFuture<'a, Result<(), SendError>> {
        async move {
            let mut headers = HeaderMap::new();
            for (name, value) in event.headers.pairs() {
                headers.insert(name, value);
            }
            headers.insert(NATS_MESSAGE_ID, event.headers.id);
            let payload = Bytes::copy_from_slice(event.payload.as_bytes());
            let ack = self
                .jetstream
                .publish_with_headers(event.topic.to_owned(), headers, payload)
                .await
                .map_err(|e| classify_publish(&e))?;
            // A duplicate (the stream had this id already) is a success: the event is there.
            ack.await.map(|_| ()).map_err(|e| classify_publish(&e))
        }
        .boxed()
    }

    fn create_topic<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), SendError>> {
        async move {
            ensure_stream(&self.jetstream, topic)
                .await
                .map(|_| ())
                .map_err(|e| classify_create(&e))
        }
        .boxed()
    }
}

/// The server or the connection being away is an outage; what only this event suffers (too
/// large, no stream for its subject, a refused subject) is the event's fault.
fn classify_publish(error: &PublishError) -> SendError {
    match error.kind() {
        PublishErrorKind::TimedOut
        | PublishErrorKind::BrokenPipe
        | PublishErrorKind::MaxAckPending => SendError::outage(error.to_string()),
        PublishErrorKind::StreamNotFound
        | PublishErrorKind::MaxPayloadExceeded
        | PublishErrorKind::WrongLastMessageId
        | PublishErrorKind::WrongLastSequence
        | PublishErrorKind::Other => SendError::event(error.to_string()),
    }
}

fn classify_create(error: &CreateStreamError) -> SendError {
    match error.kind() {
        CreateStreamErrorKind::TimedOut | CreateStreamErrorKind::JetStreamUnavailable => {
            SendError::outage(error.to_string())
        }
        _ => SendError::event(error.to_string()),
    }
}
