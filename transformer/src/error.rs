//! What can go wrong with one SQS message, and what then happens to it. Every variant names the
//! object (bucket and key) or, before there is one, the message body's problem.
//!
//! The class ([`ProcessError::class`]) decides the message's fate:
//! - **outage** of PostgreSQL or S3: every message would fail the same way, so the transformer
//!   hands back every other message it holds, stops receiving, and tries the failed one again
//!   with backoff until it passes. Receive counts do not climb while it is down.
//! - **retry**: this attempt lost a race (deadlock, serialization, lock or statement timeout) or
//!   was throttled; the message is held (its visibility extended) and tried again with backoff,
//!   a bounded number of times.
//! - **permanent**: no retry can help. The message is moved to the dead-letter queue at once with
//!   this error as its reason, and removed from the main queue. The raw object stays archived.
//!
//! Records that do not fit their columns are not errors of the message: they are rejected one by
//! one (see [`crate::rejects`]) unless too many are, which is [`ProcessError::TooManyRejects`].

use barge_core::batch::BatchFormatError;
use barge_core::message::MessageError;
use barge_core::settings::DbError;

use crate::notice::NoticeError;

/// Why a message's batch was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The body is neither a barge batch message this build reads nor an S3 event notification
    /// of created objects.
    #[error("message body is unusable: {0}")]
    Message(#[from] NoticeError),
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
    /// An S3 event names an object outside every source's landing prefix (or in another bucket).
    #[error(
        "s3://{bucket}/{key}: not in a landing zone: S3 events are loaded only for objects of \
         bucket {landing_bucket} under a source's landing_prefix ({})",
        landing_zones_text(.landing_prefixes)
    )]
    OutsideLandingZone {
        /// Bucket from the event.
        bucket: String,
        /// Key from the event, decoded.
        key: String,
        /// `storage.bucket`.
        landing_bucket: String,
        /// Each declared `landing_prefix` with its source: `(prefix, source)`.
        landing_prefixes: Vec<(String, String)>,
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
        /// Outage or retry, from the S3 error.
        class: FailureClass,
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
    /// The object is not a JSON array (or NDJSON) of records.
    #[error("{key}: {format}{}", ndjson_hint(.format))]
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
        rejected: u64,
        /// Records in the object.
        read: u64,
        /// The source's `max_reject_ratio`.
        limit: f64,
        /// The first rejected record's error, as an example.
        first: String,
    },
    /// The transformer itself failed on this object (a bug: the object reader panicked). Kept
    /// apart on the dead-letter queue rather than retried into the same failure.
    #[error("{key}: internal error while reading the object (please report it): {reason}")]
    Internal {
        /// Object key.
        key: String,
        /// The panic's message.
        reason: String,
    },
    /// Rejected records could not be spooled to a local temporary file; nothing was loaded.
    #[error("{key}: cannot spool its rejected records to a temporary file: {reason}")]
    Spool {
        /// Object key.
        key: String,
        /// The I/O error.
        reason: String,
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
        /// Outage or retry, from the S3 error.
        class: FailureClass,
    },
    /// PostgreSQL refused or could not be reached; the transaction was rolled back.
    #[error("{key}: loading into table {table:?} failed: {reason}")]
    Database {
        /// Object key.
        key: String,
        /// Target table.
        table: String,
        /// The driver's full error chain, with PostgreSQL's own message and context.
        reason: String,
        /// From the SQLSTATE or the kind of connection failure ([`database_class`]).
        class: FailureClass,
    },
}

/// What a failure means for the message in hand (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// The dependency is down or refuses us: stop receiving until it answers.
    Outage(Dependency),
    /// Try this message again in place, after a pause.
    Retry,
    /// Dead-letter the message now.
    Permanent,
}

/// A service the transformer cannot work without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    /// The target PostgreSQL database.
    Database,
    /// The S3 archive.
    Storage,
}

impl std::fmt::Display for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Database => "PostgreSQL",
            Self::Storage => "S3",
        })
    }
}

