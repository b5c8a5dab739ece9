//! order-service's HTTP API.

pub mod orders;

use axum::{extract::State, response::IntoResponse, routing::get, Router};
use shared::{
    events::{RejectionCode, RejectionReason},
    health::{self, Check, HealthReport},
    http::{FieldError, Problem},
};
use utoipa::OpenApi;

use crate::startup::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(orders::router())
        .route("/health", get(health))
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
    paths(orders::create_order, orders::get_order, orders::list_orders, health),
    components(schemas(
        Problem,
        FieldError,
        HealthReport,
        Check,
        RejectionReason,
        RejectionCode
    ))
)]
pub struct ApiDoc;

/// 200 when PostgreSQL and Kafka answer, 503 with the failing check otherwise.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, body = HealthReport), (status = 503, body = HealthReport)))]
async fn health(State(state): State<AppState>) -> impl IntoResponse {
    HealthReport::new()
        .check("postgres", health::postgres(&state.pool).await)
        .check("kafka", health::kafka(&state.producer).await)
}
