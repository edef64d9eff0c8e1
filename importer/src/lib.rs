//! The importer: fetch each source's pages, archive them in S3 under a date-partitioned key as
//! they stream in, announce each object on SQS, and remember where the run got to.
//!
//! The map:
//! - [`http`]: requests with retries, rate limit, auth and size and content checks;
//! - [`pages`]: which URL comes next and when a run stops (pure logic);
//! - [`fetch`]: one page's answer read into the run's objects, checked and hashed;
//! - [`objects`] and [`archive`]: archive objects, gzip, one put or a multipart upload;
//! - [`state`]: the incremental mark, page digests and the markers that make
//!   archive-then-announce whole across crashes;
//! - [`error`]: what can go wrong, and whether trying again can help;
//! - [`discover`]: `importer discover`, a sample's `[[sources]]` block (fetching as above,
//!   never writing anything).
//!
//! The order is the invariant: a message is sent only for an object that is already durably in
//! S3, a marker is in S3 before the object is visible, and nothing at all is written for a page
//! that is not a batch.

use std::sync::Arc;

use barge_core::aws::{AwsClients, QueueUrlError};
use barge_core::metrics::{ImporterMetrics, OutcomeLabels, SourceLabel};
use barge_core::service::{Liveness, STALL_LIMIT};
use barge_core::{BatchMessage, Settings, Source};
use chrono::Utc;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use url::Url;

mod archive;
pub mod discover;
mod error;
mod fetch;
pub mod http;
mod objects;
pub mod pages;
pub mod state;

pub use error::ImportError;
use fetch::{Page, Run};
use objects::Archiver;
use pages::{Next, PageInfo, Pager};
use state::{SourceState, StateStore};

/// What one run of a source did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// Pages fetched.
    pub pages: u64,
    /// Records fetched (including those of unchanged pages).
    pub records: u64,
    /// Pages identical to one the last run saw, not archived again.
    pub unchanged_pages: u64,
    /// The objects archived and announced, in order.
    pub objects: Vec<BatchMessage>,
    /// Objects an earlier run left unannounced, announced by this one.
    pub recovered: usize,
    /// The incremental mark after the run.
    pub mark: Option<Value>,
    /// Whether `pagination.max_pages` ended the run.
    pub capped: bool,
}

/// One line saying what a run did, for `importer once`.
pub fn describe(report: &RunReport) -> String {
    let mut text = format!(
        "{} page(s), {} record(s), {} object(s) archived and announced",
        report.pages,
        report.records,
        report.objects.len()
    );
    if report.unchanged_pages > 0 {
        text.push_str(&format!(
            ", {} page(s) unchanged since the last run",
            report.unchanged_pages
        ));
    }
    if report.recovered > 0 {
        text.push_str(&format!(
            ", {} object(s) of an interrupted run announced",
            report.recovered
        ));
    }
    if let Some(mark) = &report.mark {
        text.push_str(&format!(", mark {mark}"));
    }
    if report.capped {
        text.push_str(", stopped at pagination.max_pages");
    }
    text
}

/// Imports sources into the archive and queue. Cheap to clone: clients are shared handles.
#[derive(Debug, Clone)]
pub struct Importer {
    settings: Arc<Settings>,
    /// For sources without `auth`: redirects followed anywhere.
    http: reqwest::Client,
    /// For sources with `auth`: redirects followed within the origin only.
    http_with_credentials: reqwest::Client,
    aws: AwsClients,
    queue_url: String,
    /// READY and the watchdog, for systemd and `/health/ready`.
    liveness: Liveness,
    /// What `/metrics` reports.
    metrics: ImporterMetrics,
}

impl Importer {
    /// Builds the HTTP client, resolves the queue URL and checks that the bucket answers, so
    /// that a misconfigured queue or bucket fails at start-up rather than after the first fetch.
    /// Its metrics are counted but not served.
    pub async fn new(settings: Settings, aws: AwsClients) -> Result<Self, StartError> {
        let liveness = Liveness::start(stall_limit(&settings), None);
        Self::start(settings, aws, liveness, ImporterMetrics::default()).await
    }

