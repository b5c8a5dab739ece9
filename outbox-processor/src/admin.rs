//! The operator's side of the relay over HTTP: see parked events, retry them after a fix, or
//! skip one. What each does is [`outbox::relay::admin`]'s; this module adds the routes, the
//! token and the answers.
//!
//! `POST /admin/relay/pause` holds the relay (events wait in the outbox, the services go on)
//! and `POST /admin/relay/resume` lets it go on; see [`outbox::relay::Hold`].
//!
//! After an incident, `POST /admin/parked/retry` retries every parked
//! event at once, or those a filter picks (database, error text, when they were parked); the
//! same filter on `GET /admin/parked` shows beforehand what it will take. Every route needs
//! `Authorization: Bearer $RELAY_ADMIN_TOKEN`.

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
use service_kit::http::{Json, Path, Problem, Query};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use outbox::relay::{
    admin::{self, Acted, ParkedEvent},
    AnySource, Relay, Switch,
};

use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/admin/relay/pause", post(pause_relay))
        .route("/admin/relay/resume", post(resume_relay))
        .route("/admin/parked", get(list_parked))
        .route("/admin/parked/retry", post(retry_parked))
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
        .and_then(bearer_token)
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

/// The token of `Authorization: Bearer <token>`; the scheme's name is case-insensitive
/// (RFC 9110, 11.1), and one or more spaces may follow it.
fn bearer_token(credentials: &str) -> Option<&str> {
    let (scheme, token) = credentials.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// The relay's switch after an operator's pause or resume, and before it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Switched {
    pub relay: Switch,
    pub was: Switch,
}

/// `POST /admin/relay/pause`: this process claims nothing more until resumed; answers once no
/// batch is in flight, so an event committed afterwards waits in the outbox. Other relay
/// instances are not affected.
#[utoipa::path(post, path = "/admin/relay/pause", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Held; `was` tells whether it already was", body = Switched),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn pause_relay(State(state): State<AppState>) -> Json<Switched> {
    let was = state.relays.outlet().hold.hold().await;
    Json(Switched {
        relay: state.relays.outlet().hold.state(),
        was,
    })
}

/// `POST /admin/relay/resume`: the relay claims again; what waited goes out in order.
#[utoipa::path(post, path = "/admin/relay/resume", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Relaying; `was` tells whether it was held", body = Switched),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn resume_relay(State(state): State<AppState>) -> Json<Switched> {
    let was = state.relays.outlet().hold.release();
    Json(Switched {
        relay: state.relays.outlet().hold.state(),
        was,
    })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ParkedList {
    pub items: Vec<ParkedEvent>,
}

/// Which parked events a list or a bulk retry takes; every field narrows, none means all.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ParkedFilter {
    /// Only this database (a name from `OUTBOX_DATABASES`).
    #[param(pattern = r"^[^\x00]*$")]
    pub database: Option<String>,
    /// Only events whose last error contains this text (case-sensitive). Text holds no NUL
    /// character (PostgreSQL's cannot), so a filter with one is refused (400).
    #[param(pattern = r"^[^\x00]*$")]
    pub error: Option<String>,
    /// Only events parked at or after this time (RFC 3339).
    pub parked_from: Option<DateTime<Utc>>,
    /// Only events parked before this time (RFC 3339).
    pub parked_to: Option<DateTime<Utc>>,
}

impl ParkedFilter {
    /// What the library's filter takes: the same, without the database.
    fn events(&self) -> admin::ParkedFilter {
        admin::ParkedFilter {
            error: self.error.clone(),
            parked_from: self.parked_from,
            parked_to: self.parked_to,
        }
    }

    /// The relays it covers: one database, or all; a name that matches none is a 404. A time
    /// range that is empty (`parked_from` not before `parked_to`) is no error: like any other
    /// filter that matches nothing, it takes nothing.
    fn relays<'a>(&self, state: &'a AppState) -> Result<Vec<&'a Relay<AnySource>>, Problem> {
        let relays: Vec<_> = state
            .relays
            .databases()
            .iter()
            .filter(|r| self.database.as_ref().is_none_or(|d| *d == r.name))
            .collect();
        match &self.database {
            Some(database) if relays.is_empty() => Err(Problem::not_found(format!(
                "no database named {database:?}"
            ))),
            _ => Ok(relays),
        }
    }
}

