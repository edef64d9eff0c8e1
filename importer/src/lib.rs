//! The importer: fetch each source's JSON array, archive the bytes untouched in S3 under a
//! date-partitioned key as they stream in ([`archive`]), then announce the object on SQS.
//!
//! The order is the invariant: a message is sent only for an object that is already durably in
//! S3, and nothing at all is written for a response that is not a JSON array.

use std::sync::Arc;

use barge_core::aws::{AwsClients, QueueUrlError};
use barge_core::batch::{BatchFormatError, RecordLayout, SplitError, Splitter};
use barge_core::message::{MESSAGE_VERSION, archive_key};
use barge_core::service::{Liveness, STALL_LIMIT};
use barge_core::{BatchMessage, Settings, Source};
use chrono::Utc;
use serde::de::IgnoredAny;
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

mod archive;
mod error;
pub mod http;

pub use error::ImportError;

/// Imports sources into the archive and queue. Cheap to clone: clients are shared handles.
#[derive(Debug, Clone)]
pub struct Importer {
    settings: Arc<Settings>,
    http: reqwest::Client,
    aws: AwsClients,
    queue_url: String,
    /// READY and the watchdog, for systemd.
    liveness: Liveness,
}

impl Importer {
    /// Builds the HTTP client and resolves the queue URL, so that a misconfigured queue fails at
    /// start-up rather than after the first fetch.
    pub async fn new(settings: Settings, aws: AwsClients) -> Result<Self, StartError> {
        let http = http::client(&settings.http)
            .map_err(|err| StartError::HttpClient(barge_core::error_chain(&err)))?;
        let queue_url = aws.queue_url(&settings.queue.queue).await?;
        Ok(Self {
            settings: Arc::new(settings),
            http,
            aws,
            queue_url,
            liveness: Liveness::start(STALL_LIMIT),
        })
    }

    /// Imports every source once, each independently: one failing source does not stop the
    /// others. Once `shutdown` fires, the import under way is finished and the sources not yet
    /// started are reported as [`ImportError::Interrupted`]. Returns each source's outcome in
    /// declaration order.
    pub async fn run_once(
        &self,
        shutdown: &CancellationToken,
    ) -> Vec<(String, Result<BatchMessage, ImportError>)> {
        let mut outcomes = Vec::with_capacity(self.settings.sources.len());
        for source in &self.settings.sources {
            let outcome = if shutdown.is_cancelled() {
                tracing::warn!(source = %source.name, "not imported: shutdown requested first");
                Err(ImportError::Interrupted {
                    source_name: source.name.clone(),
                })
            } else {
                self.import_logged(source).await
            };
            outcomes.push((source.name.clone(), outcome));
        }
        outcomes
    }

