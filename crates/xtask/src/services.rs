//! The local services the demo, the tests and the local loop run against: LocalStack (S3, SQS
//! and Secrets Manager, host mode, no Docker) and a PostgreSQL cluster. Both are installed on
//! first use and bound to loopback: `test` and `demo` on free ports, for one run, stopped when
//! their guard is dropped; `up` on the project's own ports ([`Layout::local_loop`]), left
//! running until `down`. A developer's own LocalStack (4566) and PostgreSQL (5432) are never
//! touched.

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

/// The local loop's LocalStack gateway port (`deploy/local/barge.toml` and the compose file
/// use it too).
pub const LOCALSTACK_PORT: u16 = 14566;
/// The local loop's PostgreSQL port.
pub const POSTGRES_PORT: u16 = 15432;
/// LocalStack 4.14 is the last release that runs without an auth token; newer ones refuse.
pub const LOCALSTACK_VERSION: &str = "4.14.0";
/// uv resolves and installs the pinned LocalStack set in seconds rather than pip's minutes.
const UV_VERSION: &str = "0.13.9";
/// How long LocalStack may take to answer real S3 and SQS calls.
const LOCALSTACK_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Where one set of services listens and keeps its files.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Logs, pid files and LocalStack's data.
    pub state: PathBuf,
    /// The PostgreSQL cluster's directory: under the temp dir, because as root the cluster runs
    /// as the `postgres` user, which may not be able to enter a home directory.
    pub postgres_dir: PathBuf,
    /// LocalStack's gateway port.
    pub localstack_port: u16,
    /// PostgreSQL's port.
    pub postgres_port: u16,
}

impl Layout {
    /// One `test` or `demo` run: free ports, so that it runs beside the local loop.
    pub fn ephemeral() -> anyhow::Result<Self> {
        let state = workspace_root().join("target/barge-local");
        let postgres_port = free_port()?;
        Ok(Self {
            postgres_dir: std::env::temp_dir().join(format!("barge-postgres-{postgres_port}")),
            state,
            localstack_port: free_port()?,
            postgres_port,
        })
    }

    /// `cargo xtask up`: the project's own ports, state kept until `down`.
    pub fn local_loop() -> Self {
        Self {
            state: workspace_root().join("target/barge-local/up"),
            postgres_dir: std::env::temp_dir().join(format!("barge-up-postgres-{POSTGRES_PORT}")),
            localstack_port: LOCALSTACK_PORT,
            postgres_port: POSTGRES_PORT,
        }
    }

    /// LocalStack's URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.localstack_port)
    }

    fn ensure_state(&self) -> anyhow::Result<()> {
        fs::create_dir_all(&self.state)
            .with_context(|| format!("creating {}", self.state.display()))
    }

    fn pid_file(&self, service: &str) -> PathBuf {
        self.state.join(format!("{service}.pid"))
    }

    fn postgres_marker(&self) -> PathBuf {
        self.state.join("postgres.dir")
    }
}

/// A port nothing listens on now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Both services, running. Dropping it stops them, unless [`Services::detach`]ed.
pub struct Services {
    layout: Layout,
    localstack: LocalStack,
    postgres: Cluster,
}

impl Services {
    /// Installs what is missing, starts both services (a fresh PostgreSQL cluster, or the one
    /// `layout` kept when `keep_data`) and waits until they answer real calls. Services an
    /// earlier, killed run left in `layout` are stopped first.
    pub async fn start(layout: Layout, keep_data: bool) -> anyhow::Result<Self> {
        layout.ensure_state()?;
        stop_layout(&layout);
        let postgres = start_postgres(&layout, keep_data).await?;
        fs::write(
            layout.postgres_marker(),
            layout.postgres_dir.display().to_string(),
        )?;
        let localstack = LocalStack::start(&layout).await?;
        Ok(Self {
            layout,
            localstack,
            postgres,
        })
    }

    /// LocalStack's URL.
    pub fn endpoint(&self) -> String {
        self.layout.endpoint()
    }

    /// Clients for LocalStack with its test credentials.
    pub async fn aws(&self) -> AwsClients {
        self.localstack.clients().await
    }

