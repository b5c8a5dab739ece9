//! The one shape of every error a client sees: an RFC 9457 problem, served as
//! `application/problem+json`. Handlers return [`Problem`]s (or errors that turn into one);
//! [`errors_as_problems`] gives the same shape to the answers the framework makes itself.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Serialize;

/// The media type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem: every error a client sees has this shape, with
/// `Content-Type: application/problem+json`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "type": "about:blank", "title": "Invalid order", "status": 422,
    "detail": "the order is invalid",
    "errors": [{"field": "items[0].quantity", "message": "must be between 1 and 1000000"}]
}))]
pub struct Problem {
    /// Always `about:blank`: the status and title say what happened.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: &'static str,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Field-level validation errors, when there are some.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl Problem {
    pub fn new(status: StatusCode, title: impl Into<String>) -> Self {
        Self {
            kind: "about:blank",
            title: title.into(),
            status: status.as_u16(),
            detail: None,
            errors: Vec::new(),
        }
    }

    /// The problem of a bare status: its reason phrase as the title.
    pub fn status(status: StatusCode) -> Self {
        Self::new(status, status.canonical_reason().unwrap_or("Error"))
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not Found").detail(what)
    }

    /// For unexpected failures: the client learns nothing internal, the log gets the cause.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        problem_json(self.status_code(), &self)
    }
}

/// `body` (a problem, or a problem with extension members) as `application/problem+json`.
pub fn problem_json(status: StatusCode, body: &impl Serialize) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

/// How much of the framework's own error text is kept as the problem's `detail`.
const DETAIL_LIMIT: usize = 512;

/// Middleware: an error answer that is not a problem yet (the framework's 404, 405, 408, 413,
/// 415, or anything else a layer made) becomes the problem for its status. Its headers stay
/// (`Allow` on a 405, `WWW-Authenticate` on a 401), and its text, when short, is the detail.
pub async fn errors_as_problems(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, DETAIL_LIMIT)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let mut problem = Problem::status(status);
    if let Some(text) = text {
        problem = problem.detail(text);
    } else if status == StatusCode::METHOD_NOT_ALLOWED {
        problem = problem.detail("the Allow header lists the methods this resource takes");
    }
    let fresh = problem.into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in fresh.headers() {
        parts.headers.insert(name, value.clone());
    }
    Response::from_parts(parts, fresh.into_body())
}
