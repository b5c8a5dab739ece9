//! Every way an invoice-service request can fail, as problem+json.

use axum::response::{IntoResponse, Response};
use service_kit::http::Problem;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no invoice for order {0}")]
    InvoiceNotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("database error")]
    Database(#[from] mongodb::error::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::InvoiceNotFound(_) => Problem::not_found(self.to_string()),
            ApiError::BadRequest(detail) => {
                Problem::new(axum::http::StatusCode::BAD_REQUEST, "Bad request").detail(detail)
            }
            ApiError::Database(error) => {
                tracing::error!(error = %error, "request failed on the database");
                Problem::internal()
            }
        }
        .into_response()
    }
}
