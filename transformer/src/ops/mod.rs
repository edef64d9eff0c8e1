//! The operator's tools, subcommands of the transformer because it owns the ledger:
//! - [`status`]: queue and dead-letter queue depth, and each source's last loads from the ledger;
//! - [`replay`]: announce a source's archived batches of a date range again, so they load again;
//! - [`dlq`]: look at dead-lettered messages and their reasons, or move them back to the queue.
//!
//! Each tool returns what it found or did as data (what the tests check), prints it as a table or
//! (`--json`) as JSON on stdout, and ends with an [`Exit`] code that scripts can test.

pub mod dlq;
pub mod replay;
pub mod status;

use std::io::IsTerminal;
use std::process::ExitCode;

use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use barge_core::Settings;
use barge_core::aws::{AwsClients, QueueUrlError};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::database::Database;
use crate::dead_letter::{DeadLetterError, DeadLetters};

/// How a tool ended, as its process exit code (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done, nothing needs attention.
    Ok,
    /// 1: the tool failed, or part of its work did (the output says which).
    Failed,
    /// 2: the command asks for something that cannot be done (unknown source, append-only
    /// source, empty date range); also clap's code for bad arguments.
    Usage,
    /// 3: done, and something needs attention: `status` found messages on the dead-letter queue.
    Attention,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        Self::from(match exit {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::Attention => 3,
        })
    }
}

/// Why a tool could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The configured queue cannot be resolved.
    #[error(transparent)]
    Queue(#[from] QueueUrlError),
    /// The queue has no usable dead-letter queue.
    #[error(transparent)]
    DeadLetter(#[from] DeadLetterError),
    /// An SQS call failed.
    #[error("{action} {queue}: {reason}")]
    Sqs {
        /// What was being done, e.g. "reading the attributes of".
        action: &'static str,
        /// The queue's URL.
        queue: String,
        /// The SDK's error chain.
        reason: String,
    },
    /// Listing the archive failed.
    #[error("listing s3://{bucket}/{prefix}: {reason}")]
    List {
        /// The bucket.
        bucket: String,
        /// The prefix listed.
        prefix: String,
        /// The SDK's error chain.
        reason: String,
    },
    /// The database password could not be read.
    #[error(transparent)]
    Password(#[from] barge_core::secrets::SecretError),
    /// PostgreSQL failed or refused a query.
    #[error("reading the ledger barge.loads: {0}")]
    Database(String),
    /// The ledger does not exist yet.
    #[error(
        "the ledger barge.loads does not exist in database {0:?}: start `transformer run` once \
         (it creates the ledger and the tables)"
    )]
    NoLedger(String),
    /// The named source is not declared.
    #[error("source {name:?} is not declared (declared: {declared})")]
    UnknownSource {
        /// The name given.
        name: String,
        /// The declared names, comma-separated.
        declared: String,
    },
    /// A replay of an append-only source would duplicate its rows.
    #[error(
        "source {0:?} is append-only (no primary_key): its rows cannot be merged, so loading its \
         batches again would duplicate them; replay is refused (the transformer loads such a \
         replay only if the object was never loaded)"
    )]
    AppendOnly(String),
    /// `--from` is after `--to`.
    #[error("--from {from} is after --to {to}")]
    EmptyRange {
        /// The first date.
        from: chrono::NaiveDate,
        /// The last date.
        to: chrono::NaiveDate,
    },
}

impl OpsError {
    /// The exit code of a tool that stopped with this error.
    pub fn exit(&self) -> Exit {
        match self {
            Self::UnknownSource { .. } | Self::AppendOnly(_) | Self::EmptyRange { .. } => {
                Exit::Usage
            }
            _ => Exit::Failed,
        }
    }

    /// An SQS error on `queue` while doing `action`.
    fn sqs(action: &'static str, queue: &str, err: &impl std::error::Error) -> Self {
        Self::Sqs {
            action,
            queue: queue.to_owned(),
            reason: barge_core::error_chain(err),
        }
    }

    /// A PostgreSQL error.
    fn database(err: &impl std::error::Error) -> Self {
        Self::Database(barge_core::error_chain(err))
    }
}

/// What the tools work with: the settings, the AWS clients, and the queue with its dead-letter
/// queue resolved as the daemon resolves them.
#[derive(Debug)]
pub struct Tools {
    settings: Settings,
    aws: AwsClients,
    queue_url: String,
    dead_letter_url: String,
}

impl Tools {
    /// Resolves the queue and its dead-letter queue (`queue.dead_letter_queue`, or the queue's
    /// redrive policy).
    pub async fn new(settings: Settings, aws: AwsClients) -> Result<Self, OpsError> {
        let queue_url = aws.queue_url(&settings.queue.queue).await?;
        let redrive = aws
            .sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|err| OpsError::sqs("reading the redrive policy of", &queue_url, &err))?
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::RedrivePolicy));
        let dead_letters = DeadLetters::resolve(
            &aws,
            &queue_url,
            settings.queue.dead_letter_queue.as_deref(),
            redrive.as_deref(),
        )
        .await?;
        Ok(Self {
            dead_letter_url: dead_letters.url().to_owned(),
            settings,
            aws,
            queue_url,
        })
    }

    /// A client of the database, after checking that the ledger exists.
    async fn ledger(&self) -> Result<Database, OpsError> {
        let mut database =
            Database::new(self.settings.database.clone(), self.aws.secrets.clone()).await?;
        let client = database
            .client()
            .await
            .map_err(|err| OpsError::database(&err))?;
        let exists: bool = client
            .query_one("SELECT to_regclass('barge.loads') IS NOT NULL", &[])
            .await
            .map_err(|err| OpsError::database(&err))?
            .get(0);
        if !exists {
            return Err(OpsError::NoLedger(self.settings.database.dbname.clone()));
        }
        Ok(database)
    }

    /// Sends up to ten messages to the batch queue in one request; returns the position in
    /// `entries` (their ids are their positions) and the reason of each message SQS did not take.
    async fn send_batch(&self, entries: Vec<SendMessageBatchRequestEntry>) -> Vec<(usize, String)> {
        let count = entries.len();
        match self
            .aws
            .sqs
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(output) => output
                .failed()
                .iter()
                .map(|failed| {
                    let index = failed.id().parse().expect("ids are positions");
                    (
                        index,
                        format!("{}: {}", failed.code(), failed.message().unwrap_or("")),
                    )
                })
                .collect(),
            Err(err) => {
                let reason = barge_core::error_chain(&err);
                (0..count).map(|index| (index, reason.clone())).collect()
            }
        }
    }

    /// The declared source `name`.
    fn source(&self, name: &str) -> Result<&barge_core::Source, OpsError> {
        self.settings
            .source(name)
            .ok_or_else(|| OpsError::UnknownSource {
                name: name.to_owned(),
                declared: self
                    .settings
                    .sources
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// A progress bar of `len` steps on stderr, drawn only when stderr is a terminal (never into a
/// log or a pipe).
fn progress(len: u64, message: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len).with_message(message);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
}

/// Prints `value` as pretty JSON, or `table` otherwise, on stdout.
fn print(json: bool, value: &impl Serialize, table: impl FnOnce() -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("reports always serialize")
        );
    } else {
        println!("{}", table());
    }
}

/// A table with the tools' look: plain ASCII borders (they paste into tickets and logs), the
/// header row `header`.
fn table(header: &[&str]) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table
        .load_style(comfy_table::presets::ASCII_MARKDOWN)
        .set_header(header.iter().copied());
    table
}
