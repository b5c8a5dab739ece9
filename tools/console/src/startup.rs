//! Wiring: connect to the sources, start the poller, bind, serve.

use service_kit::{http::Server, StartupError};
use tokio_util::sync::CancellationToken;

use crate::{config::Config, routes, sources::Sources, state::AppState, watch};

pub struct Application {
    server: Server,
    sources: Sources,
    config: Config,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let sources = Sources::connect(&config).await?;
        let server = Server::bind(&config.http).await?;
        Ok(Self {
            server,
            sources,
            config,
        })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StartupError> {
        tracing::info!(port = self.port(), "flow-console listening");
        let snapshots =
            watch::spawn(self.sources.clone(), self.config.poll, shutdown.clone()).await;
        let state = AppState {
            sources: self.sources,
            snapshots,
            shutdown: shutdown.clone(),
        };
        self.server
            .serve(routes::router(state), shutdown)
            .await
            .map_err(Into::into)
    }
}
