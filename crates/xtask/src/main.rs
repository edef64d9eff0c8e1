//! Project automation, run as `cargo xtask <command>`:
//!
//! - `demo`: start LocalStack, PostgreSQL and the sample API, run the pipeline once end to end
//!   (the importer's batch and a file dropped into the landing zone), show the loaded rows, stop
//!   everything.
//! - `test`: start LocalStack and PostgreSQL, run the whole test suite against them, stop them,
//!   then check the deployment (Terraform, systemd units, install script) statically.
//! - `up`, `env`, `down`: the local loop, services left running for `cargo run` of the daemons.
//! - `dist`: the release tarball of both daemons for the hosts.
//! - `bench`: barge's load throughput, CPU and memory against PostgreSQL's own COPY and merge of
//!   the same rows, on local services (a benchmark, not part of `test`).
//! - `fuzz`: run the cargo-fuzz targets on the nightly toolchain (not part of `test`).
//!
//! Services bind to loopback: `demo` and `test` on free ports, stopped on success, failure,
//! Ctrl-C and SIGTERM; `up` on the project's own ([`services::LOCALSTACK_PORT`],
//! [`services::POSTGRES_PORT`]) until `down`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::process::Command as TokioCommand;
use tokio::signal::unix::{SignalKind, signal};

mod bench;
mod demo;
mod deploy_checks;
mod dist;
mod fuzz;
mod local_loop;
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
    /// Run importer → S3 → SQS → transformer → PostgreSQL once on local services, and a file
    /// dropped into the landing zone.
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
    /// Build the release tarball the hosts install (stripped binaries, units, install.sh).
    Dist,
    /// Measure barge's loads against psql's COPY and merge of the same rows (takes long).
    Bench {
        /// Posts of W1, W1a, W2 and W4, in objects of 10,000 (e.g. 100000 for a quick run).
        #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
        posts: u64,
        /// Runs of every measurement; each figure is their median.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
        runs: u64,
        /// Size of W3's single object in MiB.
        #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
        w3_mib: u64,
    },
    /// Start LocalStack, PostgreSQL and the sample API in the background for `cargo run`.
    Up,
    /// Print the environment of the running local loop (`eval "$(cargo xtask env)"`).
    Env,
    /// Stop what `up` started and remove its data.
    Down {
        /// Keep PostgreSQL's data for the next `up`.
        #[arg(long)]
        keep: bool,
    },
    /// Serve the sample API until SIGTERM (started by `up`).
    #[command(hide = true)]
    SampleApi {
        /// Address to listen on.
        #[arg(long)]
        listen: String,
        /// How many posts to serve.
        #[arg(long)]
        posts: i64,
    },
    /// Fuzz the message parser and the batch decoder/mapper (nightly toolchain, cargo-fuzz).
    Fuzz {
        /// How long each target runs; the targets run side by side.
        #[arg(long, default_value_t = 600)]
        seconds: u64,
        /// Targets to run (default: all).
        targets: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let work = async {
        match cli.command {
            Command::Demo { posts } => demo::run(posts).await,
            Command::Test { args } => test_suite::run(&args).await,
            Command::Fuzz { seconds, targets } => fuzz::run(seconds, targets).await,
            Command::Dist => dist::run().await,
            Command::Bench {
                posts,
                runs,
                w3_mib,
            } => {
                bench::run(bench::Options {
                    posts,
                    runs,
                    w3_mib,
                })
                .await
            }
            Command::Up => local_loop::up().await,
            Command::Env => local_loop::env(),
            Command::Down { keep } => local_loop::down(keep),
            Command::SampleApi { listen, posts } => local_loop::sample_api(&listen, posts).await,
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

/// `program` (`cargo`, or `rustup` for another toolchain's cargo) without the variables cargo set
/// for running xtask itself (`CARGO_PKG_NAME=xtask`, `CARGO_MANIFEST_DIR`, …). Build scripts
/// such as ring's declare `rerun-if-env-changed` on them, so leaving them in would rebuild ring
/// and the whole AWS SDK on every switch between `cargo xtask test` and a plain `cargo build`.
fn cargo_like(program: impl AsRef<std::ffi::OsStr>) -> TokioCommand {
    let mut command = TokioCommand::new(program);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&name.as_ref())
        {
            command.env_remove(name.as_ref());
        }
    }
    command
}

/// The cargo that runs xtask.
fn cargo() -> TokioCommand {
    cargo_like(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}
