//! What can go wrong with one SQS message. Every variant names the object key (or the message,
//! when there is no key yet) and says whether a redelivery may succeed.
//!
//! Either way the message is *not* deleted: SQS redelivers it after the visibility timeout and,
//! after the queue's `maxReceiveCount`, moves it to the dead-letter queue. Nothing is lost, and the
//! raw object stays in the archive for replay.

use crate::record::RecordError;

/// Why a message's batch was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The body is not a batch message this build reads (foreign, corrupt or newer format).
    #[error("message body is unusable: {0}")]
    Message(#[from] barge_core::message::MessageError),
    /// The message names a source these settings do not declare.
    #[error("{key}: source {source_name:?} is not declared in the settings")]
    UnknownSource {
        /// Object key from the message.
        key: String,
        /// Source name from the message.
        source_name: String,
    },
    /// The object could not be read from S3.
    #[error("s3://{bucket}/{key}: cannot download: {reason}")]
    Download {
        /// Bucket from the message.
        bucket: String,
        /// Object key.
        key: String,
        /// The SDK's full error chain.
        reason: String,
    },
    /// The object's bytes are not the ones the importer announced.
    #[error("{key}: SHA-256 is {actual}, the message announced {expected}")]
    Checksum {
        /// Object key.
        key: String,
        /// Digest from the message.
        expected: String,
        /// Digest of the downloaded bytes.
        actual: String,
    },
    /// The object is not a JSON array of records.
    #[error("{key}: {format}")]
    Format {
        /// Object key.
        key: String,
        /// What the object is instead.
        format: barge_core::batch::BatchFormatError,
    },
    /// A record does not fit the source's columns.
    #[error("{key}: {record}")]
    Record {
        /// Object key.
        key: String,
        /// Which record and field, and why.
        record: RecordError,
    },
    /// PostgreSQL refused or could not be reached; the transaction was rolled back.
    #[error("{key}: loading into table {table:?} failed: {reason}")]
    Database {
        /// Object key.
        key: String,
        /// Target table.
        table: String,
        /// The driver's full error chain, with PostgreSQL's own message.
        reason: String,
        /// Whether the SQLSTATE (or a lost connection) says a retry may succeed.
        retryable: bool,
    },
}

impl ProcessError {
    /// Whether redelivering the same message may succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Download { .. } => true,
            Self::Database { retryable, .. } => *retryable,
            Self::Message(_)
            | Self::UnknownSource { .. }
            | Self::Checksum { .. }
            | Self::Format { .. }
            | Self::Record { .. } => false,
        }
    }

    pub(crate) fn database(key: &str, table: &str, err: &tokio_postgres::Error) -> Self {
        Self::Database {
            key: key.to_owned(),
            table: table.to_owned(),
            reason: barge_core::error_chain(err),
            retryable: is_transient(err),
        }
    }
}

/// Connection failures, serialization conflicts, resource exhaustion and administrator
/// shutdowns pass; constraint, type and schema errors do not.
pub(crate) fn is_transient(err: &tokio_postgres::Error) -> bool {
    match err.code() {
        None => true,
        Some(state) => ["08", "40", "53", "57", "58"]
            .iter()
            .any(|class| state.code().starts_with(class)),
    }
}
