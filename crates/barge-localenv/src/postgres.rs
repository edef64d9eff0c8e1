//! Throwaway PostgreSQL clusters on loopback: `cargo xtask` runs one for the demo and the tests,
//! and tests that must stop and start PostgreSQL under a running transformer make their own.
//!
//! `initdb` refuses to run as root, so as root the server binaries run as the `postgres` user
//! (which Debian's package creates) and the cluster lives under the temp dir, where that user
//! can reach it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, ensure};
use barge_core::settings::{DatabaseSettings, TlsMode};
use secrecy::SecretString;

/// Superuser of every throwaway cluster.
pub const SUPERUSER: &str = "barge";
/// Its password; clusters live on loopback for one command or one test, so a fixed one is fine.
pub const SUPERUSER_PASSWORD: &str = "barge-local";

/// A PostgreSQL cluster of our own. Dropping it stops the server, and deletes the files of a
/// fresh one; a [`Cluster::detach`]ed one is left as it is.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
    on_drop: OnDrop,
}

/// What dropping a [`Cluster`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnDrop {
    StopAndRemove,
    Stop,
    Nothing,
}

impl Cluster {
    /// Creates a fresh cluster in `dir` (removing what was there, including a server left running
    /// by an earlier, killed run) and starts it on `127.0.0.1:port`.
    pub async fn start(bin: PathBuf, dir: PathBuf, port: u16) -> anyhow::Result<Self> {
        let cluster = Self::at(bin, dir, port, OnDrop::StopAndRemove);
        cluster.stop_leftover();
        cluster.create()?;
        cluster.resume()?;
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    /// Starts the cluster kept in `dir` on `port` (its files are never deleted by this value),
    /// or a fresh one if there is none.
    pub async fn reopen(bin: PathBuf, dir: PathBuf, port: u16) -> anyhow::Result<Self> {
        if !dir.join("data/PG_VERSION").exists() {
            return Self::start(bin, dir, port).await;
        }
        let cluster = Self::at(bin, dir, port, OnDrop::Stop);
        cluster.stop_leftover();
        cluster.resume()?;
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    fn at(bin: PathBuf, dir: PathBuf, port: u16, on_drop: OnDrop) -> Self {
        Self {
            bin,
            dir,
            port,
            as_postgres: is_root(),
            on_drop,
        }
    }

    fn stop_leftover(&self) {
        if self.data().join("postmaster.pid").exists() {
            eprintln!("stopping the PostgreSQL server in {}", self.dir.display());
            self.stop();
        }
    }

    /// Leaves the server running, and its files in place, when this value is dropped.
    pub fn detach(mut self) {
        self.on_drop = OnDrop::Nothing;
    }

    /// Starts a cluster on a free loopback port in a new directory under the temp dir, with the
    /// newest installed server.
    pub async fn start_private() -> anyhow::Result<Self> {
        let bin = installed_server().context(
            "no PostgreSQL server found under /usr/lib/postgresql (cargo xtask installs it)",
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("barge-postgres-{}", &id[..12]));
        Self::start(bin, dir, port).await
    }

    /// Turns TLS on with `certificate` and `key` (PEM), and accepts TCP connections only over
    /// TLS from then on (`hostssl` in `pg_hba.conf`); restarts the server.
    pub fn require_tls(&self, certificate: &Path, key: &Path) -> anyhow::Result<()> {
        fs::copy(certificate, self.data().join("server.crt"))?;
        fs::copy(key, self.data().join("server.key"))?;
        let hba = self.data().join("pg_hba.conf");
        let rules = fs::read_to_string(&hba)?
            .lines()
            .map(|line| match line.strip_prefix("host ") {
                Some(rest) => format!("hostssl {rest}"),
                None => line.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        fs::write(&hba, rules + "\n")?;
        let mut conf = fs::OpenOptions::new()
            .append(true)
            .open(self.data().join("postgresql.conf"))?;
        std::io::Write::write_all(&mut conf, b"ssl = on\n")?;
        if self.as_postgres {
            run(
                Command::new("chown")
                    .arg("-R")
                    .arg("postgres:")
                    .arg(self.data()),
                "handing the TLS files to the postgres user",
            )?;
        }
        run(
            Command::new("chmod")
                .arg("600")
                .arg(self.data().join("server.key")),
            "protecting the TLS key",
        )?;
        self.stop();
        self.resume()
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connection settings for `dbname` as the superuser.
    pub fn settings(&self, dbname: &str) -> DatabaseSettings {
        DatabaseSettings {
            host: "127.0.0.1".into(),
            port: self.port,
            user: SUPERUSER.into(),
            password: Some(SecretString::from(SUPERUSER_PASSWORD)),
            dbname: dbname.into(),
            // A throwaway cluster on loopback, without certificates.
            tls: TlsMode::Disable,
            ..DatabaseSettings::default()
        }
    }

    /// `postgres://` URL of `dbname` as the superuser.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{SUPERUSER_PASSWORD}@127.0.0.1:{}/{dbname}",
            self.port
        )
    }

    /// The cluster's own `psql`, run as the calling user (so it reads and writes files as that
    /// user), connected to `dbname` as the superuser, without `~/.psqlrc` and stopping at the
    /// first error.
    pub fn psql(&self, dbname: &str) -> Command {
        let mut psql = Command::new(self.bin.join("psql"));
        psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", SUPERUSER)
            .env("PGPASSWORD", SUPERUSER_PASSWORD)
            .env("PGDATABASE", dbname);
        psql
    }

    /// The postmaster's process id, from its pid file (whose first line it is).
    pub fn postmaster_pid(&self) -> anyhow::Result<u32> {
        let pid_file = self.data().join("postmaster.pid");
        let text = fs::read_to_string(&pid_file)
            .with_context(|| format!("reading {}", pid_file.display()))?;
        text.lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .with_context(|| format!("{} does not start with a pid", pid_file.display()))
    }

    /// Stops the server (fast: open sessions are disconnected), keeping the data.
    pub fn stop(&self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Starts the stopped server again on the same port and data, waiting until it accepts
    /// connections.
    pub fn resume(&self) -> anyhow::Result<()> {
        let log = self.dir.join("postgres.log");
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.display()
        );
        let mut start = self.command("pg_ctl");
        start
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &options, "start"]);
        // A group of its own: a terminal's Ctrl-C goes to the caller, which stops the server.
        std::os::unix::process::CommandExt::process_group(&mut start, 0);
        run(&mut start, "starting PostgreSQL").with_context(|| tail(&log))
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A command for one of the server binaries, as `postgres` when we are root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn create(&self) -> anyhow::Result<()> {
        if self.dir.exists() {
            fs::remove_dir_all(&self.dir)
                .with_context(|| format!("removing {}", self.dir.display()))?;
        }
        fs::create_dir_all(&self.dir)?;
        let password_file = self.dir.join("password");
        fs::write(&password_file, SUPERUSER_PASSWORD)?;
        if self.as_postgres {
            run(
                Command::new("chown")
                    .arg("-R")
                    .arg("postgres:")
                    .arg(&self.dir),
                "handing the cluster directory to the postgres user",
            )?;
        }
        let mut initdb = self.command("initdb");
        initdb
            .arg("-D")
            .arg(self.data())
            .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", password_file.display()));
        run(&mut initdb, "initdb")?;
        fs::remove_file(&password_file)?;
        Ok(())
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let client = self
            .settings("postgres")
            .connect()
            .await
            .context("PostgreSQL started but refuses the barge login")?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.on_drop != OnDrop::Nothing {
            self.stop();
        }
        if self.on_drop == OnDrop::StopAndRemove {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Stops the server of the cluster in `dir`, if one runs, keeping its files.
pub fn stop_cluster_in(bin: &Path, dir: &Path) {
    Cluster::at(bin.to_path_buf(), dir.to_path_buf(), 0, OnDrop::Nothing).stop_leftover();
}

/// The newest installed PostgreSQL server's `bin` directory.
pub fn installed_server() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // `id -u` keeps this crate free of unsafe libc calls.
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Runs `command` to completion, failing with its output when it fails.
pub fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{what}: cannot run {:?}", command.get_program()))?;
    ensure!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Last lines of a log file, for errors.
pub fn tail(path: &Path) -> String {
    last_lines(&fs::read_to_string(path).unwrap_or_default())
}

/// The last 20 lines of a log's text.
pub fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
