//! inventory-service's HTTP API: read-only views of products and stock.

use axum::{extract::State, response::IntoResponse, routing::get, Router};
use serde::Serialize;
use shared::{
    health::{self, HealthReport},
    http::{Json, Path},
};

use crate::{db, domain::Product, error::ApiError, startup::AppState};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/products", get(list_products))
        .route("/products/{sku}", get(get_product))
        .route("/health", get(health))
        .with_state(state)
}

#[derive(Debug, Serialize)]
pub struct ProductList {
    pub items: Vec<Product>,
}

/// `GET /products`: every product with its price, stock on hand and reserved stock.
pub async fn list_products(State(state): State<AppState>) -> Result<Json<ProductList>, ApiError> {
    Ok(Json(ProductList {
        items: db::list_products(&state.pool).await?,
    }))
}

/// `GET /products/{sku}`.
pub async fn get_product(
    State(state): State<AppState>,
    Path(sku): Path<String>,
) -> Result<Json<Product>, ApiError> {
    let sku = sku.to_ascii_uppercase();
    db::find_product(&state.pool, &sku)
        .await?
        .map(Json)
        .ok_or(ApiError::ProductNotFound(sku))
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    HealthReport::new()
        .check("postgres", health::postgres(&state.pool).await)
        .check("kafka", health::kafka(&state.producer).await)
}
