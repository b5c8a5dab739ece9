//! invoice-service's HTTP API: read the invoices.

use axum::{extract::State, response::IntoResponse, routing::get, Router};
use serde::{Deserialize, Serialize};
use shared::{
    health::{self, HealthReport},
    http::{Json, Path, Query},
};
use uuid::Uuid;

use crate::{
    db::{self, Invoice, InvoiceLine},
    error::ApiError,
    startup::AppState,
};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/invoices", get(list_invoices))
        .route("/invoices/{order_id}", get(get_invoice))
        .route("/health", get(health))
        .with_state(state)
}

/// An invoice as the API shows it (the stored document uses BSON dates).
#[derive(Debug, Serialize)]
pub struct InvoiceView {
    pub order_id: String,
    pub customer_id: String,
    pub currency: String,
    pub lines: Vec<InvoiceLine>,
    pub total_cents: i64,
    /// RFC 3339.
    pub issued_at: String,
    pub event_id: String,
}

impl From<Invoice> for InvoiceView {
    fn from(i: Invoice) -> Self {
        Self {
            issued_at: i
                .issued_at
                .try_to_rfc3339_string()
                .unwrap_or_else(|_| i.issued_at.timestamp_millis().to_string()),
            order_id: i.order_id,
            customer_id: i.customer_id,
            currency: i.currency,
            lines: i.lines,
            total_cents: i.total_cents,
            event_id: i.event_id,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct InvoiceList {
    pub items: Vec<InvoiceView>,
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    /// 1 to 100, default 20.
    pub limit: Option<i64>,
}

/// `GET /invoices?limit=20`: newest first.
pub async fn list_invoices(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Json<InvoiceList>, ApiError> {
    let limit = params.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::BadRequest(
            "limit must be between 1 and 100".into(),
        ));
    }
    let items = db::list(&state.db, limit)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(InvoiceList { items }))
}

/// `GET /invoices/{order_id}`: 404 until the order is confirmed and its event consumed.
pub async fn get_invoice(
    State(state): State<AppState>,
    Path(order_id): Path<Uuid>,
) -> Result<Json<InvoiceView>, ApiError> {
    let order_id = order_id.to_string();
    db::find(&state.db, &order_id)
        .await?
        .map(|i| Json(i.into()))
        .ok_or(ApiError::InvoiceNotFound(order_id))
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    HealthReport::new()
        .check("mongodb", health::mongo(&state.db).await)
        .check("kafka", health::kafka(&state.producer).await)
}
