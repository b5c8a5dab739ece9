//! `/orders`: the request path of the outbox pattern.
//!
//! Creating an order is one transaction with two inserts: the order, and the `OrderPlaced`
//! event in the outbox. Nothing here touches Kafka, so a broker outage cannot fail an order
//! and a failed order cannot leak an event.

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use outbox::trace;
use serde::{Deserialize, Serialize};
use service_kit::http::{Json, Path, Problem, Query};
use uuid::Uuid;

use crate::{
    db,
    domain::{CreateOrderRequest, IdempotencyKey, NewOrder, Order},
    error::ApiError,
    state::AppState,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/orders", get(list_orders).post(create_order))
        .route("/orders/{id}", get(get_order))
}

/// `POST /orders`: 201 with the PENDING order. With an `Idempotency-Key`, a retry returns the
/// first order (same status, header `Idempotent-Replayed: true`) instead of creating another.
#[utoipa::path(
    post, path = "/orders", tag = "orders",
    request_body = CreateOrderRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$",
         description = "1-255 visible ASCII characters; a retry with the same key and body returns the first order"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context to carry through every service; a new trace is started without one"),
    ),
    responses(
        (status = 201, description = "Order accepted, PENDING until inventory answers", body = Order,
         headers(("location" = String, description = "/orders/{id}"),
                 ("idempotent-replayed" = String, description = "`true` when this is the first order, replayed"),
                 ("traceparent" = String, description = "the trace the order's events carry"))),
        (status = 400, description = "Body is not JSON, or a malformed Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit (HTTP_BODY_LIMIT_BYTES)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid order (every invalid field listed in `errors`), or an Idempotency-Key reused with another body", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure; nothing was written", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_order(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(request): Json<CreateOrderRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let order = NewOrder::try_from(request).map_err(ApiError::Validation)?;
    // The trace this order's events will carry through every service: the caller's, or new.
    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| trace::is_valid(v))
        .map_or_else(trace::new_root, str::to_owned);

    let mut tx = state.pool.begin().await?;
    if let Some(created) = db::insert_order(&mut tx, &order, key.as_ref()).await? {
        let event = created.placed();
        // Same transaction: if this insert fails, the order above is rolled back with it.
        state
            .writer
            .write_in_tx(&mut tx, &event, Some(&traceparent))
            .await?;
        state.writer.commit(tx, &state.pool).await?;
        metrics::counter!("orders_created_total").increment(1);
        tracing::info!(order_id = %created.id, trace_id = trace::trace_id(&traceparent), "order placed");
        let mut response = created_response(created, false);
        if let Ok(value) = HeaderValue::from_str(&traceparent) {
            response.headers_mut().insert("traceparent", value);
        }
        return Ok(response);
    }
    tx.rollback().await?;

    // The insert conflicted, which only an idempotency key can do: replay the first order.
    let Some(key) = key else {
        return Err(ApiError::BadRequest(
            "order id collision; please retry".into(),
        ));
    };
    match db::find_by_idempotency_key(&state.pool, &key).await? {
        Some(first) if first.was_created_from(&order) => Ok(created_response(first, true)),
        Some(_) => Err(ApiError::IdempotencyKeyReused),
        None => Err(ApiError::BadRequest(
            "the first request with this Idempotency-Key did not complete; please retry".into(),
        )),
    }
}

fn created_response(order: Order, replayed: bool) -> Response {
    let location = HeaderValue::from_str(&format!("/orders/{}", order.id));
    let mut response = (StatusCode::CREATED, Json(order)).into_response();
    if let Ok(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(raw) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let raw = raw
        .to_str()
        .map_err(|_| ApiError::BadRequest("Idempotency-Key must be visible ASCII".into()))?;
    IdempotencyKey::parse(raw)
        .map(Some)
        .map_err(ApiError::BadRequest)
}

/// `GET /orders/{id}`.
#[utoipa::path(
    get, path = "/orders/{id}", tag = "orders",
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order", body = Order),
        (status = 404, description = "No such order (or not a UUID)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_order(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<Order>, ApiError> {
    db::find(&state.pool, id)
        .await?
        .map(Json)
        .ok_or(ApiError::OrderNotFound(id))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderPage {
    pub items: Vec<Order>,
    /// Pass as `cursor` to get the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<Uuid>,
}

/// `GET /orders?limit=20&cursor=...`: newest first.
#[utoipa::path(
    get, path = "/orders", tag = "orders",
    params(ListParams),
    responses(
        (status = 200, description = "A page of orders, newest first", body = OrderPage),
        (status = 400, description = "Bad limit", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "A cursor that names no order", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_orders(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Json<OrderPage>, ApiError> {
    let limit = params.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::BadRequest(
            "limit must be between 1 and 100".into(),
        ));
    }
    if let Some(cursor) = params.cursor {
        if !db::exists(&state.pool, cursor).await? {
            return Err(ApiError::CursorNotFound(cursor));
        }
    }
    let items = db::list(&state.pool, limit, params.cursor).await?;
    let next_cursor = if items.len() as i64 == limit {
        items.last().map(|o| o.id)
    } else {
        None
    };
    Ok(Json(OrderPage { items, next_cursor }))
}
