//! Every Prometheus metric barge exports, in one place: the importer's and the transformer's
//! sets, their names, help texts, units and labels. `/metrics` ([`crate::ops`]) renders them;
//! the README's metric reference and `deploy/grafana/barge.json` are checked against
//! [`all_metric_names`], so names cannot drift.
//!
//! Labels are bounded: a configured source name ([`SourceLabel`]), an outcome, a status class or
//! an error class, never an object key, a URL or a message id. The metrics are created
//! unregistered (`Default`), so that a library used without a server (tests, the demo) counts
//! into nothing anyone reads; the daemons register them with [`ImporterMetrics::register`] or
//! [`TransformerMetrics::register`] and `prime` each configured source's series at zero, so that
//! they exist (and `rate()` sees their first increase) before anything happened.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The prefix of every metric name.
pub const PREFIX: &str = "barge";

/// A float gauge (seconds since the epoch, ages).
type FloatGauge = Gauge<f64, AtomicU64>;

/// A family of histograms; the constructor sets the buckets.
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// The label of per-source metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// A source name from the settings.
    pub source: String,
}

impl SourceLabel {
    /// The label of `source`.
    pub fn of(source: &str) -> Self {
        Self {
            source: source.to_owned(),
        }
    }
}

/// A per-source metric split by what happened.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// A source name from the settings.
    pub source: String,
    /// One of a fixed set, named where the metric is documented.
    pub outcome: &'static str,
}

/// An importer's HTTP answers by class.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// The source asked.
    pub source: String,
    /// `2xx`, `3xx`, `4xx`, `5xx`, or `none` when no answer came (connect error, timeout).
    pub status_class: &'static str,
}

/// A dead-lettered message by the class of its error (`barge-error-class`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabel {
    /// `ProcessError::kind`: a fixed set of names.
    pub class: &'static str,
}

/// One of the transformer's two queues, in a given state.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// `main` or `dead_letter`.
    pub queue: &'static str,
    /// `visible` (waiting), `not_visible` (received by some transformer, not yet deleted) or
    /// `delayed`.
    pub state: &'static str,
}

/// The values of [`StatusLabels::status_class`].
const STATUS_CLASSES: [&str; 6] = ["2xx", "3xx", "4xx", "5xx", "other", "none"];
/// The outcomes of an importer's run.
const RUN_OUTCOMES: [&str; 3] = ["ok", "failed", "interrupted"];
/// The outcomes of an object in `barge_objects_total`.
const OBJECT_OUTCOMES: [&str; 5] = [
    "loaded",
    "duplicate",
    "superseded",
    "rejected",
    "dead_lettered",
];

/// The class of an HTTP status, for [`StatusLabels::status_class`].
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        Some(_) => "other",
        None => "none",
    }
}

/// Seconds since the Unix epoch, for `…_timestamp_seconds` gauges.
pub fn unix_seconds(at: chrono::DateTime<chrono::Utc>) -> f64 {
    at.timestamp_micros() as f64 / 1e6
}

/// Buckets of durations, from 10 ms to about 25 minutes (0.01 × 2.5¹³ ≈ 1490 s).
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.5, 14))
}

/// Buckets of row counts, from 1 to about 4 million.
fn rows_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 4.0, 12))
}

/// Buckets of how long messages waited on the queue, from 100 ms to about 77 days
/// (0.1 × 4¹³ ≈ 6.7 million s; SQS keeps a message at most 14 days).
fn wait_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 4.0, 14))
}

/// What the importer counts.
#[derive(Debug, Clone)]
pub struct ImporterMetrics {
    /// `barge_records_fetched_total{source}`: records in the pages fetched.
    pub records_fetched: Family<SourceLabel, Counter>,
    /// `barge_importer_pages_total{source}`: pages fetched (unchanged ones included).
    pub pages: Family<SourceLabel, Counter>,
    /// `barge_importer_fetched_bytes_total{source}`: response bytes read.
    pub fetched_bytes: Family<SourceLabel, Counter>,
    /// `barge_importer_objects_announced_total{source}`: objects archived and announced.
    pub objects_announced: Family<SourceLabel, Counter>,
    /// `barge_importer_fetch_duration_seconds{source}`: one page, from its first request to its
    /// last byte archived (retries and waits included).
    pub fetch_duration: Histograms<SourceLabel>,
    /// `barge_importer_http_responses_total{source,status_class}`: every try's answer.
    pub http_responses: Family<StatusLabels, Counter>,
    /// `barge_importer_http_retries_total{source}`: tries made again after a 429, 5xx or
    /// transport failure.
    pub http_retries: Family<SourceLabel, Counter>,
    /// `barge_importer_runs_total{source,outcome}`: runs ended, `ok`, `failed` or
    /// `interrupted` (stopped by shutdown after a whole page).
    pub runs: Family<OutcomeLabels, Counter>,
    /// `barge_importer_last_success_timestamp_seconds{source}`: when a run last ended well.
    pub last_success: Family<SourceLabel, FloatGauge>,
}

