//! The local services the demo and the tests run against: LocalStack (S3 and SQS, host mode, no
//! Docker) and a throwaway PostgreSQL cluster. Both are installed on first use, bound to
//! loopback on ports that leave a developer's own LocalStack (4566) and PostgreSQL (5432) alone,
//! and stopped when their guard is dropped.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::Credentials;
use barge_core::aws::{AwsClients, Timeouts};
use barge_core::settings::DatabaseSettings;
use barge_localenv::postgres::{self, Cluster, is_root, run, tail};
use sha2::{Digest, Sha256};
use std::os::unix::process::CommandExt;

/// LocalStack's gateway port.
pub const LOCALSTACK_PORT: u16 = 14566;
/// PostgreSQL's port.
pub const POSTGRES_PORT: u16 = 15432;
/// LocalStack 4.14 is the last release that runs without an auth token; newer ones refuse.
const LOCALSTACK_VERSION: &str = "4.14.0";
/// uv resolves and installs the pinned LocalStack set in seconds rather than pip's minutes.
const UV_VERSION: &str = "0.13.9";
/// How long LocalStack may take to answer real S3 and SQS calls.
const LOCALSTACK_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Both services, running. Dropping it stops them.
pub struct Services {
    localstack: LocalStack,
    postgres: Cluster,
}

impl Services {
    /// Installs what is missing, starts both services and waits until they answer real calls.
    pub async fn start() -> anyhow::Result<Self> {
        let postgres = start_postgres().await?;
        let localstack = LocalStack::start().await?;
        Ok(Self {
            localstack,
            postgres,
        })
    }

    /// Clients for LocalStack with its test credentials.
    pub async fn aws(&self) -> AwsClients {
        self.localstack.clients().await
    }

    /// Connection settings for `dbname` as the cluster's superuser.
    pub fn database(&self, dbname: &str) -> DatabaseSettings {
        self.postgres.settings(dbname)
    }

    /// Environment for processes that use the services: the AWS chain pointed at LocalStack and
    /// the PostgreSQL URL the integration tests provision their databases with.
    pub fn child_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.localstack.endpoint()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            (
                barge_localenv::TEST_DATABASE_URL,
                self.postgres.url("postgres"),
            ),
        ]
    }

    /// Stops both services, reporting what was stopped.
    pub fn stop(self) {
        drop(self.localstack);
        drop(self.postgres);
        eprintln!("xtask: services stopped");
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/xtask sits two levels below the workspace root")
        .to_path_buf()
}

/// Logs and pid files of this checkout's services.
fn state_dir() -> anyhow::Result<PathBuf> {
    let dir = workspace_root().join("target").join("barge-local");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Installed tools, shared by every checkout on the machine and keyed by what they were
/// installed from, so a fresh clone does not reinstall and a changed lock file does.
fn cache_dir() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .context("neither XDG_CACHE_HOME nor HOME is set")?;
    Ok(base.join("barge"))
}

fn ensure_port_free(port: u16, service: &str) -> anyhow::Result<()> {
    std::net::TcpListener::bind(("127.0.0.1", port)).with_context(|| {
        format!(
            "port {port} for {service} is taken: is another `cargo xtask` running? \
             (stop it, or free the port)"
        )
    })?;
    Ok(())
}

/// Sends `signal` (`TERM`, `KILL`) to the process group led by `pid`; a group that is gone
/// already is fine.
pub fn signal_group(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
}

/// Signals a process group and waits for `pid` to exit, escalating to SIGKILL.
fn stop_group(pid: u32, child: Option<&mut Child>) {
    signal_group(pid, "TERM");
    let alive = |child: &mut Option<&mut Child>| match child {
        Some(child) => matches!(child.try_wait(), Ok(None)),
        None => Path::new(&format!("/proc/{pid}")).exists(),
    };
    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(15);
    while alive(&mut child) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if alive(&mut child) {
        signal_group(pid, "KILL");
        if let Some(child) = child {
            let _ = child.wait();
        }
    }
}

/// LocalStack in host mode, from a pinned lock file, in a Python 3.13 virtualenv.
struct LocalStack {
    child: Child,
    pid_file: PathBuf,
}

