//! order-service's HTTP API.

pub mod orders;

use axum::Router;
use contracts::{RejectionCode, RejectionReason};
use service_kit::{
    health::{self, Check, Documented, HealthReport, Unready},
    http::{FieldError, Problem},
};
use utoipa::OpenApi;

use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(orders::router())
        .merge(health::routes(service_kit::service::ready))
        .with_state(state)
        .merge(service_kit::http::openapi_route(ApiDoc::openapi()))
}

/// The OpenAPI description served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "order-service",
        description = "Takes orders; each order and its OrderPlaced event are written in one transaction (transactional outbox)."
    ),
    paths(orders::create_order, orders::get_order, orders::list_orders, service_kit::service::ready),
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
