//! `transformer dlq peek` and `transformer dlq redrive`: the dead-letter queue seen and emptied by
//! hand, after the cause of its messages is fixed.
//!
//! SQS has no way to read a message without receiving it, and a received message is invisible
//! to every other receiver for its visibility timeout. `peek` receives with a short visibility
//! timeout ([`PEEK_VISIBILITY_SECONDS`]), so that it sees each message once, and then makes every
//! message it saw visible again at once; if it is killed half-way, the messages come back by
//! themselves when that timeout ends. Each peek adds one to a message's receive count on the
//! dead-letter queue (which has no redrive policy of its own, so nothing moves because of it).
//!
//! `redrive` receives, sends the body unchanged to the batch queue, and only then deletes the
//! message from the dead-letter queue: a message is never only in flight between the two. If the
//! delete fails, the message is on both queues; loading it twice is harmless, since the ledger
//! makes the second a duplicate. SQS's `StartMessageMoveTask` is not used: it cannot move only N
//! messages, runs on after the command returns, and is not in every LocalStack.

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName, SendMessageBatchRequestEntry,
};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Exit, OpsError, Tools};
use crate::notice::Notice;
use crate::queue::MAX_MESSAGES;

/// How long `peek` keeps the messages it saw invisible at most: long enough to read the queue,
/// short enough that an interrupted peek hides nothing for long.
pub const PEEK_VISIBILITY_SECONDS: i32 = 30;
/// How long `redrive` holds a message between receiving it and deleting it: a message whose send
/// failed reappears on the dead-letter queue after this at the latest.
const REDRIVE_VISIBILITY_SECONDS: i32 = 60;
/// The wait of each receive: long enough that SQS looks at all its servers (a receive without a
/// wait may miss messages), short enough to end promptly on an empty queue.
const RECEIVE_WAIT_SECONDS: i32 = 1;

/// `transformer dlq` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DlqCommand {
    /// Show dead-lettered messages and why they failed, without removing them.
    Peek(PeekArgs),
    /// Move dead-lettered messages back to the batch queue (after fixing their cause).
    Redrive(RedriveArgs),
}

