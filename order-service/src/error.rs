//! Every way an order-service request can fail, and the problem+json a client sees for it.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use service_kit::http::{FieldError, Problem};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the order is invalid")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    BadRequest(String),
    #[error("order {0} does not exist")]
    OrderNotFound(Uuid),
    #[error("cursor {0} names no order")]
    CursorNotFound(Uuid),
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = match &self {
            ApiError::Validation(errors) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid order")
                    .detail(self.to_string())
                    .errors(errors.clone())
            }
            ApiError::BadRequest(detail) => {
                Problem::new(StatusCode::BAD_REQUEST, "Bad request").detail(detail)
            }
            ApiError::OrderNotFound(_) | ApiError::CursorNotFound(_) => {
                Problem::not_found(self.to_string())
            }
            ApiError::IdempotencyKeyReused => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Idempotency-Key reused")
                    .detail(self.to_string())
            }
            ApiError::Database(error) => {
                // The client gets no internals; the log gets the whole cause.
                tracing::error!(error = %error, "request failed on the database");
                Problem::internal()
            }
        };
        problem.into_response()
    }
}
