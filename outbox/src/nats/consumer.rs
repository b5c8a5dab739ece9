//! The consumer loop on NATS JetStream: one durable pull consumer per topic and service, one
//! message in hand at a time (see the module docs of [`super`] for why), acknowledged only after
//! the handler succeeded or its dead-letter copy was stored.
//!
//! What it does with a message is the consumer core's ([`crate::consume`]), as on Kafka: not
//! an event, or failing for good → a copy on the dead-letter subject with the reason, then the
//! ack; failing for now → the same message again after a backoff, signalling progress so that
//! JetStream does not hand it to another instance; a handler panic → the message back to the
//! stream at once (a negative ack) and this topic's consumer started again.

use std::{sync::Arc, time::Duration};

use async_nats::{
    header::NATS_MESSAGE_ID,
    jetstream::{self, consumer::pull, AckKind},
};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{ensure_stream, stream_name, NatsConfig, ACK_WAIT};
use crate::{
    backoff::Backoff,
    consume::{dead_lettering, handle, Handling, Incoming, Origin},
    envelope::{header, Envelope},
    handler::EventHandler,
};

/// What a service consumes, and under which name.
#[derive(Debug, Clone)]
pub struct NatsConsumerSettings {
    pub nats: NatsConfig,
    /// The consumer group: instances with one name share its messages.
    pub name: String,
    /// Subjects to consume (topic names, see [`NatsConfig::topics`]).
    pub topics: Vec<String>,
}

/// Consumes every topic of `settings` until `shutdown`, each in a task of its own. A task
/// that loses its connection or its consumer starts again after a backoff.
pub async fn run_consumer<H: EventHandler>(
    settings: NatsConsumerSettings,
    handler: H,
    shutdown: CancellationToken,
) {
    let client = match settings.nats.connect().await {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "nats: cannot connect; the consumer does not run");
            return;
        }
    };
    let jetstream = jetstream::new(client);
    let handler = Arc::new(handler);
    let dead_letters = settings.nats.topics().dead_letter_topic(&settings.name);
    let tasks: Vec<_> = settings
        .topics
        .iter()
        .map(|topic| {
            let topic = Topic {
                jetstream: jetstream.clone(),
                name: settings.name.clone(),
                subject: topic.clone(),
                dead_letters: dead_letters.clone(),
            };
            tokio::spawn(topic.run(handler.clone(), shutdown.clone()))
        })
        .collect();
    for task in futures::future::join_all(tasks).await {
        if let Err(error) = task {
            tracing::error!(%error, "nats consumer task failed");
        }
    }
}

/// One topic of one consumer group.
struct Topic {
    jetstream: jetstream::Context,
    name: String,
    subject: String,
    dead_letters: String,
}

/// What became of a message in hand.
enum Outcome {
    /// Acknowledged: handled, or its dead-letter copy stored.
    Acked,
    /// Shutdown came first; not acknowledged, so it comes again.
    Stopped,
}

impl Topic {
    async fn run<H: EventHandler>(self, handler: Arc<H>, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        while !shutdown.is_cancelled() {
            match self.consume(&*handler, &shutdown).await {
                Ok(()) => return,
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(subject = %self.subject, %error, ?delay, "nats consumer stopped; starting again");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Consumes until shutdown (`Ok`) or until the stream of messages fails.
    async fn consume<H: EventHandler>(
        &self,
        handler: &H,
        shutdown: &CancellationToken,
    ) -> Result<(), async_nats::Error> {
        let stream = ensure_stream(&self.jetstream, &self.subject).await?;
        ensure_stream(&self.jetstream, &self.dead_letters).await?;
        let durable = stream_name(&self.name);
        let consumer = stream
            .get_or_create_consumer(
                &durable,
                pull::Config {
                    durable_name: Some(durable.clone()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_ack_pending: 1,
                    ..Default::default()
                },
            )
            .await?;
        let mut messages = consumer.messages().await?;
        tracing::info!(subject = %self.subject, consumer = %durable, "nats consumer started");
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                next = messages.next() => next,
            };
            let message = next.ok_or("the message stream ended")??;
            if let Outcome::Stopped = self.handle(handler, &message, shutdown).await? {
                return Ok(());
            }
        }
    }

    async fn handle<H: EventHandler>(
        &self,
        handler: &H,
        message: &jetstream::Message,
        shutdown: &CancellationToken,
    ) -> Result<Outcome, async_nats::Error> {
        match handle(handler, &Message(message), shutdown).await {
            Handling::Handled => {
                message.ack().await?;
                Ok(Outcome::Acked)
            }
            Handling::Rejected(reason) => self.dead_letter(message, &reason, shutdown).await,
            Handling::Stopped => Ok(Outcome::Stopped),
            Handling::Panicked(reason) => {
                message.ack_with(AckKind::Nak(None)).await?;
                Err(reason.into())
            }
        }
    }

    /// Stores a copy with the reason on the dead-letter subject, then acknowledges the message.
    /// The copy's `Nats-Msg-Id` names the original's stream position, so a copy sent again
    /// (its ack lost, the process restarted) is stored once.
    async fn dead_letter(
        &self,
        message: &jetstream::Message,
        reason: &str,
        shutdown: &CancellationToken,
    ) -> Result<Outcome, async_nats::Error> {
        dead_lettering(Message(message).origin(), reason);
        let position = message.info()?.stream_sequence.to_string();
        let mut headers = message.headers.clone().unwrap_or_default();
        headers.insert(header::DLQ_REASON, reason);
        headers.insert(header::DLQ_TOPIC, message.subject.as_str());
        headers.insert(header::DLQ_OFFSET, position.as_str());
        headers.insert(header::DLQ_GROUP, self.name.as_str());
        headers.insert(
            NATS_MESSAGE_ID,
            format!("{}/{}/{position}", self.name, self.subject),
        );
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        loop {
            let stored = async {
                self.jetstream
                    .publish_with_headers(
                        self.dead_letters.clone(),
                        headers.clone(),
                        message.payload.clone(),
                    )
                    .await?
                    .await
            };
            match stored.await {
                Ok(_) => {
                    message.ack().await?;
                    return Ok(Outcome::Acked);
                }
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, ?delay, "dead-letter publish failed; retrying");
                    message.ack_with(AckKind::Progress).await?;
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(Outcome::Stopped),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}

/// A JetStream message, as the consumer core sees it.
struct Message<'a>(&'a jetstream::Message);

impl Incoming for Message<'_> {
    fn envelope(&self) -> Result<Envelope, String> {
        let headers = self.0.headers.as_ref();
        Envelope::from_parts(
            |name| {
                headers
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().as_bytes())
            },
            Some(&self.0.payload),
        )
    }

    fn origin(&self) -> Origin<'_> {
        let sequence = self.0.info().map_or(0, |info| info.stream_sequence);
        Origin {
            topic: self.0.subject.as_str(),
            partition: None,
            offset: i64::try_from(sequence).unwrap_or(i64::MAX),
        }
    }

    async fn still_working(&self) {
        // Still working on it: JetStream must not hand it to another instance.
        if let Err(error) = self.0.ack_with(AckKind::Progress).await {
            tracing::warn!(%error, "nats: progress signal failed; the message may be redelivered");
        }
    }
}
