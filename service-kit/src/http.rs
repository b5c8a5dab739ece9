//! The HTTP edge every service shares: one server with the limits a public endpoint needs,
//! problem+json for every error, and extractors whose rejections are problems too.
//!
//! - `server` ([`Server`]): binds where it is told (127.0.0.1 unless configured), closes idle
//!   and trickling connections, bounds bodies and request time, drains in-flight requests on
//!   shutdown.
//! - `problem` ([`Problem`]): the one error shape (RFC 9457), and the layer that gives it to
//!   the answers the framework makes itself (404, 405, 408, 413, …).
//! - `extract` ([`Json`], [`Path`], [`Query`]): axum's extractors, answering bad input with a
//!   problem.

mod extract;
mod problem;
mod server;

pub use extract::{Json, Path, Query};
pub use problem::{problem_json, FieldError, Problem, PROBLEM_JSON};
pub use server::Server;

/// Serves an OpenAPI document at `/openapi.json`.
pub fn openapi_route(doc: utoipa::openapi::OpenApi) -> axum::Router {
    let doc = std::sync::Arc::new(doc);
    axum::Router::new().route(
        "/openapi.json",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { axum::Json(doc.as_ref().clone()) }
        }),
    )
}
