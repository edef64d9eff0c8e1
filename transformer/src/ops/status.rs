//! `transformer status`: is the pipeline healthy, how far behind is it, what failed. The queue's
//! and the dead-letter queue's depth (SQS `GetQueueAttributes`), and per declared source its last
//! loads from the ledger: when, how many rows and rejects, how long the load took, how long after
//! the fetch it committed, and where the rejected records are.
//!
//! The age of the oldest message is not here: SQS's API does not report it (only CloudWatch's
//! `ApproximateAgeOfOldestMessage` does, which the Terraform stack alarms on); each load's `lag`
//! (fetch to commit) is the ledger's measure of how far behind the transformer is.

use aws_sdk_sqs::types::QueueAttributeName;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::{Exit, OpsError, Tools};

/// `transformer status` options.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// How many of each source's last loads to show.
    #[arg(long, default_value_t = 5)]
    pub loads: u32,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// What `transformer status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The batch queue.
    pub queue: QueueDepth,
    /// Its dead-letter queue.
    pub dead_letter_queue: QueueDepth,
    /// Each declared source, in the settings' order.
    pub sources: Vec<SourceLoads>,
}

/// A queue's message counts (SQS's approximate counts).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct QueueDepth {
    /// Its URL.
    pub url: String,
    /// Messages waiting to be received (`ApproximateNumberOfMessages`).
    pub visible: u64,
    /// Messages received and not yet deleted (`ApproximateNumberOfMessagesNotVisible`).
    pub in_flight: u64,
    /// Messages sent with a delay not yet over (`ApproximateNumberOfMessagesDelayed`).
    pub delayed: u64,
}

/// A source's last loads.
#[derive(Debug, Clone, Serialize)]
pub struct SourceLoads {
    /// The source's name.
    pub source: String,
    /// Its table.
    pub table: String,
    /// Its last loads, newest first.
    pub loads: Vec<LoadRow>,
}

/// One load, from the ledger.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LoadRow {
    /// When it committed.
    pub committed_at: DateTime<Utc>,
    /// When its object was fetched (or, a landing object, reported created).
    pub fetched_at: DateTime<Utc>,
    /// The object's key.
    pub key: String,
    /// Records in the object.
    pub records_read: i64,
    /// Records loaded.
    pub records_loaded: i64,
    /// Records rejected.
    pub records_rejected: i64,
    /// Rows inserted or changed.
    pub rows_changed: i64,
    /// `s3://` URL of the rejected records, if any.
    pub rejects_url: Option<String>,
    /// The replay run that asked for this load, if one did.
    pub replay_id: Option<String>,
    /// Seconds from the load's transaction start to its commit.
    pub duration_seconds: f64,
    /// Seconds from the fetch to the commit: how far behind the transformer was.
    pub lag_seconds: f64,
}

/// Reads the queues' attributes and each source's last `loads` loads.
pub async fn collect(tools: &Tools, loads: u32) -> Result<Status, OpsError> {
    let queue = depth(&tools.aws.sqs, &tools.queue_url).await?;
    let dead_letter_queue = depth(&tools.aws.sqs, &tools.dead_letter_url).await?;
    let mut database = tools.ledger().await?;
    let client = database
        .client()
        .await
        .map_err(|err| OpsError::database(&err))?;
    let statement = client
        .prepare(
            "SELECT committed_at, fetched_at, key, records_read, records_loaded, \
             records_rejected, rows_changed, rejects_url, NULLIF(replay_id, ''), \
             extract(epoch FROM committed_at - started_at)::float8, \
             extract(epoch FROM committed_at - fetched_at)::float8 \
             FROM barge.loads WHERE source = $1 ORDER BY committed_at DESC LIMIT $2",
        )
        .await
        .map_err(|err| OpsError::database(&err))?;
    let mut sources = Vec::new();
    for source in &tools.settings.sources {
        let rows = client
            .query(&statement, &[&source.name, &i64::from(loads)])
            .await
            .map_err(|err| OpsError::database(&err))?;
        sources.push(SourceLoads {
            source: source.name.clone(),
            table: source.table.clone(),
            loads: rows
                .iter()
                .map(|row| LoadRow {
                    committed_at: row.get(0),
                    fetched_at: row.get(1),
                    key: row.get(2),
                    records_read: row.get(3),
                    records_loaded: row.get(4),
                    records_rejected: row.get(5),
                    rows_changed: row.get(6),
                    rejects_url: row.get(7),
                    replay_id: row.get(8),
                    duration_seconds: row.get(9),
                    lag_seconds: row.get(10),
                })
                .collect(),
        });
    }
    Ok(Status {
        queue,
        dead_letter_queue,
        sources,
    })
}

/// The message counts of the queue at `url`: `transformer status`'s and the daemon's
/// `barge_queue_messages`.
pub async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<QueueDepth, OpsError> {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .map_err(|err| OpsError::sqs("reading the attributes of", url, &err))?
        .attributes
        .unwrap_or_default();
    let count = |name: QueueAttributeName| {
        attributes
            .get(&name)
            .and_then(|count| count.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(QueueDepth {
        url: url.to_owned(),
        visible: count(QueueAttributeName::ApproximateNumberOfMessages),
        in_flight: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        delayed: count(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
    })
}

/// The exit code of a status: [`Exit::Attention`] when the dead-letter queue holds messages.
pub fn exit(status: &Status) -> Exit {
    let dead = &status.dead_letter_queue;
    if dead.visible + dead.in_flight + dead.delayed > 0 {
        Exit::Attention
    } else {
        Exit::Ok
    }
}

/// The status as tables: the queues, then the loads of every source.
pub fn render(status: &Status) -> String {
    let mut queues = super::table(&["queue", "visible", "in flight", "delayed", "url"]);
    for (name, queue) in [
        ("batches", &status.queue),
        ("dead letters", &status.dead_letter_queue),
    ] {
        queues.add_row(vec![
            name.to_owned(),
            queue.visible.to_string(),
            queue.in_flight.to_string(),
            queue.delayed.to_string(),
            queue.url.clone(),
        ]);
    }
    let mut loads = super::table(&[
        "source",
        "committed (UTC)",
        "loaded",
        "rejected",
        "changed",
        "duration",
        "lag",
        "key",
        "rejects",
    ]);
    for source in &status.sources {
        if source.loads.is_empty() {
            loads.add_row(vec![source.source.clone(), "never loaded".to_owned()]);
        }
        for load in &source.loads {
            let replay = load
                .replay_id
                .as_ref()
                .map(|id| format!(" (replay {id})"))
                .unwrap_or_default();
            loads.add_row(vec![
                source.source.clone(),
                load.committed_at
                    .to_rfc3339_opts(SecondsFormat::Secs, true)
                    .replace('T', " "),
                load.records_loaded.to_string(),
                load.records_rejected.to_string(),
                load.rows_changed.to_string(),
                format!("{:.2}s", load.duration_seconds),
                format!("{:.0}s", load.lag_seconds),
                format!("{}{replay}", load.key),
                load.rejects_url.clone().unwrap_or_default(),
            ]);
        }
    }
    format!(
        "{queues}\n\noldest message age: not reported by SQS's API (CloudWatch \
         ApproximateAgeOfOldestMessage); lag below is fetch to commit\n\n{loads}"
    )
}

/// `transformer status`: prints the status and returns its exit code.
pub async fn run(tools: &Tools, args: &StatusArgs) -> Result<Exit, OpsError> {
    let status = collect(tools, args.loads).await?;
    super::print(args.json, &status, || render(&status));
    Ok(exit(&status))
}
