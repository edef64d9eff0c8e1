//! Structured logs on stderr (where systemd's journal picks them up), filtered by `RUST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `RUST_LOG` overrides `default_filter` (e.g. `info`).
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into the journal or a file.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
