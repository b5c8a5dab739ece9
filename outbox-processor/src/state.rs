//! What the HTTP handlers (status page, admin API, health) share, apart from the wiring that
//! builds it (`startup`), so that the routes and the wiring do not import each other.

use std::sync::Arc;

use outbox::{
    kafka::Publisher,
    relay::{Outage, Relay},
};
use secrecy::SecretString;

#[derive(Clone)]
pub struct AppState {
    pub relays: Arc<Vec<Relay>>,
    pub publisher: Publisher,
    /// Whether the broker is away (publishing paused), for the status page.
    pub outage: Outage,
    pub admin_token: Option<SecretString>,
}
