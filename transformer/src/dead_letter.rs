//! The dead-letter queue, where a message goes at once when no retry can help, carrying its
//! reason as message attributes:
//!
//! | attribute | value |
//! | --- | --- |
//! | `barge-error-class` | the error's kind, e.g. `checksum-mismatch` ([`ProcessError::kind`]) |
//! | `barge-error` | the error's text, naming bucket, key and what was wrong |
//! | `barge-transformer-version` | the version that gave up on it |
//! | `barge-failed-at` | when, RFC 3339 UTC |
//! | `barge-message-id` | the message's id on the main queue |
//! | `barge-receive-count` | how often the main queue had delivered it |
//!
//! The body is the original body, unchanged, so that moving the message back to the main queue
//! after a fix replays it as it was.

use std::collections::HashMap;

use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};
use barge_core::aws::AwsClients;
use chrono::{SecondsFormat, Utc};

use crate::error::ProcessError;

/// SQS limits a message with its attributes to 256 KiB; reasons are cut well below that.
const MAX_REASON_BYTES: usize = 4096;

/// The dead-letter queue of the batch queue.
#[derive(Debug)]
pub struct DeadLetters {
    sqs: aws_sdk_sqs::Client,
    url: String,
}

/// Why the dead-letter queue could not be found.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// Neither the settings nor the queue's redrive policy name one.
    #[error(
        "queue {queue} has no dead-letter queue: give it a redrive policy (see the README) or set \
         queue.dead_letter_queue"
    )]
    NotConfigured {
        /// The main queue's URL.
        queue: String,
    },
    /// The redrive policy is not the JSON SQS writes.
    #[error("queue {queue} has an unreadable redrive policy {policy:?}")]
    BadPolicy {
        /// The main queue's URL.
        queue: String,
        /// The attribute's text.
        policy: String,
    },
    /// The named queue cannot be resolved.
    #[error(transparent)]
    Unreachable(#[from] barge_core::aws::QueueUrlError),
}

impl DeadLetters {
    /// The queue named by `configured` (a name or URL) or else by the main queue's
    /// `redrive_policy`.
    pub async fn resolve(
        aws: &AwsClients,
        queue_url: &str,
        configured: Option<&str>,
        redrive_policy: Option<&str>,
    ) -> Result<Self, DeadLetterError> {
        let target = match (configured, redrive_policy) {
            (Some(queue), _) => queue.to_owned(),
            (None, Some(policy)) => {
                target_name(policy).ok_or_else(|| DeadLetterError::BadPolicy {
                    queue: queue_url.to_owned(),
                    policy: policy.to_owned(),
                })?
            }
            (None, None) => {
                return Err(DeadLetterError::NotConfigured {
                    queue: queue_url.to_owned(),
                });
            }
        };
        Ok(Self {
            sqs: aws.sqs.clone(),
            url: aws.queue_url(&target).await?,
        })
    }

    /// The dead-letter queue's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends a copy of `message` with `error` as its reason. The caller deletes the original
    /// only when this succeeded; if it did not, SQS's own `maxReceiveCount` remains the backstop.
    pub async fn send(&self, message: &Message, error: &ProcessError) -> Result<(), String> {
        let receive_count = message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .map(String::as_str)
            .unwrap_or("unknown");
        let attributes: HashMap<String, MessageAttributeValue> = [
            ("barge-error-class", error.kind().to_owned()),
            ("barge-error", attribute_text(&error.to_string())),
            (
                "barge-transformer-version",
                env!("CARGO_PKG_VERSION").to_owned(),
            ),
            (
                "barge-failed-at",
                Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            ),
            ("barge-message-id", crate::queue::id(message).to_owned()),
            ("barge-receive-count", receive_count.to_owned()),
        ]
        .into_iter()
        .map(|(name, value)| {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .expect("data type is set");
            (name.to_owned(), value)
        })
        .collect();
        self.sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(message.body().unwrap_or_default())
            .set_message_attributes(Some(attributes))
            .send()
            .await
            .map_err(|err| barge_core::error_chain(&err))?;
        Ok(())
    }
}

/// The queue name in a redrive policy's `deadLetterTargetArn` (`arn:aws:sqs:region:account:name`).
fn target_name(policy: &str) -> Option<String> {
    let policy: serde_json::Value = serde_json::from_str(policy).ok()?;
    let arn = policy.get("deadLetterTargetArn")?.as_str()?;
    let name = arn.rsplit(':').next()?;
    (!name.is_empty()).then(|| name.to_owned())
}

/// `text` cut to [`MAX_REASON_BYTES`] on a character boundary, with the characters SQS refuses
/// in attribute values replaced.
fn attribute_text(text: &str) -> String {
    let allowed = |c: char| {
        matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
            || c >= '\u{10000}'
    };
    let mut out = String::new();
    for c in text.chars() {
        if out.len() + c.len_utf8() > MAX_REASON_BYTES {
            out.push('…');
            break;
        }
        out.push(if allowed(c) { c } else { '\u{FFFD}' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_read_from_the_redrive_policy() {
        let policy = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:barge-batches-dlq","maxReceiveCount":5}"#;
        assert_eq!(target_name(policy).as_deref(), Some("barge-batches-dlq"));
        assert_eq!(target_name("{}"), None);
        assert_eq!(target_name("nonsense"), None);
    }

    #[test]
    fn reasons_are_cut_and_cleaned_for_sqs() {
        assert_eq!(attribute_text("a\u{1}b\nc"), "a\u{FFFD}b\nc");
        let long = attribute_text(&"é".repeat(5000));
        assert!(long.len() <= MAX_REASON_BYTES + '…'.len_utf8());
        assert!(long.ends_with('…'));
    }
}
