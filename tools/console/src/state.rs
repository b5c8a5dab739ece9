//! What the request handlers share, apart from the wiring that builds it (`startup`), so that
//! the routes and the wiring do not import each other.

use tokio_util::sync::CancellationToken;

use crate::{sources::Sources, watch::Snapshots};

#[derive(Clone)]
pub struct AppState {
    pub sources: Sources,
    pub snapshots: Snapshots,
    /// Ends the event streams when the server stops.
    pub shutdown: CancellationToken,
}
