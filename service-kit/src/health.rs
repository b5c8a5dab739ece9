//! Health, in the two questions an orchestrator asks, because it acts differently on each:
//!
//! - `GET /health/live`, **liveness**: 200 whenever the process answers HTTP at all. When it
//!   fails, restart the process.
//! - `GET /health/ready`, **readiness**: 200 when what the service needs to answer its API
//!   answers (its database), 503 with a problem naming the failing check otherwise. When it
//!   fails, route requests elsewhere until it passes again.
//! - `GET /health`: the readiness answer, for clients of the single endpoint.
//!
//! The broker is not something any API here needs: order-service goes on taking orders while
//! Kafka is away (that is the point of the outbox), and the consumers catch up when it is
//! back. So Kafka is a check that *informs* (it is in the report, it does not make a service
//! unready); taking order-service out of rotation during a broker outage would turn an outage
//! the pattern absorbs into one every client sees.
//!
//! The checks run side by side, each bounded: a required one by [`CHECK_TIMEOUT`] (generous
//! for a database on a busy machine), an informing one by [`INFORM_TIMEOUT`] (an unreachable
//! broker must not make the answer late), so readiness answers within 2 s, before a probe
//! (Compose's waits 5 s) gives up.

use std::{fmt::Display, future::Future, pin::Pin, time::Duration};

use axum::{
    handler::Handler,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use rdkafka::producer::FutureProducer;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::openapi::OpenApi;

use crate::http::{problem_json, Problem};

/// The longest a required check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest an informing check may take (its failure changes nothing but the report).
pub const INFORM_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether readiness depends on it; a check that only informs (the broker) does not.
    pub required: bool,
}

/// A ready service's answer (200).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"status": "ok", "checks": [
    {"name": "postgres", "ok": true, "required": true},
    {"name": "kafka", "ok": false, "error": "timed out after 5s", "required": false}
]}))]
pub struct HealthReport {
    /// Always `ok`.
    #[schema(value_type = String)]
    pub status: &'static str,
    pub checks: Vec<Check>,
}

/// An unready service's answer (503): a problem whose `checks` say which dependency failed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Unready {
    #[serde(flatten)]
    pub problem: Problem,
    pub checks: Vec<Check>,
}

/// Liveness: the process answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Alive {
    /// Always `ok`.
    #[schema(value_type = String)]
    pub status: &'static str,
}

/// A check still to run: its name, whether readiness depends on it, and the check itself.
type Pending<'a> = (
    String,
    bool,
    Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>,
);

/// Collects the service's checks; [`Checks::run`] runs them side by side.
#[derive(Default)]
pub struct Checks<'a> {
    pending: Vec<Pending<'a>>,
}

impl<'a> Checks<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    /// A dependency the service cannot answer without: readiness fails with it.
    pub fn require<E: Display>(
        self,
        name: &str,
        check: impl Future<Output = Result<(), E>> + Send + 'a,
    ) -> Self {
        self.add(name, true, check)
    }

    /// A dependency reported for the operator's sake; readiness does not depend on it.
    pub fn inform<E: Display>(
        self,
        name: &str,
        check: impl Future<Output = Result<(), E>> + Send + 'a,
    ) -> Self {
        self.add(name, false, check)
    }

    fn add<E: Display>(
        mut self,
        name: &str,
        required: bool,
        check: impl Future<Output = Result<(), E>> + Send + 'a,
    ) -> Self {
        let check = async move { check.await.map_err(|e| e.to_string()) };
        self.pending
            .push((name.to_owned(), required, Box::pin(check)));
        self
    }

    pub async fn run(self) -> Readiness {
        let checks = self
            .pending
            .into_iter()
            .map(|(name, required, check)| async move {
                let timeout = if required {
                    CHECK_TIMEOUT
                } else {
                    INFORM_TIMEOUT
                };
                let error = match tokio::time::timeout(timeout, check).await {
                    Ok(Ok(())) => None,
                    Ok(Err(error)) => Some(error),
                    Err(_) => Some(format!("timed out after {timeout:?}")),
                };
                Check {
                    name,
                    ok: error.is_none(),
                    error,
                    required,
                }
            });
        Readiness {
            checks: futures::future::join_all(checks).await,
        }
    }
}

