//! The transformer: long-poll SQS, fetch each announced object from S3 (an importer's batch, or a
//! file S3's event notification reports created under a source's landing prefix), check and map
//! its records onto the source's typed columns, load them into PostgreSQL in one transaction with
//! the object's ledger entry, and only then delete the message.
//!
//! The map:
//! - [`queue`]: receive, delete, hand back, and the heartbeat that keeps held messages invisible;
//! - [`notice`]: what a message body announces (a batch message, an S3 event, S3's test event);
//! - [`load`]: one object streamed from S3 through the decoder into COPY, nothing held whole;
//! - [`decode`] and [`record`]: one record's JSON text onto typed cells, with [`numbers`] and
//!   `times` for the values that must arrive exactly;
//! - [`copy`]: cells encoded as PostgreSQL's binary COPY rows;
//! - [`rejects`]: records that do not fit, spooled and written to S3 as NDJSON;
//! - [`database`] and [`ledger`]: tables, the load transaction, and the exactly-once ledger;
//! - [`schema`]: live tables checked against their declarations at start-up;
//! - [`dead_letter`]: the dead-letter queue, for messages no retry can help;
//! - [`error`]: what can go wrong with a message, and which class it is;
//! - [`ops`]: the operator's tools (`status`, `replay`, `dlq peek|redrive`).

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::{Message, QueueAttributeName};
use barge_core::aws::{AwsClients, QueueUrlError};
use barge_core::metrics::{ClassLabel, QueueLabels, TransformerMetrics};
use barge_core::service::{Liveness, STALL_LIMIT};
use barge_core::{BatchMessage, Settings};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub mod copy;
pub mod database;
mod dead_letter;
pub mod decode;
mod error;
mod ledger;
mod load;
pub mod notice;
pub mod numbers;
pub mod ops;
mod queue;
pub mod record;
pub mod rejects;
mod schema;
mod times;

use database::{Database, Sessions};
use dead_letter::{DeadLetterError, DeadLetters};
pub use error::{Dependency, FailureClass, ProcessError, Refusal};
use futures_util::StreamExt;
use ledger::{LedgerEntry, LoadCounts};
use load::Announced;
use notice::Notice;
use queue::Queue;
pub use queue::ReceiveError;

/// Wait of each receive while draining: long enough to see messages LocalStack or SQS is still
/// delivering, short enough to notice an empty queue quickly.
const DRAIN_WAIT_SECONDS: i32 = 1;
/// How often `drain` tries a message that fails transiently before leaving it for later.
const DRAIN_ATTEMPTS: u32 = 3;
/// How often the daemon tries, in place, a message that lost a race or was throttled (lock or
/// statement timeout, deadlock, S3 5xx) before handing it back for a later receive: about four
/// minutes of backoff, so that one stubborn message cannot hold the transformer for good.
const IN_PLACE_ATTEMPTS: u32 = 10;
/// The heartbeat extends held messages every third of the visibility timeout, so the timeout
/// must leave room for a few extensions to fail.
const MIN_VISIBILITY: Duration = Duration::from_secs(3);

/// Loads announced batches into PostgreSQL.
#[derive(Debug)]
pub struct Transformer {
    settings: Settings,
    aws: AwsClients,
    queue: Queue,
    dead_letters: DeadLetters,
    /// One PostgreSQL session per object loaded at the same time.
    sessions: Sessions,
    /// READY and the watchdog, for systemd and `/health/ready`.
    liveness: Liveness,
    /// What `/metrics` reports.
    metrics: TransformerMetrics,
}

/// An object whose rows are committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// Source name.
    pub source: String,
    /// Object key.
    pub key: String,
    /// Records in the object.
    pub records_read: u64,
    /// Records mapped onto rows and loaded.
    pub records_loaded: u64,
    /// Records rejected (written to `rejects_url`).
    pub records_rejected: u64,
    /// Rows inserted or changed.
    pub rows_changed: u64,
    /// `s3://bucket/key` of the rejected records, if any.
    pub rejects_url: Option<String>,
}

/// A message that was not loaded, and why.
#[derive(Debug)]
pub struct Failed {
    /// SQS message id.
    pub message_id: String,
    /// Why it was not loaded.
    pub error: ProcessError,
}

