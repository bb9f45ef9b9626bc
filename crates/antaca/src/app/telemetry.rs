//! Telemetry of the process: logging (the tracing subscriber, human or JSON
//! lines on stderr) and the Prometheus recorder every `metrics::` call
//! reports to. It serves nothing and owns no engine state: `app` hands the
//! handle to the HTTP plane, which renders it at `/metrics`.

use super::config::LogFormat;
use super::BoxError;

/// Installs the process's log subscriber: `filter` in `EnvFilter` syntax
/// (e.g. `info,antaca=debug`), lines to stderr in `format`.
/// The store backend's own crates log their routine work (creating a
/// database, flushing a memtable) at info; they speak at warn unless the
/// filter names them.
pub fn init_logging(format: LogFormat, filter: &str) -> Result<(), BoxError> {
    let mut directives = filter.to_string();
    for quiet in ["fjall", "lsm_tree"] {
        if !directives.contains(quiet) {
            directives.push_str(&format!(",{quiet}=warn"));
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_new(directives.trim_start_matches(','))
        .map_err(|e| format!("log filter: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Human => builder.try_init(),
    };
    installed.map_err(|e| format!("logging: {e}").into())
}

/// The process's Prometheus recorder, installed by the first call; `None` when
/// another recorder was installed first (metrics then go there, `/metrics` is empty).
pub fn metrics_handle() -> Option<&'static metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
            const SECONDS: &[f64] = &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ];
            const SIZES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full("antaca_engine_batch_size".into()), SIZES));
            match builder.and_then(metrics_exporter_prometheus::PrometheusBuilder::install_recorder) {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; /metrics stays empty");
                    None
                }
            }
        })
        .as_ref()
}
