//! `importer once` imports every source one time; `importer run` is the daemon.

use std::process::ExitCode;

use anyhow::Context;
use barge_core::aws::AwsClients;
use barge_core::settings::ConfigArgs;
use barge_core::{shutdown, telemetry};
use clap::{Parser, Subcommand};
use importer::Importer;

/// Pull JSON from HTTP APIs, archive it in S3 and announce it on SQS.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    settings: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import every source once and exit; non-zero if any source failed or was not reached
    /// because of SIGTERM/SIGINT (the import under way is finished first).
    Once,
    /// Import each source on its interval until SIGTERM or SIGINT.
    Run,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    telemetry::init("info");
    let settings = cli.settings.load().context("loading settings")?;
    let shutdown = shutdown::on_signal().context("installing signal handlers")?;
    let importer = Importer::new(settings, AwsClients::from_env().await)
        .await
        .context("starting the importer")?;
    match cli.command {
        Command::Once => {
            let failed = importer
                .run_once(&shutdown)
                .await
                .iter()
                .filter(|(_, outcome)| outcome.is_err())
                .count();
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Run => {
            importer.run(shutdown).await;
            Ok(ExitCode::SUCCESS)
        }
    }
}