    /// Connection settings for `dbname` as the cluster's superuser.
    pub fn database(&self, dbname: &str) -> DatabaseSettings {
        self.postgres.settings(dbname)
    }

    /// The cluster's own `psql`, connected to `dbname` as the superuser.
    pub fn psql(&self, dbname: &str) -> Command {
        self.postgres.psql(dbname)
    }

    /// PostgreSQL's postmaster, the parent of every server process.
    pub fn postgres_pid(&self) -> anyhow::Result<u32> {
        self.postgres.postmaster_pid()
    }

    /// LocalStack's main process, the root of its process tree.
    pub fn localstack_pid(&self) -> anyhow::Result<u32> {
        self.localstack
            .child
            .as_ref()
            .map(Child::id)
            .context("LocalStack runs detached from this process")
    }

    /// Environment for processes that use the services: the AWS chain pointed at LocalStack and
    /// the PostgreSQL URL the integration tests provision their databases with.
    pub fn child_env(&self) -> Vec<(&'static str, String)> {
        let mut env = aws_env(&self.layout);
        env.push((
            barge_localenv::TEST_DATABASE_URL,
            self.postgres.url("postgres"),
        ));
        env
    }

    /// Leaves both services running after this process ends; `stop_layout` stops them.
    pub fn detach(self) {
        self.postgres.detach();
        self.localstack.detach();
    }

    /// Stops both services, reporting what was stopped.
    pub fn stop(self) {
        drop(self.localstack);
        drop(self.postgres);
        let _ = fs::remove_file(self.layout.postgres_marker());
        eprintln!("xtask: services stopped");
    }
}

/// The AWS chain's variables for LocalStack with its test credentials.
pub fn aws_env(layout: &Layout) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", layout.endpoint()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
    ]
}