    /// Imports each source on its own interval (the first time immediately) until `shutdown` is
    /// cancelled. An import under way when it fires is finished, so no archived object is left
    /// unannounced by a stop.
    pub async fn run(&self, shutdown: CancellationToken) {
        self.liveness.ready(&format!(
            "importing {} source(s) on their intervals",
            self.settings.sources.len()
        ));
        let mut tasks = JoinSet::new();
        for source in self.settings.sources.clone() {
            let importer = self.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move { importer.run_source(&source, &shutdown).await });
        }
        tasks.join_all().await;
    }

    async fn run_source(&self, source: &Source, shutdown: &CancellationToken) {
        let mut ticks = tokio::time::interval(source.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let _work = self.liveness.work();
            // Errors are logged inside; the next tick retries.
            let _ = self.import_logged(source).await;
        }
        tracing::info!(source = %source.name, "source stopped");
    }

    async fn import_logged(&self, source: &Source) -> Result<BatchMessage, ImportError> {
        let span = tracing::info_span!("import", source = %source.name);
        let outcome = self.import(source).instrument(span.clone()).await;
        let _entered = span.enter();
        match &outcome {
            Ok(message) => tracing::info!(
                key = %message.key,
                records = message.record_count,
                "batch archived and announced"
            ),
            Err(err) => tracing::error!(
                error = %err,
                retryable = err.is_retryable(),
                "import failed; nothing was announced"
            ),
        }
        outcome
    }

    /// Fetches one batch of `source`, archiving it as it arrives, and announces it.
    pub async fn import(&self, source: &Source) -> Result<BatchMessage, ImportError> {
        let fetched_at = Utc::now();
        let run_id = uuid::Uuid::now_v7().to_string();
        let bucket = &self.settings.storage.bucket;
        let key = archive_key(
            &self.settings.storage.prefix,
            &source.name,
            fetched_at,
            &run_id,
        );
        let (record_count, sha256) = self.fetch_into_archive(source, bucket, &key).await?;
        let message = BatchMessage {
            version: MESSAGE_VERSION,
            source: source.name.clone(),
            bucket: bucket.clone(),
            key,
            record_count,
            sha256,
            fetched_at,
        };
        self.announce(&message).await?;
        Ok(message)
    }

    /// GETs the source and streams the body into the archive object `key`, checking as it goes
    /// that it is a JSON array; returns the number of records and the body's SHA-256. A body
    /// that is not a batch, or a request or upload that fails half-way, leaves no object.
    async fn fetch_into_archive(
        &self,
        source: &Source,
        bucket: &str,
        key: &str,
    ) -> Result<(u64, String), ImportError> {
        let source_url = source.url.as_deref().unwrap_or_default();
        let url = barge_core::redact_url(source_url);
        let parsed = url::Url::parse(source_url).map_err(|err| ImportError::Request {
            source_name: source.name.clone(),
            problem: format!("url {url}: {err}"),
        })?;
        let mut requester =
            http::Requester::new(source, &self.settings.http, &self.http, &self.aws).await?;
        let mut answer = requester.get(&parsed, 1).await?;
        let archive_error = |reason| ImportError::Archive {
            source_name: source.name.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            reason,
        };
        let format_error = |err: SplitError<BatchFormatError>| {
            let (SplitError::Format(format) | SplitError::Record(format)) = err;
            ImportError::Format {
                source_name: source.name.clone(),
                url: url.clone(),
                format,
            }
        };
        let mut upload = archive::Upload::new(&self.aws.s3, bucket, key, &source.name);
        let mut splitter = Splitter::new(
            RecordLayout::Array,
            self.settings.transformer.max_record_bytes,
        );
        let mut hasher = Sha256::new();
        // Each record must be JSON; whether it fits the source is the transformer's to say.
        let mut records = 0u64;
        let mut count = |record: &str| {
            let checked = serde_json::from_str::<IgnoredAny>(record);
            let index = records;
            records += 1;
            checked.map(drop).map_err(|err| {
                BatchFormatError::NotJson(format!("record {index} is not JSON: {err}"))
            })
        };
        let streamed = async {
            while let Some(chunk) = answer.chunk().await? {
                hasher.update(&chunk);
                splitter.push(&chunk, &mut count).map_err(format_error)?;
                upload.write(&chunk).await.map_err(archive_error)?;
            }
            Ok(())
        }
        .await;
        if let Err(err) = streamed {
            upload.abort().await;
            return Err(err);
        }
        let records = match splitter.finish(&mut count) {
            Ok(records) => records,
            Err(err) => {
                upload.abort().await;
                return Err(format_error(err));
            }
        };
        let sha256 = barge_core::batch::hex_digest(hasher.finalize());
        upload
            .finish(&sha256, records)
            .await
            .map_err(archive_error)?;
        Ok((records, sha256))
    }

    async fn announce(&self, message: &BatchMessage) -> Result<(), ImportError> {
        self.aws
            .sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(message.to_json())
            .send()
            .await
            .map_err(|err| ImportError::Announce {
                source_name: message.source.clone(),
                key: message.key.clone(),
                reason: barge_core::error_chain(&err),
            })?;
        Ok(())
    }
}

/// Why the importer could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The TLS stack or HTTP client could not be initialised.
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
    /// The configured queue does not exist or cannot be reached.
    #[error(transparent)]
    Queue(#[from] QueueUrlError),
}
