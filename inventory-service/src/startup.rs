//! Wiring: connect, migrate, bind, then serve HTTP and run the worker until shutdown.
//!
//! `build` binds the listener itself (port 0 in tests) so a test can learn the port before
//! the app runs, and `run` takes the shutdown token, so tests stop the app when they choose.

use contracts::ORDER;
use service_kit::{service::PgService, StartupError};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{config::Config, consumer, db, routes};

pub struct Application(PgService);

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        PgService::build(config, &db::MIGRATOR, consumer::CONSUMER, &[ORDER])
            .await
            .map(Self)
    }

    pub fn port(&self) -> u16 {
        self.0.port()
    }

    pub fn pool(&self) -> PgPool {
        self.0.state.pool.clone()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StartupError> {
        let handler = consumer::OrderHandler {
            pool: self.pool(),
            writer: self.0.state.writer,
        };
        let router = routes::router(self.0.state.clone());
        self.0.run(router, handler, shutdown).await
    }
}
