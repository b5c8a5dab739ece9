//! Wiring: connect, migrate, bind, then serve HTTP and run the worker until shutdown.
//!
//! `build` binds the listener itself (port 0 in tests) so a test can learn the port before
//! the app runs, and `run` takes the shutdown token, so tests stop the app when they choose.

use rdkafka::producer::FutureProducer;
use shared::{
    events::RESERVATION,
    kafka::{self, ConsumerSettings},
    StartupError,
};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{config::Config, consumer::ReservationHandler, db, routes};

/// What request handlers share.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// Used only by `/health` to check the broker; events are published by the relay.
    pub producer: FutureProducer,
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
    consumer: ConsumerSettings,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let pool =
            shared::db::connect(&config.database_url, config.database_max_connections).await?;
        shared::db::migrate(&pool, &db::MIGRATOR).await?;
        let producer = kafka::producer(&config.kafka)?;
        let listener = shared::http::bind(config.port).await?;
        let consumer = ConsumerSettings {
            topics: vec![config.kafka.topic_for(RESERVATION)],
            name: crate::consumer::CONSUMER.to_owned(),
            kafka: config.kafka,
        };
        Ok(Self {
            listener,
            state: AppState { pool, producer },
            consumer,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    pub fn pool(&self) -> PgPool {
        self.state.pool.clone()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StartupError> {
        tracing::info!(port = self.port(), "order-service listening");
        let handler = ReservationHandler {
            pool: self.state.pool.clone(),
        };
        let router = routes::router(self.state);
        shared::service::run(self.listener, router, self.consumer, handler, shutdown).await
    }
}
