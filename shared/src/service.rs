//! A service process: its HTTP API and its event consumer, side by side until shutdown.

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::kafka::{run_consumer, ConsumerSettings, EventHandler};

/// Serves `router` and runs the consumer until `shutdown` fires; if the server fails, the
/// consumer is stopped too, so the process never runs half-alive.
pub async fn run<H: EventHandler>(
    listener: TcpListener,
    router: Router,
    consumer: ConsumerSettings,
    handler: H,
    shutdown: CancellationToken,
) -> Result<(), crate::StartupError> {
    let worker = tokio::spawn(run_consumer(consumer, handler, shutdown.clone()));
    let served = crate::http::serve(listener, router, shutdown.clone()).await;
    shutdown.cancel();
    if let Err(error) = worker.await {
        tracing::error!(%error, "consumer task panicked");
    }
    served.map_err(Into::into)
}