    /// `importer run`: serves `/metrics` and the health endpoints on `metrics.importer_listen`
    /// first (not ready yet), then starts as [`Importer::new`] does and imports each source on
    /// its interval until `shutdown` ([`Importer::run`]), ready from then on.
    pub async fn serve(
        settings: Settings,
        aws: AwsClients,
        shutdown: CancellationToken,
    ) -> Result<(), StartError> {
        let metrics = ImporterMetrics::default();
        let mut registry = barge_core::metrics::registry();
        metrics.register(&mut registry);
        let fetched = settings
            .sources
            .iter()
            .filter(|source| source.url.is_some());
        metrics.prime(fetched.map(|source| source.name.as_str()));
        // No progress window: each page is work the stall limit bounds, and waiting between
        // runs (or after a failed one) is healthy.
        let liveness = Liveness::start(stall_limit(&settings), None);
        let listen = settings.metrics.importer_listen;
        barge_core::ops::serve(listen, registry, liveness.clone(), shutdown.clone()).await?;
        let importer = Self::start(settings, aws, liveness, metrics).await?;
        importer.run(shutdown).await;
        Ok(())
    }

    /// [`Importer::new`] reporting to `liveness` and `metrics`.
    async fn start(
        settings: Settings,
        aws: AwsClients,
        liveness: Liveness,
        metrics: ImporterMetrics,
    ) -> Result<Self, StartError> {
        let client = |credentials| {
            http::client(&settings.http, credentials)
                .map_err(|err| StartError::HttpClient(barge_core::error_chain(&err)))
        };
        let (http, http_with_credentials) = (client(false)?, client(true)?);
        let queue_url = aws.queue_url(&settings.queue.queue).await?;
        aws.check_bucket(&settings.storage.bucket).await?;
        Ok(Self {
            settings: Arc::new(settings),
            http,
            http_with_credentials,
            aws,
            queue_url,
            liveness,
            metrics,
        })
    }

    /// The sources this importer fetches: those with a URL (a landing-only source has none).
    fn fetched_sources(&self) -> impl Iterator<Item = &Source> {
        self.settings
            .sources
            .iter()
            .filter(|source| source.url.is_some())
    }

    /// Imports every source once, all at the same time and each on its own: one failing or
    /// slow source does not stop or delay the others. Once `shutdown` fires, each run stops
    /// after the page under way (its whole pages are archived and announced) and reports
    /// [`ImportError::Interrupted`]. Returns each source's outcome in declaration order.
    pub async fn run_once(
        &self,
        shutdown: &CancellationToken,
    ) -> Vec<(String, Result<RunReport, ImportError>)> {
        let runs = self.fetched_sources().map(|source| async move {
            (
                source.name.clone(),
                self.import_logged(source, shutdown).await,
            )
        });
        futures_util::future::join_all(runs).await
    }

    /// Imports each source on its own interval (the first time immediately) until `shutdown` is
    /// cancelled. A run under way when it fires stops after its current page, so no archived
    /// object is left unannounced by a stop.
    pub async fn run(&self, shutdown: CancellationToken) {
        self.liveness.ready(&format!(
            "importing {} source(s) on their intervals",
            self.fetched_sources().count()
        ));
        let mut tasks = JoinSet::new();
        for source in self.fetched_sources().cloned().collect::<Vec<_>>() {
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
            // Errors are logged inside; the next tick retries. The watchdog watches each page
            // (see `walk`), not the whole run, which may page for hours.
            let _ = self.import_logged(source, shutdown).await;
        }
        tracing::info!(source = %source.name, "source stopped");
    }

