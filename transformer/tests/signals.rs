//! `transformer run`'s operations endpoint and JSON logs against the real services: after a
//! load, `/metrics` (read by a Prometheus text-format parser) reports its exact counts, the
//! daemon is ready, and each JSON log line carries the message's span; a restarted daemon
//! reports the ledger's last load; before PostgreSQL answers, it is live but not ready; when its
//! receives keep failing, it turns not ready.

mod common;

use std::time::Duration;

use barge_localenv::{Metrics, TestEnv, eventually, get};

const LIMIT: Duration = Duration::from_secs(60);

/// Four valid posts and one whose `userId` is a string.
const BATCH: &str = r#"[
  {"id": 1, "userId": 1, "title": "a", "body": "b"},
  {"id": 2, "userId": "one", "title": "a", "body": "b"},
  {"id": 3, "userId": 1, "title": "a", "body": "b"},
  {"id": 4, "userId": 2, "title": "a", "body": "b"},
  {"id": 5, "userId": 2, "title": "a", "body": "b"}
]"#;

#[tokio::test]
async fn metrics_count_a_load_exactly_and_json_logs_carry_the_message_span() {
    let env = TestEnv::new().await;
    let key = "raw/posts/2026/11/24/signals.json";
    let message = env.announce("posts", key, BATCH.as_bytes()).await;
    // The same object announced twice: loaded once, then a duplicate.
    env.send(&message.to_json()).await;
    let daemon = common::daemon(
        &env,
        &[
            ("BARGE__LOG__FORMAT", "json"),
            ("BARGE__METRICS__QUEUE_POLL_INTERVAL", "1s"),
            // One at a time: the duplicate is found in the ledger, not downloaded again.
            ("BARGE__TRANSFORMER__CONCURRENCY", "1"),
        ],
    );
    let address = daemon.ops_address(LIMIT).await;
    assert_eq!(get(address, "/health/live").await.0, 200);
    eventually(LIMIT, "ready", || async {
        get(address, "/health/ready").await.0 == 200
    })
    .await;
    let source = [("source", "posts")];
    let objects = |metrics: &Metrics, outcome| {
        metrics
            .value(
                "barge_objects_total",
                &[("source", "posts"), ("outcome", outcome)],
            )
            .unwrap_or_default()
    };
    eventually(LIMIT, "both messages settled", || async {
        let metrics = Metrics::scrape(address).await;
        objects(&metrics, "loaded") + objects(&metrics, "duplicate") == 2.0
            && metrics.value("barge_messages_in_flight", &[]) == Some(0.0)
            && metrics
                .value(
                    "barge_queue_messages",
                    &[("queue", "dead_letter"), ("state", "visible")],
                )
                .is_some()
    })
    .await;

    let metrics = Metrics::scrape(address).await;
    let value = |name: &str, labels: &[(&str, &str)]| {
        metrics
            .value(name, labels)
            .unwrap_or_else(|| panic!("{name} {labels:?} missing; log:\n{}", daemon.log()))
    };
    assert_eq!(value("barge_records_loaded_total", &source), 4.0);
    assert_eq!(value("barge_records_rejected_total", &source), 1.0);
    assert_eq!(objects(&metrics, "loaded"), 1.0);
    assert_eq!(objects(&metrics, "duplicate"), 1.0);
    assert_eq!(value("barge_load_duration_seconds_count", &source), 1.0);
    assert_eq!(value("barge_load_rows_count", &source), 1.0);
    assert_eq!(value("barge_load_rows_sum", &source), 4.0);
    assert_eq!(
        value("barge_transformer_read_bytes_total", &source),
        BATCH.len() as f64
    );
    assert!(value("barge_last_load_timestamp_seconds", &source) > 1.7e9);
    assert!(value("barge_sqs_receives_total", &[]) >= 1.0);
    assert_eq!(value("barge_queue_wait_seconds_count", &[]), 2.0);
    assert_eq!(
        value(
            "barge_queue_messages",
            &[("queue", "dead_letter"), ("state", "visible")]
        ),
        0.0
    );
    assert_eq!(
        metrics.value("barge_messages_dead_lettered_total", &[]),
        None
    );
    assert_eq!(common::posts(&env).await.len(), 4);

    daemon.terminate();
    let (code, log) = daemon.wait(LIMIT).await;
    assert_eq!(code, Some(0), "{log}");
    let committed: serde_json::Value = log
        .lines()
        .filter(|line| line.contains("batch committed"))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{line}: {err}")))
        .next()
        .unwrap_or_else(|| panic!("no commit logged:\n{log}"));
    assert_eq!(committed["level"], "INFO", "{committed}");
    assert_eq!(committed["records"], 5, "{committed}");
    let span = committed["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|span| span["name"] == "message"))
        .unwrap_or_else(|| panic!("no message span: {committed}"));
    assert_eq!(span["source"], "posts", "{committed}");
    assert_eq!(span["key"], key, "{committed}");
    assert!(
        span["message_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{committed}"
    );

    // A restart reports the last load from the ledger, before it loads anything.
    let committed_at: f64 = env
        .db()
        .await
        .query_one(
            "SELECT extract(epoch FROM max(committed_at))::float8 FROM barge.loads \
             WHERE source = 'posts'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let restarted = common::daemon(&env, &[]);
    let address = restarted.ops_address(LIMIT).await;
    eventually(LIMIT, "ready after the restart", || async {
        get(address, "/health/ready").await.0 == 200
    })
    .await;
    let last_load = Metrics::scrape(address)
        .await
        .value("barge_last_load_timestamp_seconds", &source)
        .unwrap_or_else(|| panic!("no last load after the restart:\n{}", restarted.log()));
    assert!(
        (last_load - committed_at).abs() < 1e-3,
        "{last_load} vs the ledger's {committed_at}"
    );
}

#[tokio::test]
async fn not_ready_while_receives_keep_failing() {
    let env = TestEnv::new().await;
    // Receives wait 1 s, so a working loop progresses well within 3 s.
    let daemon = common::daemon(
        &env,
        &[
            ("BARGE__QUEUE__WAIT_SECONDS", "1"),
            ("BARGE__METRICS__TRANSFORMER_PROGRESS_WINDOW", "3s"),
        ],
    );
    let address = daemon.ops_address(LIMIT).await;
    eventually(LIMIT, "ready", || async {
        get(address, "/health/ready").await.0 == 200
    })
    .await;

    // Every receive fails from now on: the loop retries and makes no progress.
    env.aws
        .sqs
        .delete_queue()
        .queue_url(&env.queue_url)
        .send()
        .await
        .unwrap();
    eventually(LIMIT, "not ready: no progress", || async {
        let (status, body) = get(address, "/health/ready").await;
        status == 503 && body.starts_with("degraded: no progress for")
    })
    .await;
    assert_eq!(get(address, "/health/live").await.0, 200);
    assert!(daemon.log().contains("receive failed"), "{}", daemon.log());
}

#[tokio::test]
async fn live_but_not_ready_while_postgresql_does_not_answer() {
    let env = TestEnv::new().await;
    // Accepts connections (the kernel completes them) and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let daemon = common::daemon(
        &env,
        &[
            ("BARGE__DATABASE__PORT", &port),
            ("BARGE__DATABASE__CONNECT_TIMEOUT", "1h"),
        ],
    );
    let address = daemon.ops_address(LIMIT).await;

    assert_eq!(get(address, "/health/live").await, (200, "live\n".into()));
    let (status, body) = get(address, "/health/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("starting"), "{body}");
    let metrics = Metrics::scrape(address).await;
    assert_eq!(metrics.value("barge_sqs_receives_total", &[]), Some(0.0));
    drop(silent);
}
