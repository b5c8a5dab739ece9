//! Logs (`tracing`) and metrics (Prometheus) for every service.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{fmt, EnvFilter};

/// Installs the log subscriber: `RUST_LOG` filters (default `info`), `LOG_FORMAT=json` gives
/// one JSON object per line for log shippers. Calling it twice (tests) is harmless.
pub fn init(service: &'static str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn,sqlx=warn"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json");
    let result = if json {
        fmt().with_env_filter(filter).json().try_init()
    } else {
        // Colours only on a terminal: log files stay greppable.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
        fmt().with_env_filter(filter).with_ansi(ansi).try_init()
    };
    if result.is_ok() {
        tracing::info!(service, "telemetry initialised");
    }
}

/// The process-wide Prometheus recorder. Installed on first use: several apps in one test
/// process share it, as they share the process.
pub fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; ours then simply records
            // nothing, which must not stop a service.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
