//! `transformer run` is the daemon that loads announced batches into PostgreSQL; `status`,
//! `replay` and `dlq` are the operator's tools ([`transformer::ops`]).

use anyhow::Context;
use barge_core::aws::AwsClients;
use barge_core::settings::ConfigArgs;
use barge_core::{shutdown, telemetry};
use clap::{Parser, Subcommand};
use std::process::ExitCode;
use transformer::Transformer;
use transformer::ops::{self, Exit, Tools};

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
    /// Show queue and dead-letter queue depth and each source's last loads. Exit code 3 when
    /// the dead-letter queue holds messages.
    Status(ops::status::StatusArgs),
    /// Announce a source's archived batches of a date range again, so that they load again
    /// (merged: no duplicate rows, never over newer rows).
    Replay(ops::replay::ReplayArgs),
    /// Look at or redrive the dead-letter queue.
    #[command(subcommand)]
    Dlq(ops::dlq::DlqCommand),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(exit) => exit.into(),
        Err(err) => {
            eprintln!("error: {err:#}");
            let exit = err
                .downcast_ref::<ops::OpsError>()
                .map_or(Exit::Failed, ops::OpsError::exit);
            exit.into()
        }
    }
}

/// Loads the settings, starts telemetry and runs the command.
async fn run(cli: Cli) -> anyhow::Result<Exit> {
    let settings = cli.settings.load().context("loading settings")?;
    let quiet = !matches!(cli.command, Command::Run);
    telemetry::init(if quiet { "warn" } else { "info" }, settings.log.format);
    let aws = AwsClients::from_env().await;
    Ok(match &cli.command {
        Command::Run => {
            let shutdown = shutdown::on_signal().context("installing signal handlers")?;
            Transformer::serve(settings, aws, &shutdown)
                .await
                .context("running the transformer")?;
            Exit::Ok
        }
        Command::Status(args) => ops::status::run(&Tools::new(settings, aws).await?, args).await?,
        Command::Replay(args) => ops::replay::run(&Tools::new(settings, aws).await?, args).await?,
        Command::Dlq(command) => ops::dlq::run(&Tools::new(settings, aws).await?, command).await?,
    })
}
