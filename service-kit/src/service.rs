//! A service process: its HTTP API and its event consumer, side by side until shutdown.

use axum::{extract::State, Router};
use rdkafka::producer::FutureProducer;
use sqlx::{migrate::Migrator, PgPool};
use tokio_util::sync::CancellationToken;

use outbox::{
    handler::EventHandler,
    kafka::{self, run_consumer, ConsumerSettings},
};

use crate::{
    config::PostgresServiceConfig,
    health::{self, Checks, HealthReport, Readiness, Unready},
    http::Server,
    StartupError,
};

/// Serves `router` and runs the consumer until `shutdown` fires, then stops both: the server
/// lets its in-flight requests finish, the consumer its messages in hand.
pub async fn run<H: EventHandler>(
    server: Server,
    router: Router,
    consumer: ConsumerSettings,
    handler: H,
    shutdown: CancellationToken,
) -> Result<(), StartupError> {
    let worker = tokio::spawn(run_consumer(consumer, handler, shutdown.clone()));
    let served = server.serve(router, shutdown.clone()).await;
    shutdown.cancel();
    if let Err(error) = worker.await {
        tracing::error!(%error, "consumer task panicked");
    }
    served.map_err(Into::into)
}

/// What request handlers of a PostgreSQL-backed service share.
#[derive(Clone)]
pub struct PgState {
    pub pool: PgPool,
    /// Used only by the health checks to see the broker: services never publish on the
    /// request path, the relay does.
    pub producer: FutureProducer,
    /// How the service writes its events into its outbox.
    pub writer: outbox::Writer,
}

/// `GET /health/ready` of a PostgreSQL-backed service: ready when PostgreSQL answers. Its API
/// needs nothing else (order-service takes orders while Kafka is away: the outbox keeps their
/// events), so the broker only informs.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses((status = 200, body = HealthReport),
              (status = 503, body = Unready, content_type = "application/problem+json")))]
pub async fn ready(State(state): State<PgState>) -> Readiness {
    Checks::new()
        .require("postgres", health::postgres(&state.pool))
        .inform("kafka", health::kafka(&state.producer))
        .run()
        .await
}

/// A PostgreSQL-backed service, built and ready to run: migrated database, bound server
/// (port 0 in tests, so they can learn the port before the service runs), consumer settings.
pub struct PgService {
    pub server: Server,
    pub state: PgState,
    pub consumer: ConsumerSettings,
}

impl PgService {
    /// Connects and migrates (shared outbox/inbox tables, then `migrator`), creates the health
    /// check's producer, binds the port, and subscribes consumer `name` to the topics of
    /// `aggregate_types`.
    pub async fn build(
        config: PostgresServiceConfig,
        migrator: &Migrator,
        name: &str,
        aggregate_types: &[&str],
    ) -> Result<Self, StartupError> {
        let pool =
            outbox::db::connect(&config.database_url, config.database_max_connections).await?;
        outbox::db::migrate(&pool, migrator).await?;
        let producer = kafka::producer(&config.kafka)?;
        let server = Server::bind(&config.http).await?;
        let consumer = ConsumerSettings {
            topics: aggregate_types
                .iter()
                .map(|t| config.kafka.topic_for(t))
                .collect(),
            name: name.to_owned(),
            kafka: config.kafka,
        };
        Ok(Self {
            server,
            state: PgState {
                pool,
                producer,
                writer: config.writer,
            },
            consumer,
        })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    pub async fn run<H: EventHandler>(
        self,
        router: Router,
        handler: H,
        shutdown: CancellationToken,
    ) -> Result<(), StartupError> {
        tracing::info!(port = self.port(), consumer = %self.consumer.name, "service listening");
        run(self.server, router, self.consumer, handler, shutdown).await
    }
}
