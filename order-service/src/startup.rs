//! Wiring: connect, migrate, bind, then serve HTTP and run the worker (and, when embedded,
//! the relay) until shutdown.
//!
//! `build` binds the listener itself (port 0 in tests) so a test can learn the port before
//! the app runs, and `run` takes the shutdown token, so tests stop the app when they choose.

use contracts::RESERVATION;
use outbox::AfterInsert;
use service_kit::{config::ConfigError, relay_mode::RelayMode, service::PgService, StartupError};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{
    config::{Config, Publisher},
    consumer, db,
    relay::EmbeddedRelay,
    routes,
};

pub struct Application {
    service: PgService,
    relay: Option<EmbeddedRelay>,
}

impl Application {
    /// Refuses an embedded relay that polls while rows are removed after their insert: it
    /// would never see an event, and every order would wait for an answer that never comes.
    /// In WAL mode it reads each insert from the WAL, so removed rows are fine.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let relay = match config.relay {
            Publisher::Standalone => None,
            Publisher::Embedded(embedded)
                if embedded.mode == RelayMode::Polling
                    && config.service.writer.after_insert() == AfterInsert::Remove =>
            {
                return Err(ConfigError {
                    name: "OUTBOX_REMOVE_AFTER_INSERT".into(),
                    value: "true".into(),
                    reason: "the embedded relay (RELAY_EMBEDDED=true) polls the outbox table and \
                             would find no row to publish; removed rows need RELAY_MODE=wal or \
                             Debezium"
                        .into(),
                }
                .into())
            }
            Publisher::Embedded(embedded) => Some(EmbeddedRelay::build(
                &config.service.database_url,
                &config.service.kafka,
                embedded.settings,
                &embedded.mode,
            )?),
        };
        let service = PgService::build(
            config.service,
            &db::MIGRATOR,
            consumer::CONSUMER,
            &[RESERVATION],
        )
        .await?;
        Ok(Self { service, relay })
    }

    pub fn port(&self) -> u16 {
        self.service.port()
    }

    pub fn pool(&self) -> PgPool {
        self.service.state.pool.clone()
    }

    /// Serves and consumes until `shutdown`. An embedded relay stops after them: it finishes
    /// its batch in hand and flushes; whatever is still unpublished waits in the outbox for the
    /// next start (or for another instance's relay).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StartupError> {
        let relay_stop = CancellationToken::new();
        let relay = self
            .relay
            .map(|relay| tokio::spawn(relay.run(relay_stop.clone())));
        let handler = consumer::ReservationHandler {
            pool: self.service.state.pool.clone(),
            writer: self.service.state.writer,
        };
        let router = routes::router(self.service.state.clone());
        let served = self.service.run(router, handler, shutdown.clone()).await;
        relay_stop.cancel();
        if let Some(relay) = relay {
            if let Err(error) = relay.await {
                tracing::error!(%error, "embedded relay panicked");
            }
        }
        served
    }
}
