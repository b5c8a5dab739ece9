//! What the request handlers share, apart from the wiring that builds it (`startup`), so that
//! the routes and the wiring do not import each other.

use mongodb::Database;
use rdkafka::producer::FutureProducer;

#[derive(Clone)]
pub struct AppState {
    pub db: Database,
    /// Used only by the health checks to see the broker.
    pub producer: FutureProducer,
}
