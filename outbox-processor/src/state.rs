//! What the HTTP handlers (status page, admin API, health) share, apart from the wiring that
//! builds it (`startup`), so that the routes and the wiring do not import each other.

use outbox::{kafka::Producer, relay::Relays};
use secrecy::SecretString;

#[derive(Clone)]
pub struct AppState {
    /// One relay per source database, sharing the producer. Its outlet says whether the
    /// broker is away (status page) and whether an operator holds the relay (admin API).
    pub relays: Relays,
    pub producer: Producer,
    pub admin_token: Option<SecretString>,
}
