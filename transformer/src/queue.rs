//! The batch queue as the transformer uses it: receive, delete after commit, hand back, and keep
//! every message it holds invisible to other transformers for as long as it holds it.
//!
//! The heartbeat is one task for all held messages: every third of the queue's visibility
//! timeout it extends each held message's visibility by that timeout again, so a load of any
//! length is never handed to a second worker, while a transformer that dies stops extending
//! and its messages come back within one visibility timeout. A message stops being held *before*
//! it is deleted, released or dead-lettered, and the heartbeat holds the lock across its own
//! calls, so it can never re-hide a message that was just handed back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
};
use tokio::sync::Mutex;
use tokio_util::sync::{CancellationToken, DropGuard};

/// SQS returns at most ten messages per receive, and batches at most ten entries.
pub const MAX_MESSAGES: i32 = 10;

/// The messages this transformer holds, by message id.
type Held = Arc<Mutex<HashMap<String, HeldMessage>>>;

/// A held message: its receipt handle, and whether its work has started (a started message is
/// never handed back from under the work).
#[derive(Debug)]
struct HeldMessage {
    receipt: String,
    started: bool,
}

/// The batch queue, with the heartbeat of the messages it holds.
#[derive(Debug)]
pub struct Queue {
    sqs: aws_sdk_sqs::Client,
    url: String,
    held: Held,
    /// Messages whose work is committed, waiting to be deleted together (still held).
    done: Mutex<Vec<Message>>,
    /// Stops the heartbeat task when the queue is dropped.
    _heartbeat: DropGuard,
}

/// A receive that failed; the loop waits and tries again.
#[derive(Debug, thiserror::Error)]
#[error("receiving from {queue_url} failed: {reason}")]
pub struct ReceiveError {
    queue_url: String,
    reason: String,
}

impl Queue {
    /// The queue at `url`, whose messages stay invisible for `visibility` after each receive
    /// and each heartbeat.
    pub fn new(sqs: aws_sdk_sqs::Client, url: String, visibility: Duration) -> Self {
        let held = Held::default();
        let stop = CancellationToken::new();
        tokio::spawn(heartbeat(
            sqs.clone(),
            url.clone(),
            visibility,
            held.clone(),
            stop.clone(),
        ));
        Self {
            sqs,
            url,
            held,
            done: Mutex::default(),
            _heartbeat: stop.drop_guard(),
        }
    }