impl ProcessError {
    /// What the failure means for the message.
    pub fn class(&self) -> FailureClass {
        match self {
            Self::Download { class, .. }
            | Self::Rejects { class, .. }
            | Self::Database { class, .. } => *class,
            // A full or unwritable temporary directory is the host's, and may clear.
            Self::Spool { .. } => FailureClass::Retry,
            Self::Message(_)
            | Self::ForeignObject { .. }
            | Self::OutsideLandingZone { .. }
            | Self::UnknownSource { .. }
            | Self::MissingObject { .. }
            | Self::Checksum { .. }
            | Self::Format { .. }
            | Self::Internal { .. }
            | Self::TooManyRejects { .. } => FailureClass::Permanent,
        }
    }

    /// Whether trying the same message again, unchanged, may succeed.
    pub fn is_transient(&self) -> bool {
        self.class() != FailureClass::Permanent
    }

    /// A stable, short name of the error's kind: the `barge-error-class` attribute of a
    /// dead-lettered message, for filtering and alerting.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Message(NoticeError::Batch(MessageError::UnsupportedVersion(_))) => {
                "unsupported-version"
            }
            Self::Message(
                NoticeError::Batch(MessageError::Malformed(_))
                | NoticeError::MalformedEvent(_)
                | NoticeError::NoRecords
                | NoticeError::UndecodableKey { .. },
            ) => "malformed-message",
            Self::Message(NoticeError::UnsupportedEvent(_)) => "unsupported-event",
            Self::ForeignObject { .. } => "foreign-object",
            Self::OutsideLandingZone { .. } => "outside-landing-zone",
            Self::UnknownSource { .. } => "unknown-source",
            Self::MissingObject { .. } => "missing-object",
            Self::Download { .. } => "download",
            Self::Checksum { .. } => "checksum-mismatch",
            Self::Format { .. } => "unreadable-object",
            Self::TooManyRejects { .. } => "too-many-rejects",
            Self::Rejects { .. } => "rejects-write",
            Self::Spool { .. } => "rejects-spool",
            Self::Internal { .. } => "internal-error",
            Self::Database { .. } => "database",
        }
    }

    /// A database failure while loading `key` into `table`. During the COPY, `rejects` maps its
    /// input lines to record indices, so that PostgreSQL's "COPY …, line N" names the record.
    pub(crate) fn database(
        key: &str,
        table: &str,
        err: &DbError,
        rejects: Option<&crate::rejects::Rejects>,
    ) -> Self {
        let mut reason = barge_core::error_chain(err);
        let postgres = match err {
            DbError::Postgres(postgres) => Some(postgres),
            DbError::TlsRoots { .. } | DbError::Password(_) => None,
        };
        if let Some(context) = postgres
            .and_then(|e| e.as_db_error())
            .and_then(|db| db.where_())
        {
            reason.push_str("\nCONTEXT: ");
            reason.push_str(context);
            if let Some(index) = copy_line(context)
                .zip(rejects)
                .and_then(|(line, rejects)| rejects.record_of_copy_line(line))
            {
                reason.push_str(&format!(" (record {index})"));
            }
        }
        Self::Database {
            key: key.to_owned(),
            table: table.to_owned(),
            reason,
            // Unreadable trust roots or password are the host's problem, like an unreachable
            // server.
            class: postgres.map_or(FailureClass::Outage(Dependency::Database), database_class),
        }
    }
}

/// The landing prefixes of an [`ProcessError::OutsideLandingZone`], or that there are none.
fn landing_zones_text(prefixes: &[(String, String)]) -> String {
    if prefixes.is_empty() {
        return "no source declares a landing_prefix".into();
    }
    let zones: Vec<String> = prefixes
        .iter()
        .map(|(prefix, source)| format!("{}/ of source {source:?}", prefix.trim_end_matches('/')))
        .collect();
    format!("landing prefixes: {}", zones.join(", "))
}

