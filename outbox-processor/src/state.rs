//! What the HTTP handlers (status page, admin API, health) share, apart from the wiring that
//! builds it (`startup`), so that the routes and the wiring do not import each other.

use outbox::{
    kafka::Producer,
    relay::{Hold, Outage, Relays},
};
use secrecy::SecretString;

#[derive(Clone)]
pub struct AppState {
    /// One relay per source database, sharing the producer.
    pub relays: Relays,
    pub producer: Producer,
    /// Whether the broker is away (publishing paused), for the status page.
    pub outage: Outage,
    /// Whether an operator holds the relay (admin API, status page).
    pub hold: Hold,
    pub admin_token: Option<SecretString>,
}
