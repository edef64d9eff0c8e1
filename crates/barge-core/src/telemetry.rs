//! Structured logs on stderr (where systemd's journal picks them up), filtered by `RUST_LOG`:
//! human-readable lines, or one JSON object per line (`log.format = "json"`) carrying the event's
//! fields and those of every span it happened in (source, message id, object key), for journald
//! or CloudWatch Logs Insights to query.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// Installs the global subscriber; `RUST_LOG` overrides `default_filter` (e.g. `info`).
pub fn init(default_filter: &str, format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Colour codes only for a person at a terminal, never into the journal or a file.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        // The event's fields at the top level, each enclosing span's in `spans`.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .init(),
    }
}
