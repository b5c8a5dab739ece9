//! The operator's side of the relay: see parked events, retry them after a fix, or skip one.
//!
//! A parked event blocks the later events of its aggregate (publishing them would break the
//! order), so these are the only ways forward: **retry** (the row is due again at once, its
//! attempt count reset) or **skip** (the row is kept with `skipped_at`, never published, and
//! its aggregate goes on). Every route needs `Authorization: Bearer $RELAY_ADMIN_TOKEN`.

use axum::{
    extract::{Request, State},
    http::{header, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use shared::http::{Json, Path, Problem, Query};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::startup::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/admin/parked", get(list_parked))
        .route("/admin/events/{database}/{id}/retry", post(retry_event))
        .route("/admin/events/{database}/{id}/skip", post(skip_event))
        .route(
            "/admin/aggregates/{database}/{aggregatetype}/{aggregateid}/retry",
            post(retry_aggregate),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .with_state(state)
}

async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.admin_token else {
        return Problem::new(StatusCode::FORBIDDEN, "Admin API disabled")
            .detail("set RELAY_ADMIN_TOKEN to enable it")
            .into_response();
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Constant time, so the comparison does not leak how much of a guess was right.
    if bool::from(given.as_bytes().ct_eq(token.expose_secret().as_bytes())) {
        next.run(request).await
    } else {
        let mut response = Problem::new(StatusCode::UNAUTHORIZED, "Unauthorized")
            .detail("send Authorization: Bearer <RELAY_ADMIN_TOKEN>")
            .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        response
    }
}

#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ParkedEvent {
    #[sqlx(default)]
    pub database: String,
    pub id: Uuid,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub event_type: String,
    pub aggregatetype: String,
    pub aggregateid: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub parked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ParkedList {
    pub items: Vec<ParkedEvent>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ParkedParams {
    /// Only this database (a name from `OUTBOX_DATABASES`).
    pub database: Option<String>,
}

/// A row an operator may act on: parked, and neither published nor skipped since. Every
/// admin statement uses this one definition, so none can touch a row the others would not.
const PARKED: &str = "parked_at is not null and published_at is null and skipped_at is null";

/// What "retry" does: due again now, with a fresh attempt count.
const RETRY: &str = "parked_at = null, attempts = 0, next_attempt_at = null";

/// Parked events of one database, oldest first.
pub async fn parked(pool: &PgPool, database: &str) -> Result<Vec<ParkedEvent>, sqlx::Error> {
    let mut events: Vec<ParkedEvent> = sqlx::query_as(&format!(
        "select id, type, aggregatetype, aggregateid, attempts, last_error, created_at, parked_at
         from outbox where {PARKED} order by seq"
    ))
    .fetch_all(pool)
    .await?;
    for e in &mut events {
        e.database = database.to_owned();
    }
    Ok(events)
}

/// `GET /admin/parked[?database=orders]`.
#[utoipa::path(get, path = "/admin/parked", tag = "admin", params(ParkedParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Parked events, oldest first", body = ParkedList),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Admin API disabled (no RELAY_ADMIN_TOKEN)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_parked(
    State(state): State<AppState>,
    Query(params): Query<ParkedParams>,
) -> Result<Json<ParkedList>, Problem> {
    let mut items = Vec::new();
    for relay in state.relays.iter() {
        if params.database.as_ref().is_some_and(|d| *d != relay.name) {
            continue;
        }
        items.extend(parked(relay.pool(), &relay.name).await.map_err(internal)?);
    }
    Ok(Json(ParkedList { items }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Changed {
    pub database: String,
    pub changed: u64,
}

/// `POST /admin/events/{database}/{id}/retry`: the parked event is due again now.
#[utoipa::path(post, path = "/admin/events/{database}/{id}/retry", tag = "admin",
    params(("database" = String, Path), ("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Due again, attempts reset", body = Changed),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such database, or no parked event with this id", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn retry_event(
    State(state): State<AppState>,
    Path((database, id)): Path<(String, Uuid)>,
) -> Result<Json<Changed>, Problem> {
    let changed = update_parked_event(&state, &database, id, RETRY).await?;
    found(database, changed, id)
}

/// `POST /admin/aggregates/{database}/{aggregatetype}/{aggregateid}/retry`: every parked
/// event of one aggregate.
#[utoipa::path(post, path = "/admin/aggregates/{database}/{aggregatetype}/{aggregateid}/retry", tag = "admin",
    params(("database" = String, Path), ("aggregatetype" = String, Path), ("aggregateid" = String, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "How many parked events are due again (may be 0)", body = Changed),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such database", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn retry_aggregate(
    State(state): State<AppState>,
    Path((database, aggregatetype, aggregateid)): Path<(String, String, String)>,
) -> Result<Json<Changed>, Problem> {
    let pool = pool_of(&state, &database)?;
    let changed = sqlx::query(&format!(
        "update outbox set {RETRY} where aggregatetype = $1 and aggregateid = $2 and {PARKED}"
    ))
    .bind(&aggregatetype)
    .bind(&aggregateid)
    .execute(pool)
    .await
    .map_err(internal)?
    .rows_affected();
    tracing::info!(%database, %aggregatetype, %aggregateid, changed, "admin: aggregate retried");
    Ok(Json(Changed { database, changed }))
}

/// `POST /admin/events/{database}/{id}/skip`: the parked event is never published, and stops
/// blocking its aggregate. It stays in the table (until retention) for the record.
#[utoipa::path(post, path = "/admin/events/{database}/{id}/skip", tag = "admin",
    params(("database" = String, Path), ("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Skipped: never published, no longer blocking", body = Changed),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such database, or no parked event with this id", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn skip_event(
    State(state): State<AppState>,
    Path((database, id)): Path<(String, Uuid)>,
) -> Result<Json<Changed>, Problem> {
    let changed = update_parked_event(&state, &database, id, "skipped_at = now()").await?;
    tracing::warn!(%database, %id, changed, "admin: event skipped");
    found(database, changed, id)
}

fn pool_of<'a>(state: &'a AppState, database: &str) -> Result<&'a PgPool, Problem> {
    state
        .relays
        .iter()
        .find(|r| r.name == database)
        .map(|r| r.pool())
        .ok_or_else(|| Problem::not_found(format!("no database named {database:?}")))
}

/// Applies `set` to the event `id` if it is parked; how many rows changed (0 or 1).
async fn update_parked_event(
    state: &AppState,
    database: &str,
    id: Uuid,
    set: &str,
) -> Result<u64, Problem> {
    let pool = pool_of(state, database)?;
    let changed = sqlx::query(&format!(
        "update outbox set {set} where id = $1 and {PARKED}"
    ))
    .bind(id)
    .execute(pool)
    .await
    .map_err(internal)?
    .rows_affected();
    Ok(changed)
}

fn found(database: String, changed: u64, id: Uuid) -> Result<Json<Changed>, Problem> {
    if changed == 0 {
        return Err(Problem::not_found(format!(
            "no parked event {id} in {database}"
        )));
    }
    tracing::info!(%database, %id, "admin: event changed");
    Ok(Json(Changed { database, changed }))
}

fn internal(error: sqlx::Error) -> Problem {
    tracing::error!(%error, "admin request failed on the database");
    Problem::internal()
}
