//! The relay's HTTP port (8080): status page, `/health`, admin API, and `/metrics`.

use axum::{extract::State, Router};
use service_kit::{
    health::{self, Check, Checks, Documented, HealthReport, Readiness, Unready},
    http::Problem,
};
use utoipa::{
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
    Modify, OpenApi,
};

use crate::{admin, state::AppState, status};

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::routes(ready))
        .with_state(state.clone())
        .merge(status::router(state.clone()))
        .merge(admin::router(state))
        .merge(service_kit::http::openapi_route(ApiDoc::openapi()))
}

/// The OpenAPI description served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "outbox-processor", description = "The relay: publishes outbox rows to Kafka at least once, in order per aggregate. Status page at `/`."),
    paths(ready, status::json, admin::pause_relay, admin::resume_relay, admin::list_parked, admin::retry_parked, admin::retry_event, admin::retry_aggregate, admin::skip_event),
    components(schemas(Problem, HealthReport, Unready, Check)),
    modifiers(&BearerAuth, &Documented)
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

/// Ready when every source database answers: the status page and the admin API need them.
/// Kafka only informs: while it is away the relay pauses publishing on its own (the status
/// page says so), and restarting or unrouting it would not bring the broker back.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses((status = 200, body = HealthReport),
              (status = 503, body = Unready, content_type = "application/problem+json")))]
async fn ready(State(state): State<AppState>) -> Readiness {
    let mut checks = Checks::new();
    for relay in state.relays.databases().iter() {
        checks = checks.require(
            &format!("postgres:{}", relay.name),
            health::postgres(relay.pool()),
        );
    }
    checks
        .inform("kafka", health::kafka(&state.producer.current().producer))
        .run()
        .await
}
