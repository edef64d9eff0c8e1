//! `cargo xtask test`: the whole test suite against real LocalStack and PostgreSQL, then the
//! deployment's static checks ([`crate::deploy_checks`]).

use std::process::ExitCode;

use anyhow::Context;

use crate::services::{Layout, Services, workspace_root};
use crate::{cargo, deploy_checks};

/// Compiles the tests, starts the services, runs `cargo test --workspace` with the services'
/// environment, stops the services and exits with the tests' verdict.
pub async fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    // Compile first: services do not idle through a build, and a compile error needs none.
    let built = cargo()
        .args(["test", "--workspace", "--locked", "--no-run"])
        .kill_on_drop(true)
        .status()
        .await
        .context("running cargo test --no-run")?;
    if !built.success() {
        return Ok(ExitCode::FAILURE);
    }
    let services = Services::start(Layout::ephemeral()?, false).await?;
    let tested = async {
        let mut tests = cargo()
            .args(["test", "--workspace", "--locked", "--no-fail-fast", "--"])
            .args(args)
            .envs(services.child_env())
            // Only LocalStack's test credentials: a developer's real profile must never be used.
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            // A group of its own, so that an interrupted xtask can stop the test binaries cargo
            // started, not just cargo.
            .process_group(0)
            .spawn()
            .context("running cargo test")?;
        let _group = tests.id().map(TestGroup);
        tests.wait().await.context("waiting for cargo test")
    }
    .await;
    services.stop();
    let tested = tested?;
    // The deployment's static checks need the binaries the test build made.
    let problems = deploy_checks::run(&workspace_root().join("target/debug"))?;
    for problem in &problems {
        eprintln!("xtask: deployment check failed: {problem}");
    }
    Ok(if tested.success() && problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The running tests' process group, terminated if xtask is interrupted before they finish.
struct TestGroup(u32);

impl Drop for TestGroup {
    fn drop(&mut self) {
        crate::services::signal_group(self.0, "TERM");
    }
}
