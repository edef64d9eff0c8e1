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
    /// S3 will not serve the object as it is (archived, encrypted with a key the transformer does
    /// not have, or another refusal of this object's request): no retry can read it.
    #[error("s3://{bucket}/{key}: S3 will not serve it: {}: {reason}", .refusal.hint())]
    Refused {
        /// Bucket from the message.
        bucket: String,
        /// Object key.
        key: String,
        /// Why, in S3's terms.
        refusal: Refusal,
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
            | Self::Refused { .. }
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
            Self::Refused { refusal, .. } => refusal.kind(),
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

/// Why S3 will not serve an object ([`ProcessError::Refused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `InvalidObjectState`: the object is in an archive storage class.
    Archived,
    /// It is encrypted with a customer-provided key (SSE-C), or with a KMS key the transformer
    /// may not use.
    Encrypted,
    /// Any other refusal of this object's request (a 4xx such as `InvalidArgument`, or a request
    /// that could not even be built).
    Other,
}

impl Refusal {
    /// The dead-letter class ([`ProcessError::kind`]).
    pub fn kind(self) -> &'static str {
        match self {
            Self::Archived => "archived-object",
            Self::Encrypted => "encrypted-object",
            Self::Other => "object-refused",
        }
    }

    /// What it means, and what to do.
    fn hint(self) -> &'static str {
        match self {
            Self::Archived => {
                "it is archived (S3 Glacier Flexible Retrieval or Deep Archive, or an archive tier \
                 of Intelligent-Tiering); restore it, then move this message back to the queue"
            }
            Self::Encrypted => {
                "it is encrypted with a key the transformer does not have (a customer-provided \
                 SSE-C key, or a KMS key its role may not use)"
            }
            Self::Other => "S3 refuses this object's request",
        }
    }
}

/// An S3 request that failed, as far as its class depends on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Failure {
    /// The HTTP status, if S3 answered.
    pub status: Option<u16>,
    /// S3's error code (`NoSuchKey`, `AccessDenied`, …), if it sent one.
    pub code: Option<String>,
    /// S3's error message, if it sent one.
    pub message: Option<String>,
    /// The request could not be built (a header value the SDK refuses…): nothing was sent.
    pub unbuilt: bool,
}

/// 4xx codes that are the transformer's, not the object's: its role, credentials, region or
/// bucket. Every object would fail the same way, so they are an outage.
const TRANSFORMER_CODES: [&str; 17] = [
    "AccessDenied",
    "AllAccessDisabled",
    "AccountProblem",
    "AuthorizationHeaderMalformed",
    "ExpiredToken",
    "InvalidAccessKeyId",
    "InvalidBucketName",
    "InvalidSecurity",
    "InvalidToken",
    "MissingSecurityHeader",
    "NoSuchBucket",
    "PermanentRedirect",
    "Redirect",
    "RequestTimeTooSkewed",
    "SignatureDoesNotMatch",
    "TemporaryRedirect",
    "TokenRefreshRequired",
];

/// 4xx codes a later try may not meet: tried again in place.
const TRANSIENT_CODES: [&str; 3] = ["OperationAborted", "RequestTimeout", "SlowDown"];

/// What a failed GetObject means for the announced object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetFailure {
    /// No such key, or no such version: [`ProcessError::MissingObject`].
    Missing,
    /// `If-Match` failed: the key holds other bytes since the event.
    Replaced,
    /// S3 will not serve this object: [`ProcessError::Refused`].
    Refused(Refusal),
    /// S3 or the transformer's access to it is at fault: [`ProcessError::Download`].
    Failed(FailureClass),
}

