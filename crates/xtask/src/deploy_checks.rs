//! The deployment, checked without AWS: `cargo xtask test` runs these after the tests. No AWS
//! account or Terraform registry can be reached here, so nothing is planned or applied; instead
//!
//! - `terraform fmt -check` and a structural reading of the HCL ([`terraform_problems`]):
//!   the properties the design promises (private encrypted RDS with forced TLS, a redrive
//!   policy, IMDSv2, encrypted volumes, no wildcard IAM action outside a Deny, described, typed
//!   and validated variables, default tags, a locked-down bucket);
//! - checkov, pinned by `deploy/checkov.lock.txt`, with zero failed checks;
//! - `systemd-analyze verify` and `security --offline=true` (exposure at most 2.5) on both units;
//! - `install.sh` run into a scratch root.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, ensure};
use hcl::{Block, Body, Expression, ObjectKey};

use crate::services::{install_locked, workspace_root};

/// The highest `systemd-analyze security` exposure a unit may have.
const MAX_EXPOSURE: f64 = 2.5;
/// Tags every resource must carry through the provider's `default_tags`.
const DEFAULT_TAGS: [&str; 4] = ["project", "environment", "owner", "cost_centre"];
/// IAM actions AWS authorizes only on `"*"`.
const STAR_ONLY_ACTIONS: [&str; 2] = ["cloudwatch:PutMetricData", "ec2:DescribeTags"];

/// Runs every check; returns the problems found (empty: all passed).
pub fn run(binaries: &Path) -> anyhow::Result<Vec<String>> {
    let root = workspace_root();
    let terraform = root.join("terraform");
    let mut problems = Vec::new();
    eprintln!("xtask: checking terraform/, deploy/systemd and deploy/install.sh");
    problems.extend(terraform_fmt(&terraform)?);
    problems.extend(terraform_problems(&read_terraform(&terraform)?));
    problems.extend(checkov(&terraform)?);
    problems.extend(systemd_units(&root.join("deploy/systemd"), binaries)?);
    problems.extend(install_script(&root, binaries)?);
    Ok(problems)
}

fn terraform_fmt(dir: &Path) -> anyhow::Result<Vec<String>> {
    let out = Command::new("terraform")
        .args(["fmt", "-check", "-recursive", "-list=true"])
        .arg(dir)
        .output()
        .context("running terraform (install the Terraform CLI)")?;
    Ok(if out.status.success() {
        Vec::new()
    } else {
        vec![format!(
            "terraform fmt would change: {}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )]
    })
}

/// Every top-level block of the `.tf` files in `dir`.
pub fn read_terraform(dir: &Path) -> anyhow::Result<Vec<Block>> {
    let mut blocks = Vec::new();
    let mut files: Vec<PathBuf> = fs::read_dir(dir)?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "tf"))
        .collect();
    files.sort();
    ensure!(!files.is_empty(), "no .tf files in {}", dir.display());
    for file in files {
        let text = fs::read_to_string(&file)?;
        let body: Body =
            hcl::parse(&text).with_context(|| format!("parsing {}", file.display()))?;
        blocks.extend(body.into_blocks());
    }
    Ok(blocks)
}

