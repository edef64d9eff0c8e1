//! Helpers shared by the transformer's integration tests (each test file is its own binary and
//! uses a different subset, hence the `dead_code` allowance).
#![allow(dead_code)]

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use barge_localenv::TestEnv;
use barge_sample_api::Post;
use transformer::Transformer;

/// A transformer for `env`'s resources.
pub async fn transformer(env: &TestEnv) -> Transformer {
    Transformer::new(env.settings.clone(), env.aws.clone())
        .await
        .expect("transformer starts")
}

/// The rows of table `posts`, by id.
pub async fn posts(env: &TestEnv) -> Vec<Post> {
    env.db()
        .await
        .query(
            "SELECT user_id, id, title, body FROM posts ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| Post {
            user_id: row.get(0),
            id: row.get(1),
            title: row.get(2),
            body: row.get(3),
        })
        .collect()
}

/// Posts as the JSON array an API would send.
pub fn json(posts: &[Post]) -> Vec<u8> {
    serde_json::to_vec(posts).unwrap()
}

/// One ledger row, as the tests look at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    pub key: String,
    pub records_read: i64,
    pub records_loaded: i64,
    pub records_rejected: i64,
    pub rows_changed: i64,
    pub rejects_url: Option<String>,
}

/// The ledger, by key.
pub async fn ledger(env: &TestEnv) -> Vec<LedgerRow> {
    env.db()
        .await
        .query(
            "SELECT key, records_read, records_loaded, records_rejected, rows_changed, rejects_url \
             FROM barge.loads ORDER BY key",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| LedgerRow {
            key: row.get(0),
            records_read: row.get(1),
            records_loaded: row.get(2),
            records_rejected: row.get(3),
            rows_changed: row.get(4),
            rejects_url: row.get(5),
        })
        .collect()
}

/// Polls `check` every 100 ms until it holds, panicking with `what` after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a session of the test database waits for a lock: the transformer's load is blocked
/// behind a lock the test holds.
pub async fn load_is_blocked(env: &TestEnv) -> bool {
    blocked_sessions(env).await > 0
}

/// How many sessions of the test database wait for a lock.
pub async fn blocked_sessions(env: &TestEnv) -> i64 {
    env.db()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
            &[&env.settings.database.dbname],
        )
        .await
        .unwrap()
        .get(0)
}

/// The `transformer run` binary, started against `env` with extra environment `extra`, logging
/// to a file.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    pub fn start(env: &TestEnv, extra: &[(&str, &str)]) -> Self {
        let log = std::env::temp_dir().join(format!(
            "barge-transformer-{}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let file = File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_transformer"))
            .arg("run")
            .envs(env.barge_env())
            .envs(extra.iter().copied())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Self { child, log }
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until its log contains `text`.
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

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Sends SIGKILL and reaps it.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits for it to exit (at most `limit`), returning whether it exited successfully.
    pub async fn wait(mut self, limit: Duration) -> (bool, String) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.success(), self.log());
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
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