/// Stops the services recorded in `layout` (by pid file and cluster directory), whether an
/// earlier run was killed or `up` left them running on purpose.
pub fn stop_layout(layout: &Layout) {
    stop_leftover(&layout.pid_file("localstack"), "localstack");
    if let Ok(dir) = fs::read_to_string(layout.postgres_marker()) {
        let dir = PathBuf::from(dir.trim());
        if let Some(bin) = postgres::installed_server() {
            postgres::stop_cluster_in(&bin, &dir);
        }
        let _ = fs::remove_file(layout.postgres_marker());
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/xtask sits two levels below the workspace root")
        .to_path_buf()
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

pub fn ensure_port_free(port: u16, service: &str) -> anyhow::Result<()> {
    std::net::TcpListener::bind(("127.0.0.1", port)).with_context(|| {
        format!(
            "port {port} for {service} is taken: is `cargo xtask up` (or another program) \
             using it? (`cargo xtask down` stops the local loop)"
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

/// Whether process `pid` runs: it exists and is not a zombie (an orphan that exited stays a
/// zombie where nothing reaps reparented processes, as in some containers).
pub fn is_alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|fields| fields[0] != "Z")
}

/// The fields of `/proc/<pid>/stat` after the parenthesised command name (which may hold
/// spaces): the state first, so field *n* of `proc(5)` is at index *n* − 3. `None` if there is
/// no such process.
pub fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
    (!fields.is_empty()).then_some(fields)
}

/// Signals a process group and waits for `pid` to exit, escalating to SIGKILL.
pub fn stop_group(pid: u32, child: Option<&mut Child>) {
    signal_group(pid, "TERM");
    let alive = |child: &mut Option<&mut Child>| match child {
        Some(child) => matches!(child.try_wait(), Ok(None)),
        None => is_alive(pid),
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
    child: Option<Child>,
    pid_file: PathBuf,
    endpoint: String,
}

impl LocalStack {
    async fn start(layout: &Layout) -> anyhow::Result<Self> {
        let pid_file = layout.pid_file("localstack");
        ensure_port_free(layout.localstack_port, "LocalStack")?;
        let python = install_localstack()?;
        let log_path = layout.state.join("localstack.log");
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let data = layout.state.join("localstack-data");
        let gateway = format!("127.0.0.1:{}", layout.localstack_port);
        eprintln!(
            "xtask: starting LocalStack {LOCALSTACK_VERSION} on {gateway} (log: {})",
            log_path.display()
        );
        let child = Command::new(&python)
            .args(["-m", "localstack.runtime.main"])
            .env("RUNTIME_COMPONENTS", "aws")
            .env("SERVICES", "s3,sqs,secretsmanager,ssm")
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
        let mut localstack = Self {
            child: Some(child),
            pid_file,
            endpoint: layout.endpoint(),
        };
        localstack.wait_ready(&log_path).await?;
        Ok(localstack)
    }

    /// Leaves it running; its pid file stays for whoever stops it.
    fn detach(mut self) {
        self.child = None;
    }

    async fn clients(&self) -> AwsClients {
        clients(&self.endpoint).await
    }

    /// Ready means a real S3 call and a real SQS call succeed: on an unsupported Python,
    /// LocalStack prints "Ready." and passes its health check, then fails every API call.
    async fn wait_ready(&mut self, log: &Path) -> anyhow::Result<()> {
        let aws = self.clients().await;
        let started = Instant::now();
        loop {
            let child = self.child.as_mut().expect("started, not detached");
            if let Some(status) = child.try_wait()? {
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
        if let Some(child) = &mut self.child {
            stop_group(child.id(), Some(child));
            let _ = fs::remove_file(&self.pid_file);
        }
    }
}

/// Clients for the LocalStack at `endpoint`, with its test credentials.
pub async fn clients(endpoint: &str) -> AwsClients {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "barge-xtask"))
        .load()
        .await;
    AwsClients::from_sdk_config(&config, Timeouts::default())
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
        eprintln!("xtask: stopping {name} (pid {pid})");
        stop_group(pid, None);
    }
    let _ = fs::remove_file(pid_file);
}

/// The virtualenv's Python, installing LocalStack from the lock file first if needed.
fn install_localstack() -> anyhow::Result<PathBuf> {
    let venv = install_locked(
        &format!("LocalStack {LOCALSTACK_VERSION}"),
        &format!("localstack-{LOCALSTACK_VERSION}"),
        "deploy/local/localstack.lock.txt",
    )?;
    Ok(venv.join("bin/python"))
}

/// A Python 3.13 virtualenv with exactly what `lock` (a path in the workspace, with hashes)
/// names, installed by uv on first use. It lives in the cache, keyed by `name` and the lock
/// file's digest, so a fresh clone does not reinstall and a changed lock file does.
pub fn install_locked(what: &str, name: &str, lock: &str) -> anyhow::Result<PathBuf> {
    let lock_path = workspace_root().join(lock);
    let digest = Sha256::digest(
        fs::read(&lock_path).with_context(|| format!("reading {}", lock_path.display()))?,
    );
    let venv = cache_dir()?.join(format!("{name}-{digest:.12x}"));
    let marker = venv.join(".barge-installed");
    if marker.exists() {
        return Ok(venv);
    }
    let base_python = find_python313()?;
    let uv = install_uv(&base_python)?;
    eprintln!("xtask: installing {what} into {}", venv.display());
    if venv.exists() {
        fs::remove_dir_all(&venv)?;
    }
    run(
        Command::new(&uv)
            .arg("venv")
            .arg("--python")
            .arg(&base_python)
            .arg(&venv),
        &format!("creating the {what} virtualenv"),
    )?;
    run(
        Command::new(&uv)
            .args(["pip", "sync", "--require-hashes", "--python"])
            .arg(venv.join("bin/python"))
            .arg(&lock_path),
        &format!("installing {what} from {lock}"),
    )?;
    fs::write(&marker, "")?;
    Ok(venv)
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

/// The PostgreSQL cluster of `layout` (fresh, or its kept data when `keep_data`), installing
/// Debian's server package first when there is none and we may.
async fn start_postgres(layout: &Layout, keep_data: bool) -> anyhow::Result<Cluster> {
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
    ensure_port_free(layout.postgres_port, "PostgreSQL")?;
    eprintln!(
        "xtask: starting PostgreSQL on 127.0.0.1:{} (log: {}/postgres.log)",
        layout.postgres_port,
        layout.postgres_dir.display()
    );
    let dir = layout.postgres_dir.clone();
    if keep_data {
        Cluster::reopen(bin, dir, layout.postgres_port).await
    } else {
        Cluster::start(bin, dir, layout.postgres_port).await
    }
}
