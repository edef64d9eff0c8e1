//! `cargo xtask test`: the whole test suite against real LocalStack and PostgreSQL.

use std::process::ExitCode;

use anyhow::Context;
use tokio::process::Command;

use crate::services::Services;

/// Compiles the tests, starts the services, runs `cargo test --workspace` with the services'
/// environment, stops the services and exits with the tests' verdict.
pub async fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Compile first: services do not idle through a build, and a compile error needs none.
    let built = Command::new(&cargo)
        .args(["test", "--workspace", "--locked", "--no-run"])
        .kill_on_drop(true)
        .status()
        .await
        .context("running cargo test --no-run")?;
    if !built.success() {
        return Ok(ExitCode::FAILURE);
    }
    let services = Services::start().await?;
    let tested = Command::new(&cargo)
        .args(["test", "--workspace", "--locked", "--"])
        .args(args)
        .envs(services.child_env())
        // Only LocalStack's test credentials: a developer's real profile must never be used.
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .kill_on_drop(true)
        .status()
        .await
        .context("running cargo test");
    services.stop();
    Ok(if tested?.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