/// `transformer dlq peek` options.
#[derive(Debug, Clone, clap::Args)]
pub struct PeekArgs {
    /// Show at most this many messages.
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `transformer dlq redrive` options.
#[derive(Debug, Clone, clap::Args)]
pub struct RedriveArgs {
    /// Move at most this many messages (default: as many as the dead-letter queue held when the
    /// command started).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Print JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// A dead-lettered message and the reason the transformer gave (its `barge-*` attributes; none
/// when SQS moved it after `maxReceiveCount` receives).
#[derive(Debug, Clone, Serialize)]
pub struct DeadLettered {
    /// Its id on the dead-letter queue.
    pub message_id: String,
    /// When it was sent to the dead-letter queue.
    pub sent_at: Option<DateTime<Utc>>,
    /// Its id on the batch queue (`barge-message-id`).
    pub original_message_id: Option<String>,
    /// The kind of failure (`barge-error-class`), e.g. `schema-mismatch`.
    pub error_class: Option<String>,
    /// The failure's text (`barge-error`).
    pub error: Option<String>,
    /// When the transformer gave up on it (`barge-failed-at`).
    pub failed_at: Option<String>,
    /// How often the batch queue had delivered it (`barge-receive-count`).
    pub receive_count: Option<String>,
    /// The transformer version that gave up on it (`barge-transformer-version`).
    pub transformer_version: Option<String>,
    /// What the body announces, in a line.
    pub announces: String,
    /// The body, as sent to the batch queue.
    pub body: String,
}

impl DeadLettered {
    fn of(message: &Message) -> Self {
        let attribute = |name: &str| {
            message
                .message_attributes()
                .and_then(|a| a.get(name))
                .and_then(|value| value.string_value())
                .map(str::to_owned)
        };
        let body = message.body().unwrap_or_default().to_owned();
        Self {
            message_id: crate::queue::id(message).to_owned(),
            sent_at: message
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                .and_then(|millis| millis.parse().ok())
                .and_then(DateTime::from_timestamp_millis),
            original_message_id: attribute("barge-message-id"),
            error_class: attribute("barge-error-class"),
            error: attribute("barge-error"),
            failed_at: attribute("barge-failed-at"),
            receive_count: attribute("barge-receive-count"),
            transformer_version: attribute("barge-transformer-version"),
            announces: announces(&body),
            body,
        }
    }
}

/// What a body announces, in a line: the source and key of a batch, the keys of an S3 event.
fn announces(body: &str) -> String {
    match Notice::parse(body) {
        Ok(Notice::Batch(batch)) => {
            let replay = batch
                .replay
                .map(|id| format!(" (replay {id})"))
                .unwrap_or_default();
            format!("batch of {}: {}{replay}", batch.source, batch.key)
        }
        Ok(Notice::S3Objects(objects)) => {
            let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
            format!("S3 event: {}", keys.join(", "))
        }
        Ok(Notice::S3TestEvent) => "S3 test event".to_owned(),
        Err(err) => format!("unreadable body: {err}"),
    }
}

/// Up to `limit` dead-lettered messages, left on the queue (visible again when this returns).
pub async fn peek(tools: &Tools, limit: usize) -> Result<Vec<DeadLettered>, OpsError> {
    let mut seen = Vec::new();
    let mut received = Vec::new();
    while seen.len() < limit {
        let batch = receive(tools, limit - seen.len(), PEEK_VISIBILITY_SECONDS).await;
        let batch = match batch {
            Ok(batch) => batch,
            Err(err) => {
                hand_back(tools, &received).await;
                return Err(err);
            }
        };
        if batch.is_empty() {
            break;
        }
        seen.extend(batch.iter().map(DeadLettered::of));
        received.extend(batch);
    }
    hand_back(tools, &received).await;
    Ok(seen)
}

/// One receive of up to `max` (at most ten) messages from the dead-letter queue, with their
/// attributes, invisible for `visibility` seconds.
async fn receive(tools: &Tools, max: usize, visibility: i32) -> Result<Vec<Message>, OpsError> {
    let max = i32::try_from(max).unwrap_or(MAX_MESSAGES).min(MAX_MESSAGES);
    Ok(tools
        .aws
        .sqs
        .receive_message()
        .queue_url(&tools.dead_letter_url)
        .max_number_of_messages(max)
        .wait_time_seconds(RECEIVE_WAIT_SECONDS)
        .visibility_timeout(visibility)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
        .send()
        .await
        .map_err(|err| OpsError::sqs("receiving from", &tools.dead_letter_url, &err))?
        .messages
        .unwrap_or_default())
}

/// Makes `messages` of the dead-letter queue visible again at once. A failure is only logged:
/// they come back by themselves when their visibility timeout ends.
async fn hand_back(tools: &Tools, messages: &[Message]) {
    let per_request = usize::try_from(MAX_MESSAGES).expect("ten fits");
    for chunk in messages.chunks(per_request) {
        let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = chunk
            .iter()
            .enumerate()
            .map(|(index, message)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(crate::queue::receipt(message))
                    .visibility_timeout(0)
                    .build()
                    .expect("id and receipt are set")
            })
            .collect();
        let result = tools
            .aws
            .sqs
            .change_message_visibility_batch()
            .queue_url(&tools.dead_letter_url)
            .set_entries(Some(entries))
            .send()
            .await;
        let failed = match result {
            Ok(output) => output.failed().len(),
            Err(err) => {
                tracing::warn!(error = %barge_core::error_chain(&err), "handing back failed");
                chunk.len()
            }
        };
        if failed > 0 {
            tracing::warn!(
                failed,
                "dead-lettered messages not made visible again; they are after their visibility \
                 timeout"
            );
        }
    }
}

/// What a redrive did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Redrive {
    /// Messages now on the batch queue and gone from the dead-letter queue (their ids there).
    pub moved: Vec<String>,
    /// Messages SQS would not send to the batch queue: still on the dead-letter queue.
    pub not_moved: Vec<MoveFailure>,
    /// Messages sent to the batch queue whose dead-letter copy could not be deleted: on both
    /// queues (the ledger makes the second load a duplicate).
    pub not_deleted: Vec<MoveFailure>,
}

/// A message a redrive could not fully move.
#[derive(Debug, Clone, Serialize)]
pub struct MoveFailure {
    /// Its id on the dead-letter queue.
    pub message_id: String,
    /// SQS's reason.
    pub reason: String,
}

