//! The HTTP server of every service: axum's router on hyper, with what a server facing
//! careless or hostile clients needs and `axum::serve` does not offer.
//!
//! - It listens on the configured address only (127.0.0.1 unless `BIND_ADDRESS` says
//!   otherwise), so the unauthenticated APIs are not on every interface by accident.
//! - A connection that does not send a request's headers within the header-read timeout is
//!   closed: an idle socket, a kept-alive connection left open, or a client trickling its
//!   headers a byte at a time cannot hold a connection (and its memory) for good.
//! - A request must be answered within the request timeout (408 otherwise), which bounds a
//!   trickled body too; a body over the limit is answered 413 before it is read.
//! - Every error answer is a problem ([`super::problem::errors_as_problems`]).
//! - On shutdown it stops accepting, lets in-flight requests finish (for at most the request
//!   timeout and a few seconds) and closes idle connections.

use std::{net::SocketAddr, time::Duration};

use axum::{
    extract::DefaultBodyLimit, http::StatusCode, middleware::map_response, routing::get, Router,
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::{timeout::TimeoutLayer, trace::TraceLayer};

use super::{problem::errors_as_problems, Problem};
use crate::config::HttpConfig;

/// A bound listener and the limits to serve it with. Binding comes first, so a service (or a
/// test, with port 0) knows its address before it runs.
pub struct Server {
    listener: TcpListener,
    config: HttpConfig,
}

impl Server {
    pub async fn bind(config: &HttpConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind((config.bind, config.port)).await?;
        Ok(Self {
            listener,
            config: config.clone(),
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    pub fn port(&self) -> u16 {
        self.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    /// Serves `app` (plus `/metrics` and request tracing) until `shutdown` fires, then lets
    /// in-flight requests finish.
    pub async fn serve(self, app: Router, shutdown: CancellationToken) -> std::io::Result<()> {
        let metrics = crate::telemetry::metrics();
        let app = app
            .route("/metrics", get(move || async move { metrics.render() }))
            .fallback(|| async { Problem::not_found("no such route") })
            .layer(DefaultBodyLimit::max(self.config.body_limit))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                self.config.request_timeout,
            ))
            .layer(map_response(errors_as_problems))
            .layer(TraceLayer::new_for_http());

        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.config.header_read_timeout);
        let connections = GracefulShutdown::new();
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    // Out of file descriptors, say: the connection is lost, the server is
                    // not. Wait a little instead of spinning on the same error.
                    Err(error) => {
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, %peer, "could not set TCP_NODELAY");
            }
            let connection =
                http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
            let connection = connections.watch(connection);
            tokio::spawn(async move {
                // A timed-out or reset connection is the client's business, not an error here.
                if let Err(error) = connection.await {
                    tracing::debug!(%error, %peer, "connection closed");
                }
            });
        }
        drop(self.listener);
        // In-flight requests end within the request timeout; an answer a client never reads
        // could hold its connection for good, so the wait for them is bounded too.
        let grace = self.config.request_timeout + Duration::from_secs(5);
        if tokio::time::timeout(grace, connections.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "connections still open after the grace period; closing"
            );
        }
        Ok(())
    }
}