    async fn import_logged(
        &self,
        source: &Source,
        shutdown: &CancellationToken,
    ) -> Result<RunReport, ImportError> {
        let span = tracing::info_span!("import", source = %source.name);
        let outcome = self
            .import_until(source, shutdown)
            .instrument(span.clone())
            .await;
        let _entered = span.enter();
        let ok = outcome.is_ok();
        let label = match &outcome {
            Ok(_) => "ok",
            Err(ImportError::Interrupted { .. }) => "interrupted",
            Err(_) => "failed",
        };
        self.metrics
            .runs
            .get_or_create(&OutcomeLabels {
                source: source.name.clone(),
                outcome: label,
            })
            .inc();
        if ok {
            self.metrics
                .last_success
                .get_or_create(&SourceLabel::of(&source.name))
                .set(barge_core::metrics::unix_seconds(Utc::now()));
        }
        match &outcome {
            Ok(report) => tracing::info!(
                pages = report.pages,
                records = report.records,
                objects = report.objects.len(),
                unchanged_pages = report.unchanged_pages,
                recovered = report.recovered,
                capped = report.capped,
                "run complete: batches archived and announced"
            ),
            Err(err) => tracing::error!(
                error = %err,
                retryable = err.is_retryable(),
                "run failed; its whole pages are archived and announced, its mark is not advanced"
            ),
        }
        outcome
    }

    /// One run of `source`, to the end of its pages.
    pub async fn import(&self, source: &Source) -> Result<RunReport, ImportError> {
        self.import_until(source, &CancellationToken::new()).await
    }

    /// One run of `source`: announce what an earlier run left unannounced, fetch every page
    /// (from the incremental mark, if any), archive and announce them, then save the new mark
    /// and page digests. Stops after the current page once `shutdown` fires.
    pub async fn import_until(
        &self,
        source: &Source,
        shutdown: &CancellationToken,
    ) -> Result<RunReport, ImportError> {
        let state_error = |error| ImportError::State {
            source_name: source.name.clone(),
            error,
        };
        let url = source_url(source)?;
        let storage = &self.settings.storage;
        let store = StateStore::new(self.aws.s3.clone(), &storage.bucket, &storage.state_prefix);
        let (mut state, mut version) = store.load(&source.name).await.map_err(state_error)?;
        let recovered = self
            .recover(source, &store, &mut state, &mut version)
            .await?;
        let mark = match (&source.incremental, &state.mark) {
            (Some(_), Some(mark)) => Some(state::mark_text(mark)),
            (Some(incremental), None) => incremental.start.clone(),
            (None, _) => None,
        };
        let mut pager = Pager::new(source, url, mark.as_deref());
        let client = match source.auth {
            Some(_) => &self.http_with_credentials,
            None => &self.http,
        };
        let mut requester = http::Requester::new(source, &self.settings.http, client, &self.aws)
            .await?
            .stop_on(shutdown)
            .counted_in(&self.metrics);
        let mut archiver = Archiver::new(self, &store, source);
        let mut run = Run::default();
        let walked = self
            .walk(
                source,
                &state,
                &mut requester,
                &mut pager,
                &mut archiver,
                &mut run,
                shutdown,
            )
            .await;
        let next =
            walked.and_then(|capped| Ok((capped, self.next_state(source, &state, &run, capped)?)));
        let (capped, next) = match next {
            Ok(next) => next,
            Err(err) => {
                self.keep_what_was_archived(source, &store, &mut archiver, state, version)
                    .await;
                return Err(err);
            }
        };
        store
            .save(&source.name, &next, version.as_deref())
            .await
            .map_err(state_error)?;
        if let Err(err) = store.delete_markers(&archiver.markers).await {
            tracing::warn!(error = %err, "markers not removed; the next run announces their objects again (the ledger drops the duplicates)");
        }
        if capped {
            tracing::warn!(
                max_pages = source.pagination.max_pages,
                "run stopped at pagination.max_pages; the rest comes next run"
            );
        }
        Ok(RunReport {
            pages: pager.pages(),
            records: run.records,
            unchanged_pages: run.unchanged_pages,
            objects: archiver.announced,
            recovered,
            mark: next.mark,
            capped,
        })
    }

