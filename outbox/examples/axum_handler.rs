//! The outbox in an axum + sqlx handler, the relay in the same process. With the local stack up
//! and `createdb -h 127.0.0.1 -U postgres outbox_example`: `cargo run --example axum_handler`,
//! `curl localhost:3000/signups -H 'content-type: application/json' -d '{"user_id":"018f0000-0000-7000-8000-000000000001","email":"a@b.c"}'`.
use axum::{extract::State, http::StatusCode, routing::post, Json, Router};
use outbox::{kafka::KafkaConfig, relay::RelaySettings, DomainEvent};
use serde::{Deserialize, Serialize};
use service_kit::config::FromEnv;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// 1. An event: a fact about an aggregate, whose id becomes the message key.
#[derive(Serialize, Deserialize)]
struct UserSignedUp {
    user_id: Uuid,
    email: String,
}

impl DomainEvent for UserSignedUp {
    const TYPE: &'static str = "UserSignedUp";
    const AGGREGATE_TYPE: &'static str = "user"; // published to topic outbox.event.user
    fn aggregate_id(&self) -> String {
        self.user_id.to_string()
    }
}

/// 2. The handler writes its row and the event in one transaction, and never calls a broker.
async fn sign_up(State(db): State<PgPool>, Json(event): Json<UserSignedUp>) -> StatusCode {
    let writer = outbox::Writer::default(); // keeps the row for the relay below
    let written = async {
        let mut tx = db.begin().await?;
        sqlx::query("insert into users (id, email) values ($1, $2)")
            .bind(event.user_id)
            .bind(&event.email)
            .execute(&mut *tx)
            .await?;
        writer.write_in_tx(&mut tx, &event, None).await?;
        writer.commit(tx, &db).await // commits, then wakes the relay
    };
    let failed = StatusCode::INTERNAL_SERVER_ERROR;
    written.await.map_or(failed, |()| StatusCode::CREATED)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = service_kit::config::secret(
        "DATABASE_URL",
        "postgres://postgres@127.0.0.1/outbox_example",
    );
    let db = outbox::db::connect(&url, 5).await?;
    outbox::db::migrate_outbox(&db).await?; // 3. the outbox table next to your own
    sqlx::query("create table if not exists users (id uuid primary key, email text)")
        .execute(&db)
        .await?;

    // 4. The relay: claims rows, publishes them, marks them published, in order per aggregate.
    let (kafka, settings) = (KafkaConfig::from_env()?, RelaySettings::from_env()?);
    let relays = kafka.relays(settings)?.database("app", &url)?;
    let shutdown = CancellationToken::new();
    let running = relays.start(&shutdown);

    let app = Router::new()
        .route("/signups", post(sign_up))
        .with_state(db);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    let stop = shutdown.clone();
    let ctrl_c = async move {
        tokio::signal::ctrl_c().await.ok();
        stop.cancel();
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(ctrl_c)
        .await?;
    running.stopped().await; // the batch in hand is marked, the producer flushed
    Ok(())
}