/// What the Terraform does not promise that it should, one sentence each.
pub fn terraform_problems(blocks: &[Block]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut problem = |ok: bool, text: String| {
        if !ok {
            problems.push(text);
        }
    };
    let resources = |kind: &'static str| {
        blocks.iter().filter(move |b| {
            b.identifier() == "resource" && b.labels().first().is_some_and(|l| l.as_str() == kind)
        })
    };
    let name = |block: &Block| {
        block
            .labels()
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join(".")
    };

    // Versions and tags.
    let terraform = blocks.iter().find(|b| b.identifier() == "terraform");
    problem(
        terraform.is_some_and(|t| attribute(&t.body, "required_version").is_some()),
        "terraform { required_version } is not pinned".into(),
    );
    let aws_pinned = terraform
        .and_then(|t| nested(&t.body, "required_providers").next())
        .and_then(|p| attribute(p, "aws"))
        .and_then(|aws| object_get(aws, "version"))
        .is_some();
    problem(
        aws_pinned,
        "the aws provider's version is not pinned".into(),
    );
    let providers: Vec<&Block> = blocks
        .iter()
        .filter(|b| b.identifier() == "provider" && label(b, 0) == Some("aws"))
        .collect();
    problem(!providers.is_empty(), "no provider \"aws\" block".into());
    for provider in &providers {
        let tags = nested(&provider.body, "default_tags")
            .next()
            .and_then(|d| attribute(d, "tags"));
        for tag in DEFAULT_TAGS {
            problem(
                tags.is_some_and(|t| object_get(t, tag).is_some()),
                format!("provider aws's default_tags lack {tag:?}"),
            );
        }
    }

    // Variables.
    for variable in blocks.iter().filter(|b| b.identifier() == "variable") {
        let var = label(variable, 0).unwrap_or("?");
        problem(
            attribute(&variable.body, "description").is_some(),
            format!("variable {var:?} has no description"),
        );
        problem(
            attribute(&variable.body, "type").is_some(),
            format!("variable {var:?} has no type"),
        );
        let is_bool = attribute(&variable.body, "type")
            .is_some_and(|t| matches!(t, Expression::Variable(v) if v.as_str() == "bool"));
        problem(
            is_bool || nested(&variable.body, "validation").next().is_some(),
            format!("variable {var:?} has no validation"),
        );
    }

    // The database: private, encrypted, password in Secrets Manager, TLS forced.
    let databases: Vec<&Block> = resources("aws_db_instance").collect();
    problem(!databases.is_empty(), "no aws_db_instance".into());
    for db in &databases {
        for (key, want) in [
            ("publicly_accessible", false),
            ("storage_encrypted", true),
            ("manage_master_user_password", true),
        ] {
            problem(
                is_bool(attribute(&db.body, key), want),
                format!("{}: {key} is not {want}", name(db)),
            );
        }
        problem(
            attribute(&db.body, "backup_retention_period").is_some(),
            format!("{}: no backup_retention_period", name(db)),
        );
    }
    let forced_ssl = resources("aws_db_parameter_group").any(|group| {
        nested(&group.body, "parameter").any(|p| {
            is_string(attribute(p, "name"), "rds.force_ssl")
                && is_string(attribute(p, "value"), "1")
        })
    });
    problem(
        forced_ssl,
        "no parameter group sets rds.force_ssl = 1".into(),
    );

    // The queue: encrypted, with a dead-letter queue.
    let queues: Vec<&Block> = resources("aws_sqs_queue").collect();
    problem(
        queues.len() >= 2,
        "expected a queue and its dead-letter queue".into(),
    );
    for queue in &queues {
        problem(
            is_bool(attribute(&queue.body, "sqs_managed_sse_enabled"), true)
                || attribute(&queue.body, "kms_master_key_id").is_some(),
            format!("{}: not encrypted", name(queue)),
        );
    }
    problem(
        queues
            .iter()
            .any(|q| attribute(&q.body, "redrive_policy").is_some())
            || resources("aws_sqs_queue_redrive_policy").next().is_some(),
        "no queue has a redrive policy".into(),
    );

    // Hosts: IMDSv2 only, encrypted disks.
    let instances: Vec<&Block> = resources("aws_instance")
        .chain(resources("aws_launch_template"))
        .collect();
    problem(!instances.is_empty(), "no aws_instance".into());
    for instance in &instances {
        let imdsv2 = nested(&instance.body, "metadata_options")
            .any(|m| is_string(attribute(m, "http_tokens"), "required"));
        problem(
            imdsv2,
            format!("{}: IMDSv2 is not required", name(instance)),
        );
        let encrypted = nested(&instance.body, "root_block_device")
            .chain(nested(&instance.body, "block_device_mappings").flat_map(|m| nested(m, "ebs")))
            .any(|disk| is_bool(attribute(disk, "encrypted"), true));
        problem(
            encrypted,
            format!("{}: its volume is not encrypted", name(instance)),
        );
    }

    // The bucket: nothing public, versioned, encrypted, TLS only.
    for block in resources("aws_s3_bucket_public_access_block") {
        for key in [
            "block_public_acls",
            "block_public_policy",
            "ignore_public_acls",
            "restrict_public_buckets",
        ] {
            problem(
                is_bool(attribute(&block.body, key), true),
                format!("{}: {key} is not true", name(block)),
            );
        }
    }
    problem(
        resources("aws_s3_bucket_public_access_block")
            .next()
            .is_some(),
        "no aws_s3_bucket_public_access_block".into(),
    );
    problem(
        resources("aws_s3_bucket_versioning").any(|v| {
            nested(&v.body, "versioning_configuration")
                .any(|c| is_string(attribute(c, "status"), "Enabled"))
        }),
        "no bucket versioning".into(),
    );
    problem(
        resources("aws_s3_bucket_server_side_encryption_configuration")
            .next()
            .is_some(),
        "no bucket encryption configuration".into(),
    );
    problem(
        mentions(blocks, "aws:SecureTransport"),
        "no policy refuses requests without TLS (aws:SecureTransport)".into(),
    );

    // IAM: no wildcard action, no wildcard resource but where AWS requires it.
    for document in blocks
        .iter()
        .filter(|b| b.identifier() == "data" && label(b, 0) == Some("aws_iam_policy_document"))
    {
        for statement in nested(&document.body, "statement") {
            let actions = strings(attribute(statement, "actions"));
            // A wildcard in a Deny only takes rights away (the TLS-only bucket policy).
            if is_string(attribute(statement, "effect"), "Deny") {
                continue;
            }
            for action in &actions {
                problem(
                    !action.contains('*'),
                    format!("{}: wildcard action {action:?}", name(document)),
                );
            }
            let star_resource = strings(attribute(statement, "resources"))
                .iter()
                .any(|r| r == "*");
            let needs_star = !actions.is_empty()
                && actions
                    .iter()
                    .all(|a| STAR_ONLY_ACTIONS.contains(&a.as_str()));
            problem(
                !star_resource || needs_star,
                format!(
                    "{}: resource \"*\" for {actions:?}, whose ARNs are known",
                    name(document)
                ),
            );
        }
    }
    problems
}

