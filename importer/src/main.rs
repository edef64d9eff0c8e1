//! `importer once` imports every source one time; `importer run` is the daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use barge_core::aws::AwsClients;
use barge_core::{Settings, shutdown, telemetry};
use clap::{Parser, Subcommand};
use importer::Importer;

/// Pull JSON from HTTP APIs, archive it in S3 and announce it on SQS.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// TOML settings file; `BARGE__…` environment variables override it.
    #[arg(long, global = true, env = "BARGE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import every source once and exit; non-zero if any source failed.
    Once,
    /// Import each source on its interval until SIGTERM or SIGINT.
    Run,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    telemetry::init("info");
    let settings = Settings::load(cli.config.as_deref()).context("loading settings")?;
    let importer = Importer::new(settings, AwsClients::from_env().await)
        .await
        .context("starting the importer")?;
    match cli.command {
        Command::Once => {
            let failed = importer
                .run_once()
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
            let shutdown = shutdown::on_signal().context("installing signal handlers")?;
            importer.run(shutdown).await;
            Ok(ExitCode::SUCCESS)
        }
    }
}
