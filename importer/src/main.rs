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
    /// Run every source once, all at the same time, print each one's outcome (one line per
    /// source on stdout) and exit: non-zero if any run failed or was stopped by SIGTERM/SIGINT
    /// (each run first finishes the page under way).
    Once,
    /// Import each source on its interval until SIGTERM or SIGINT.
    Run,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let settings = cli.settings.load().context("loading settings")?;
    telemetry::init("info", settings.log.format);
    let shutdown = shutdown::on_signal().context("installing signal handlers")?;
    let aws = AwsClients::from_env().await;
    match cli.command {
        Command::Once => {
            let importer = Importer::new(settings, aws)
                .await
                .context("starting the importer")?;
            let outcomes = importer.run_once(&shutdown).await;
            let mut failed = 0;
            for (source, outcome) in &outcomes {
                match outcome {
                    Ok(report) => println!("{source}: ok, {}", importer::describe(report)),
                    Err(err) => {
                        failed += 1;
                        println!("{source}: FAILED, {err}");
                    }
                }
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Run => {
            Importer::serve(settings, aws, shutdown)
                .await
                .context("running the importer")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
