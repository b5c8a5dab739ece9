//! order-service's HTTP API.

pub mod orders;

use axum::{extract::State, response::IntoResponse, routing::get, Router};
use shared::health::{self, HealthReport};

use crate::startup::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(orders::router())
        .route("/health", get(health))
        .with_state(state)
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    HealthReport::new()
        .check("postgres", health::postgres(&state.pool).await)
        .check("kafka", health::kafka(&state.producer).await)
}