/// The result of a service's checks, answered as its readiness.
#[derive(Debug)]
pub struct Readiness {
    checks: Vec<Check>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.checks.iter().all(|c| c.ok || !c.required)
    }
}

impl IntoResponse for Readiness {
    fn into_response(self) -> Response {
        if self.is_ready() {
            return Json(HealthReport {
                status: "ok",
                checks: self.checks,
            })
            .into_response();
        }
        let failing: Vec<String> = self
            .checks
            .iter()
            .filter(|c| c.required && !c.ok)
            .map(|c| format!("{}: {}", c.name, c.error.as_deref().unwrap_or("failed")))
            .collect();
        let status = StatusCode::SERVICE_UNAVAILABLE;
        let unready = Unready {
            problem: Problem::status(status).detail(failing.join("; ")),
            checks: self.checks,
        };
        problem_json(status, &unready)
    }
}

/// `GET /health/live`.
#[utoipa::path(get, path = "/health/live", tag = "operations",
    responses((status = 200, description = "The process answers", body = Alive)))]
pub async fn live() -> Json<Alive> {
    Json(Alive { status: "ok" })
}

/// The three health routes, with `ready` (the service's readiness handler) behind
/// `/health/ready` and `/health`.
pub fn routes<H, T, S>(ready: H) -> Router<S>
where
    H: Handler<T, S>,
    T: 'static,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready.clone()))
        .route("/health", get(ready))
}

/// OpenAPI modifier: documents `/health/live`, and `/health` as what `/health/ready` is.
pub struct Documented;

impl utoipa::Modify for Documented {
    fn modify(&self, openapi: &mut OpenApi) {
        use utoipa::OpenApi as _;
        #[derive(utoipa::OpenApi)]
        #[openapi(paths(live), components(schemas(Alive)))]
        struct Liveness;
        openapi.merge(Liveness::openapi());
        if let Some(mut ready) = openapi.paths.paths.get("/health/ready").cloned() {
            if let Some(get) = ready.get.as_mut() {
                get.operation_id = Some("health".into());
                get.summary = Some("Readiness, as /health/ready answers it".into());
            }
            openapi.paths.paths.insert("/health".into(), ready);
        }
    }
}

pub async fn postgres(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("select 1").execute(pool).await.map(|_| ())
}

pub async fn kafka(producer: &FutureProducer) -> Result<(), rdkafka::error::KafkaError> {
    outbox::kafka::ping(producer).await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn failing() -> Result<(), String> {
        Err("connection refused".into())
    }

    async fn passing() -> Result<(), String> {
        Ok(())
    }

    async fn hanging() -> Result<(), String> {
        std::future::pending().await
    }

    #[tokio::test]
    async fn only_a_required_check_makes_the_service_unready() {
        let informed = Checks::new()
            .require("db", passing())
            .inform("broker", failing())
            .run()
            .await;
        assert!(informed.is_ready());
        assert_eq!(informed.into_response().status(), StatusCode::OK);

        let unready = Checks::new()
            .require("db", failing())
            .inform("broker", passing())
            .run()
            .await;
        assert!(!unready.is_ready());
        let response = unready.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers()[axum::http::header::CONTENT_TYPE],
            crate::http::PROBLEM_JSON
        );
        let body = axum::body::to_bytes(response.into_body(), 10_000)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["status"], 503);
        assert_eq!(body["detail"], "db: connection refused");
        assert_eq!(body["checks"].as_array().unwrap().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn hanging_checks_fail_after_their_timeouts_side_by_side() {
        let started = tokio::time::Instant::now();
        let readiness = Checks::new()
            .require("db", hanging())
            .inform("broker", hanging())
            .run()
            .await;
        assert!(!readiness.is_ready());
        assert!(readiness.checks.iter().all(|c| c
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("timed out"))));
        // Side by side: the answer takes the longest timeout, not their sum.
        assert_eq!(started.elapsed(), CHECK_TIMEOUT);
    }
}
