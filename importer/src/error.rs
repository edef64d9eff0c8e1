//! What can go wrong importing one batch. Every variant names the source, and the URL or object
//! key when there is one, and says whether trying again later can help. URLs are redacted
//! ([`barge_core::redact_url`]): API keys often travel in query strings.

/// A failed import of one source; nothing is announced for it.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The request did not complete (DNS, connect, TLS, timeout, broken body).
    #[error("source {source_name:?}: GET {url} failed{}: {reason}", after(*tries))]
    Transport {
        /// Source name.
        source_name: String,
        /// Requested URL, redacted.
        url: String,
        /// Requests sent, the last one included (1 when the body broke off).
        tries: u32,
        /// The full error chain.
        reason: String,
    },
    /// The API answered with a non-2xx status: at once for a client error, on the last try
    /// for 429 and 5xx.
    #[error("source {source_name:?}: GET {url} answered HTTP {status}{}: {body_start:?}", after(*tries))]
    Status {
        /// Source name.
        source_name: String,
        /// Requested URL, redacted.
        url: String,
        /// HTTP status code.
        status: u16,
        /// Requests sent, the last one included.
        tries: u32,
        /// The first 200 bytes of the body, which usually say why (shown escaped).
        body_start: String,
    },
    /// The API asked, with `Retry-After`, for a longer wait than `http.max_retry_after`.
    #[error(
        "source {source_name:?}: GET {url} answered HTTP {status} with Retry-After: \
         {retry_after} ({asked_seconds} s), longer than http.max_retry_after ({limit_seconds} s)"
    )]
    RetryAfterTooLong {
        /// Source name.
        source_name: String,
        /// Requested URL, redacted.
        url: String,
        /// HTTP status code (429 or 5xx).
        status: u16,
        /// The header's value, as sent.
        retry_after: String,
        /// The wait it asks for, in seconds.
        asked_seconds: u64,
        /// `http.max_retry_after`, in seconds.
        limit_seconds: u64,
    },
    /// A 2xx answer that says it is something else than JSON (an HTML login page, a proxy's
    /// error page).
    #[error(
        "source {source_name:?}: GET {url} answered Content-Type {content_type:?}, not JSON: \
         {body_start:?}"
    )]
    NotJson {
        /// Source name.
        source_name: String,
        /// Requested URL, redacted.
        url: String,
        /// The `Content-Type` header.
        content_type: String,
        /// The first 200 bytes of the body (shown escaped).
        body_start: String,
    },
    /// The body is larger than `http.max_response_bytes`.
    #[error(
        "source {source_name:?}: GET {url}: the body is larger than http.max_response_bytes \
         ({limit} bytes){}",
        content_length.map(|length| format!(", Content-Length: {length}")).unwrap_or_default()
    )]
    TooLarge {
        /// Source name.
        source_name: String,
        /// URL that answered, redacted.
        url: String,
        /// `http.max_response_bytes`.
        limit: u64,
        /// The length the answer announced, when that alone was too much.
        content_length: Option<u64>,
    },
    /// The source's credential could not be read; no request was sent.
    #[error("source {source_name:?}: cannot read the API credential: {error}")]
    Secret {
        /// Source name.
        source_name: String,
        /// Where it was looked for and why it was not found (never the value).
        error: barge_core::secrets::SecretError,
    },
    /// The request cannot be made as the settings describe it (a header value that cannot be
    /// sent, a URL that does not parse).
    #[error("source {source_name:?}: cannot build the request: {problem}")]
    Request {
        /// Source name.
        source_name: String,
        /// What is wrong.
        problem: String,
    },
    /// The body is not a JSON array.
    #[error("source {source_name:?}: GET {url} did not return a batch: {format}")]
    Format {
        /// Source name.
        source_name: String,
        /// Requested URL, redacted.
        url: String,
        /// What the body is instead.
        format: barge_core::batch::BatchFormatError,
    },
    /// The raw object could not be written to S3.
    #[error("source {source_name:?}: cannot archive s3://{bucket}/{key}: {reason}")]
    Archive {
        /// Source name.
        source_name: String,
        /// Archive bucket.
        bucket: String,
        /// Object key.
        key: String,
        /// The SDK's full error chain.
        reason: String,
    },
    /// A record is not JSON, or its incremental field cannot be compared.
    #[error("source {source_name:?}: page {page}, record {index}: {problem}")]
    Record {
        /// Source name.
        source_name: String,
        /// The page (from 1).
        page: u64,
        /// The record's index in its page (from 0).
        index: u64,
        /// What is wrong.
        problem: String,
    },
    /// A page's envelope or paging fields are not what the source declares, or the pages loop.
    #[error("source {source_name:?}: GET {url}: {error}")]
    Paging {
        /// Source name.
        source_name: String,
        /// The page's URL, redacted.
        url: String,
        /// What is wrong.
        error: crate::pages::PageError,
    },
    /// A page to be held whole is larger than `http.max_page_bytes`.
    #[error(
        "source {source_name:?}: GET {url}: page {page} is larger than http.max_page_bytes \
         ({limit} bytes), the most a page read whole (records inside an object, or \
         records_per_object) may be"
    )]
    PageTooLarge {
        /// Source name.
        source_name: String,
        /// The page's URL, redacted.
        url: String,
        /// The page (from 1).
        page: u64,
        /// The limit.
        limit: u64,
    },
    /// The importer's state (mark, page digests, markers) could not be read or written.
    #[error("source {source_name:?}: importer state: {error}")]
    State {
        /// Source name.
        source_name: String,
        /// What failed.
        error: crate::state::StateError,
    },
    /// The incremental field's values cannot be ordered.
    #[error("source {source_name:?}: incremental mark: {reason}")]
    Mark {
        /// Source name.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// The source has no URL to fetch (it only receives files in its landing prefix).
    #[error("source {source_name:?} has no url: it is loaded from its landing prefix only")]
    NoUrl {
        /// Source name.
        source_name: String,
    },
    /// Shutdown was requested before this source's run ended.
    #[error(
        "source {source_name:?}: stopped by shutdown; pages fetched so far are archived and announced"
    )]
    Interrupted {
        /// Source name.
        source_name: String,
    },
    /// The object is archived but the SQS message could not be sent; the next run fetches again.
    #[error("source {source_name:?}: archived {key} but cannot announce it on SQS: {reason}")]
    Announce {
        /// Source name.
        source_name: String,
        /// Key of the archived, unannounced object.
        key: String,
        /// The SDK's full error chain.
        reason: String,
    },
}

impl ImportError {
    /// Whether the same request may succeed later: network trouble, throttling and server errors
    /// may; a client error or a body of the wrong shape will not until the source changes.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. }
            | Self::Archive { .. }
            | Self::Announce { .. }
            | Self::Interrupted { .. }
            | Self::RetryAfterTooLong { .. } => true,
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::State { error, .. } => {
                !matches!(error, crate::state::StateError::Conflict { .. })
            }
            Self::Secret { error, .. } => error.is_transient(),
            Self::Format { .. }
            | Self::NotJson { .. }
            | Self::TooLarge { .. }
            | Self::Request { .. }
            | Self::Record { .. }
            | Self::Paging { .. }
            | Self::PageTooLarge { .. }
            | Self::Mark { .. }
            | Self::NoUrl { .. } => false,
        }
    }
}

/// How a message says that a request was tried more than once.
fn after(tries: u32) -> String {
    if tries > 1 {
        format!(" after {tries} tries")
    } else {
        String::new()
    }
}
