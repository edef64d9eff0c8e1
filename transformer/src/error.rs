//! What can go wrong with one SQS message, and what then happens to it. Every variant names the
//! object (bucket and key) or, before there is one, the message body's problem.
//!
//! The class decides the message's fate:
//! - **transient** ([`ProcessError::is_transient`]): the daemon keeps the message (its visibility
//!   extended) and tries again with backoff; nothing is consumed.
//! - **permanent**: no retry can help. The message is moved to the dead-letter queue at once with
//!   this error as its reason, and removed from the main queue. The raw object stays archived.
//!
//! Records that do not fit their columns are not errors of the message: they are rejected one by
//! one (see [`crate::rejects`]) unless too many are, which is [`ProcessError::TooManyRejects`].

use barge_core::batch::BatchFormatError;
use barge_core::message::MessageError;

/// Why a message's batch was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The body is neither a barge batch message this build reads nor an S3 event.
    #[error("message body is unusable: {0}")]
    Message(#[from] MessageError),
    /// The message points outside the archive this transformer is configured to read.
    #[error(
        "s3://{bucket}/{key}: not under s3://{archive_bucket}/{archive_prefix}/, which is all this transformer loads"
    )]
    ForeignObject {
        /// Bucket from the message.
        bucket: String,
        /// Key from the message.
        key: String,
        /// `storage.bucket`.
        archive_bucket: String,
        /// `storage.prefix`.
        archive_prefix: String,
    },
    /// The message names a source these settings do not declare.
    #[error("{key}: source {source_name:?} is not declared in the settings")]
    UnknownSource {
        /// Object key from the message.
        key: String,
        /// Source name from the message.
        source_name: String,
    },
    /// The announced object does not exist.
    #[error("s3://{bucket}/{key}: object does not exist: {reason}")]
    MissingObject {
        /// Bucket from the message.
        bucket: String,
        /// Object key.
        key: String,
        /// The SDK's full error chain.
        reason: String,
    },
    /// The object could not be read from S3 this time (network, throttling, 5xx, permissions).
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
        format: BatchFormatError,
    },
    /// More of the object's records were rejected than the source allows.
    #[error(
        "{key}: {rejected} of {read} records rejected, more than the source's max_reject_ratio \
         {limit}; first: {first}"
    )]
    TooManyRejects {
        /// Object key.
        key: String,
        /// Records that did not fit.
        rejected: usize,
        /// Records in the object.
        read: usize,
        /// The source's `max_reject_ratio`.
        limit: f64,
        /// The first rejected record's error, as an example.
        first: String,
    },
    /// The rejected records could not be written to S3; nothing was loaded.
    #[error("{key}: cannot write its rejected records to s3://{bucket}/{rejects_key}: {reason}")]
    Rejects {
        /// Object key.
        key: String,
        /// Bucket of the rejects object.
        bucket: String,
        /// Key of the rejects object.
        rejects_key: String,
        /// The SDK's full error chain.
        reason: String,
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
        transient: bool,
    },
}

impl ProcessError {
    /// Whether trying the same message again, unchanged, may succeed: the dependency was down,
    /// slow or throttling. Everything else is permanent for the message.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Download { .. } | Self::Rejects { .. } => true,
            Self::Database { transient, .. } => *transient,
            Self::Message(_)
            | Self::ForeignObject { .. }
            | Self::UnknownSource { .. }
            | Self::MissingObject { .. }
            | Self::Checksum { .. }
            | Self::Format { .. }
            | Self::TooManyRejects { .. } => false,
        }
    }

    /// A stable, short name of the error's kind: the `barge-error-class` attribute of a
    /// dead-lettered message, for filtering and alerting.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Message(MessageError::UnsupportedVersion(_)) => "unsupported-version",
            Self::Message(MessageError::Malformed(_)) => "malformed-message",
            Self::ForeignObject { .. } => "foreign-object",
            Self::UnknownSource { .. } => "unknown-source",
            Self::MissingObject { .. } => "missing-object",
            Self::Download { .. } => "download",
            Self::Checksum { .. } => "checksum-mismatch",
            Self::Format { .. } => "unreadable-object",
            Self::TooManyRejects { .. } => "too-many-rejects",
            Self::Rejects { .. } => "rejects-write",
            Self::Database { .. } => "database",
        }
    }

    pub(crate) fn database(key: &str, table: &str, err: &tokio_postgres::Error) -> Self {
        Self::Database {
            key: key.to_owned(),
            table: table.to_owned(),
            reason: barge_core::error_chain(err),
            transient: is_transient(err),
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
