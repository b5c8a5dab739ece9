//! Extractors whose rejections are problems: `Json`, `Path` and `Query` as axum has them,
//! with the answers a client can act on (400, 404, 413, 415, 422) instead of plain text.
//!
//! They also refuse what PostgreSQL would refuse later with a 500: a NUL character, which
//! can reach a path or a query only percent-encoded (`%00`).

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{de::DeserializeOwned, Serialize};

use super::Problem;

/// `axum::Json`, but a body that is not JSON, or not the expected shape, is answered with a
/// problem: 400 for bad syntax, 413 over the body limit (see [`super::Server`]), 415 for a
/// wrong content type, 422 for a wrong shape. The body must be a JSON object: serde would
/// also take a struct from an array of its fields in order, which no client means.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let invalid = |status: StatusCode, detail: String| {
            Problem::new(status, "Invalid request body").detail(detail)
        };
        if !is_json(req.headers()) {
            return Err(invalid(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected a body with Content-Type: application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| invalid(rejection.status(), rejection.body_text()))?;
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes)
            .map_err(|rejection| invalid(rejection.status(), rejection.body_text()))?;
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(invalid(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the body must be a JSON object".into(),
            ));
        }
        Ok(Json(value))
    }
}

/// `application/json`, or any `application/*+json`, parameters aside.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Whether a raw (still percent-encoded) path or query holds a NUL character.
fn has_nul(raw: &str) -> bool {
    raw.contains("%00")
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Path`, with a problem (404) when the path segment does not parse, e.g. an
/// order id that is not a UUID, or a name with a NUL character, cannot name anything.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if has_nul(parts.uri.path()) {
            return Err(Problem::not_found(
                "a path with a NUL character names nothing",
            ));
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|rejection| Problem::not_found(rejection.body_text()))
    }
}

/// `axum::extract::Query` with a 400 problem for bad query strings.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let invalid = |detail: String| {
            Problem::new(StatusCode::BAD_REQUEST, "Invalid query string").detail(detail)
        };
        if parts.uri.query().is_some_and(has_nul) {
            return Err(invalid("a query with a NUL character".into()));
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| invalid(rejection.body_text()))
    }
}