/// What one pass over the queue did with each message.
#[derive(Debug, Default)]
pub struct Report {
    /// Objects loaded (committed). Their messages were deleted, unless a later object of the
    /// same S3 event failed (see `dead_lettered` and `retry_later`).
    pub loaded: Vec<Loaded>,
    /// Keys of objects found in the ledger already, loaded before; as for `loaded`, their
    /// messages were deleted unless a later object of the same event failed.
    pub duplicates: Vec<String>,
    /// S3 test events, and folder markers in a landing zone, acknowledged.
    pub ignored: usize,
    /// Keys of landing objects put again before their event was handled (in a bucket without
    /// versions: the key no longer has the event's ETag). The event is acknowledged without
    /// loading anything: the newer bytes are the newer event's to load.
    pub superseded: Vec<String>,
    /// Messages moved to the dead-letter queue, with their reasons.
    pub dead_lettered: Vec<Failed>,
    /// Messages that kept failing transiently and were left for a later receive.
    pub retry_later: Vec<Failed>,
    /// Messages handed back unstarted: because of shutdown, or because another message of the
    /// same receive was failing transiently and would have kept them waiting.
    pub released: usize,
}

/// What happened to one message in the end. Whatever the outcome, the objects it announced that
/// were loaded (or found loaded) meanwhile are reported too: see [`Handled`].
#[derive(Debug)]
enum Outcome {
    Done,
    DeadLettered(ProcessError),
    RetryLater(ProcessError),
    Released,
}

/// One message's outcome, and what was done with each object it announced (a batch message
/// announces one; an S3 event one per record, of which the first may load before a later one
/// fails).
#[derive(Debug)]
struct Handled {
    message_id: String,
    outcome: Outcome,
    done: Vec<Done>,
}

/// An announced object (or test event) whose work is done.
#[derive(Debug)]
enum Done {
    Loaded(Loaded),
    Duplicate(String),
    Ignored,
    Superseded(String),
}

impl Report {
    fn record(&mut self, handled: Handled) {
        let Handled {
            message_id,
            outcome,
            done,
        } = handled;
        for done in done {
            match done {
                Done::Loaded(loaded) => self.loaded.push(loaded),
                Done::Duplicate(key) => self.duplicates.push(key),
                Done::Ignored => self.ignored += 1,
                Done::Superseded(key) => self.superseded.push(key),
            }
        }
        match outcome {
            Outcome::Done => {}
            Outcome::DeadLettered(error) => self.dead_lettered.push(Failed { message_id, error }),
            Outcome::RetryLater(error) => self.retry_later.push(Failed { message_id, error }),
            Outcome::Released => self.released += 1,
        }
    }

    fn absorb(&mut self, other: Report) {
        self.loaded.extend(other.loaded);
        self.duplicates.extend(other.duplicates);
        self.ignored += other.ignored;
        self.superseded.extend(other.superseded);
        self.dead_lettered.extend(other.dead_lettered);
        self.retry_later.extend(other.retry_later);
        self.released += other.released;
    }
}

