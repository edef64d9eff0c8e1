//! The transformer: long-poll SQS, fetch each announced object from S3, check and map its
//! records onto the source's typed columns, upsert them into PostgreSQL in one transaction, and
//! only then delete the message.

use std::time::Duration;

use aws_sdk_sqs::types::Message;
use barge_core::aws::{AwsClients, QueueUrlError};
use barge_core::{BatchMessage, Settings};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

mod database;
mod error;
pub mod record;

use database::Database;
pub use error::ProcessError;

/// SQS returns at most ten messages per receive.
const MAX_MESSAGES: i32 = 10;
/// Wait of each receive while draining: long enough to see messages LocalStack or SQS is still
/// delivering, short enough to notice an empty queue quickly.
const DRAIN_WAIT_SECONDS: i32 = 1;
/// Pause after a failed receive, so a broken queue does not become a busy loop.
const RECEIVE_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Loads announced batches into PostgreSQL.
#[derive(Debug)]
pub struct Transformer {
    settings: Settings,
    aws: AwsClients,
    queue_url: String,
    database: Database,
}

/// A batch that is committed and whose message is deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// Source name.
    pub source: String,
    /// Object key.
    pub key: String,
    /// Records in the batch.
    pub records: u64,
    /// Rows inserted or changed (0 when the batch was already loaded).
    pub changed: u64,
}

/// A message that was left on the queue.
#[derive(Debug)]
pub struct Failed {
    /// SQS message id.
    pub message_id: String,
    /// Why it was not loaded.
    pub error: ProcessError,
}

/// What one pass over the queue did.
#[derive(Debug, Default)]
pub struct Report {
    /// Batches loaded and deleted.
    pub loaded: Vec<Loaded>,
    /// Messages left for redelivery (and, eventually, the dead-letter queue).
    pub failed: Vec<Failed>,
}

impl Report {
    fn absorb(&mut self, other: Report) {
        self.loaded.extend(other.loaded);
        self.failed.extend(other.failed);
    }
}

/// Why the transformer could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configured queue does not exist or cannot be reached.
    #[error(transparent)]
    Queue(#[from] QueueUrlError),
    /// PostgreSQL is unreachable or refused the table definitions.
    #[error("cannot prepare the database tables: {0}")]
    Database(String),
}

/// A receive that failed; the loop waits and tries again.
#[derive(Debug, thiserror::Error)]
#[error("receiving from {queue_url} failed: {reason}")]
pub struct ReceiveError {
    queue_url: String,
    reason: String,
}

impl Transformer {
    /// Resolves the queue and creates missing tables, so that a misconfiguration fails at
    /// start-up rather than on the first message.
    pub async fn new(settings: Settings, aws: AwsClients) -> Result<Self, StartError> {
        let queue_url = aws.queue_url(&settings.queue.queue).await?;
        let mut database = Database::new(settings.database.clone());
        database
            .ensure_tables(&settings.sources)
            .await
            .map_err(|err| StartError::Database(barge_core::error_chain(&err)))?;
        Ok(Self {
            settings,
            aws,
            queue_url,
            database,
        })
    }

