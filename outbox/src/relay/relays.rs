//! The relay's front: what a process that relays writes. One broker, shared through one
//! [`Outlet`], and one [`Relay`] per database, started together, stopped together, and the
//! broker flushed once every batch has committed its marks.
//!
//! The standalone relay adds every database it relays; a service that embeds the relay adds
//! its own. An adapter hands over its broker (`kafka::KafkaConfig::relays` builds the whole
//! thing for Kafka); the front names none.

use std::sync::Arc;

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use sqlx::PgPool;

use super::{AnySource, Broker, Outlet, Relay, RelaySettings, Running, Source};
use crate::topics::TopicNames;

/// A process's relays: one broker, one relay per database.
#[derive(Clone)]
pub struct Relays {
    outlet: Outlet,
    settings: RelaySettings,
    databases: Arc<[Relay<AnySource>]>,
}

impl Relays {
    /// Relays that publish through `broker`, to the topics `names` gives, with `settings`.
    /// They relay nothing until a database is added.
    pub fn new(broker: impl Broker, names: TopicNames, settings: RelaySettings) -> Self {
        Self {
            outlet: Outlet::new(Arc::new(broker), names),
            settings,
            databases: Arc::new([]),
        }
    }

    /// Adds the database at `url`, named `name` in logs, metrics and the admin API, polled
    /// ([`Relay::connect`]: it connects on first use).
    pub fn database(
        self,
        name: impl Into<String>,
        url: &SecretString,
    ) -> Result<Self, sqlx::Error> {
        self.database_with(name, url, crate::relay::OutboxTable::new)
    }

    /// Adds the database at `url`, read by the source that `source` makes from the relay's
    /// pool ([`Relay::connect_with`]): `outbox::wal::WalSource` tails its WAL.
    pub fn database_with<S: Source>(
        self,
        name: impl Into<String>,
        url: &SecretString,
        source: impl FnOnce(PgPool) -> S,
    ) -> Result<Self, sqlx::Error> {
        let relay = Relay::connect_with(
            name,
            url,
            self.settings.clone(),
            self.outlet.clone(),
            |pool| AnySource::new(source(pool)),
        )?;
        let databases = self.databases.iter().cloned().chain([relay]).collect();
        Ok(Self { databases, ..self })
    }

    /// Each database's relay, in the order they were added.
    pub fn databases(&self) -> &[Relay<AnySource>] {
        &self.databases
    }

    /// The broker's state and the operator's hold, which every database shares.
    pub fn outlet(&self) -> &Outlet {
        &self.outlet
    }

    /// Starts every database's relay ([`Relay::start`]). [`Running::stopped`] waits for them
    /// after `shutdown`, then flushes the broker for at most its delivery timeout, so nothing
    /// it still queues is dropped at exit.
    pub fn start(&self, shutdown: &CancellationToken) -> Running {
        let mut running =
            Running::flushing(self.outlet.broker.clone(), self.settings.send_timeout());
        for relay in self.databases.iter() {
            running.join(relay.start(shutdown));
        }
        running
    }
}