/// Why the transformer could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configured queue does not exist or cannot be reached.
    #[error(transparent)]
    Queue(#[from] QueueUrlError),
    /// The queue's attributes could not be read or do not suit the transformer.
    #[error("queue {queue}: {reason}")]
    QueueAttributes {
        /// The queue's URL.
        queue: String,
        /// What is wrong.
        reason: String,
    },
    /// There is no usable dead-letter queue.
    #[error(transparent)]
    DeadLetter(#[from] DeadLetterError),
    /// The database password could not be read from its file or secret.
    #[error(transparent)]
    Password(#[from] barge_core::secrets::SecretError),
    /// PostgreSQL is unreachable or refused the table definitions.
    #[error("cannot prepare the database tables: {0}")]
    Database(String),
    /// Live tables differ from their sources' declarations.
    #[error("{}", schema_drift_text(.0))]
    SchemaDrift(Vec<(String, Vec<String>)>),
    /// The archive bucket does not answer.
    #[error(transparent)]
    Bucket(#[from] barge_core::aws::BucketError),
    /// The metrics and health endpoint cannot listen.
    #[error(transparent)]
    Ops(#[from] barge_core::ops::OpsError),
}

fn schema_drift_text(drift: &[(String, Vec<String>)]) -> String {
    let tables: Vec<String> = drift
        .iter()
        .map(|(table, differences)| format!("table {table:?}: {}", differences.join("; ")))
        .collect();
    format!(
        "live tables differ from their declared sources (change the table or the declaration): {}",
        tables.join("; ")
    )
}

/// How long a message that fails transiently is tried in place.
#[derive(Debug, Clone, Copy)]
enum Attempts {
    /// The daemon: through an outage until it passes; after a lost race or throttling,
    /// [`IN_PLACE_ATTEMPTS`] times.
    Daemon,
    /// At most this many tries of anything (draining, which must end).
    AtMost(u32),
}

impl Attempts {
    /// Whether a message that failed `attempt` times with `class` should be left for later.
    fn exhausted(self, attempt: u32, class: FailureClass) -> bool {
        match self {
            Self::AtMost(max) => attempt >= max,
            Self::Daemon => class == FailureClass::Retry && attempt >= IN_PLACE_ATTEMPTS,
        }
    }
}

impl Transformer {
    /// Reads the database password from its file or secret, resolves the queue and its
    /// dead-letter queue, reads the queue's visibility timeout (the heartbeat's rhythm), checks
    /// that the bucket answers, creates the ledger and missing tables and checks existing ones
    /// against their declarations, so that a misconfiguration fails at start-up rather than on
    /// the first message. Its metrics are counted but not served.
    pub async fn new(settings: Settings, aws: AwsClients) -> Result<Self, StartError> {
        Self::start(
            settings,
            aws,
            Liveness::start(STALL_LIMIT, None),
            TransformerMetrics::default(),
        )
        .await
    }

    /// `transformer run`: serves `/metrics` and the health endpoints on
    /// `metrics.transformer_listen` first (not ready yet), then starts as [`Transformer::new`]
    /// does and runs the daemon loop until `shutdown` ([`Transformer::run`]), ready from then on.
    pub async fn serve(
        settings: Settings,
        aws: AwsClients,
        shutdown: &CancellationToken,
    ) -> Result<(), StartError> {
        let metrics = TransformerMetrics::default();
        let mut registry = barge_core::metrics::registry();
        metrics.register(&mut registry);
        metrics.prime(settings.sources.iter().map(|source| source.name.as_str()));
        let window = settings.metrics.transformer_progress_window;
        let liveness = Liveness::start(STALL_LIMIT, Some(window));
        let listen = settings.metrics.transformer_listen;
        barge_core::ops::serve(listen, registry, liveness.clone(), shutdown.clone()).await?;
        let transformer = Self::start(settings, aws, liveness, metrics).await?;
        transformer.run(shutdown).await;
        Ok(())
    }

    /// [`Transformer::new`] reporting to `liveness` and `metrics`.
    async fn start(
        settings: Settings,
        aws: AwsClients,
        liveness: Liveness,
        metrics: TransformerMetrics,
    ) -> Result<Self, StartError> {
        let mut database = Database::new(settings.database.clone(), aws.secrets.clone()).await?;
        let queue_url = aws.queue_url(&settings.queue.queue).await?;
        let attributes_error = |reason: String| StartError::QueueAttributes {
            queue: queue_url.clone(),
            reason,
        };
        let mut attributes = aws
            .sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::VisibilityTimeout)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|err| attributes_error(barge_core::error_chain(&err)))?
            .attributes
            .unwrap_or_default();
        let visibility = attributes
            .get(&QueueAttributeName::VisibilityTimeout)
            .and_then(|seconds| seconds.parse::<u64>().ok())
            .map(Duration::from_secs)
            .ok_or_else(|| attributes_error("has no VisibilityTimeout attribute".into()))?;
        if visibility < MIN_VISIBILITY {
            return Err(attributes_error(format!(
                "visibility timeout {visibility:?} is below the {MIN_VISIBILITY:?} the heartbeat needs"
            )));
        }
        let redrive = attributes.remove(&QueueAttributeName::RedrivePolicy);
        let dead_letters = DeadLetters::resolve(
            &aws,
            &queue_url,
            settings.queue.dead_letter_queue.as_deref(),
            redrive.as_deref(),
        )
        .await?;
        aws.check_bucket(&settings.storage.bucket).await?;
        let drift = database
            .ensure_tables(&settings.sources)
            .await
            .map_err(|err| StartError::Database(barge_core::error_chain(&err)))?;
        if !drift.is_empty() {
            return Err(StartError::SchemaDrift(drift));
        }
        let sources: Vec<String> = settings.sources.iter().map(|s| s.name.clone()).collect();
        let last_loads = database
            .last_commits(&sources)
            .await
            .map_err(|err| StartError::Database(barge_core::error_chain(&err)))?;
        for (source, committed_at) in last_loads {
            metrics.last_loaded(&source, committed_at);
        }
        tracing::info!(
            queue_url = %queue_url,
            dead_letter_queue = %dead_letters.url(),
            visibility_seconds = visibility.as_secs(),
            "transformer ready"
        );
        Ok(Self {
            queue: Queue::new(aws.sqs.clone(), queue_url, visibility),
            sessions: Sessions::new(database, settings.transformer.concurrency),
            settings,
            aws,
            dead_letters,
            liveness,
            metrics,
        })
    }

    /// The daemon loop: long-poll and load until `shutdown` is cancelled. An idle poll is
    /// abandoned at once (unreceived messages stay on the queue); the batch being loaded is
    /// finished within the shutdown grace period, and messages received but not started are
    /// handed back. If the grace period runs out, the load is abandoned (its transaction rolls
    /// back) and every held message is handed back too.
    pub async fn run(&self, shutdown: &CancellationToken) {
        tracing::info!(queue_url = %self.queue.url(), "polling for batches");
        self.liveness
            .ready(&format!("polling {} for batches", self.queue.url()));
        let _depths = self.watch_depths();
        let wait = self.settings.queue.wait_seconds;
        let grace = self.settings.transformer.shutdown_grace;
        let mut receive_delays = retry_delays();
        while !shutdown.is_cancelled() {
            let receiving = self.liveness.work();
            let received = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                received = self.queue.receive(wait) => received,
            };
            drop(receiving);
            let messages = match self.observe(received).await {
                Ok(messages) => {
                    receive_delays = retry_delays();
                    messages
                }
                Err(err) => {
                    let delay = receive_delays.next().unwrap_or(MAX_RETRY_DELAY);
                    tracing::error!(error = %err, retry_in = ?delay, "receive failed");
                    sleep_unless(shutdown, delay).await;
                    continue;
                }
            };
            let grace_expired = async {
                shutdown.cancelled().await;
                tokio::time::sleep(grace).await;
            };
            tokio::select! {
                _ = self.handle_all(messages, shutdown, Attempts::Daemon) => {}
                () = grace_expired => {
                    tracing::warn!(
                        ?grace,
                        "shutdown grace period over: abandoning the batch in hand (rolled back) and handing back held messages"
                    );
                    self.queue.release_all().await;
                    break;
                }
            }
        }
        tracing::info!("transformer stopped");
    }

    /// Loads until a receive comes back empty, then returns what happened. A message that keeps
    /// failing transiently is left invisible for the visibility timeout, so it is seen once per
    /// drain.
    pub async fn drain(&self) -> Result<Report, ReceiveError> {
        let mut report = Report::default();
        let never = CancellationToken::new();
        loop {
            let messages = self
                .observe(self.queue.receive(DRAIN_WAIT_SECONDS).await)
                .await?;
            if messages.is_empty() {
                return Ok(report);
            }
            let attempts = Attempts::AtMost(DRAIN_ATTEMPTS);
            report.absorb(self.handle_all(messages, &never, attempts).await);
        }
    }

    /// Handles received messages, up to `transformer.concurrency` at a time, each on its own
    /// database session; once `shutdown` fires, the ones not started are handed back. Messages
    /// another one's transient failure already handed back are skipped. The messages done are
    /// deleted together at the end (or earlier, see [`Queue::delete_done`]).
    async fn handle_all(
        &self,
        messages: Vec<Message>,
        shutdown: &CancellationToken,
        attempts: Attempts,
    ) -> Report {
        let received_at = Utc::now();
        let handled: Vec<Handled> = futures_util::stream::iter(messages)
            .map(|message| async move {
                let mut done = Vec::new();
                let outcome = self
                    .handle_one(&message, received_at, shutdown, attempts, &mut done)
                    .await;
                Handled {
                    message_id: queue::id(&message).to_owned(),
                    outcome,
                    done,
                }
            })
            .buffer_unordered(self.settings.transformer.concurrency)
            .collect()
            .await;
        self.queue.delete_done().await;
        self.metrics.in_flight.set(self.queue.held().await as i64);
        let mut report = Report::default();
        for handled in handled {
            report.record(handled);
        }
        report
    }

    /// Starts one received message, unless it was handed back or shutdown came first; what was
    /// done with the objects it announces is appended to `done`.
    async fn handle_one(
        &self,
        message: &Message,
        received_at: DateTime<Utc>,
        shutdown: &CancellationToken,
        attempts: Attempts,
        done: &mut Vec<Done>,
    ) -> Outcome {
        if !self.queue.start(message).await {
            return Outcome::Released;
        }
        if shutdown.is_cancelled() {
            self.queue.release(message).await;
            return Outcome::Released;
        }
        let span = tracing::info_span!(
            "message",
            message_id = %queue::id(message),
            source = tracing::field::Empty,
            key = tracing::field::Empty,
        );
        self.handle(message, received_at, shutdown, attempts, done)
            .instrument(span)
            .await
    }

    /// Processes one message and settles it: done (deleted by the caller), dead-lettered when no
    /// retry can help, retried in place (with backoff, the message held) when it failed
    /// transiently, handed back on shutdown.
    ///
    /// A transient failure first hands back every other message this transformer holds and has
    /// not started, since they would only wait behind this one, and stops receiving until this
    /// one is settled: the circuit breaker. Its probe is the failed work itself, tried again with
    /// backoff: a cheaper probe (`SELECT 1`) could pass while loads still fail (a full disk), and
    /// every false pass would cost the backlog a receive. Through an outage the message is tried
    /// until it passes; after a lost race or throttling [`IN_PLACE_ATTEMPTS`] times, then it is
    /// left for a later receive (SQS's `maxReceiveCount` remains the backstop).
    ///
    /// `done` collects what was done with the objects the message announces, in order; an
    /// attempt after a transient failure starts at the first object not done yet.
    async fn handle(
        &self,
        message: &Message,
        received_at: DateTime<Utc>,
        shutdown: &CancellationToken,
        attempts: Attempts,
        done: &mut Vec<Done>,
    ) -> Outcome {
        let mut delays = retry_delays();
        let mut attempt = 0;
        // The configured source of the object being processed, once known.
        let mut source = None;
        loop {
            attempt += 1;
            let processed = {
                // Each attempt is work for the watchdog; the pauses between them are not.
                let _work = self.liveness.work();
                let mut session = self.sessions.take();
                let processed = self
                    .process(&mut session, message, received_at, done, &mut source)
                    .await;
                session.finished();
                processed
            };
            let error = match processed {
                Ok(()) => {
                    self.queue.done(message).await;
                    self.liveness.progress();
                    return Outcome::Done;
                }
                Err(error) => error,
            };
            let class = error.class();
            if class == FailureClass::Permanent {
                return self.dead_letter(message, error, source).await;
            }
            if attempt == 1 {
                self.queue.delete_done().await;
                let released = self.queue.release_unstarted().await;
                if released > 0 {
                    tracing::info!(
                        released,
                        "other held messages handed back while this one is retried"
                    );
                }
            }
            if attempts.exhausted(attempt, class) {
                tracing::error!(error = %error, attempt, "still failing; leaving the message for a later receive");
                self.queue.forget(message).await;
                return Outcome::RetryLater(error);
            }
            let delay = delays.next().unwrap_or(MAX_RETRY_DELAY);
            match class {
                FailureClass::Outage(dependency) => tracing::error!(
                    error = %error, %dependency, attempt, retry_in = ?delay,
                    "dependency down: receiving stopped, the message is held and tried again"
                ),
                _ => tracing::warn!(
                    error = %error, attempt, retry_in = ?delay,
                    "transient failure; the message is held and tried again"
                ),
            }
            if !sleep_unless(shutdown, delay).await {
                self.queue.release(message).await;
                return Outcome::Released;
            }
        }
    }

    /// Moves a message that can never load to the dead-letter queue with its reason, and counts
    /// its object once it is there (`rejected` for too many rejected records, `dead_lettered`
    /// otherwise) under `source`, the configured source of the object, or `unknown` when the
    /// message names none configured (never the announced name: the label set stays bounded).
    async fn dead_letter(
        &self,
        message: &Message,
        error: ProcessError,
        source: Option<&str>,
    ) -> Outcome {
        match self.dead_letters.send(message, &error).await {
            Ok(()) => {
                self.queue.delete(std::slice::from_ref(message)).await;
                self.liveness.progress();
                let class = ClassLabel {
                    class: error.kind(),
                };
                self.metrics.dead_lettered.get_or_create(&class).inc();
                let outcome = match error {
                    ProcessError::TooManyRejects { .. } => "rejected",
                    _ => "dead_lettered",
                };
                self.metrics
                    .object(source.unwrap_or(UNKNOWN_SOURCE), outcome);
                tracing::error!(
                    error = %error,
                    class = error.kind(),
                    "message moved to the dead-letter queue; no retry can load it"
                );
            }
            Err(reason) => {
                // Left on the queue: it comes back, and SQS's maxReceiveCount is the backstop.
                self.queue.forget(message).await;
                tracing::error!(
                    error = %error,
                    class = error.kind(),
                    dead_letter_error = %reason,
                    "message cannot load and could not be dead-lettered; left for redelivery"
                );
                return Outcome::RetryLater(error);
            }
        }
        Outcome::DeadLettered(error)
    }

    /// Everything between receiving a message and deleting it: parse, check, then load each
    /// object it announces ([`Transformer::load`]), appending what was done to `done`. Objects
    /// already in `done` (an earlier attempt's) are not loaded again. `source` is set to the
    /// configured source of each object as it is found, for the metrics of a failure.
    async fn process<'s>(
        &'s self,
        database: &mut Database,
        message: &Message,
        received_at: DateTime<Utc>,
        done: &mut Vec<Done>,
        source: &mut Option<&'s str>,
    ) -> Result<(), ProcessError> {
        let message_id = queue::id(message);
        match Notice::parse(message.body().unwrap_or_default())? {
            Notice::S3TestEvent => {
                tracing::info!("S3 test event acknowledged");
                done.push(Done::Ignored);
            }
            Notice::Batch(batch) => {
                let announced = self.archived(&batch)?;
                let declared = self.source_of(&announced)?;
                *source = Some(declared.name.as_str());
                let loaded = self
                    .load(database, &announced, declared, message_id, received_at)
                    .await?;
                done.push(loaded);
            }
            Notice::S3Objects(objects) => {
                if objects.len() > 1 {
                    tracing::info!(
                        objects = objects.len(),
                        done = done.len(),
                        "S3 event of several objects"
                    );
                }
                for object in objects.iter().skip(done.len()) {
                    *source = None;
                    let (announced, declared) = self.landed(object)?;
                    *source = Some(declared.name.as_str());
                    if object.is_folder_marker() {
                        tracing::info!("empty object ending in / (a folder marker) ignored");
                        done.push(Done::Ignored);
                        continue;
                    }
                    let loaded = self
                        .load(database, &announced, declared, message_id, received_at)
                        .await?;
                    done.push(loaded);
                }
            }
        }
        Ok(())
    }

    /// The object a batch message announces, if it is in the archive this transformer loads.
    fn archived(&self, batch: &BatchMessage) -> Result<Announced, ProcessError> {
        tracing::Span::current()
            .record("source", batch.source.as_str())
            .record("key", batch.key.as_str());
        let storage = &self.settings.storage;
        if !storage.is_archived(&batch.bucket, &batch.key) {
            return Err(ProcessError::ForeignObject {
                bucket: batch.bucket.clone(),
                key: batch.key.clone(),
                archive_bucket: storage.bucket.clone(),
                archive_prefix: storage.prefix.trim_end_matches('/').to_owned(),
            });
        }
        Ok(Announced::batch(batch))
    }

    /// The declared source an announced object belongs to.
    fn source_of(&self, announced: &Announced) -> Result<&barge_core::Source, ProcessError> {
        self.settings
            .source(&announced.source)
            .ok_or_else(|| ProcessError::UnknownSource {
                key: announced.key.clone(),
                source_name: announced.source.clone(),
            })
    }

    /// The object an S3 event reports created, and the source whose landing prefix it is under
    /// (in `storage.bucket`; the settings keep landing prefixes apart, so there is at most one).
    fn landed(
        &self,
        object: &notice::CreatedObject,
    ) -> Result<(Announced, &barge_core::Source), ProcessError> {
        let span = tracing::Span::current();
        span.record("key", object.key.as_str());
        let storage = &self.settings.storage;
        let landing = |source: &&barge_core::Source| {
            source
                .landing_prefix
                .as_deref()
                .is_some_and(|prefix| barge_core::settings::key_is_under(&object.key, prefix))
        };
        let source = (object.bucket == storage.bucket)
            .then(|| self.settings.sources.iter().find(landing))
            .flatten()
            .ok_or_else(|| ProcessError::OutsideLandingZone {
                bucket: object.bucket.clone(),
                key: object.key.clone(),
                landing_bucket: storage.bucket.clone(),
                landing_prefixes: self
                    .settings
                    .sources
                    .iter()
                    .filter_map(|s| Some((s.landing_prefix.clone()?, s.name.clone())))
                    .collect(),
            })?;
        span.record("source", source.name.as_str());
        tracing::info!(
            event = %object.event_name,
            size = object.size,
            version_id = object.version_id.as_deref(),
            "S3 event: object landed"
        );
        Ok((Announced::landing(object, source), source))
    }

    /// Loads one object of `source`: stream it through the decoder into the load transaction,
    /// claim it in the ledger under the digest of the bytes read, write the rejects, merge,
    /// commit. An importer's batch is looked up in the ledger first by its announced digest (a
    /// redelivered message costs no download) and must have that digest; a landing object has
    /// none announced, so a duplicate is found only at the claim.
    async fn load(
        &self,
        database: &mut Database,
        announced: &Announced,
        source: &barge_core::Source,
        message_id: &str,
        received_at: DateTime<Utc>,
    ) -> Result<Done, ProcessError> {
        let started = std::time::Instant::now();
        let key = announced.key.as_str();
        let database_error = |err: &barge_core::settings::DbError,
                              rejects: Option<&rejects::Rejects>| {
            ProcessError::database(key, &source.table, err, rejects)
        };
        let replay_id = replay_id(announced, source);
        if let Some(sha256) = &announced.sha256
            && database
                .is_loaded(&announced.bucket, key, sha256, &replay_id)
                .await
                .map_err(|err| database_error(&err, None))?
        {
            tracing::info!("already loaded; duplicate message deleted");
            self.metrics.object(&source.name, "duplicate");
            return Ok(Done::Duplicate(key.to_owned()));
        }
        let Some(opened) = load::open(&self.aws, announced).await? else {
            tracing::info!(
                if_match = announced.if_match.as_deref(),
                "the key holds other bytes than this event's (put again since): acknowledged \
                 without loading; the newer event loads them"
            );
            self.metrics.object(&source.name, "superseded");
            return Ok(Done::Superseded(key.to_owned()));
        };
        let length = opened.length;
        let mut pipeline = load::Pipeline::start(
            opened,
            announced,
            source,
            &self.settings.transformer,
            self.aws.timeouts.stall,
        );
        let load = database
            .begin_load(source)
            .await
            .map_err(|err| database_error(&err, None))?;
        let copied = load.copy(&mut pipeline.chunks).await;
        let (tally, read) = pipeline.finish(announced, copied.is_err()).await;
        let digest = read?;
        if digest.is_some() {
            // Read to its end: the whole object came through (a cut-off read has no digest).
            let label = barge_core::metrics::SourceLabel::of(&source.name);
            self.metrics.read_bytes.get_or_create(&label).inc_by(length);
        }
        let copied = copied.map_err(|err| database_error(&err, Some(&tally.rejects)))?;
        let sha256 = digest.expect("the download is read to its end whenever the COPY succeeds");
        let rejected = tally.rejects.count();
        if rejected as f64 > source.max_reject_ratio * tally.records as f64 {
            return Err(ProcessError::TooManyRejects {
                key: key.to_owned(),
                rejected,
                read: tally.records,
                limit: source.max_reject_ratio,
                first: tally
                    .rejects
                    .first
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            });
        }
        let entry = LedgerEntry {
            bucket: announced.bucket.clone(),
            key: key.to_owned(),
            sha256: sha256.clone(),
            source: source.name.clone(),
            fetched_at: announced.fetched_at,
            message_id: message_id.to_owned(),
            received_at,
            replay_id,
        };
        let Some(claimed) = load
            .claim(entry)
            .await
            .map_err(|err| database_error(&err, None))?
        else {
            tracing::info!(%sha256, "already loaded (by another message or transformer); nothing loaded again");
            self.metrics.object(&source.name, "duplicate");
            return Ok(Done::Duplicate(key.to_owned()));
        };
        let rejects_url = write_rejects(
            &self.aws,
            &self.settings.storage,
            announced,
            &sha256,
            tally.rejects,
        )
        .await?;
        let counts = LoadCounts {
            records_read: tally.records,
            records_loaded: tally.loaded,
            records_rejected: rejected,
            rows_changed: 0,
            rejects_url: rejects_url.clone(),
        };
        let rows_changed = claimed
            .commit(copied, counts)
            .await
            .map_err(|err| database_error(&err, None))?;
        self.metrics
            .loaded(&source.name, tally.loaded, rejected, started.elapsed());
        let loaded = Loaded {
            source: source.name.clone(),
            key: key.to_owned(),
            records_read: tally.records,
            records_loaded: tally.loaded,
            records_rejected: rejected,
            rows_changed,
            rejects_url,
        };
        tracing::info!(
            records = loaded.records_read,
            rejected = loaded.records_rejected,
            rows_changed,
            rejects_url = loaded.rejects_url.as_deref(),
            "batch committed"
        );
        Ok(Done::Loaded(loaded))
    }
}