impl S3Failure {
    /// The status, code and message of an SDK error.
    pub fn of<E: aws_sdk_s3::error::ProvideErrorMetadata>(
        err: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> Self {
        let service = err.as_service_error();
        Self {
            status: err.raw_response().map(|r| r.status().as_u16()),
            code: service.and_then(|e| e.code()).map(str::to_owned),
            message: service.and_then(|e| e.message()).map(str::to_owned),
            unbuilt: matches!(err, aws_sdk_s3::error::SdkError::ConstructionFailure(_)),
        }
    }

    /// The class of any S3 request's failure:
    ///
    /// | failure | class |
    /// | --- | --- |
    /// | 408, 429, 5xx, or a code of [`TRANSIENT_CODES`] (S3 busy, a token to refresh) | retry |
    /// | a code of [`TRANSFORMER_CODES`] (access denied, credentials, region, bucket gone) | outage |
    /// | another 401, 403 or 404, a redirect, no answer at all (unreachable, timed out) | outage |
    /// | another 4xx (400 `InvalidArgument`, `KeyTooLongError`, 405, 416…), a request that could not be built | permanent: this request will never pass |
    pub fn class(&self) -> FailureClass {
        let code = self.code.as_deref().unwrap_or_default();
        if TRANSIENT_CODES.contains(&code) || matches!(self.status, Some(408 | 429 | 500..=599)) {
            FailureClass::Retry
        } else if self.unbuilt {
            FailureClass::Permanent
        } else if TRANSFORMER_CODES.contains(&code) {
            FailureClass::Outage(Dependency::Storage)
        } else {
            match self.status {
                Some(401 | 403 | 404) => FailureClass::Outage(Dependency::Storage),
                Some(400..=499) => FailureClass::Permanent,
                _ => FailureClass::Outage(Dependency::Storage),
            }
        }
    }

    /// What a failed GetObject of an announced object means: a missing key or version, an
    /// `If-Match` that failed, an object S3 will not serve (archived, encrypted with a key the
    /// transformer does not have, any other 4xx of its own), or [`S3Failure::class`]. An access
    /// denied that is not about a KMS key stays an outage: it is usually the whole role's.
    pub fn on_get(&self) -> GetFailure {
        let code = self.code.as_deref().unwrap_or_default();
        let message = self.message.as_deref().unwrap_or_default();
        // "… is not authorized to perform: kms:Decrypt …", "The ciphertext refers to a customer
        // master key …": about the object's key, not the bucket's or the role's name.
        let about_kms = message.contains("kms:") || message.contains("ciphertext");
        // SSE-C: 400 InvalidRequest "The object was stored using a form of Server Side
        // Encryption. The correct parameters must be provided to retrieve the object."
        let sse_c = self.status == Some(400) && message.contains("Server Side Encryption");
        if self.class() == FailureClass::Retry {
            return GetFailure::Failed(FailureClass::Retry);
        }
        match code {
            "NoSuchKey" | "NoSuchVersion" => GetFailure::Missing,
            "PreconditionFailed" => GetFailure::Replaced,
            _ if self.status == Some(412) => GetFailure::Replaced,
            "InvalidObjectState" => GetFailure::Refused(Refusal::Archived),
            _ if code.starts_with("KMS.") || sse_c => GetFailure::Refused(Refusal::Encrypted),
            "AccessDenied" if about_kms => GetFailure::Refused(Refusal::Encrypted),
            _ => match self.class() {
                FailureClass::Permanent => GetFailure::Refused(Refusal::Other),
                class => GetFailure::Failed(class),
            },
        }
    }
}

/// The class of an S3 failure without an answer from S3 (a body that broke off, a stall).
pub fn storage_class() -> FailureClass {
    S3Failure::default().class()
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

    fn failure(status: u16, code: &str, message: &str) -> S3Failure {
        S3Failure {
            status: Some(status),
            code: Some(code.to_owned()).filter(|c| !c.is_empty()),
            message: Some(message.to_owned()),
            unbuilt: false,
        }
    }

    const OUTAGE: FailureClass = FailureClass::Outage(Dependency::Storage);

    #[test]
    fn throttling_is_retried_access_is_an_outage_and_the_requests_own_4xx_is_permanent() {
        let cases = [
            (503, "SlowDown", FailureClass::Retry),
            (500, "InternalError", FailureClass::Retry),
            (429, "", FailureClass::Retry),
            (400, "RequestTimeout", FailureClass::Retry),
            (
                400,
                "ExpiredToken",
                FailureClass::Outage(Dependency::Storage),
            ),
            (403, "AccessDenied", OUTAGE),
            (403, "InvalidAccessKeyId", OUTAGE),
            (403, "SignatureDoesNotMatch", OUTAGE),
            (400, "AuthorizationHeaderMalformed", OUTAGE),
            (404, "NoSuchBucket", OUTAGE),
            (301, "PermanentRedirect", OUTAGE),
            (403, "", OUTAGE),
            (400, "KeyTooLongError", FailureClass::Permanent),
            (400, "MetadataTooLarge", FailureClass::Permanent),
            (400, "InvalidArgument", FailureClass::Permanent),
            (405, "MethodNotAllowed", FailureClass::Permanent),
        ];
        for (status, code, class) in cases {
            assert_eq!(failure(status, code, "").class(), class, "{status} {code}");
        }
        assert_eq!(S3Failure::default().class(), OUTAGE, "no answer");
        assert_eq!(storage_class(), OUTAGE);
        let unbuilt = S3Failure {
            unbuilt: true,
            ..S3Failure::default()
        };
        assert_eq!(unbuilt.class(), FailureClass::Permanent, "nothing was sent");
    }

    #[test]
    fn a_get_names_missing_replaced_and_refused_objects() {
        let missing = "The specified key does not exist.";
        assert_eq!(
            failure(404, "NoSuchKey", missing).on_get(),
            GetFailure::Missing
        );
        assert_eq!(
            failure(
                404,
                "NoSuchVersion",
                "The specified version does not exist."
            )
            .on_get(),
            GetFailure::Missing
        );
        assert_eq!(
            failure(
                412,
                "PreconditionFailed",
                "At least one of the pre-conditions"
            )
            .on_get(),
            GetFailure::Replaced
        );
        assert_eq!(
            failure(
                403,
                "InvalidObjectState",
                "not valid for the object's storage class"
            )
            .on_get(),
            GetFailure::Refused(Refusal::Archived)
        );
        let sse_c = "The object was stored using a form of Server Side Encryption. The correct \
                     parameters must be provided to retrieve the object.";
        let kms_denied = "User: arn:aws:sts::1:assumed-role/barge-transformer/i-1 is not \
                          authorized to perform: kms:Decrypt on resource: arn:aws:kms:…";
        for encrypted in [
            failure(400, "InvalidRequest", sse_c),
            failure(403, "AccessDenied", kms_denied),
            failure(400, "KMS.DisabledException", "key is disabled"),
            failure(400, "KMS.NotFoundException", "Invalid keyId"),
        ] {
            assert_eq!(
                encrypted.on_get(),
                GetFailure::Refused(Refusal::Encrypted),
                "{encrypted:?}"
            );
        }
        assert_eq!(
            failure(400, "InvalidArgument", "Invalid version id specified").on_get(),
            GetFailure::Refused(Refusal::Other)
        );
        assert_eq!(
            failure(405, "MethodNotAllowed", "not allowed against this resource").on_get(),
            GetFailure::Refused(Refusal::Other),
            "a version that is a delete marker"
        );
        assert_eq!(
            failure(403, "AccessDenied", "Access Denied").on_get(),
            GetFailure::Failed(OUTAGE),
            "the role's access: every object fails alike"
        );
        assert_eq!(
            failure(404, "NoSuchBucket", "").on_get(),
            GetFailure::Failed(OUTAGE)
        );
        assert_eq!(
            failure(503, "SlowDown", "").on_get(),
            GetFailure::Failed(FailureClass::Retry)
        );
        assert_eq!(S3Failure::default().on_get(), GetFailure::Failed(OUTAGE));
    }

    #[test]
    fn refusals_have_kinds_and_say_what_to_do() {
        let refused = |refusal| ProcessError::Refused {
            bucket: "b".into(),
            key: "landing/posts/a.json".into(),
            refusal,
            reason: "service error".into(),
        };
        let archived = refused(Refusal::Archived);
        assert_eq!(archived.kind(), "archived-object");
        assert_eq!(archived.class(), FailureClass::Permanent);
        assert_eq!(
            archived.to_string(),
            "s3://b/landing/posts/a.json: S3 will not serve it: it is archived (S3 Glacier \
             Flexible Retrieval or Deep Archive, or an archive tier of Intelligent-Tiering); \
             restore it, then move this message back to the queue: service error"
        );
        assert_eq!(refused(Refusal::Encrypted).kind(), "encrypted-object");
        assert_eq!(refused(Refusal::Other).kind(), "object-refused");
    }
}
