//! The relay inside order-service (`RELAY_EMBEDDED=true`): the simplest way to run the
//! pattern, a relay in the service that writes the events, kept behind this one module so
//! that it can be moved out to `outbox-processor` by switching a variable. It polls the
//! table, or tails the WAL with `RELAY_MODE=wal`.
//!
//! It is the `outbox` crate's relay, the same code the standalone relay runs, with the same
//! guarantees: claims under row locks with a lease, order per aggregate, pauses during a broker
//! outage, parking. Its metrics (`outbox_*`) are on this service's `/metrics`. It publishes
//! this service's own database only; inventory's outbox still needs a relay of its own.

use outbox::{
    kafka::KafkaConfig,
    relay::{RelaySettings, Relays},
};
use secrecy::SecretString;
use service_kit::relay_mode::RelayMode;
use tokio_util::sync::CancellationToken;

pub struct EmbeddedRelay {
    relays: Relays,
}

impl EmbeddedRelay {
    /// A relay for the database at `url`, with a producer and a pool of its own.
    pub fn build(
        url: &SecretString,
        kafka: &KafkaConfig,
        settings: RelaySettings,
        mode: &RelayMode,
    ) -> Result<Self, service_kit::StartupError> {
        let relays = mode.add(kafka.relays(settings)?, "orders", url)?;
        Ok(Self { relays })
    }

    /// Relays until `shutdown`, then finishes the batch in hand and flushes the producer.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!("relay embedded: this process publishes its own outbox");
        self.relays.start(&shutdown).stopped().await;
    }
}
