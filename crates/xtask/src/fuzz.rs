//! `cargo xtask fuzz`: the cargo-fuzz targets of `crates/fuzz` on the nightly toolchain, side by
//! side, for a fixed time. Not part of `cargo xtask test` (CI): it needs minutes per target to
//! mean anything. A crash leaves its input under `crates/fuzz/artifacts/<target>/`.

use std::process::ExitCode;

use anyhow::{Context, ensure};

use crate::cargo_like;

/// Every target in `crates/fuzz/fuzz_targets`.
const TARGETS: [&str; 2] = ["message", "batch"];

/// Installs cargo-fuzz if needed and runs `targets` (all when empty) for `seconds` each.
pub async fn run(seconds: u64, targets: Vec<String>) -> anyhow::Result<ExitCode> {
    let targets = if targets.is_empty() {
        TARGETS.iter().map(|t| t.to_string()).collect()
    } else {
        targets
    };
    for target in &targets {
        ensure!(
            TARGETS.contains(&target.as_str()),
            "no fuzz target {target:?}; there are {TARGETS:?}"
        );
    }
    let nightly = cargo_like("rustup")
        .args(["run", "nightly", "cargo", "--version"])
        .output()
        .await
        .context("running rustup")?;
    ensure!(
        nightly.status.success(),
        "fuzzing needs the nightly toolchain: rustup toolchain install nightly"
    );
    let installed = nightly_cargo()
        .args(["fuzz", "--version"])
        .output()
        .await
        .is_ok_and(|out| out.status.success());
    if !installed {
        eprintln!("xtask: installing cargo-fuzz");
        let status = cargo_like("cargo")
            .args(["install", "cargo-fuzz", "--locked"])
            .status()
            .await?;
        ensure!(status.success(), "cargo install cargo-fuzz failed");
    }
    let fuzz_dir = crate::services::workspace_root().join("crates/fuzz");
    let mut runs = Vec::new();
    for target in &targets {
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        let child = nightly_cargo()
            .args(["fuzz", "run", "--fuzz-dir"])
            .arg(&fuzz_dir)
            .arg(target)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting cargo fuzz run {target}"))?;
        runs.push((target, child));
    }
    let mut failed = Vec::new();
    for (target, mut child) in runs {
        if !child.wait().await?.success() {
            failed.push(target.clone());
        }
    }
    if failed.is_empty() {
        eprintln!("xtask: no crash in {seconds} s of fuzzing each of {targets:?}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("xtask: fuzz targets {failed:?} crashed; inputs are in crates/fuzz/artifacts/");
        Ok(ExitCode::FAILURE)
    }
}

/// The nightly toolchain's cargo.
fn nightly_cargo() -> tokio::process::Command {
    let mut command = cargo_like("rustup");
    command.args(["run", "nightly", "cargo"]);
    command
}
