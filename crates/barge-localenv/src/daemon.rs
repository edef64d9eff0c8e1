//! A daemon binary run as a child process by a test, logging to a file the test can read.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TestEnv;

/// A running `importer` or `transformer` process. Dropping it kills it and removes its log.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `program` with `args`, pointed at `env`'s resources, with extra environment
    /// `extra` and `RUST_LOG=info`.
    pub fn start(
        program: impl AsRef<Path>,
        args: &[&str],
        env: &TestEnv,
        extra: &[(&str, &str)],
    ) -> Self {
        let log = std::env::temp_dir().join(format!(
            "barge-daemon-{}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let file = File::create(&log).expect("create the daemon's log");
        let child = Command::new(program.as_ref())
            .args(args)
            .envs(env.barge_env())
            .envs(extra.iter().copied())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            // Both streams in one log: `importer once` reports on stdout, logs go to stderr.
            .stdout(file.try_clone().expect("share the daemon's log"))
            .stderr(file)
            .spawn()
            .expect("start the daemon");
        Self { child, log }
    }

    /// Its process id, for reading its CPU time and memory from `/proc`.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until its log contains `text`, panicking with the log after `limit`.
    pub async fn wait_for_log(&self, text: &str, limit: Duration) {
        let started = Instant::now();
        while !self.log().contains(text) {
            assert!(
                started.elapsed() < limit,
                "the daemon did not log {text:?} within {limit:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The address its metrics and health endpoint listens on, read from its log (tests bind
    /// port 0, see [`TestEnv::barge_env`]); waits for it at most `limit`. Text and JSON logs.
    pub async fn ops_address(&self, limit: Duration) -> SocketAddr {
        const SERVING: &str = "serving /metrics";
        self.wait_for_log(SERVING, limit).await;
        let log = self.log();
        let line = log
            .lines()
            .find(|line| line.contains(SERVING))
            .expect("the line waited for");
        let address = ["address=", "\"address\":\""]
            .iter()
            .find_map(|field| line.split_once(field))
            .map(|(_, rest)| rest)
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        let end = address
            .find(|c: char| c.is_whitespace() || c == '"')
            .unwrap_or(address.len());
        address[..end]
            .parse()
            .unwrap_or_else(|err| panic!("{line:?}: {err}"))
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Sends SIGKILL and reaps it.
    pub fn kill(mut self) {
        self.child.kill().expect("kill the daemon");
        self.child.wait().expect("reap the daemon");
    }

    /// Waits for it to exit, returning its exit code (`None` if a signal ended it) and log;
    /// panics with the log if it is still running after `limit`.
    pub async fn wait(mut self, limit: Duration) -> (Option<i32>, String) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the daemon") {
                return (status.code(), self.log());
            }
            if started.elapsed() > limit {
                panic!(
                    "the daemon did not exit within {limit:?}; log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A stand-in for systemd's notification socket: a Unix datagram socket a daemon started with
/// `NOTIFY_SOCKET` pointing at it sends `READY=1`, `WATCHDOG=1`, … to.
pub struct NotifySocket {
    socket: std::os::unix::net::UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    /// Binds a fresh socket under the temp dir.
    pub fn bind() -> Self {
        let path = std::env::temp_dir().join(format!(
            "barge-notify-{}.sock",
            uuid::Uuid::new_v4().simple()
        ));
        let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("bind a datagram socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set a read timeout");
        Self { socket, path }
    }

    /// Its path, for `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every notification line received until `until` holds for the lines so far, or `limit`
    /// passes.
    pub fn collect_until(&self, limit: Duration, until: impl Fn(&[String]) -> bool) -> Vec<String> {
        let started = Instant::now();
        let mut lines = Vec::new();
        let mut buffer = [0_u8; 4096];
        while !until(&lines) && started.elapsed() < limit {
            if let Ok(length) = self.socket.recv(&mut buffer) {
                let text = String::from_utf8_lossy(&buffer[..length]);
                lines.extend(text.lines().map(str::to_owned));
            }
        }
        lines
    }
}

impl NotifySocket {
    /// Waits (at most `limit`) for `READY=1` and then three `WATCHDOG=1`, panicking with what
    /// arrived and `log` if they do not.
    pub fn expect_ready_and_alive(&self, limit: Duration, log: impl Fn() -> String) {
        let watchdogs = |lines: &[String]| lines.iter().filter(|l| *l == "WATCHDOG=1").count();
        let ready = |lines: &[String]| lines.iter().any(|l| l == "READY=1");
        let lines = self.collect_until(limit, |lines| ready(lines) && watchdogs(lines) >= 3);
        assert!(
            ready(&lines) && watchdogs(&lines) >= 3,
            "expected READY=1 and 3 WATCHDOG=1, got {lines:?}; log:\n{}",
            log()
        );
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