impl Default for ImporterMetrics {
    fn default() -> Self {
        Self {
            records_fetched: Family::default(),
            pages: Family::default(),
            fetched_bytes: Family::default(),
            objects_announced: Family::default(),
            fetch_duration: Family::new_with_constructor(duration_histogram),
            http_responses: Family::default(),
            http_retries: Family::default(),
            runs: Family::default(),
            last_success: Family::default(),
        }
    }
}

impl ImporterMetrics {
    /// Creates every series of `sources` at zero (the timestamps stay absent until a success).
    pub fn prime<'a>(&self, sources: impl IntoIterator<Item = &'a str>) {
        for source in sources {
            let label = SourceLabel::of(source);
            self.records_fetched.get_or_create_owned(&label);
            self.pages.get_or_create_owned(&label);
            self.fetched_bytes.get_or_create_owned(&label);
            self.objects_announced.get_or_create_owned(&label);
            self.fetch_duration.get_or_create_owned(&label);
            self.http_retries.get_or_create_owned(&label);
            for status_class in STATUS_CLASSES {
                let source = source.to_owned();
                let labels = StatusLabels {
                    source,
                    status_class,
                };
                self.http_responses.get_or_create_owned(&labels);
            }
            for outcome in RUN_OUTCOMES {
                let source = source.to_owned();
                self.runs
                    .get_or_create_owned(&OutcomeLabels { source, outcome });
            }
        }
    }

    /// Adds these metrics to `registry` (made by [`registry`]).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "records_fetched",
            "Records in the pages the importer fetched",
            self.records_fetched.clone(),
        );
        registry.register(
            "importer_pages",
            "Pages the importer fetched, unchanged ones included",
            self.pages.clone(),
        );
        registry.register_with_unit(
            "importer_fetched",
            "Response bytes the importer read",
            Unit::Bytes,
            self.fetched_bytes.clone(),
        );
        registry.register(
            "importer_objects_announced",
            "Objects archived in S3 and announced on SQS",
            self.objects_announced.clone(),
        );
        registry.register_with_unit(
            "importer_fetch_duration",
            "One page, from its first request to its last byte archived, retries included",
            Unit::Seconds,
            self.fetch_duration.clone(),
        );
        registry.register(
            "importer_http_responses",
            "HTTP answers to the importer's tries, by status class (none: no answer)",
            self.http_responses.clone(),
        );
        registry.register(
            "importer_http_retries",
            "Requests tried again after a 429, a 5xx or a transport failure",
            self.http_retries.clone(),
        );
        registry.register(
            "importer_runs",
            "Runs of a source that ended, by outcome (ok, failed, interrupted)",
            self.runs.clone(),
        );
        registry.register_with_unit(
            "importer_last_success_timestamp",
            "When a run of the source last ended well, seconds since the epoch",
            Unit::Seconds,
            self.last_success.clone(),
        );
    }
}

/// What the transformer counts.
#[derive(Debug, Clone)]
pub struct TransformerMetrics {
    /// `barge_records_loaded_total{source}`: records loaded into their table.
    pub records_loaded: Family<SourceLabel, Counter>,
    /// `barge_records_rejected_total{source}`: records set aside in a rejects file.
    pub records_rejected: Family<SourceLabel, Counter>,
    /// `barge_objects_total{source,outcome}`: objects by what became of them: `loaded`,
    /// `duplicate` (in the ledger already), `superseded` (a landing key put again since its
    /// event), `rejected` (more rejected records than `max_reject_ratio`: dead-lettered),
    /// `dead_lettered` (dead-lettered for any other reason; `source` is `unknown` when the
    /// message names no configured source). Both dead-letter outcomes count once the message is
    /// on the dead-letter queue.
    pub objects: Family<OutcomeLabels, Counter>,
    /// `barge_messages_dead_lettered_total{class}`: messages moved to the dead-letter queue.
    pub dead_lettered: Family<ClassLabel, Counter>,
    /// `barge_load_duration_seconds{source}`: one committed load, from the request for the
    /// object to the commit.
    pub load_duration: Histograms<SourceLabel>,
    /// `barge_load_rows{source}`: records loaded by one committed load.
    pub load_rows: Histograms<SourceLabel>,
    /// `barge_transformer_read_bytes_total{source}`: object bytes read from S3, as stored.
    pub read_bytes: Family<SourceLabel, Counter>,
    /// `barge_last_load_timestamp_seconds{source}`: when a load of the source last committed.
    pub last_load: Family<SourceLabel, FloatGauge>,
    /// `barge_sqs_receives_total`: receive calls answered.
    pub receives: Counter,
    /// `barge_sqs_empty_receives_total`: receive calls answered with no message.
    pub empty_receives: Counter,
    /// `barge_messages_in_flight`: messages this transformer holds.
    pub in_flight: Gauge,
    /// `barge_queue_wait_seconds`: how long each received message had been on the queue
    /// (since it was first sent).
    pub queue_wait: Histogram,
    /// `barge_queue_oldest_received_age_seconds`: of the messages the last receive returned,
    /// how long the oldest had been on the queue; 0 after an empty receive.
    pub oldest_received_age: FloatGauge,
    /// `barge_queue_messages{queue,state}`: the queues' depth, read every
    /// `metrics.queue_poll_interval`.
    pub queue_messages: Family<QueueLabels, Gauge>,
}

