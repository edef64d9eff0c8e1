//! `importer once` imports every source one time; `importer run` is the daemon; `importer
//! discover` proposes a source's block from a sample.

use std::process::ExitCode;

use anyhow::Context;
use barge_core::aws::AwsClients;
use barge_core::settings::ConfigArgs;
use barge_core::{Settings, shutdown, telemetry};
use clap::{Args, Parser, Subcommand};
use importer::{Importer, discover};
use tokio_util::sync::CancellationToken;

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
    /// Fetch a sample of a declared source (--source) or of a URL and print a `[[sources]]`
    /// block proposing its columns, to check and paste into the settings. Writes nothing and
    /// never calls S3, SQS or PostgreSQL.
    Discover(DiscoverArgs),
}

/// What `importer discover` samples, and how much.
#[derive(Args)]
struct DiscoverArgs {
    /// The declared source to sample: its URL, paging, records pointer, auth, headers and
    /// query.
    #[arg(long, conflicts_with = "url", required_unless_present = "url")]
    source: Option<String>,
    /// A URL to sample with one plain GET (paging is not guessed). A settings file, if one is
    /// given, sets only the `http` limits.
    url: Option<String>,
    /// The most pages to fetch.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pages: u64,
    /// The most records to take in.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    records: u64,
    /// Propose a column per field of nested objects (`field = "/customer/email"`) instead of
    /// one `jsonb` column per object.
    #[arg(long)]
    flatten: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Once => {
            let (settings, shutdown, aws) = start(&cli.settings).await?;
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
            let (settings, shutdown, aws) = start(&cli.settings).await?;
            Importer::serve(settings, aws, shutdown)
                .await
                .context("running the importer")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Discover(args) => {
            // A bare URL needs no settings file (a given one still sets the `http` limits).
            let settings = match (&args.source, &cli.settings.config) {
                (None, None) => Settings::default(),
                _ => cli.settings.load().context("loading settings")?,
            };
            telemetry::init("info", settings.log.format);
            let target = match (args.source, args.url) {
                (Some(name), _) => discover::Target::Source(name),
                (None, url) => discover::Target::Url(url.unwrap_or_default()),
            };
            let options = discover::Options {
                pages: args.pages,
                records: args.records,
                flatten: args.flatten,
            };
            print!("{}", discover::discover(target, &settings, &options).await?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Loads the settings, starts telemetry in their log format, installs the signal handlers and
/// loads the AWS chain: what `once` and `run` share.
async fn start(config: &ConfigArgs) -> anyhow::Result<(Settings, CancellationToken, AwsClients)> {
    let settings = config.load().context("loading settings")?;
    telemetry::init("info", settings.log.format);
    let shutdown = shutdown::on_signal().context("installing signal handlers")?;
    Ok((settings, shutdown, AwsClients::from_env().await))
}
