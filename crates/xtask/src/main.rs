//! Project automation, run as `cargo xtask <command>`:
//!
//! - `demo`: start LocalStack, PostgreSQL and the sample API, run the pipeline once end to end,
//!   show the loaded rows, stop everything.
//! - `test`: start LocalStack and PostgreSQL, run the whole test suite against them, stop them.
//!
//! Services bind to loopback on ports of their own ([`services::LOCALSTACK_PORT`],
//! [`services::POSTGRES_PORT`]) and are stopped on success, failure, Ctrl-C and SIGTERM.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};

mod demo;
mod services;
mod test_suite;

#[derive(Parser)]
#[command(about = "barge project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run importer → S3 → SQS → transformer → PostgreSQL once on local services.
    Demo {
        /// How many posts the sample API serves.
        #[arg(long, default_value_t = 100)]
        posts: i64,
    },
    /// Run every unit and integration test against real LocalStack and PostgreSQL.
    Test {
        /// Passed to `cargo test` after `--` (a test-name filter, `--nocapture`, …).
        #[arg(last = true)]
        args: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let work = async {
        match cli.command {
            Command::Demo { posts } => demo::run(posts).await,
            Command::Test { args } => test_suite::run(&args).await,
        }
    };
    // Services are stopped by their guards' Drop, which runs when `work` is dropped here too.
    let outcome = tokio::select! {
        outcome = work => outcome,
        name = interrupted() => Err(anyhow::anyhow!("interrupted by {name}; services stopped")),
    };
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn interrupted() -> &'static str {
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    }
}
