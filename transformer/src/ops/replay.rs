//! `transformer replay`: announce a source's archived batches of a range of UTC fetch dates again,
//! so that they load again (after a table was repaired, or rows were lost downstream).
//!
//! The batches are the archive's keys under `<storage.prefix>/<source>/<yyyy>/<mm>/<dd>/`, listed
//! from the first date on and in key order, whose loads the ledger records: the ledger gives each
//! its digest and fetch time, which the replay message carries unchanged. So the merge treats a
//! replayed batch as what it is, an old batch: it never overwrites rows a newer batch wrote, and
//! rows already as the batch has them are left alone. Each message carries the replay's id (a
//! UUIDv7, one per run), the ledger records the replay's load under it next to the original's,
//! and a message SQS delivers twice still loads once.
//!
//! Not replayed: archived keys the ledger has no load of (their message is still on the queue or
//! the dead-letter queue, or was lost; they are listed as `not_loaded`), landing-zone objects
//! (they are not in the archive; a file put again under the landing prefix is announced by S3
//! again), and append-only sources (no key to merge on: loading again would duplicate rows).

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use barge_core::message::{
    MESSAGE_VERSION, archive_date, archive_partition, archive_source_prefix,
};
use barge_core::{BatchMessage, Source};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::{Exit, OpsError, Tools};
use crate::queue::MAX_MESSAGES;

/// Keys looked up in the ledger per query.
const LOOKUP_KEYS: usize = 1000;

/// `transformer replay` options.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// The source whose archived batches to load again (it must have a primary_key).
    #[arg(long)]
    pub source: String,
    /// First UTC fetch date to replay, YYYY-MM-DD (default: the archive's first).
    #[arg(long)]
    pub from: Option<NaiveDate>,
    /// Last UTC fetch date to replay, YYYY-MM-DD, inclusive (default: the archive's last).
    #[arg(long)]
    pub to: Option<NaiveDate>,
    /// List what would be replayed; send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A batch to announce again.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Batch {
    /// Its archive key.
    pub key: String,
    /// Its SHA-256, as the ledger recorded it.
    pub sha256: String,
    /// When it was fetched, as the ledger recorded it: the rows' `barge_fetched_at`.
    pub fetched_at: DateTime<Utc>,
    /// Its records, as the ledger counted them.
    pub record_count: u64,
}

/// What a replay found and did.
#[derive(Debug, Clone, Serialize)]
pub struct Replay {
    /// The source.
    pub source: String,
    /// The first date, if one was given.
    pub from: Option<NaiveDate>,
    /// The last date, if one was given.
    pub to: Option<NaiveDate>,
    /// Whether this was a dry run (nothing sent).
    pub dry_run: bool,
    /// The replay's id, in each message and in the ledger rows of its loads (none on a dry run).
    pub replay_id: Option<String>,
    /// The batches announced again (on a dry run: that would be), in key order.
    pub batches: Vec<Batch>,
    /// Archived keys in the range that the ledger has no load of: not replayed.
    pub not_loaded: Vec<String>,
    /// Batches whose message SQS refused, with the reason: not replayed.
    pub failed: Vec<Failure>,
}

/// A batch whose replay message could not be sent.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// Its key.
    pub key: String,
    /// SQS's reason.
    pub reason: String,
}

/// Finds the batches of `args`' source and dates and, unless it is a dry run, announces them
/// again under a new replay id.
pub async fn replay(tools: &Tools, args: &ReplayArgs) -> Result<Replay, OpsError> {
    let source = tools.source(&args.source)?;
    if !source.is_keyed() {
        return Err(OpsError::AppendOnly(source.name.clone()));
    }
    if let (Some(from), Some(to)) = (args.from, args.to)
        && from > to
    {
        return Err(OpsError::EmptyRange { from, to });
    }
    let keys = archived_keys(tools, source, args.from, args.to).await?;
    let (batches, not_loaded) = loaded_batches(tools, source, keys).await?;
    let mut replay = Replay {
        source: source.name.clone(),
        from: args.from,
        to: args.to,
        dry_run: args.dry_run,
        replay_id: None,
        batches,
        not_loaded,
        failed: Vec::new(),
    };
    if !args.dry_run {
        let replay_id = uuid::Uuid::now_v7().to_string();
        replay.failed = announce(tools, source, &replay_id, &replay.batches).await;
        replay
            .batches
            .retain(|batch| !replay.failed.iter().any(|f| f.key == batch.key));
        replay.replay_id = Some(replay_id);
    }
    Ok(replay)
}

/// The archive's keys of `source` with a fetch date in `from..=to`, in key order (which is date
/// order): listed from the first date's partition on, until past the last date's.
async fn archived_keys(
    tools: &Tools,
    source: &Source,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<Vec<String>, OpsError> {
    let storage = &tools.settings.storage;
    let prefix = archive_source_prefix(&storage.prefix, &source.name);
    let listing = super::progress(0, "listing the archive");
    let mut pages = tools
        .aws
        .s3
        .list_objects_v2()
        .bucket(&storage.bucket)
        .prefix(&prefix)
        .set_start_after(from.map(|date| format!("{prefix}{}", archive_partition(date))))
        .into_paginator()
        .send();
    let mut keys = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| OpsError::List {
            bucket: storage.bucket.clone(),
            prefix: prefix.clone(),
            reason: barge_core::error_chain(&err),
        })?;
        for key in page.contents().iter().filter_map(|o| o.key()) {
            listing.inc(1);
            let Some(date) = archive_date(&storage.prefix, &source.name, key) else {
                continue;
            };
            if to.is_some_and(|to| date > to) {
                listing.finish_and_clear();
                return Ok(keys);
            }
            if from.is_none_or(|from| date >= from) {
                keys.push(key.to_owned());
            }
        }
    }
    listing.finish_and_clear();
    Ok(keys)
}

