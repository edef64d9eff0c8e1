//! Helpers shared by the transformer's integration tests (each test file is its own binary and
//! uses a different subset, hence the `dead_code` allowance).
#![allow(dead_code)]

use barge_localenv::{Daemon, TestEnv};
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

/// Holds an exclusive lock on `posts` until the returned client commits or is dropped, so that
/// a load blocks at its merge.
pub async fn lock_posts(env: &TestEnv) -> tokio_postgres::Client {
    let client = env.db().await;
    client
        .batch_execute("BEGIN; LOCK TABLE posts IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    client
}

/// Locks `posts` ([`lock_posts`]), announces `count` posts under `key`, and waits until the
/// transformer's load of them blocks on the lock; returns the lock's client.
pub async fn block_a_load(env: &TestEnv, key: &str, count: i64) -> tokio_postgres::Client {
    let lock = lock_posts(env).await;
    env.announce("posts", key, &json(&barge_sample_api::posts(count)))
        .await;
    barge_localenv::eventually(
        std::time::Duration::from_secs(30),
        "the load blocks on the lock",
        || load_is_blocked(env),
    )
    .await;
    lock
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

/// The `transformer run` binary, started against `env` with extra environment `extra`.
pub fn daemon(env: &TestEnv, extra: &[(&str, &str)]) -> Daemon {
    Daemon::start(env!("CARGO_BIN_EXE_transformer"), &["run"], env, extra)
}