    /// The state a complete run leaves: its pages, and the mark moved to the highest value it
    /// saw. A run cut short by `max_pages` moves the mark only to the value before its last one,
    /// and only if the values came in ascending order: otherwise records below the mark were
    /// left unfetched, and moving it would skip them for good.
    fn next_state(
        &self,
        source: &Source,
        state: &SourceState,
        run: &Run,
        capped: bool,
    ) -> Result<SourceState, ImportError> {
        let mark_error = |reason: String| ImportError::Mark {
            source_name: source.name.clone(),
            reason,
        };
        let mut next = SourceState {
            mark: state.mark.clone(),
            ..SourceState::default()
        };
        next.remember(&run.pages);
        let reached = match (&source.incremental, capped) {
            (None, _) => None,
            (Some(_), false) => run.marks.highest.as_ref(),
            // Cut short: the last value's other records may be on the pages not fetched, so the
            // mark moves only to the value below it, and only if the values came in order.
            (Some(incremental), true) => match (&run.marks.below_last, run.marks.out_of_order) {
                (Some(below_last), false) => Some(below_last),
                (_, out_of_order) => {
                    let why = if out_of_order {
                        "the API does not send records in ascending order of"
                    } else {
                        "all its records share one value of"
                    };
                    return Err(mark_error(format!(
                        "the run stopped at pagination.max_pages ({}), and {why} {:?}, so \
                         moving the mark would skip records not fetched: raise max_pages, or \
                         have the API sort ascending",
                        source.pagination.max_pages, incremental.field
                    )));
                }
            },
        };
        if let Some(reached) = reached {
            next.mark =
                state::later_mark(next.mark, reached).map_err(|err| mark_error(err.to_string()))?;
        }
        Ok(next)
    }

    /// Announces the objects of markers an earlier run left (a run that died between an
    /// object's put and its message, or before saving its state), remembers their pages so they
    /// are not archived again, and removes the markers. Returns how many were announced.
    async fn recover(
        &self,
        source: &Source,
        store: &StateStore,
        state: &mut SourceState,
        version: &mut Option<String>,
    ) -> Result<usize, ImportError> {
        let state_error = |error| ImportError::State {
            source_name: source.name.clone(),
            error,
        };
        let markers = store.markers(&source.name).await.map_err(state_error)?;
        if markers.is_empty() {
            return Ok(0);
        }
        let mut announced = 0;
        for (_, marker) in &markers {
            // No object: the run died before it became visible; its pages are fetched again.
            if store
                .exists(&marker.message.key)
                .await
                .map_err(state_error)?
            {
                self.announce(&marker.message).await?;
                state.remember(&marker.pages);
                announced += 1;
            }
        }
        *version = Some(
            store
                .save(&source.name, state, version.as_deref())
                .await
                .map_err(state_error)?,
        );
        let keys: Vec<String> = markers.into_iter().map(|(key, _)| key).collect();
        store.delete_markers(&keys).await.map_err(state_error)?;
        tracing::warn!(
            announced,
            markers = keys.len(),
            "objects an earlier run left unannounced are announced now"
        );
        Ok(announced)
    }

    /// After a failed run: finishes the open object if it holds whole pages, then remembers the
    /// pages of every announced object (the mark stays) and removes their markers. Whatever
    /// fails here is left to the next run's recovery.
    async fn keep_what_was_archived(
        &self,
        source: &Source,
        store: &StateStore,
        archiver: &mut Archiver<'_>,
        mut state: SourceState,
        version: Option<String>,
    ) {
        if let Err(err) = archiver.salvage().await {
            tracing::warn!(error = %err, "the last whole pages could not be archived; they are fetched again next run");
        }
        if archiver.markers.is_empty() {
            return;
        }
        state.remember(&archiver.archived_pages);
        let saved = async {
            store.save(&source.name, &state, version.as_deref()).await?;
            store.delete_markers(&archiver.markers).await
        }
        .await;
        if let Err(err) = saved {
            tracing::warn!(error = %err, "state not saved after the failure; the next run announces this run's objects again");
        }
    }

