//! order-service's HTTP API.

pub mod orders;

use axum::{extract::State, Router};
use shared::{
    events::{RejectionCode, RejectionReason},
    health::{self, Check, Documented, HealthReport, Readiness, Unready},
    http::{FieldError, Problem},
};
use utoipa::OpenApi;

use crate::startup::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(orders::router())
        .merge(health::routes(ready))
        .with_state(state)
        .merge(shared::http::openapi_route(ApiDoc::openapi()))
}

/// The OpenAPI description served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "order-service",
        description = "Takes orders; each order and its OrderPlaced event are written in one transaction (transactional outbox)."
    ),
    paths(orders::create_order, orders::get_order, orders::list_orders, ready),
    components(schemas(
        Problem,
        FieldError,
        HealthReport,
        Unready,
        Check,
        RejectionReason,
        RejectionCode
    )),
    modifiers(&Documented)
)]
pub struct ApiDoc;

/// Ready when PostgreSQL answers: orders are taken while Kafka is away (the outbox keeps
/// their events), so the broker only informs.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses((status = 200, body = HealthReport),
              (status = 503, body = Unready, content_type = "application/problem+json")))]
async fn ready(State(state): State<AppState>) -> Readiness {
    Readiness::new()
        .require("postgres", health::postgres(&state.pool))
        .await
        .inform("kafka", health::kafka(&state.producer))
        .await
}
