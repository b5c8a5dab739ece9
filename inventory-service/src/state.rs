//! What the request handlers share, apart from the wiring that builds it (`startup`), so that
//! the routes and the wiring do not import each other.

/// The pool, and a producer for the health checks (see [`service_kit::service::PgState`]).
pub type AppState = service_kit::service::PgState;