/// The ledger's `replay_id` of a load of `announced`: its replay's id, so that a replay loads the
/// object once more. An append-only source's rows have no key to merge on, so loading an object
/// again would duplicate them: there a replay counts as the object's own load, which loads only
/// an object never loaded (`transformer replay` refuses such sources; this guards the table
/// against a replay message from anywhere else).
fn replay_id(announced: &Announced, source: &barge_core::Source) -> String {
    match &announced.replay {
        Some(replay) if source.is_keyed() => replay.clone(),
        Some(_) => {
            tracing::warn!(
                "replay of an append-only source: loaded only if the object never was (its rows \
                 would be duplicated)"
            );
            ledger::NOT_A_REPLAY.to_owned()
        }
        None => ledger::NOT_A_REPLAY.to_owned(),
    }
}

impl Transformer {
    /// Counts a receive's answer: empty or not, how long its messages had waited, how many this
    /// transformer holds now.
    async fn observe(
        &self,
        received: Result<Vec<Message>, ReceiveError>,
    ) -> Result<Vec<Message>, ReceiveError> {
        let messages = received?;
        self.liveness.progress();
        let metrics = &self.metrics;
        metrics.receives.inc();
        if messages.is_empty() {
            metrics.empty_receives.inc();
        }
        let now = Utc::now().timestamp_millis();
        let waits: Vec<f64> = messages
            .iter()
            .filter_map(|message| {
                let sent = message
                    .attributes()?
                    .get(&aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp)?;
                let sent: i64 = sent.parse().ok()?;
                Some((now - sent).max(0) as f64 / 1000.0)
            })
            .collect();
        for wait in &waits {
            metrics.queue_wait.observe(*wait);
        }
        let oldest = waits.into_iter().reduce(f64::max).unwrap_or(0.0);
        metrics.oldest_received_age.set(oldest);
        metrics.in_flight.set(self.queue.held().await as i64);
        Ok(messages)
    }