impl LocalStack {
    async fn start() -> anyhow::Result<Self> {
        let state = state_dir()?;
        let pid_file = state.join("localstack.pid");
        stop_leftover(&pid_file, "localstack");
        ensure_port_free(LOCALSTACK_PORT, "LocalStack")?;
        let python = install_localstack()?;
        let log_path = state.join("localstack.log");
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let data = state.join("localstack-data");
        let gateway = format!("127.0.0.1:{LOCALSTACK_PORT}");
        eprintln!(
            "xtask: starting LocalStack {LOCALSTACK_VERSION} on {gateway} (log: {})",
            log_path.display()
        );
        let child = Command::new(&python)
            .args(["-m", "localstack.runtime.main"])
            .env("RUNTIME_COMPONENTS", "aws")
            .env("SERVICES", "s3,sqs,secretsmanager")
            .env("GATEWAY_LISTEN", &gateway)
            // The default (twisted) server ignores the IPv4 host and binds 0.0.0.0; hypercorn
            // binds exactly GATEWAY_LISTEN, keeping LocalStack on loopback.
            .env("GATEWAY_SERVER", "hypercorn")
            .env("LOCALSTACK_HOST", &gateway)
            .env("SQS_ENDPOINT_STRATEGY", "path")
            // No DNS server, no telemetry, no certificate download: this runs offline.
            .env("DNS_ADDRESS", "0")
            .env("DISABLE_EVENTS", "1")
            .env("SKIP_SSL_CERT_DOWNLOAD", "1")
            .env("FILESYSTEM_ROOT", &data)
            .env("LOCALSTACK_VOLUME_DIR", &data)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a terminal's Ctrl-C reaches xtask, which stops the group.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", python.display()))?;
        fs::write(&pid_file, child.id().to_string())?;
        let mut localstack = Self { child, pid_file };
        localstack.wait_ready(&log_path).await?;
        Ok(localstack)
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{LOCALSTACK_PORT}")
    }

    async fn clients(&self) -> AwsClients {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "barge-xtask"))
            .load()
            .await;
        AwsClients::from_sdk_config(&config, Timeouts::default())
    }

    /// Ready means a real S3 call and a real SQS call succeed: on an unsupported Python,
    /// LocalStack prints "Ready." and passes its health check, then fails every API call.
    async fn wait_ready(&mut self, log: &Path) -> anyhow::Result<()> {
        let aws = self.clients().await;
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "LocalStack exited ({status}) while starting; last log lines:\n{}",
                    tail(log)
                );
            }
            let s3 = aws.s3.list_buckets().send().await;
            let sqs = aws.sqs.list_queues().send().await;
            match (s3, sqs) {
                (Ok(_), Ok(_)) => {
                    eprintln!(
                        "xtask: LocalStack answers S3 and SQS after {:.1?}",
                        started.elapsed()
                    );
                    return Ok(());
                }
                (s3, sqs) if started.elapsed() > LOCALSTACK_READY_TIMEOUT => {
                    let why = s3
                        .err()
                        .map(|e| barge_core::error_chain(&e))
                        .or_else(|| sqs.err().map(|e| barge_core::error_chain(&e)))
                        .unwrap_or_default();
                    bail!(
                        "LocalStack did not answer S3 and SQS within {LOCALSTACK_READY_TIMEOUT:?}: {why}\nlast log lines:\n{}",
                        tail(log)
                    );
                }
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        stop_group(self.child.id(), Some(&mut self.child));
        let _ = fs::remove_file(&self.pid_file);
    }
}

/// Stops a service a previous, killed run left behind, if the pid file still names it.
fn stop_leftover(pid_file: &Path, name: &str) {
    let Ok(pid) = fs::read_to_string(pid_file) else {
        return;
    };
    let Ok(pid) = pid.trim().parse::<u32>() else {
        return;
    };
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if String::from_utf8_lossy(&cmdline).contains(name) {
        eprintln!("xtask: stopping {name} left over from an earlier run (pid {pid})");
        stop_group(pid, None);
    }
    let _ = fs::remove_file(pid_file);
}