/// Splits `keys` into the batches the ledger has a load of (not a replay's: the object's own),
/// with the digest and fetch time it recorded, and the keys it has none of.
async fn loaded_batches(
    tools: &Tools,
    source: &Source,
    keys: Vec<String>,
) -> Result<(Vec<Batch>, Vec<String>), OpsError> {
    let mut database = tools.ledger().await?;
    let client = database
        .client()
        .await
        .map_err(|err| OpsError::database(&err))?;
    let statement = client
        .prepare(
            "SELECT DISTINCT ON (key) key, sha256, fetched_at, records_read FROM barge.loads \
             WHERE bucket = $1 AND source = $2 AND replay_id = '' AND key = ANY ($3) \
             ORDER BY key, committed_at DESC",
        )
        .await
        .map_err(|err| OpsError::database(&err))?;
    let bucket = &tools.settings.storage.bucket;
    let mut batches = Vec::new();
    let mut not_loaded = Vec::new();
    for chunk in keys.chunks(LOOKUP_KEYS) {
        let rows = client
            .query(&statement, &[bucket, &source.name, &chunk])
            .await
            .map_err(|err| OpsError::database(&err))?;
        let mut found: std::collections::HashMap<String, Batch> = rows
            .iter()
            .map(|row| {
                let key: String = row.get(0);
                let records: i64 = row.get(3);
                let batch = Batch {
                    key: key.clone(),
                    sha256: row.get(1),
                    fetched_at: row.get(2),
                    record_count: u64::try_from(records).unwrap_or(0),
                };
                (key, batch)
            })
            .collect();
        for key in chunk {
            match found.remove(key) {
                Some(batch) => batches.push(batch),
                None => not_loaded.push(key.clone()),
            }
        }
    }
    Ok((batches, not_loaded))
}

/// Sends a replay message for each batch, ten to a request, with a progress bar; returns the
/// batches SQS did not take.
async fn announce(
    tools: &Tools,
    source: &Source,
    replay_id: &str,
    batches: &[Batch],
) -> Vec<Failure> {
    let bar = super::progress(batches.len() as u64, "announcing");
    let mut failed = Vec::new();
    let per_request = usize::try_from(MAX_MESSAGES).expect("ten fits");
    for chunk in batches.chunks(per_request) {
        let entries: Vec<SendMessageBatchRequestEntry> = chunk
            .iter()
            .enumerate()
            .map(|(index, batch)| {
                let message = BatchMessage {
                    version: MESSAGE_VERSION,
                    source: source.name.clone(),
                    bucket: tools.settings.storage.bucket.clone(),
                    key: batch.key.clone(),
                    record_count: batch.record_count,
                    sha256: batch.sha256.clone(),
                    fetched_at: batch.fetched_at,
                    replay: Some(replay_id.to_owned()),
                };
                SendMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .message_body(message.to_json())
                    .build()
                    .expect("id and body are set")
            })
            .collect();
        failed.extend(
            tools
                .send_batch(entries)
                .await
                .into_iter()
                .map(|(index, reason)| Failure {
                    key: chunk[index].key.clone(),
                    reason,
                }),
        );
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    tracing::info!(
        replay_id,
        announced = batches.len() - failed.len(),
        failed = failed.len(),
        "replay announced"
    );
    failed
}

/// The exit code of a replay: [`Exit::Failed`] when some messages could not be sent.
pub fn exit(replay: &Replay) -> Exit {
    if replay.failed.is_empty() {
        Exit::Ok
    } else {
        Exit::Failed
    }
}

/// The replay as a table of batches, and what was left out.
pub fn render(replay: &Replay) -> String {
    let mut batches = super::table(&["key", "fetched at (UTC)", "records", "sha256"]);
    for batch in &replay.batches {
        batches.add_row(vec![
            batch.key.clone(),
            batch
                .fetched_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            batch.record_count.to_string(),
            batch.sha256.clone(),
        ]);
    }
    let range = format!(
        "{} to {}",
        replay
            .from
            .map_or("the first date".to_owned(), |d| d.to_string()),
        replay
            .to
            .map_or("the last date".to_owned(), |d| d.to_string())
    );
    let mut text = match &replay.replay_id {
        None => format!(
            "dry run: {} batches of source {} from {range} would be announced again\n",
            replay.batches.len(),
            replay.source
        ),
        Some(id) => format!(
            "replay {id}: {} batches of source {} from {range} announced again; the \
             transformer loads them\n",
            replay.batches.len(),
            replay.source
        ),
    };
    if !replay.batches.is_empty() {
        text.push_str(&format!("{batches}\n"));
    }
    if !replay.not_loaded.is_empty() {
        text.push_str(&format!(
            "{} archived keys in the range have no load in the ledger and are not replayed \
             (their message is on the queue or the dead-letter queue, or was lost):\n",
            replay.not_loaded.len()
        ));
        for key in &replay.not_loaded {
            text.push_str(&format!("  {key}\n"));
        }
    }
    for failure in &replay.failed {
        text.push_str(&format!(
            "not announced: {}: {}\n",
            failure.key, failure.reason
        ));
    }
    text.trim_end().to_owned()
}

/// `transformer replay`: replays, prints what was done and returns the exit code.
pub async fn run(tools: &Tools, args: &ReplayArgs) -> Result<Exit, OpsError> {
    let replay = replay(tools, args).await?;
    super::print(args.json, &replay, || render(&replay));
    Ok(exit(&replay))
}
