//! invoice-service's HTTP API: read the invoices.

use axum::{extract::State, routing::get, Router};
use serde::{Deserialize, Serialize};
use service_kit::{
    health::{self, Check, Checks, Documented, HealthReport, Readiness, Unready},
    http::{Json, Path, Problem, Query},
};
use utoipa::OpenApi;
use uuid::Uuid;

use crate::{
    db::{self, Invoice, InvoiceLine},
    error::ApiError,
    state::AppState,
};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/invoices", get(list_invoices))
        .route("/invoices/{order_id}", get(get_invoice))
        .merge(health::routes(ready))
        .with_state(state)
        .merge(service_kit::http::openapi_route(ApiDoc::openapi()))
}

/// The OpenAPI description served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "invoice-service",
        description = "Stores exactly one invoice per confirmed order in MongoDB, whatever Kafka redelivers."
    ),
    paths(list_invoices, get_invoice, ready),
    components(schemas(Problem, HealthReport, Unready, Check)),
    modifiers(&Documented)
)]
pub struct ApiDoc;

/// An invoice as the API shows it (the stored document uses BSON dates).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "order_id": "01a208a8-821e-7361-be6f-66d7a0c09f70", "customer_id": "cust-42", "currency": "EUR",
    "lines": [{"sku": "KEYBOARD-01", "quantity": 2, "unit_price_cents": 8999, "line_total_cents": 17998}],
    "total_cents": 17998, "issued_at": "2026-11-23T13:46:31.412Z",
    "event_id": "01a208a8-8371-7c2e-9a5e-2b0c8e1f4a10"
}))]
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

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvoiceList {
    pub items: Vec<InvoiceView>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

/// `GET /invoices?limit=20`: newest first.
#[utoipa::path(get, path = "/invoices", tag = "invoices", params(ListParams),
    responses(
        (status = 200, description = "Invoices, newest first", body = InvoiceList),
        (status = 400, description = "Bad limit", body = Problem, content_type = "application/problem+json"),
    ))]
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
#[utoipa::path(get, path = "/invoices/{order_id}", tag = "invoices",
    params(("order_id" = Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "The order's invoice", body = InvoiceView),
        (status = 404, description = "No invoice (yet): the order is pending, rejected or unknown", body = Problem, content_type = "application/problem+json"),
    ))]
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

/// Ready when MongoDB answers: the invoices API needs nothing else; Kafka only informs.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses((status = 200, body = HealthReport),
              (status = 503, body = Unready, content_type = "application/problem+json")))]
async fn ready(State(state): State<AppState>) -> Readiness {
    Checks::new()
        .require("mongodb", db::ping(&state.db))
        .inform("kafka", health::kafka(&state.producer))
        .run()
        .await
}
