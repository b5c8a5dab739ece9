//! Every way an inventory-service request can fail, as problem+json.

use axum::response::{IntoResponse, Response};
use service_kit::http::Problem;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("product {0} does not exist")]
    ProductNotFound(String),
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::ProductNotFound(_) => Problem::not_found(self.to_string()),
            ApiError::Database(error) => {
                tracing::error!(error = %error, "request failed on the database");
                Problem::internal()
            }
        }
        .into_response()
    }
}
