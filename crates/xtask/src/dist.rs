//! `cargo xtask dist`: the release the hosts install. Builds stripped x86_64 Linux binaries of
//! both daemons (profile `dist`), checks that they run on Amazon Linux 2023's glibc, and packs
//! them with the systemd units, `install.sh` and the README into
//! `target/release-dist/barge-<version>-x86_64-linux.tar.gz`, next to a `SHA256SUMS` line for it
//! (cargo's own output for the profile is `target/dist`).

use std::fs;
use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::{Context, bail, ensure};
use sha2::{Digest, Sha256};

use crate::services::workspace_root;

/// Amazon Linux 2023 ships glibc 2.34: a binary needing a newer symbol would not start there.
const MAX_GLIBC: (u32, u32) = (2, 34);
/// The daemons a release carries.
const BINARIES: [&str; 2] = ["importer", "transformer"];

/// Builds and packs the release; prints where it is and its SHA-256.
pub async fn run() -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    let version = env!("CARGO_PKG_VERSION");
    let built = crate::cargo()
        .args(["build", "--locked", "--profile", "dist"])
        .args(BINARIES.iter().flat_map(|b| ["-p", b]))
        .status()
        .await
        .context("running cargo build")?;
    if !built.success() {
        return Ok(ExitCode::FAILURE);
    }
    let name = format!("barge-{version}");
    let dist = root.join("target/release-dist");
    let staging = dist.join(&name);
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    fs::create_dir_all(staging.join("bin"))?;
    fs::create_dir_all(staging.join("systemd"))?;
    for binary in BINARIES {
        let built = root.join("target/dist").join(binary);
        check_glibc(&built)?;
        fs::copy(&built, staging.join("bin").join(binary))
            .with_context(|| format!("copying {}", built.display()))?;
        let unit = format!("barge-{binary}.service");
        fs::copy(
            root.join("deploy/systemd").join(&unit),
            staging.join("systemd").join(&unit),
        )?;
    }
    fs::copy(root.join("deploy/install.sh"), staging.join("install.sh"))?;
    fs::copy(root.join("README.md"), staging.join("README.md"))?;
    fs::copy(
        root.join("deploy/barge.example.toml"),
        staging.join("barge.example.toml"),
    )?;
    let tarball = format!("{name}-x86_64-linux.tar.gz");
    // Reproducible: fixed order, owner and times.
    let packed = Command::new("tar")
        .current_dir(&dist)
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@0",
            "-cf",
        ])
        .arg(format!("{name}.tar"))
        .arg(&name)
        .status()
        .context("running tar")?;
    ensure!(packed.success(), "tar failed");
    let zipped = Command::new("gzip")
        .current_dir(&dist)
        .args(["-n", "-9", "-f"])
        .arg(format!("{name}.tar"))
        .status()
        .context("running gzip")?;
    ensure!(zipped.success(), "gzip failed");
    fs::rename(dist.join(format!("{name}.tar.gz")), dist.join(&tarball))?;
    let digest = format!("{:x}", Sha256::digest(fs::read(dist.join(&tarball))?));
    fs::write(dist.join("SHA256SUMS"), format!("{digest}  {tarball}\n"))?;
    println!(
        "{}\nsha256 {digest}\n\nUpload it next to the Terraform's artifacts prefix and set:\n  \
         release_version = \"{version}\"\n  release_sha256  = \"{digest}\"",
        dist.join(&tarball).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Fails when `binary` needs a glibc symbol newer than [`MAX_GLIBC`].
fn check_glibc(binary: &Path) -> anyhow::Result<()> {
    let output = Command::new("objdump")
        .arg("-T")
        .arg(binary)
        .output()
        .context("running objdump (binutils)")?;
    ensure!(
        output.status.success(),
        "objdump -T {} failed",
        binary.display()
    );
    let symbols = String::from_utf8_lossy(&output.stdout);
    let newest = symbols
        .split("GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let version: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
        .unwrap_or((0, 0));
    if newest > MAX_GLIBC {
        bail!(
            "{} needs glibc {}.{}, newer than Amazon Linux 2023's {}.{}",
            binary.display(),
            newest.0,
            newest.1,
            MAX_GLIBC.0,
            MAX_GLIBC.1
        );
    }
    Ok(())
}
