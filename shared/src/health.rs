//! `GET /health`: 200 when the service can reach everything it needs, 503 with the failing
//! dependency otherwise, so an orchestrator routes traffic away instead of losing requests.

use axum::{http::StatusCode, response::IntoResponse, Json};
use rdkafka::producer::FutureProducer;
use serde::Serialize;
use sqlx::PgPool;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct HealthReport {
    /// `ok`, or `unavailable` (with status 503).
    #[schema(value_type = String)]
    pub status: &'static str,
    pub checks: Vec<Check>,
}

impl HealthReport {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn check<E: std::fmt::Display>(mut self, name: &str, result: Result<(), E>) -> Self {
        self.checks.push(Check {
            name: name.to_owned(),
            ok: result.is_ok(),
            error: result.err().map(|e| e.to_string()),
        });
        self
    }

    pub fn is_healthy(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

impl IntoResponse for HealthReport {
    fn into_response(mut self) -> axum::response::Response {
        let status = if self.is_healthy() {
            self.status = "ok";
            StatusCode::OK
        } else {
            self.status = "unavailable";
            StatusCode::SERVICE_UNAVAILABLE
        };
        (status, Json(self)).into_response()
    }
}

pub async fn postgres(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("select 1").execute(pool).await.map(|_| ())
}

pub async fn kafka(producer: &FutureProducer) -> Result<(), rdkafka::error::KafkaError> {
    crate::kafka::ping(producer).await
}

pub async fn mongo(db: &mongodb::Database) -> Result<(), mongodb::error::Error> {
    db.run_command(mongodb::bson::doc! { "ping": 1 })
        .await
        .map(|_| ())
}
