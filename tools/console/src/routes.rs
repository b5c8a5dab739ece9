//! The console's HTTP port (8090): the page at `/`, its data at `/flow.json` and as a live
//! stream at `/events` (server-sent events: a `snapshot` event per change, and every 5 s),
//! `/health`.

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::State,
    response::{
        sse::{Event, KeepAlive, Sse},
        Html,
    },
    routing::get,
    Router,
};
use futures::{Stream, StreamExt};
use mongodb::bson::doc;
use service_kit::{
    health::{self, Checks, Readiness},
    http::Json,
};
use tokio_stream::wrappers::WatchStream;

use crate::{flow::Snapshot, state::AppState};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/flow.json", get(flow))
        .route("/events", get(events))
        .merge(health::routes(ready))
        .with_state(state)
}

/// The page: one static file, no build step; it renders what `/events` sends.
async fn page() -> Html<&'static str> {
    Html(include_str!("../assets/flow.html"))
}

async fn flow(State(state): State<AppState>) -> Json<Snapshot> {
    Json(state.snapshots.borrow().as_ref().clone())
}

/// The current snapshot at once, then every change. The stream ends on shutdown, so an open
/// page never holds the server's graceful stop.
async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = WatchStream::new(state.snapshots.clone())
        .map(|snapshot| {
            Ok(Event::default()
                .event("snapshot")
                .json_data(snapshot.as_ref())
                .unwrap_or_else(|_| Event::default().comment("unserializable snapshot")))
        })
        .take_until(state.shutdown.cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
}

/// Ready when both PostgreSQL databases answer; MongoDB only informs (the page shows orders
/// without their invoices while it is away).
async fn ready(State(state): State<AppState>) -> Readiness {
    let mongo = state.sources.mongo.clone();
    Checks::new()
        .require("postgres:orders", health::postgres(&state.sources.orders))
        .require(
            "postgres:inventory",
            health::postgres(&state.sources.inventory),
        )
        .inform("mongodb", async move {
            mongo.run_command(doc! { "ping": 1 }).await.map(|_| ())
        })
        .run()
        .await
}
