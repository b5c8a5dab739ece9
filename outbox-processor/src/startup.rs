//! Wiring: one producer for the process, one relay loop per source database, one HTTP port.

use std::sync::Arc;

use outbox::{
    kafka::KafkaBroker,
    relay::{Outlet, Relay},
};
use service_kit::{http::Server, StartupError};
use tokio_util::sync::CancellationToken;

use crate::{config::Config, routes, state::AppState};

pub struct Application {
    server: Server,
    state: AppState,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let broker = KafkaBroker::connect(&config.kafka, &config.relay)?;
        let producer = broker.producer();
        let outlet = Outlet::new(Arc::new(broker), config.kafka.topics());
        let relays = config
            .databases
            .into_iter()
            .map(|source| {
                Relay::connect(
                    source.name,
                    &source.url,
                    config.relay.clone(),
                    outlet.clone(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let server = Server::bind(&config.http).await?;
        Ok(Self {
            server,
            state: AppState {
                relays: Arc::new(relays),
                producer,
                outage: outlet.outage,
                hold: outlet.hold,
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
        let running: Vec<_> = self
            .state
            .relays
            .iter()
            .map(|relay| relay.start(&shutdown))
            .collect();
        let producer = self.state.producer.clone();
        let served = self
            .server
            .serve(routes::router(self.state), shutdown.clone())
            .await;
        shutdown.cancel();
        for relay in running {
            relay.stopped().await;
        }
        // Every batch has committed its marks by now; flush hands over anything still queued.
        producer.flush(std::time::Duration::from_secs(10)).await;
        served.map_err(Into::into)
    }
}