/// Moves up to `limit` messages (default: the dead-letter queue's depth now) to the batch queue,
/// with a progress bar: send, then delete.
pub async fn redrive(tools: &Tools, limit: Option<usize>) -> Result<Redrive, OpsError> {
    let target = match limit {
        Some(limit) => limit,
        None => {
            let depth = super::status::depth(&tools.aws.sqs, &tools.dead_letter_url).await?;
            usize::try_from(depth.visible).unwrap_or(usize::MAX)
        }
    };
    let bar = super::progress(target as u64, "redriving");
    let mut redrive = Redrive::default();
    let mut tried = 0;
    while tried < target {
        let messages = receive(tools, target - tried, REDRIVE_VISIBILITY_SECONDS).await?;
        if messages.is_empty() {
            break;
        }
        tried += messages.len();
        let entries: Vec<SendMessageBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .map(|(index, message)| {
                SendMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .message_body(message.body().unwrap_or_default())
                    .build()
                    .expect("id and body are set")
            })
            .collect();
        let failed = tools.send_batch(entries).await;
        let (unsent, sent): (Vec<_>, Vec<_>) = messages
            .iter()
            .enumerate()
            .partition(|(index, _)| failed.iter().any(|(f, _)| f == index));
        let unsent: Vec<Message> = unsent.into_iter().map(|(_, m)| m.clone()).collect();
        hand_back(tools, &unsent).await;
        for (index, reason) in failed {
            redrive.not_moved.push(MoveFailure {
                message_id: crate::queue::id(&messages[index]).to_owned(),
                reason,
            });
        }
        let sent: Vec<&Message> = sent.into_iter().map(|(_, m)| m).collect();
        let undeleted = delete(tools, &sent).await;
        for message in sent {
            let id = crate::queue::id(message).to_owned();
            match undeleted.iter().find(|(undeleted, _)| *undeleted == id) {
                Some((_, reason)) => redrive.not_deleted.push(MoveFailure {
                    message_id: id,
                    reason: reason.clone(),
                }),
                None => redrive.moved.push(id),
            }
        }
        bar.inc(messages.len() as u64);
        if !unsent.is_empty() && unsent.len() == messages.len() {
            tracing::warn!("the batch queue takes no messages; redrive stopped");
            break;
        }
    }
    bar.finish_and_clear();
    Ok(redrive)
}

/// Deletes `messages` from the dead-letter queue; returns the ids of those not deleted, with
/// the reason.
async fn delete(tools: &Tools, messages: &[&Message]) -> Vec<(String, String)> {
    if messages.is_empty() {
        return Vec::new();
    }
    let entries: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .enumerate()
        .map(|(index, message)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(index.to_string())
                .receipt_handle(crate::queue::receipt(message))
                .build()
                .expect("id and receipt are set")
        })
        .collect();
    let id = |index: &str| {
        let index: usize = index.parse().expect("ids are positions");
        crate::queue::id(messages[index]).to_owned()
    };
    match tools
        .aws
        .sqs
        .delete_message_batch()
        .queue_url(&tools.dead_letter_url)
        .set_entries(Some(entries))
        .send()
        .await
    {
        Ok(output) => output
            .failed()
            .iter()
            .map(|f| (id(f.id()), f.message().unwrap_or(f.code()).to_owned()))
            .collect(),
        Err(err) => {
            let reason = barge_core::error_chain(&err);
            messages
                .iter()
                .map(|m| (crate::queue::id(m).to_owned(), reason.clone()))
                .collect()
        }
    }
}

/// Peeked messages as a table.
pub fn render_peek(messages: &[DeadLettered]) -> String {
    if messages.is_empty() {
        return "the dead-letter queue is empty".to_owned();
    }
    let mut table = super::table(&["failed at", "class", "announces", "error", "message id"]);
    for message in messages {
        table.add_row(vec![
            message.failed_at.clone().unwrap_or_default(),
            message
                .error_class
                .clone()
                .unwrap_or_else(|| "(none: moved by SQS after maxReceiveCount)".to_owned()),
            message.announces.clone(),
            message.error.clone().unwrap_or_default(),
            message.message_id.clone(),
        ]);
    }
    format!("{} dead-lettered messages shown\n{table}", messages.len())
}

/// A redrive's summary.
pub fn render_redrive(redrive: &Redrive) -> String {
    let mut text = format!("{} messages moved to the batch queue", redrive.moved.len());
    for failure in &redrive.not_moved {
        text.push_str(&format!(
            "\nnot moved (still on the dead-letter queue): {}: {}",
            failure.message_id, failure.reason
        ));
    }
    for failure in &redrive.not_deleted {
        text.push_str(&format!(
            "\nsent, but not deleted from the dead-letter queue (on both; loads once): {}: {}",
            failure.message_id, failure.reason
        ));
    }
    text
}

/// `transformer dlq peek|redrive`: runs it, prints what it found or did, returns the exit code
/// (a redrive that could not move or delete every message it received ends with
/// [`Exit::Failed`]).
pub async fn run(tools: &Tools, command: &DlqCommand) -> Result<Exit, OpsError> {
    match command {
        DlqCommand::Peek(args) => {
            let messages = peek(tools, args.limit).await?;
            super::print(args.json, &messages, || render_peek(&messages));
            Ok(Exit::Ok)
        }
        DlqCommand::Redrive(args) => {
            let redrive = redrive(tools, args.limit).await?;
            super::print(args.json, &redrive, || render_redrive(&redrive));
            let complete = redrive.not_moved.is_empty() && redrive.not_deleted.is_empty();
            Ok(if complete { Exit::Ok } else { Exit::Failed })
        }
    }
}
