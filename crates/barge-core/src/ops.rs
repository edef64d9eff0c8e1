//! The daemons' operations endpoint, one small HTTP server per daemon:
//!
//! - `GET /metrics`: the registry in the OpenMetrics text format, which Prometheus scrapes;
//! - `GET /health/live`: 200 while the process serves at all;
//! - `GET /health/ready`: 200 once the daemon's dependencies answered and its loop runs
//!   ([`Liveness::ready`]), 503 before that, while its work is stalled (the watchdog's own
//!   notion of progress) and, for the transformer, while its loop makes no progress
//!   ([`Liveness::readiness`]).
//!
//! It listens on `metrics.importer_listen` or `metrics.transformer_listen` (loopback by
//! default) and stops with the daemon.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::service::{Liveness, Readiness};

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address} for metrics and health (metrics.*_listen): {reason}")]
pub struct OpsError {
    address: SocketAddr,
    reason: std::io::Error,
}

#[derive(Clone)]
struct Served {
    registry: Arc<Registry>,
    liveness: Liveness,
}

/// Binds `address` and serves `registry` and `liveness` until `shutdown` fires; returns the
/// address bound (its port chosen by the system when `address` has port 0), which is logged.
pub async fn serve(
    address: SocketAddr,
    registry: Registry,
    liveness: Liveness,
    shutdown: CancellationToken,
) -> Result<SocketAddr, OpsError> {
    let failed = |reason| OpsError { address, reason };
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(failed)?;
    let bound = listener.local_addr().map_err(failed)?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(|| async { "live\n" }))
        .route("/health/ready", get(ready))
        .with_state(Served {
            registry: Arc::new(registry),
            liveness,
        });
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(err) = served {
            tracing::error!(error = %err, "the metrics and health endpoint stopped");
        }
    });
    tracing::info!(address = %bound, "serving /metrics, /health/live and /health/ready");
    Ok(bound)
}

async fn metrics(State(served): State<Served>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &served.registry) {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

async fn ready(State(served): State<Served>) -> (StatusCode, String) {
    match served.liveness.readiness() {
        Readiness::Ready => (StatusCode::OK, "ready\n".into()),
        Readiness::Starting => (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: waiting for the daemon's dependencies to answer\n".into(),
        ),
        Readiness::NoProgress(elapsed) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "degraded: no progress for {}s (no receive answered, no message settled); \
                 see the log for the failing dependency\n",
                elapsed.as_secs()
            ),
        ),
        Readiness::Stalled(elapsed) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "stalled: a piece of work has been under way for {}s\n",
                elapsed.as_secs()
            ),
        ),
    }
}