    /// Fetches page after page until the pager says stop; returns whether `max_pages` cut the
    /// run short.
    #[allow(clippy::too_many_arguments)]
    async fn walk(
        &self,
        source: &Source,
        state: &SourceState,
        requester: &mut http::Requester<'_>,
        pager: &mut Pager<'_>,
        archiver: &mut Archiver<'_>,
        run: &mut Run,
        shutdown: &CancellationToken,
    ) -> Result<bool, ImportError> {
        let mut url = pager.first().clone();
        loop {
            if shutdown.is_cancelled() {
                archiver.finish().await?;
                return Err(ImportError::Interrupted {
                    source_name: source.name.clone(),
                });
            }
            let _work = self.liveness.work();
            let started = std::time::Instant::now();
            let number = pager.pages() + 1;
            let fetched_at = Utc::now();
            let mut answer = requester.get(&url, number).await?;
            let page_url = answer.url.clone();
            let link_next = answer.link_next();
            let page = Page {
                source,
                state,
                number,
                fetched_at,
            };
            let streamed = source.records.is_empty() && source.records_per_object.is_none();
            // On an error the caller salvages the open object: finished if it holds only whole
            // pages, dropped if this page was being written into it.
            let (records, fields) = if streamed {
                page.stream(&mut answer, archiver, run, &self.settings)
                    .await?
            } else {
                page.buffer(&mut answer, archiver, run, &self.settings)
                    .await?
            };
            run.records += records;
            let label = SourceLabel::of(&source.name);
            let metrics = &self.metrics;
            metrics.pages.get_or_create(&label).inc();
            metrics
                .records_fetched
                .get_or_create(&label)
                .inc_by(records);
            let bytes = answer.received();
            metrics.fetched_bytes.get_or_create(&label).inc_by(bytes);
            let took = started.elapsed().as_secs_f64();
            metrics.fetch_duration.get_or_create(&label).observe(took);
            let info = PageInfo {
                records,
                link_next,
                fields,
            };
            let next = pager
                .advance(&page_url, &info)
                .map_err(|err| ImportError::Paging {
                    source_name: source.name.clone(),
                    url: barge_core::redact_url(page_url.as_str()),
                    error: err,
                })?;
            match next {
                Next::Fetch(next) => url = next,
                Next::Done | Next::Capped => {
                    archiver.finish().await?;
                    return Ok(next == Next::Capped);
                }
            }
        }
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
        self.metrics
            .objects_announced
            .get_or_create(&SourceLabel::of(&message.source))
            .inc();
        Ok(())
    }
}

/// The parsed URL of `source`'s first page (validated settings hold an http(s) URL); a
/// landing-only source has none.
fn source_url(source: &Source) -> Result<Url, ImportError> {
    source
        .url
        .as_deref()
        .and_then(|url| Url::parse(url).ok())
        .ok_or_else(|| ImportError::NoUrl {
            source_name: source.name.clone(),
        })
}

/// How long one piece of work (a page) may take before the importer counts as stuck.
fn stall_limit(settings: &Settings) -> std::time::Duration {
    STALL_LIMIT.max(longest_page(settings))
}

/// The longest one page may take while nothing is wrong: every try timing out twice (connect
/// and read), waiting for the slowest source's rate limit, and the longest wait between tries
/// (a backoff or a `Retry-After`), plus a margin for archiving it. The watchdog allows a page
/// this long before it declares the importer stuck.
fn longest_page(settings: &Settings) -> std::time::Duration {
    use std::time::Duration;
    let http = &settings.http;
    let tries = http.max_attempts;
    let wait = http.max_backoff.max(http.max_retry_after);
    let spacing = settings
        .sources
        .iter()
        .filter_map(|source| source.rate_limit)
        .map(|rate| Duration::try_from_secs_f64(1.0 / rate).unwrap_or(Duration::MAX / 4))
        .max()
        .unwrap_or_default();
    http.timeout
        .saturating_mul(2)
        .saturating_add(spacing)
        .saturating_mul(tries)
        .saturating_add(wait.saturating_mul(tries.saturating_sub(1)))
        .saturating_add(Duration::from_secs(5 * 60))
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
    /// The archive bucket does not answer.
    #[error(transparent)]
    Bucket(#[from] barge_core::aws::BucketError),
    /// The metrics and health endpoint cannot listen.
    #[error(transparent)]
    Ops(#[from] barge_core::ops::OpsError),
}