/// For an object that is not an array: how to have it read as NDJSON instead, if it is.
fn ndjson_hint(format: &BatchFormatError) -> &'static str {
    match format {
        BatchFormatError::NotArray(_) => {
            " (NDJSON objects need a key ending in .ndjson or .jsonl, or Content-Type \
             application/x-ndjson)"
        }
        _ => "",
    }
}

/// The input line number in a COPY error's context (`COPY t, line 3, column c: …`).
fn copy_line(context: &str) -> Option<u64> {
    let rest = &context[context.find(", line ")? + ", line ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|line| *line > 0)
}

/// The class of a PostgreSQL failure, by SQLSTATE (the table in the README):
///
/// | SQLSTATE | meaning | class |
/// | --- | --- | --- |
/// | none: connection refused, reset, closed, timed out | unreachable | outage |
/// | `08…` | connection exception | outage |
/// | `28…`, `3D000` | authentication failed, no such database | outage |
/// | `53…` | insufficient resources (disk full, out of memory, too many connections) | outage |
/// | `57P01`, `57P02`, `57P03` | server shutting down, crashed, starting up | outage |
/// | `58…`, `XX…` | system or internal error | outage |
/// | `42501`, `42P01`, `42703`, `42804`, `25006` | permission revoked, table or column gone or changed, read-only | outage (the database, not the batch, changed) |
/// | `40001`, `40P01` | serialization failure, deadlock | retry |
/// | `55P03`, `55006`, `57014` | lock not available, object in use, statement timeout | retry |
/// | anything else (`22…` data, `23…` constraint, `42…` schema, …) | the batch itself | permanent |
///
/// Errors without SQLSTATE that are not about the connection (a value the driver cannot
/// encode) are permanent too: retrying sends the same bytes.
pub fn database_class(err: &tokio_postgres::Error) -> FailureClass {
    let outage = FailureClass::Outage(Dependency::Database);
    let Some(state) = err.code() else {
        let connection_lost = err.is_closed()
            || std::error::Error::source(err).is_some_and(|source| source.is::<std::io::Error>())
            || err.to_string().starts_with("timeout");
        return if connection_lost {
            outage
        } else {
            FailureClass::Permanent
        };
    };
    let code = state.code();
    if ["40001", "40P01", "55P03", "55006", "57014"].contains(&code) {
        FailureClass::Retry
    } else if ["08", "28", "53", "58", "XX"]
        .iter()
        .any(|class| code.starts_with(class))
        || [
            "3D000", "57P01", "57P02", "57P03", "42501", "42P01", "42703", "42804", "25006",
        ]
        .contains(&code)
    {
        outage
    } else {
        FailureClass::Permanent
    }
}

/// The class of an S3 failure: throttling and server errors are retried in place (S3 is up,
/// just busy); anything else that reached this point (unreachable, timed out, access denied,
/// bucket gone) stops the transformer until S3 answers again.
pub fn storage_class(status: Option<u16>) -> FailureClass {
    match status {
        Some(429 | 500..=599) => FailureClass::Retry,
        _ => FailureClass::Outage(Dependency::Storage),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_context_names_the_line() {
        assert_eq!(
            copy_line("COPY barge_stage, line 3, column label: \"x\""),
            Some(3)
        );
        assert_eq!(copy_line("COPY posts, line 12"), Some(12));
        assert_eq!(copy_line("SQL statement \"…\""), None);
        assert_eq!(copy_line("COPY posts, line 0"), None);
    }

    #[test]
    fn throttling_is_retried_and_the_rest_is_an_outage() {
        assert_eq!(storage_class(Some(503)), FailureClass::Retry);
        assert_eq!(storage_class(Some(429)), FailureClass::Retry);
        assert_eq!(
            storage_class(Some(403)),
            FailureClass::Outage(Dependency::Storage)
        );
        assert_eq!(
            storage_class(None),
            FailureClass::Outage(Dependency::Storage)
        );
    }
}
