//! Wiring: one producer for the process, one relay loop per source database, one HTTP port.

use std::sync::Arc;

use rdkafka::producer::Producer;
use shared::{
    http::Server,
    kafka::{self, Publisher},
    StartupError,
};
use tokio_util::sync::CancellationToken;

use crate::{
    config::Config,
    relay::{Publishing, Relay},
    routes,
    state::AppState,
};

pub struct Application {
    server: Server,
    state: AppState,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        // Deliveries must end well within the lease (see `relay`), so the producer gets a third.
        let send_timeout = config.relay.send_timeout().as_millis().to_string();
        let mut producer = kafka::producer_config(&config.kafka);
        producer.set("message.timeout.ms", send_timeout);
        let publisher = Publisher::new(producer)?;
        let publishing = Publishing::kafka(publisher.clone(), config.kafka.clone());
        let mut relays = Vec::with_capacity(config.databases.len());
        for source in config.databases {
            // Per claim loop a claim transaction and a LISTEN connection; plus the cleaner,
            // the gauges and health checks.
            let connections = u32::try_from(config.relay.pipeline * 2 + 2).unwrap_or(u32::MAX);
            let pool = shared::db::connect_lazy(&source.url, connections, config.relay.lease)?;
            relays.push(Relay::new(
                source.name,
                pool,
                config.relay.clone(),
                publishing.clone(),
            ));
        }
        let server = Server::bind(&config.http).await?;
        Ok(Self {
            server,
            state: AppState {
                relays: Arc::new(relays),
                publisher,
                outage: publishing.outage,
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
            relays = self.state.relays.len(),
            "outbox-processor listening"
        );
        let mut workers = Vec::new();
        for relay in self.state.relays.iter() {
            workers.push(tokio::spawn(relay.clone().run(shutdown.clone())));
            workers.push(tokio::spawn(relay.clone().run_cleaner(shutdown.clone())));
            workers.push(tokio::spawn(relay.clone().run_gauges(shutdown.clone())));
        }
        let producer = self.state.publisher.producer().producer;
        let served = self
            .server
            .serve(routes::router(self.state), shutdown.clone())
            .await;
        shutdown.cancel();
        for worker in workers {
            if let Err(error) = worker.await {
                tracing::error!(%error, "relay task panicked");
            }
        }
        // Every batch has committed its marks by now; flush hands over anything still queued.
        let flushed =
            tokio::task::spawn_blocking(move || producer.flush(std::time::Duration::from_secs(10)))
                .await;
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::warn!("producer flush did not complete");
        }
        served.map_err(Into::into)
    }
}
