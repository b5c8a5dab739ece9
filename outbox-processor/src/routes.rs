//! The relay's HTTP port (8080): status page, `/health`, admin API, and `/metrics`.

use axum::{extract::State, response::IntoResponse, routing::get, Router};
use shared::{
    health::{self, Check, HealthReport},
    http::Problem,
};
use utoipa::{
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
    Modify, OpenApi,
};

use crate::{admin, startup::AppState, status};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(state.clone())
        .merge(status::router(state.clone()))
        .merge(admin::router(state))
        .merge(shared::http::openapi_route(ApiDoc::openapi()))
}

/// The OpenAPI description served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "outbox-processor", description = "The relay: publishes outbox rows to Kafka at least once, in order per aggregate. Status page at `/`."),
    paths(health, status::json, admin::list_parked, admin::retry_parked, admin::retry_event, admin::retry_aggregate, admin::skip_event),
    components(schemas(Problem, HealthReport, Check)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// 200 when every source database and Kafka answer, 503 with the failing check otherwise.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, body = HealthReport), (status = 503, body = HealthReport)))]
async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let mut report = HealthReport::new();
    for relay in state.relays.iter() {
        report = report.check(
            &format!("postgres:{}", relay.name),
            health::postgres(relay.pool()).await,
        );
    }
    report.check(
        "kafka",
        health::kafka(&state.publisher.producer().producer).await,
    )
}