/// `GET /admin/parked[?database=orders&error=…&parked_from=…&parked_to=…]`.
#[utoipa::path(get, path = "/admin/parked", tag = "admin", params(ParkedFilter),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Parked events, oldest first", body = ParkedList),
        (status = 400, description = "A malformed filter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Admin API disabled (no RELAY_ADMIN_TOKEN)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such database", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_parked(
    State(state): State<AppState>,
    Query(filter): Query<ParkedFilter>,
) -> Result<Json<ParkedList>, Problem> {
    let mut items = Vec::new();
    for relay in filter.relays(&state)? {
        items.extend(
            admin::parked(relay.pool(), &relay.name, &filter.events())
                .await
                .map_err(internal)?,
        );
    }
    Ok(Json(ParkedList { items }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkRetried {
    /// Per database: how many parked events are due again.
    pub databases: Vec<Changed>,
    pub total: u64,
}

/// `POST /admin/parked/retry[?database=orders&error=…&parked_from=…&parked_to=…]`: every
/// parked event the filter takes is due again at once, attempts reset. Each aggregate's
/// events still go out in order: the relay claims them by `seq`.
#[utoipa::path(post, path = "/admin/parked/retry", tag = "admin", params(ParkedFilter),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "How many parked events are due again, per database (may be 0)", body = BulkRetried),
        (status = 400, description = "A malformed filter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such database", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn retry_parked(
    State(state): State<AppState>,
    Query(filter): Query<ParkedFilter>,
) -> Result<Json<BulkRetried>, Problem> {
    let mut databases = Vec::new();
    for relay in filter.relays(&state)? {
        let changed = admin::retry_parked(relay.pool(), &filter.events())
            .await
            .map_err(internal)?;
        tracing::info!(database = %relay.name, ?filter, changed, "admin: parked events retried in bulk");
        databases.push(Changed {
            database: relay.name.clone(),
            changed,
        });
    }
    let total = databases.iter().map(|d| d.changed).sum();
    Ok(Json(BulkRetried { databases, total }))
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
    let acted = admin::retry(pool_of(&state, &database)?, id)
        .await
        .map_err(internal)?;
    found(database, acted, id)
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
    let changed = admin::retry_aggregate(pool, &aggregatetype, &aggregateid)
        .await
        .map_err(internal)?;
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
    let acted = admin::skip(pool_of(&state, &database)?, id)
        .await
        .map_err(internal)?;
    tracing::warn!(%database, %id, ?acted, "admin: event skipped");
    found(database, acted, id)
}

fn pool_of<'a>(state: &'a AppState, database: &str) -> Result<&'a PgPool, Problem> {
    state
        .relays
        .databases()
        .iter()
        .find(|r| r.name == database)
        .map(|r| r.pool())
        .ok_or_else(|| Problem::not_found(format!("no database named {database:?}")))
}

fn found(database: String, acted: Acted, id: Uuid) -> Result<Json<Changed>, Problem> {
    match acted {
        Acted::NotParked => Err(Problem::not_found(format!(
            "no parked event {id} in {database}"
        ))),
        Acted::Done => {
            tracing::info!(%database, %id, "admin: event changed");
            Ok(Json(Changed {
                database,
                changed: 1,
            }))
        }
    }
}

fn internal(error: sqlx::Error) -> Problem {
    tracing::error!(%error, "admin request failed on the database");
    Problem::internal()
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_nothing_else_passes() {
        for given in ["Bearer t0k", "bearer t0k", "BEARER t0k", "bEaReR   t0k"] {
            assert_eq!(bearer_token(given), Some("t0k"), "{given}");
        }
        for given in ["Basic t0k", "Bearert0k", "t0k", "", "Bearer"] {
            assert_ne!(bearer_token(given), Some("t0k"), "{given}");
        }
    }
}
