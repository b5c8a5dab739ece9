//! The relay inside order-service (`RELAY_EMBEDDED=true`): the simplest way to run the
//! pattern, a poller in the service that writes the events, kept behind this one module so
//! that it can be moved out to `outbox-processor` by switching a variable.
//!
//! It is the `outbox` crate's relay, the same code the standalone relay runs, with the same
//! guarantees: claims under row locks with a lease, order per aggregate, pauses during a broker
//! outage, parking. Its metrics (`outbox_*`) are on this service's `/metrics`. It publishes
//! this service's own database only; inventory's outbox still needs a relay of its own.

use std::sync::Arc;

use outbox::{
    kafka::{KafkaBroker, KafkaConfig, Producer},
    relay::{Outlet, Relay, RelaySettings},
};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

/// How long the producer may take at shutdown to hand over what it still has queued.
const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub struct EmbeddedRelay {
    relay: Relay,
    producer: Producer,
}

impl EmbeddedRelay {
    /// A relay for the database at `url`, with a producer and a pool of its own.
    pub fn build(
        url: &SecretString,
        kafka: &KafkaConfig,
        settings: RelaySettings,
    ) -> Result<Self, service_kit::StartupError> {
        let broker = KafkaBroker::connect(kafka, &settings)?;
        let producer = broker.producer();
        let outlet = Outlet::new(Arc::new(broker), kafka.topics());
        let relay = Relay::connect("orders", url, settings, outlet)?;
        Ok(Self { relay, producer })
    }

    /// Relays until `shutdown`, then finishes the batch in hand and flushes the producer.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!("relay embedded: this process publishes its own outbox");
        self.relay.start(&shutdown).stopped().await;
        self.producer.flush(FLUSH_TIMEOUT).await;
    }
}