    /// Reads the depth of the queue and the dead-letter queue every
    /// `metrics.queue_poll_interval` into `barge_queue_messages`, until the guard drops.
    fn watch_depths(&self) -> tokio_util::sync::DropGuard {
        let stop = CancellationToken::new();
        let queues = [
            ("main", self.queue.url().to_owned()),
            ("dead_letter", self.dead_letters.url().to_owned()),
        ];
        let (sqs, metrics) = (self.aws.sqs.clone(), self.metrics.clone());
        let every = self.settings.metrics.queue_poll_interval;
        let stopped = stop.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stopped.cancelled() => break,
                    _ = ticks.tick() => {}
                }
                for (queue, url) in &queues {
                    read_depth(&sqs, &metrics, queue, url).await;
                }
            }
        });
        stop.drop_guard()
    }
}

/// Sets `barge_queue_messages{queue}` from the queue's approximate counts; a failure is logged
/// and leaves the last values.
async fn read_depth(
    sqs: &aws_sdk_sqs::Client,
    metrics: &TransformerMetrics,
    queue: &'static str,
    url: &str,
) {
    let depth = match ops::status::depth(sqs, url).await {
        Ok(depth) => depth,
        Err(err) => {
            tracing::warn!(queue_url = %url, error = %err, "cannot read the queue's depth");
            return;
        }
    };
    for (state, count) in [
        ("visible", depth.visible),
        ("not_visible", depth.in_flight),
        ("delayed", depth.delayed),
    ] {
        metrics
            .queue_messages
            .get_or_create(&QueueLabels { queue, state })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}

/// The `source` label of a dead-lettered object whose source is not configured (or not known).
const UNKNOWN_SOURCE: &str = "unknown";

/// The longest pause between two tries of a failing dependency.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Exponential backoff with jitter, from half a second up to [`MAX_RETRY_DELAY`], so that
/// transformers retrying together do not hit a recovering dependency in step.
fn retry_delays() -> impl Iterator<Item = Duration> {
    barge_core::backoff::exponential(Duration::from_millis(500), MAX_RETRY_DELAY)
}

/// Sleeps for `delay`; `false` if `shutdown` fired first.
async fn sleep_unless(shutdown: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(delay) => true,
    }
}

