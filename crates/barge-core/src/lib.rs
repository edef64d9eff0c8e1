//! What both barge daemons share: the settings tree, the declared shape of each source, the SQS
//! message that links an archived batch to its loader, AWS client construction, telemetry, the
//! shutdown signal, systemd's readiness and watchdog notifications, and the metrics and health
//! endpoint.
//!
//! Nothing here talks to an external HTTP API or to PostgreSQL tables: those belong to the
//! `importer` and `transformer` crates respectively.

pub mod aws;
pub mod backoff;
pub mod batch;
pub mod column;
pub mod decimal;
pub mod fetch;
pub mod message;
pub mod metrics;
pub mod ops;
mod redact;
pub mod secrets;
pub mod service;
pub mod settings;
pub mod shutdown;
pub mod source;
pub mod telemetry;

pub use batch::{RecordLayout, content_digest, json_kind, split_records};
pub use column::{Column, ColumnType, Convert, Element, Lineage, NumericLimits};
pub use message::BatchMessage;
pub use redact::redact_url;
pub use settings::Settings;
pub use source::Source;

/// An error with its causes, `a: b: c`: the top-level message of reqwest, the AWS SDK or
/// tokio-postgres alone rarely says what actually happened.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        // Some libraries repeat their cause in their own message; say it once.
        if !text.ends_with(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}