    /// The daemon loop: long-poll and load until `shutdown` is cancelled. An idle poll is
    /// abandoned at once (unreceived messages stay on the queue); the message being loaded is
    /// finished, and messages received but not started are released for other transformers.
    pub async fn run(&mut self, shutdown: &CancellationToken) {
        tracing::info!(queue_url = %self.queue_url, "polling for batches");
        let wait = self.settings.queue.wait_seconds;
        while !shutdown.is_cancelled() {
            let received = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                received = self.receive(wait) => received,
            };
            match received {
                Ok(messages) => {
                    self.handle_all(messages, shutdown).await;
                }
                Err(err) => {
                    tracing::error!(error = %err, "receive failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(RECEIVE_RETRY_DELAY) => {}
                    }
                }
            }
        }
        tracing::info!("transformer stopped");
    }

    /// Loads until a receive comes back empty, then returns what happened. Messages that fail
    /// stay invisible for the visibility timeout, so they are seen once per drain.
    pub async fn drain(&mut self) -> Result<Report, ReceiveError> {
        let mut report = Report::default();
        let never = CancellationToken::new();
        loop {
            let messages = self.receive(DRAIN_WAIT_SECONDS).await?;
            if messages.is_empty() {
                return Ok(report);
            }
            report.absorb(self.handle_all(messages, &never).await);
        }
    }

    async fn receive(&self, wait_seconds: i32) -> Result<Vec<Message>, ReceiveError> {
        let output = self
            .aws
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(MAX_MESSAGES)
            .wait_time_seconds(wait_seconds)
            .send()
            .await
            .map_err(|err| ReceiveError {
                queue_url: self.queue_url.clone(),
                reason: barge_core::error_chain(&err),
            })?;
        Ok(output.messages.unwrap_or_default())
    }

    async fn handle_all(&mut self, messages: Vec<Message>, shutdown: &CancellationToken) -> Report {
        let mut report = Report::default();
        let mut messages = messages.into_iter();
        for message in messages.by_ref() {
            let message_id = message.message_id.clone().unwrap_or_default();
            let span = tracing::info_span!(
                "message",
                message_id = %message_id,
                source = tracing::field::Empty,
                key = tracing::field::Empty,
            );
            match self.handle(&message).instrument(span).await {
                Ok(loaded) => report.loaded.push(loaded),
                Err(error) => report.failed.push(Failed { message_id, error }),
            }
            if shutdown.is_cancelled() {
                break;
            }
        }
        for message in messages {
            self.release(&message).await;
        }
        report
    }

    /// Loads one message's batch and deletes the message after the commit.
    async fn handle(&mut self, message: &Message) -> Result<Loaded, ProcessError> {
        let outcome = self.load(message.body().unwrap_or_default()).await;
        match &outcome {
            Ok(loaded) => {
                tracing::info!(
                    records = loaded.records,
                    changed = loaded.changed,
                    "batch committed"
                );
                self.delete(message).await;
            }
            Err(err) => tracing::error!(
                error = %err,
                retryable = err.is_retryable(),
                "batch not loaded; message left for redelivery and, after maxReceiveCount, the dead-letter queue"
            ),
        }
        outcome
    }

    /// Parses, downloads, verifies, maps and loads one announced batch.
    async fn load(&mut self, body: &str) -> Result<Loaded, ProcessError> {
        let announced = BatchMessage::parse(body)?;
        let key = announced.key.as_str();
        tracing::Span::current()
            .record("source", announced.source.as_str())
            .record("key", key);
        let source =
            self.settings
                .source(&announced.source)
                .ok_or_else(|| ProcessError::UnknownSource {
                    key: key.to_owned(),
                    source_name: announced.source.clone(),
                })?;
        let bytes = self.download(&announced).await?;
        let actual = barge_core::content_digest(&bytes);
        if actual != announced.sha256 {
            return Err(ProcessError::Checksum {
                key: key.to_owned(),
                expected: announced.sha256.clone(),
                actual,
            });
        }
        let records = barge_core::parse_records(&bytes).map_err(|format| ProcessError::Format {
            key: key.to_owned(),
            format,
        })?;
        let rows = records
            .iter()
            .enumerate()
            .map(|(index, record)| record::map_record(source, index, record))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|record| ProcessError::Record {
                key: key.to_owned(),
                record,
            })?;
        let changed = self
            .database
            .load(source, &rows)
            .await
            .map_err(|err| ProcessError::database(key, &source.table, &err))?;
        Ok(Loaded {
            source: source.name.clone(),
            key: key.to_owned(),
            records: rows.len() as u64,
            changed,
        })
    }

    async fn download(&self, announced: &BatchMessage) -> Result<bytes::Bytes, ProcessError> {
        let failed = |reason: String| ProcessError::Download {
            bucket: announced.bucket.clone(),
            key: announced.key.clone(),
            reason,
        };
        let object = self
            .aws
            .s3
            .get_object()
            .bucket(&announced.bucket)
            .key(&announced.key)
            .send()
            .await
            .map_err(|err| failed(barge_core::error_chain(&err)))?;
        let body = object
            .body
            .collect()
            .await
            .map_err(|err| failed(barge_core::error_chain(&err)))?;
        Ok(body.into_bytes())
    }

    /// Deletes a committed message. If the delete fails the message is redelivered and loads
    /// again as a no-op, because loads are upserts.
    async fn delete(&self, message: &Message) {
        let result = self
            .aws
            .sqs
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(message.receipt_handle().unwrap_or_default())
            .send()
            .await;
        if let Err(err) = result {
            tracing::warn!(error = %barge_core::error_chain(&err), "rows committed but message not deleted; its redelivery will load nothing new");
        }
    }

    /// Makes a received message visible again at once, for another transformer to take.
    async fn release(&self, message: &Message) {
        let result = self
            .aws
            .sqs
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(message.receipt_handle().unwrap_or_default())
            .visibility_timeout(0)
            .send()
            .await;
        if let Err(err) = result {
            tracing::warn!(error = %barge_core::error_chain(&err), "could not release message; it returns after its visibility timeout");
        }
    }
}
