//! The relay's HTTP port (8080): status page, `/health`, admin API, and `/metrics`.

use axum::{extract::State, response::IntoResponse, routing::get, Router};
use shared::health::{self, HealthReport};

use crate::{admin, startup::AppState, status};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(state.clone())
        .merge(status::router(state.clone()))
        .merge(admin::router(state))
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let mut report = HealthReport::new();
    for relay in state.relays.iter() {
        report = report.check(
            &format!("postgres:{}", relay.name),
            health::postgres(relay.pool()).await,
        );
    }
    report.check("kafka", health::kafka(&state.producer).await)
}