impl Default for TransformerMetrics {
    fn default() -> Self {
        Self {
            records_loaded: Family::default(),
            records_rejected: Family::default(),
            objects: Family::default(),
            dead_lettered: Family::default(),
            load_duration: Family::new_with_constructor(duration_histogram),
            load_rows: Family::new_with_constructor(rows_histogram),
            read_bytes: Family::default(),
            last_load: Family::default(),
            receives: Counter::default(),
            empty_receives: Counter::default(),
            in_flight: Gauge::default(),
            queue_wait: wait_histogram(),
            oldest_received_age: FloatGauge::default(),
            queue_messages: Family::default(),
        }
    }
}

impl TransformerMetrics {
    /// Creates every series of `sources` at zero (the timestamps stay absent until a load).
    /// Dead letters by class appear with the first of each class.
    pub fn prime<'a>(&self, sources: impl IntoIterator<Item = &'a str>) {
        for source in sources {
            let label = SourceLabel::of(source);
            self.records_loaded.get_or_create_owned(&label);
            self.records_rejected.get_or_create_owned(&label);
            self.load_duration.get_or_create_owned(&label);
            self.load_rows.get_or_create_owned(&label);
            self.read_bytes.get_or_create_owned(&label);
            for outcome in OBJECT_OUTCOMES {
                let source = source.to_owned();
                self.objects
                    .get_or_create_owned(&OutcomeLabels { source, outcome });
            }
        }
    }

    /// Adds these metrics to `registry` (made by [`registry`]).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "records_loaded",
            "Records loaded into their table",
            self.records_loaded.clone(),
        );
        registry.register(
            "records_rejected",
            "Records set aside in a rejects file, with their reason",
            self.records_rejected.clone(),
        );
        registry.register(
            "objects",
            "Objects by outcome: loaded, duplicate, superseded, rejected (too many rejected records), dead_lettered",
            self.objects.clone(),
        );
        registry.register(
            "messages_dead_lettered",
            "Messages moved to the dead-letter queue, by error class",
            self.dead_lettered.clone(),
        );
        registry.register_with_unit(
            "load_duration",
            "One committed load, from the request for the object to the commit",
            Unit::Seconds,
            self.load_duration.clone(),
        );
        registry.register(
            "load_rows",
            "Records loaded by one committed load",
            self.load_rows.clone(),
        );
        registry.register_with_unit(
            "transformer_read",
            "Object bytes read from S3, as stored",
            Unit::Bytes,
            self.read_bytes.clone(),
        );
        registry.register_with_unit(
            "last_load_timestamp",
            "When a load of the source last committed, seconds since the epoch",
            Unit::Seconds,
            self.last_load.clone(),
        );
        registry.register(
            "sqs_receives",
            "ReceiveMessage calls answered",
            self.receives.clone(),
        );
        registry.register(
            "sqs_empty_receives",
            "ReceiveMessage calls answered with no message",
            self.empty_receives.clone(),
        );
        registry.register(
            "messages_in_flight",
            "Messages this transformer holds (received, not yet deleted or handed back)",
            self.in_flight.clone(),
        );
        registry.register_with_unit(
            "queue_wait",
            "How long each received message had been on the queue since it was first sent",
            Unit::Seconds,
            self.queue_wait.clone(),
        );
        registry.register_with_unit(
            "queue_oldest_received_age",
            "Of the messages the last receive returned, the longest time on the queue (0: none)",
            Unit::Seconds,
            self.oldest_received_age.clone(),
        );
        registry.register(
            "queue_messages",
            "Messages on the queue and the dead-letter queue (ApproximateNumberOfMessages…)",
            self.queue_messages.clone(),
        );
    }

    /// Records a committed load of `source`.
    pub fn loaded(&self, source: &str, loaded: u64, rejected: u64, took: Duration) {
        let label = SourceLabel::of(source);
        self.records_loaded
            .get_or_create_owned(&label)
            .inc_by(loaded);
        self.records_rejected
            .get_or_create_owned(&label)
            .inc_by(rejected);
        self.object(source, "loaded");
        self.load_duration
            .get_or_create(&label)
            .observe(took.as_secs_f64());
        self.load_rows
            .get_or_create_owned(&label)
            .observe(loaded as f64);
        self.last_loaded(source, chrono::Utc::now());
    }

    /// Sets when a load of `source` last committed: at each commit, and at start from the
    /// ledger, so a restart does not blank it.
    pub fn last_loaded(&self, source: &str, at: chrono::DateTime<chrono::Utc>) {
        self.last_load
            .get_or_create(&SourceLabel::of(source))
            .set(unix_seconds(at));
    }

    /// Counts an object of `source` with `outcome`.
    pub fn object(&self, source: &str, outcome: &'static str) {
        self.objects
            .get_or_create(&OutcomeLabels {
                source: source.to_owned(),
                outcome,
            })
            .inc();
    }
}

