//! Wiring: connect to MongoDB, create the unique index, bind, then serve and consume.

use contracts::ORDER;
use mongodb::{options::ClientOptions, Client, Database};
use outbox::kafka::{self, ConsumerSettings};
use secrecy::ExposeSecret;
use service_kit::{http::Server, StartupError};
use tokio_util::sync::CancellationToken;

use crate::{config::Config, consumer::ConfirmedOrderHandler, db, routes, state::AppState};

pub struct Application {
    server: Server,
    state: AppState,
    consumer: ConsumerSettings,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let mongo = |e| StartupError::store("mongodb", e);
        let mut options = ClientOptions::parse(config.mongodb_uri.expose_secret())
            .await
            .map_err(mongo)?;
        options.app_name = Some("invoice-service".to_owned());
        options.server_selection_timeout = Some(std::time::Duration::from_secs(5));
        let db = Client::with_options(options)
            .map_err(mongo)?
            .database(&config.mongodb_database);
        db::ensure_indexes(&db).await.map_err(mongo)?;
        let producer = kafka::producer(&config.kafka)?;
        let server = Server::bind(&config.http).await?;
        let consumer = ConsumerSettings {
            topics: vec![config.kafka.topic_for(ORDER)],
            name: crate::consumer::CONSUMER.to_owned(),
            kafka: config.kafka,
        };
        Ok(Self {
            server,
            state: AppState { db, producer },
            consumer,
        })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    pub fn database(&self) -> Database {
        self.state.db.clone()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StartupError> {
        tracing::info!(port = self.port(), "invoice-service listening");
        let handler = ConfirmedOrderHandler {
            db: self.state.db.clone(),
        };
        let router = routes::router(self.state);
        service_kit::service::run(self.server, router, self.consumer, handler, shutdown).await
    }
}