/// Writes an object's spooled rejected records under the errors prefix; returns their `s3://`
/// URL, or `None` when no record was rejected.
async fn write_rejects(
    aws: &AwsClients,
    storage: &barge_core::settings::StorageSettings,
    announced: &Announced,
    sha256: &str,
    rejects: rejects::Rejects,
) -> Result<Option<String>, ProcessError> {
    let rejects_key = rejects::rejects_key(&storage.errors_prefix, &announced.key, sha256);
    let count = rejects.count();
    let first = rejects.first.as_ref().map(ToString::to_string);
    let failed = |reason: String, class| ProcessError::Rejects {
        key: announced.key.clone(),
        bucket: storage.bucket.clone(),
        rejects_key: rejects_key.clone(),
        reason,
        class,
    };
    let spooled = rejects
        .into_file()
        .map_err(|err| failed(format!("reading the spool: {err}"), FailureClass::Retry))?;
    let Some(file) = spooled else {
        return Ok(None);
    };
    let body = ByteStream::read_from()
        .file(tokio::fs::File::from_std(file))
        .build()
        .await
        .map_err(|err| failed(barge_core::error_chain(&err), FailureClass::Retry))?;
    let mut put = aws
        .s3
        .put_object()
        .bucket(&storage.bucket)
        .key(&rejects_key)
        .content_type("application/x-ndjson")
        .metadata("source", &announced.source)
        .metadata("record-count", count.to_string());
    if let Some(raw_key) = rejects::raw_key_metadata(&announced.key) {
        put = put.metadata("raw-key", raw_key);
    }
    put.body(body).send().await.map_err(|err| {
        let class = error::S3Failure::of(&err).class();
        failed(barge_core::error_chain(&err), class)
    })?;
    tracing::warn!(
        rejected = count,
        rejects_key = %rejects_key,
        first = first.as_deref().unwrap_or_default(),
        "records rejected; the valid ones load"
    );
    Ok(Some(format!("s3://{}/{rejects_key}", storage.bucket)))
}