    /// The queue's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Long-polls for up to ten messages, which are held from then on.
    pub async fn receive(&self, wait_seconds: i32) -> Result<Vec<Message>, ReceiveError> {
        let output = self
            .sqs
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(MAX_MESSAGES)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
            )
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp,
            )
            .send()
            .await
            .map_err(|err| ReceiveError {
                queue_url: self.url.clone(),
                reason: barge_core::error_chain(&err),
            })?;
        let messages = output.messages.unwrap_or_default();
        let mut held = self.held.lock().await;
        for message in &messages {
            let receipt = receipt(message).to_owned();
            held.insert(
                id(message).to_owned(),
                HeldMessage {
                    receipt,
                    started: false,
                },
            );
        }
        Ok(messages)
    }

    /// How many messages this transformer holds.
    pub async fn held(&self) -> usize {
        self.held.lock().await.len()
    }

    /// Marks `message`'s work as started; `false` when it is no longer held (handed back
    /// because another message's failure tripped the breaker).
    pub async fn start(&self, message: &Message) -> bool {
        match self.held.lock().await.get_mut(id(message)) {
            Some(held) => {
                held.started = true;
                true
            }
            None => false,
        }
    }

    /// Hands back every held message whose work has not started; returns how many.
    pub async fn release_unstarted(&self) -> usize {
        let receipts: Vec<String> = {
            let mut held = self.held.lock().await;
            let waiting: Vec<String> = held
                .iter()
                .filter(|(_, message)| !message.started)
                .map(|(id, _)| id.clone())
                .collect();
            waiting
                .iter()
                .filter_map(|id| held.remove(id))
                .map(|message| message.receipt)
                .collect()
        };
        for receipt in &receipts {
            self.release_receipt(receipt).await;
        }
        receipts.len()
    }

    /// Stops holding `message`: the heartbeat no longer extends it, and it comes back after its
    /// current visibility timeout unless it is deleted first.
    pub async fn forget(&self, message: &Message) {
        self.held.lock().await.remove(id(message));
    }

    /// Notes that `message`'s work is committed; it is deleted with the next
    /// [`Queue::delete_done`], and held until then.
    pub async fn done(&self, message: &Message) {
        self.done.lock().await.push(message.clone());
    }

    /// Deletes every message noted done: after each receive's work, before a transient failure
    /// makes the transformer wait (so a committed message never waits on another's outage), and
    /// before held messages are handed back at shutdown.
    pub async fn delete_done(&self) {
        let done = std::mem::take(&mut *self.done.lock().await);
        if !done.is_empty() {
            self.delete(&done).await;
        }
    }

    /// Deletes messages whose work is done, ten per request. If a delete fails the message is
    /// redelivered, and the ledger makes that redelivery a no-op.
    pub async fn delete(&self, messages: &[Message]) {
        {
            let mut held = self.held.lock().await;
            for message in messages {
                held.remove(id(message));
            }
        }
        for chunk in messages.chunks(MAX_MESSAGES as usize) {
            let entries = chunk.iter().enumerate().map(|(index, message)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(receipt(message))
                    .build()
                    .expect("id and receipt handle are set")
            });
            let result = self
                .sqs
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries.collect()))
                .send()
                .await;
            let failures: Vec<String> = match result {
                Ok(output) => output
                    .failed
                    .into_iter()
                    .map(|failure| {
                        format!("{}: {}", failure.code, failure.message.unwrap_or_default())
                    })
                    .collect(),
                Err(err) => vec![barge_core::error_chain(&err)],
            };
            for failure in failures {
                tracing::warn!(error = %failure, "message done but not deleted; its redelivery will be recognised as a duplicate");
            }
        }
    }

    /// Makes a held message visible again at once, for another transformer to take.
    pub async fn release(&self, message: &Message) {
        self.forget(message).await;
        self.release_receipt(receipt(message)).await;
    }

    /// Releases every message still held (after a shutdown abandoned the work in hand); the
    /// ones whose work is committed are deleted instead.
    pub async fn release_all(&self) {
        self.delete_done().await;
        let receipts: Vec<String> = self
            .held
            .lock()
            .await
            .drain()
            .map(|(_, message)| message.receipt)
            .collect();
        for receipt in receipts {
            self.release_receipt(&receipt).await;
        }
    }

    async fn release_receipt(&self, receipt: &str) {
        let result = self
            .sqs
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await;
        if let Err(err) = result {
            tracing::warn!(error = %barge_core::error_chain(&err), "could not hand a message back; it returns after its visibility timeout");
        }
    }
}

/// A message's id (SQS always sets it).
pub fn id(message: &Message) -> &str {
    message.message_id().unwrap_or_default()
}

/// A message's receipt handle (SQS always sets it on a received message).
pub fn receipt(message: &Message) -> &str {
    message.receipt_handle().unwrap_or_default()
}

/// Every third of `visibility`, extends the visibility of every held message by `visibility`.
async fn heartbeat(
    sqs: aws_sdk_sqs::Client,
    url: String,
    visibility: Duration,
    held: Held,
    stop: CancellationToken,
) {
    let period = visibility / 3;
    let seconds = i32::try_from(visibility.as_secs()).unwrap_or(i32::MAX);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        let held = held.lock().await;
        let receipts: Vec<&String> = held.values().map(|message| &message.receipt).collect();
        for chunk in receipts.chunks(MAX_MESSAGES as usize) {
            let entries = chunk.iter().enumerate().map(|(index, receipt)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(receipt.as_str())
                    .visibility_timeout(seconds)
                    .build()
                    .expect("id and receipt handle are set")
            });
            let result = sqs
                .change_message_visibility_batch()
                .queue_url(&url)
                .set_entries(Some(entries.collect()))
                .send()
                .await;
            match result {
                Ok(output) if output.failed.is_empty() => {}
                Ok(output) => {
                    for failure in output.failed {
                        tracing::warn!(code = %failure.code, reason = failure.message.as_deref().unwrap_or_default(), "could not extend a held message's visibility");
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %barge_core::error_chain(&err), "could not extend held messages' visibility");
                }
            }
        }
    }
}