fn label(block: &Block, index: usize) -> Option<&str> {
    block.labels().get(index).map(|l| l.as_str())
}

fn attribute<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key() == key).map(|a| a.expr())
}

fn nested<'a>(body: &'a Body, identifier: &'a str) -> impl Iterator<Item = &'a Body> + 'a {
    body.blocks()
        .filter(move |b| b.identifier() == identifier)
        .map(|b| &b.body)
}

fn object_get<'a>(expr: &'a Expression, key: &str) -> Option<&'a Expression> {
    let Expression::Object(object) = expr else {
        return None;
    };
    object.iter().find_map(|(k, v)| {
        let name = match k {
            ObjectKey::Identifier(id) => id.as_str().to_owned(),
            ObjectKey::Expression(Expression::String(s)) => s.clone(),
            _ => return None,
        };
        (name == key).then_some(v)
    })
}

fn is_bool(expr: Option<&Expression>, want: bool) -> bool {
    matches!(expr, Some(Expression::Bool(b)) if *b == want)
}

fn is_string(expr: Option<&Expression>, want: &str) -> bool {
    match expr {
        Some(Expression::String(s)) => s == want,
        Some(Expression::Number(n)) => n.to_string() == want,
        _ => false,
    }
}

/// The literal strings of a list attribute (others, such as references, are skipped).
fn strings(expr: Option<&Expression>) -> Vec<String> {
    match expr {
        Some(Expression::Array(items)) => items
            .iter()
            .filter_map(|item| match item {
                Expression::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether `text` appears anywhere in the blocks (as written back by hcl-rs).
fn mentions(blocks: &[Block], text: &str) -> bool {
    blocks
        .iter()
        .any(|b| hcl::to_string(b).is_ok_and(|hcl| hcl.contains(text)))
}

/// checkov over `dir`, installed from `deploy/checkov.lock.txt` on first use.
fn checkov(dir: &Path) -> anyhow::Result<Vec<String>> {
    let checkov =
        install_locked("checkov", "checkov", "deploy/checkov.lock.txt")?.join("bin/checkov");
    let out = Command::new(&checkov)
        .args(["--directory"])
        .arg(dir)
        .args([
            "--framework",
            "terraform",
            "--quiet",
            "--compact",
            "--skip-download",
        ])
        // Offline: no Bridgecrew platform, no package scanning, no version check.
        .env("BC_SKIP_MAPPING", "TRUE")
        .env("CHECKOV_RUN_SCA_PACKAGE_SCAN_V2", "false")
        .env("SKIP_CHECKOV_VERSION_CHECK", "1")
        .output()
        .with_context(|| format!("running {}", checkov.display()))?;
    Ok(if out.status.success() {
        Vec::new()
    } else {
        vec![format!(
            "checkov failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )]
    })
}

/// `systemd-analyze verify` and `security --offline=true` on each unit, in a scratch root that
/// holds the built binaries where the units expect them and the host's own system units.
fn systemd_units(units: &Path, binaries: &Path) -> anyhow::Result<Vec<String>> {
    let scratch = scratch_dir("systemd")?;
    fs::create_dir_all(scratch.join("usr/local/bin"))?;
    fs::create_dir_all(scratch.join("etc/systemd/system"))?;
    fs::create_dir_all(scratch.join("usr/lib/systemd"))?;
    std::os::unix::fs::symlink(
        "/usr/lib/systemd/system",
        scratch.join("usr/lib/systemd/system"),
    )?;
    let mut problems = Vec::new();
    for daemon in ["importer", "transformer"] {
        fs::copy(
            binaries.join(daemon),
            scratch.join("usr/local/bin").join(daemon),
        )?;
        let unit = format!("barge-{daemon}.service");
        fs::copy(
            units.join(&unit),
            scratch.join("etc/systemd/system").join(&unit),
        )?;
        let verify = Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", scratch.display()))
            .arg(&unit)
            .output()
            .context("running systemd-analyze")?;
        // Warnings about the unit (unknown keys, bad values) do not change the exit status.
        let complaints: Vec<String> = String::from_utf8_lossy(&verify.stderr)
            .lines()
            .filter(|line| line.contains(&unit))
            .map(str::to_owned)
            .collect();
        if !verify.status.success() || !complaints.is_empty() {
            problems.push(format!(
                "systemd-analyze verify {unit}: {}",
                complaints.join("; ")
            ));
        }
        let security = Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(format!("--root={}", scratch.display()))
            .arg(&unit)
            .output()
            .context("running systemd-analyze security")?;
        let text = String::from_utf8_lossy(&security.stdout);
        let exposure = text
            .lines()
            .find_map(|line| line.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|level| level.parse::<f64>().ok());
        match exposure {
            Some(level) if level <= MAX_EXPOSURE => {}
            other => problems.push(format!(
                "systemd-analyze security {unit}: exposure {other:?}, at most {MAX_EXPOSURE} allowed"
            )),
        }
    }
    fs::remove_dir_all(&scratch)?;
    Ok(problems)
}

/// `install.sh` of a release laid out as `cargo xtask dist` packs it, run into a scratch root.
fn install_script(root: &Path, binaries: &Path) -> anyhow::Result<Vec<String>> {
    let release = scratch_dir("release")?;
    let target = scratch_dir("installed")?;
    fs::create_dir_all(release.join("bin"))?;
    fs::create_dir_all(release.join("systemd"))?;
    fs::copy(root.join("deploy/install.sh"), release.join("install.sh"))?;
    fs::copy(root.join("README.md"), release.join("README.md"))?;
    let mut problems = Vec::new();
    for daemon in ["importer", "transformer"] {
        fs::copy(binaries.join(daemon), release.join("bin").join(daemon))?;
        let unit = format!("barge-{daemon}.service");
        fs::copy(
            root.join("deploy/systemd").join(&unit),
            release.join("systemd").join(&unit),
        )?;
        let out = Command::new("sh")
            .arg(release.join("install.sh"))
            .arg(daemon)
            .env("DESTDIR", &target)
            .output()?;
        let installed = [
            format!("usr/local/bin/{daemon}"),
            format!("etc/systemd/system/{unit}"),
            "usr/local/share/doc/barge/README.md".to_owned(),
        ];
        if !out.status.success() || !installed.iter().all(|path| target.join(path).is_file()) {
            problems.push(format!(
                "install.sh {daemon} did not install {installed:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    fs::remove_dir_all(&release)?;
    fs::remove_dir_all(&target)?;
    Ok(problems)
}

fn scratch_dir(what: &str) -> anyhow::Result<PathBuf> {
    let dir = workspace_root().join(format!("target/barge-local/check-{what}"));
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(hcl: &str) -> Vec<String> {
        let body: Body = hcl::parse(hcl).unwrap();
        terraform_problems(&body.into_blocks().collect::<Vec<_>>())
    }

    #[test]
    fn the_repository_terraform_keeps_its_promises() {
        let blocks = read_terraform(&workspace_root().join("terraform")).unwrap();
        assert_eq!(terraform_problems(&blocks), Vec::<String>::new());
    }

    #[test]
    fn broken_promises_are_named() {
        let found = problems(
            r#"
            variable "x" { type = string }
            resource "aws_db_instance" "db" {
              publicly_accessible = true
              storage_encrypted = true
              manage_master_user_password = true
              backup_retention_period = 7
            }
            resource "aws_instance" "host" {
              metadata_options { http_tokens = "optional" }
              root_block_device { encrypted = false }
            }
            data "aws_iam_policy_document" "p" {
              statement {
                actions = ["s3:*"]
                resources = ["*"]
              }
            }
            "#,
        );
        for expected in [
            "variable \"x\" has no description",
            "variable \"x\" has no validation",
            "aws_db_instance.db: publicly_accessible is not false",
            "no parameter group sets rds.force_ssl = 1",
            "aws_instance.host: IMDSv2 is not required",
            "aws_instance.host: its volume is not encrypted",
            "aws_iam_policy_document.p: wildcard action \"s3:*\"",
            "no provider \"aws\" block",
            "no queue has a redrive policy",
        ] {
            assert!(
                found.iter().any(|p| p == expected),
                "{expected:?} not among {found:#?}"
            );
        }
    }
}
