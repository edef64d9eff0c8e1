//! `transformer run` is the daemon that loads announced batches into PostgreSQL.

use anyhow::Context;
use barge_core::aws::AwsClients;
use barge_core::settings::ConfigArgs;
use barge_core::{shutdown, telemetry};
use clap::{Parser, Subcommand};
use transformer::Transformer;

/// Load archived JSON batches announced on SQS into PostgreSQL.
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
    /// Long-poll the queue and load batches until SIGTERM or SIGINT.
    Run,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = cli.settings.load().context("loading settings")?;
    telemetry::init("info", settings.log.format);
    let shutdown = shutdown::on_signal().context("installing signal handlers")?;
    match cli.command {
        Command::Run => Transformer::serve(settings, AwsClients::from_env().await, &shutdown)
            .await
            .context("running the transformer")?,
    }
    Ok(())
}