/// An empty registry whose metrics are named `barge_…`.
pub fn registry() -> Registry {
    Registry::with_prefix(PREFIX)
}

/// The name of every metric either daemon exports, as queries name them (`…_total`, and a
/// histogram's `…_bucket`, `…_sum` and `…_count`), read from the rendered registries.
pub fn all_metric_names() -> std::collections::BTreeSet<String> {
    // Empty families are not rendered: give each a series.
    let mut registry = registry();
    let importer = ImporterMetrics::default();
    importer.prime(["x"]);
    importer
        .last_success
        .get_or_create_owned(&SourceLabel::of("x"));
    importer.register(&mut registry);
    let transformer = TransformerMetrics::default();
    transformer.prime(["x"]);
    transformer
        .last_load
        .get_or_create_owned(&SourceLabel::of("x"));
    let class = ClassLabel { class: "x" };
    transformer.dead_lettered.get_or_create_owned(&class);
    let queue = QueueLabels {
        queue: "main",
        state: "visible",
    };
    transformer.queue_messages.get_or_create_owned(&queue);
    transformer.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("encoding into a String cannot fail");
    let mut names = std::collections::BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split(' ');
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|suffix| format!("{name}{suffix}")));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let names = all_metric_names();
        assert!(names.contains("barge_records_loaded_total"), "{names:?}");
        assert!(
            names.contains("barge_load_duration_seconds_bucket"),
            "{names:?}"
        );
        assert!(
            names.contains("barge_importer_fetched_bytes_total"),
            "{names:?}"
        );
        for name in &names {
            assert!(name.starts_with("barge_"), "{name}");
        }
    }

    /// Every `barge_…` name in `text`.
    fn names_in(text: &str) -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        let mut rest = text;
        while let Some(start) = rest.find("barge_") {
            let tail = &rest[start..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            let preceded = rest[..start]
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            if !preceded {
                names.insert(tail[..end].to_owned());
            }
            rest = &tail[end..];
        }
        names
    }

    #[test]
    fn the_dashboard_queries_only_metrics_the_daemons_export() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/grafana/barge.json"
        );
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let exported = all_metric_names();
        let mut queried = std::collections::BTreeSet::new();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                queried.extend(names_in(target["expr"].as_str().unwrap()));
            }
        }
        assert!(queried.len() > 10, "{queried:?}");
        let unknown: Vec<_> = queried.difference(&exported).collect();
        assert!(unknown.is_empty(), "the dashboard queries {unknown:?}");
    }

    #[test]
    fn the_readme_documents_every_metric() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let documented = names_in(&std::fs::read_to_string(path).unwrap());
        let exported = all_metric_names();
        let bases: Vec<&String> = exported
            .iter()
            .filter(|name| !name.ends_with("_sum") && !name.ends_with("_count"))
            .collect();
        for name in bases {
            let base = name.strip_suffix("_bucket").unwrap_or(name);
            assert!(
                documented.contains(base),
                "README.md does not document {base}"
            );
        }
    }

    #[test]
    fn status_classes_are_a_fixed_set() {
        assert_eq!(status_class(Some(204)), "2xx");
        assert_eq!(status_class(Some(429)), "4xx");
        assert_eq!(status_class(Some(503)), "5xx");
        assert_eq!(status_class(None), "none");
    }
}
