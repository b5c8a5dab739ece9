//! inventory-service's HTTP API: read-only views of products and stock.

use axum::{extract::State, routing::get, Router};
use serde::Serialize;
use service_kit::{
    health::{self, Check, Documented, HealthReport, Unready},
    http::{Json, Path, Problem},
};
use utoipa::OpenApi;

use crate::{db, domain::Product, error::ApiError, state::AppState};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/products", get(list_products))
        .route("/products/{sku}", get(get_product))
        .merge(health::routes(service_kit::service::ready))
        .with_state(state)
        .merge(service_kit::http::openapi_route(ApiDoc::openapi()))
}

/// The OpenAPI description served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "inventory-service",
        description = "Owns products, prices and stock; reserves stock for orders from Kafka and answers through its own outbox."
    ),
    paths(list_products, get_product, service_kit::service::ready),
    components(schemas(Problem, HealthReport, Unready, Check)),
    modifiers(&Documented)
)]
pub struct ApiDoc;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProductList {
    pub items: Vec<Product>,
}

/// `GET /products`: every product with its price, stock on hand and reserved stock.
#[utoipa::path(get, path = "/products", tag = "products",
    responses((status = 200, description = "Every product, by SKU", body = ProductList)))]
pub async fn list_products(State(state): State<AppState>) -> Result<Json<ProductList>, ApiError> {
    Ok(Json(ProductList {
        items: db::list_products(&state.pool).await?,
    }))
}

/// `GET /products/{sku}`.
#[utoipa::path(get, path = "/products/{sku}", tag = "products",
    params(("sku" = String, Path, description = "SKU, case-insensitive", example = "KEYBOARD-01")),
    responses(
        (status = 200, description = "The product", body = Product),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
    ))]
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