/// The virtualenv's Python, installing LocalStack from the lock file first if needed.
fn install_localstack() -> anyhow::Result<PathBuf> {
    let lock = workspace_root().join("deploy/local/localstack.lock.txt");
    let digest =
        Sha256::digest(fs::read(&lock).with_context(|| format!("reading {}", lock.display()))?);
    let venv = cache_dir()?.join(format!("localstack-{LOCALSTACK_VERSION}-{:.12x}", digest));
    let python = venv.join("bin/python");
    let marker = venv.join(".barge-installed");
    if marker.exists() {
        return Ok(python);
    }
    let base_python = find_python313()?;
    let uv = install_uv(&base_python)?;
    eprintln!(
        "xtask: installing LocalStack {LOCALSTACK_VERSION} into {}",
        venv.display()
    );
    if venv.exists() {
        fs::remove_dir_all(&venv)?;
    }
    run(
        Command::new(&uv)
            .arg("venv")
            .arg("--python")
            .arg(&base_python)
            .arg(&venv),
        "creating the LocalStack virtualenv",
    )?;
    run(
        Command::new(&uv)
            .args(["pip", "sync", "--require-hashes", "--python"])
            .arg(&python)
            .arg(&lock),
        "installing LocalStack from deploy/local/localstack.lock.txt",
    )?;
    fs::write(&marker, "")?;
    Ok(python)
}

/// uv, pinned, in a virtualenv of its own.
fn install_uv(python: &Path) -> anyhow::Result<PathBuf> {
    let venv = cache_dir()?.join(format!("uv-{UV_VERSION}"));
    let uv = venv.join("bin/uv");
    if uv.exists() {
        return Ok(uv);
    }
    eprintln!("xtask: installing uv {UV_VERSION}");
    run(
        Command::new(python).args(["-m", "venv"]).arg(&venv),
        "creating the uv virtualenv",
    )?;
    run(
        Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            &format!("uv=={UV_VERSION}"),
        ]),
        "installing uv from PyPI",
    )?;
    Ok(uv)
}

/// A Python 3.13 interpreter: `BARGE_PYTHON`, then `python3.13` on `PATH`, then pyenv's.
fn find_python313() -> anyhow::Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(explicit) = std::env::var_os("BARGE_PYTHON") {
        candidates.push(explicit.into());
    }
    candidates.push("python3.13".into());
    let pyenv_root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".pyenv")));
    if let Some(versions) = pyenv_root.map(|root| root.join("versions")) {
        let mut found: Vec<PathBuf> = fs::read_dir(versions)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().starts_with("3.13"))
            .map(|entry| entry.path().join("bin/python3.13"))
            .collect();
        found.sort();
        candidates.extend(found.into_iter().rev());
    }
    candidates.extend([
        "/usr/local/bin/python3.13".into(),
        "/usr/bin/python3.13".into(),
    ]);
    for candidate in &candidates {
        let version = Command::new(candidate)
            .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
            .output();
        if version.is_ok_and(|out| out.status.success() && out.stdout.starts_with(b"3.13")) {
            return Ok(candidate.clone());
        }
    }
    bail!(
        "LocalStack {LOCALSTACK_VERSION} needs Python 3.13 (on 3.11 and 3.12 it starts but every \
         S3/SQS call fails), and none was found. Install one (e.g. `pyenv install 3.13`) or point \
         BARGE_PYTHON at a python3.13. Looked at: {candidates:?}"
    )
}

/// The throwaway PostgreSQL cluster, installing Debian's server package first when there is
/// none and we may.
async fn start_postgres() -> anyhow::Result<Cluster> {
    let bin = match postgres::installed_server() {
        Some(bin) => bin,
        None => {
            ensure!(
                is_root(),
                "no PostgreSQL server found under /usr/lib/postgresql; install it (apt-get install postgresql)"
            );
            eprintln!("xtask: installing PostgreSQL with apt-get");
            run(Command::new("apt-get").arg("update"), "apt-get update")?;
            run(
                Command::new("apt-get")
                    .args(["install", "-y", "--no-install-recommends", "postgresql"])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
                "apt-get install postgresql",
            )?;
            postgres::installed_server().context(
                "apt-get installed postgresql but no initdb appeared under /usr/lib/postgresql",
            )?
        }
    };
    ensure_port_free(POSTGRES_PORT, "PostgreSQL")?;
    // Under the temp dir rather than target/: as root the cluster runs as the `postgres` user,
    // which may not be able to enter a home directory.
    let dir = std::env::temp_dir().join(format!("barge-postgres-{POSTGRES_PORT}"));
    eprintln!(
        "xtask: starting PostgreSQL on 127.0.0.1:{POSTGRES_PORT} (log: {}/postgres.log)",
        dir.display()
    );
    Cluster::start(bin, dir, POSTGRES_PORT).await
}
