//! Wiring: one producer for the process, one relay loop per source database, one HTTP port.

use outbox::{kafka::KafkaBroker, relay::Relays};
use service_kit::{http::Server, StartupError};
use tokio_util::sync::CancellationToken;

use crate::{config::Config, routes, state::AppState};

pub struct Application {
    server: Server,
    state: AppState,
    /// How it reads the outboxes, for the log (`RELAY_MODE`).
    mode: &'static str,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let broker = KafkaBroker::connect(&config.kafka, &config.relay)?;
        let producer = broker.producer();
        let mut relays = Relays::new(broker, config.kafka.topics(), config.relay);
        for source in config.databases {
            relays = config.mode.add(relays, &source.name, &source.url)?;
        }
        let server = Server::bind(&config.http).await?;
        Ok(Self {
            mode: config.mode.name(),
            server,
            state: AppState {
                relays,
                producer,
                admin_token: config.admin_token,
            },
        })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StartupError> {
        tracing::info!(
            port = self.port(),
            relays = self.state.relays.databases().len(),
            mode = self.mode,
            "outbox-processor listening"
        );
        let running = self.state.relays.start(&shutdown);
        let served = self
            .server
            .serve(routes::router(self.state), shutdown.clone())
            .await;
        shutdown.cancel();
        // Every batch commits its marks, then the producer hands over anything still queued.
        running.stopped().await;
        served.map_err(Into::into)
    }
}
