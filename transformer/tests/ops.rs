//! The operator's tools (`transformer status|replay|dlq`) against real LocalStack and PostgreSQL.

mod common;

use barge_core::BatchMessage;
use barge_core::message::archive_key;
use barge_localenv::TestEnv;
use chrono::{DateTime, NaiveDate, Utc};
use common::{json, ledger, posts, transformer};
use transformer::ops::dlq::{self, DlqCommand, PeekArgs};
use transformer::ops::replay::{self, ReplayArgs};
use transformer::ops::{Exit, OpsError, Tools, status};

/// The tools for `env`'s resources.
async fn tools(env: &TestEnv) -> Tools {
    Tools::new(env.settings.clone(), env.aws.clone())
        .await
        .expect("the tools find the queue and its dead-letter queue")
}

/// The archive key of a `source` batch fetched at `at`, as the importer names it.
fn archived(env: &TestEnv, source: &str, at: DateTime<Utc>, name: &str) -> String {
    archive_key(&env.settings.storage.prefix, source, at, name)
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn date(text: &str) -> Option<NaiveDate> {
    Some(text.parse().unwrap())
}

fn replay_args(source: &str, from: Option<NaiveDate>, to: Option<NaiveDate>) -> ReplayArgs {
    ReplayArgs {
        source: source.into(),
        from,
        to,
        dry_run: false,
        json: false,
    }
}

#[tokio::test]
async fn replay_reloads_a_date_range_without_duplicates_or_stale_overwrites() {
    let env = TestEnv::new().await;
    let transformer = transformer(&env).await;
    let tools = tools(&env).await;
    let (older_at, newer_at, later_at) = (
        at("2026-03-01T10:00:00Z"),
        at("2026-03-02T10:00:00Z"),
        at("2026-03-03T10:00:00Z"),
    );
    let mut older = barge_sample_api::posts(3);
    for post in &mut older {
        post.title = format!("old title {}", post.id);
    }
    older.push(barge_sample_api::post(4));
    let older_key = archived(&env, "posts", older_at, "older.json");
    let newer_key = archived(&env, "posts", newer_at, "newer.json");
    let later_key = archived(&env, "posts", later_at, "later.json");
    env.announce_at("posts", &older_key, &json(&older), older_at)
        .await;
    env.announce_at(
        "posts",
        &newer_key,
        &json(&barge_sample_api::posts(3)),
        newer_at,
    )
    .await;
    env.announce_at(
        "posts",
        &later_key,
        &json(&[barge_sample_api::post(5)]),
        later_at,
    )
    .await;
    assert_eq!(transformer.drain().await.unwrap().loaded.len(), 3);
    // An archived batch whose message never arrived: not in the ledger.
    let unannounced = archived(&env, "posts", older_at, "unannounced.json");
    env.aws
        .s3
        .put_object()
        .bucket(&env.settings.storage.bucket)
        .key(&unannounced)
        .body(json(&[barge_sample_api::post(6)]).into())
        .send()
        .await
        .unwrap();
    // Rows lost downstream: post 4 (older batch) and post 2 (older and newer batch).
    env.db()
        .await
        .execute("DELETE FROM posts WHERE id IN (2, 4)", &[])
        .await
        .unwrap();

    // A dry run lists the range's batches and sends nothing.
    let mut args = replay_args("posts", date("2026-03-01"), date("2026-03-02"));
    args.dry_run = true;
    let planned = replay::replay(&tools, &args).await.unwrap();
    let keys: Vec<&str> = planned.batches.iter().map(|b| b.key.as_str()).collect();
    assert_eq!(keys, [older_key.as_str(), newer_key.as_str()]);
    assert_eq!(planned.not_loaded, [unannounced]);
    assert_eq!(planned.replay_id, None);
    assert_eq!(planned.batches[0].fetched_at, older_at);
    assert_eq!(planned.batches[0].record_count, 4);
    assert_eq!(env.queued_messages().await, 0, "a dry run sends nothing");

    // The older day alone: posts 2 and 4 come back as the older batch has them (the table no
    // longer knows that a newer batch wrote post 2); posts 1 and 3 keep the newer titles.
    let args = replay_args("posts", date("2026-03-01"), date("2026-03-01"));
    let replayed = replay::replay(&tools, &args).await.unwrap();
    assert_eq!(replay::exit(&replayed), Exit::Ok);
    let replay_id = replayed.replay_id.clone().expect("a replay has an id");
    assert_eq!(replayed.batches.len(), 1);
    assert_eq!(replayed.batches[0].key, older_key);
    // SQS delivers the replay's message a second time.
    let redelivered = BatchMessage {
        version: barge_core::message::MESSAGE_VERSION,
        source: "posts".into(),
        bucket: env.settings.storage.bucket.clone(),
        key: older_key.clone(),
        record_count: 4,
        sha256: replayed.batches[0].sha256.clone(),
        fetched_at: older_at,
        replay: Some(replay_id.clone()),
    };
    env.send(&redelivered.to_json()).await;
    let report = transformer.drain().await.unwrap();
    assert_eq!(report.loaded.len(), 1, "loaded once: {report:?}");
    assert_eq!(report.duplicates, [older_key.as_str()], "{report:?}");
    assert_eq!(
        report.loaded[0].rows_changed, 2,
        "only posts 2 and 4 are written: {report:?}"
    );
    let mut expected = barge_sample_api::posts(5);
    expected[1] = older[1].clone();
    assert_eq!(posts(&env).await, expected, "no stale title, no duplicate");
    let replays: Vec<(String, String)> = env
        .db()
        .await
        .query(
            "SELECT key, replay_id FROM barge.loads WHERE replay_id <> '' ORDER BY key",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(replays, [(older_key.clone(), replay_id)]);
    assert_eq!(ledger(&env).await.len(), 4, "three loads and one replay");

    // The newer days: post 2 gets the newer batch's values again (newer wins, whatever the
    // order); a whole-archive replay then changes nothing.
    let args = replay_args("posts", date("2026-03-02"), None);
    assert_eq!(
        replay::replay(&tools, &args).await.unwrap().batches.len(),
        2
    );
    transformer.drain().await.unwrap();
    let expected = barge_sample_api::posts(5);
    assert_eq!(posts(&env).await, expected);
    let everything = replay::replay(&tools, &replay_args("posts", None, None))
        .await
        .unwrap();
    assert_eq!(everything.batches.len(), 3);
    let report = transformer.drain().await.unwrap();
    assert_eq!(report.loaded.len(), 3, "{report:?}");
    assert!(
        report.loaded.iter().all(|l| l.rows_changed == 0),
        "{report:?}"
    );
    assert_eq!(posts(&env).await, expected);
}

#[tokio::test]
async fn replay_refuses_what_it_cannot_replay_soundly() {
    let mut env = TestEnv::new().await;
    let mut events = env.settings.sources[0].clone();
    (events.name, events.table) = ("events".into(), "events".into());
    events.primary_key.clear();
    env.settings.sources.push(events);
    let transformer = transformer(&env).await;
    let tools = tools(&env).await;

    let refused = replay::replay(&tools, &replay_args("events", None, None))
        .await
        .unwrap_err();
    assert!(matches!(refused, OpsError::AppendOnly(_)), "{refused}");
    assert_eq!(refused.exit(), Exit::Usage);
    assert!(refused.to_string().contains("append-only"), "{refused}");
    let unknown = replay::replay(&tools, &replay_args("comments", None, None))
        .await
        .unwrap_err();
    assert_eq!(unknown.exit(), Exit::Usage);
    assert_eq!(
        unknown.to_string(),
        "source \"comments\" is not declared (declared: posts, events)"
    );
    let backwards = replay_args("posts", date("2026-03-02"), date("2026-03-01"));
    let backwards = replay::replay(&tools, &backwards).await.unwrap_err();
    assert_eq!(backwards.exit(), Exit::Usage);

    // A replay message for an append-only source from anywhere else loads nothing twice.
    let key = archived(&env, "events", Utc::now(), "e.json");
    let mut message = env
        .announce("events", &key, &json(&barge_sample_api::posts(2)))
        .await;
    transformer.drain().await.unwrap();
    message.replay = Some("hand-made".into());
    env.send(&message.to_json()).await;
    let report = transformer.drain().await.unwrap();
    assert!(report.loaded.is_empty(), "{report:?}");
    assert_eq!(report.duplicates, [key]);
    let rows: i64 = env
        .db()
        .await
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 2);
}

#[tokio::test]
async fn dead_letters_are_peeked_without_being_consumed_and_redriven_once_fixed() {
    let mut env = TestEnv::new().await;
    // Batches of a source this transformer does not declare yet: dead-lettered.
    let keys: Vec<String> = (1..=3)
        .map(|n| archived(&env, "comments", Utc::now(), &format!("c{n}.json")))
        .collect();
    for (n, key) in keys.iter().enumerate() {
        let post = barge_sample_api::post(i64::try_from(n).unwrap() + 1);
        env.announce("comments", key, &json(&[post])).await;
    }
    let report = transformer(&env).await.drain().await.unwrap();
    assert_eq!(report.dead_lettered.len(), 3, "{report:?}");
    let tools_before = tools(&env).await;

    for _ in 0..2 {
        let peeked = dlq::peek(&tools_before, 10).await.unwrap();
        assert_eq!(peeked.len(), 3, "{peeked:?}");
        let mut announced: Vec<&str> = peeked.iter().map(|m| m.announces.as_str()).collect();
        announced.sort_unstable();
        let expected: Vec<String> = keys
            .iter()
            .map(|k| format!("batch of comments: {k}"))
            .collect();
        assert_eq!(announced, expected);
        for message in &peeked {
            assert_eq!(message.error_class.as_deref(), Some("unknown-source"));
            let error = message.error.as_deref().unwrap_or_default();
            assert!(error.contains("comments"), "{error}");
            assert!(message.original_message_id.is_some());
        }
        let table = dlq::render_peek(&peeked);
        assert!(table.contains("unknown-source"), "{table}");
        let depth = status::collect(&tools_before, 1).await.unwrap();
        assert_eq!(
            depth.dead_letter_queue.visible, 3,
            "peeked messages are visible again at once: {depth:?}"
        );
    }
    assert_eq!(dlq::peek(&tools_before, 2).await.unwrap().len(), 2);

    // The fix: the source is declared. Two messages move, then the rest.
    let mut comments = env.settings.sources[0].clone();
    (comments.name, comments.table) = ("comments".into(), "comments".into());
    env.settings.sources.push(comments);
    let transformer = transformer(&env).await;
    let tools = tools(&env).await;
    let first = dlq::redrive(&tools, Some(2)).await.unwrap();
    assert_eq!(first.moved.len(), 2, "{first:?}");
    assert!(first.not_moved.is_empty() && first.not_deleted.is_empty());
    assert_eq!(env.dead_lettered_messages().await, 1);
    assert_eq!(env.queued_messages().await, 2);
    let rest = dlq::redrive(&tools, None).await.unwrap();
    assert_eq!(rest.moved.len(), 1, "{rest:?}");
    assert!(dlq::render_redrive(&rest).starts_with("1 messages moved"));
    assert_eq!(env.dead_lettered_messages().await, 0);
    assert_eq!(
        dlq::run(
            &tools,
            &DlqCommand::Peek(PeekArgs {
                limit: 10,
                json: true
            })
        )
        .await
        .unwrap(),
        Exit::Ok
    );

    let report = transformer.drain().await.unwrap();
    assert_eq!(report.loaded.len(), 3, "{report:?}");
    assert!(report.dead_lettered.is_empty(), "{report:?}");
    let rows: i64 = env
        .db()
        .await
        .query_one("SELECT count(*) FROM comments", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 3);
    assert_eq!(ledger(&env).await.len(), 3);
}

#[tokio::test]
async fn status_json_agrees_with_the_ledger_and_the_queues() {
    let env = TestEnv::new().await;
    let transformer = transformer(&env).await;
    let clean = archived(&env, "posts", at("2026-03-01T10:00:00Z"), "clean.json");
    env.announce_at(
        "posts",
        &clean,
        &json(&barge_sample_api::posts(3)),
        at("2026-03-01T10:00:00Z"),
    )
    .await;
    transformer.drain().await.unwrap();
    let rejecting = archived(&env, "posts", at("2026-03-02T10:00:00Z"), "rejecting.json");
    let mut records = serde_json::to_value(barge_sample_api::posts(3)).unwrap();
    records[1]["id"] = serde_json::json!("not a number");
    env.announce_at(
        "posts",
        &rejecting,
        records.to_string().as_bytes(),
        at("2026-03-02T10:00:00Z"),
    )
    .await;
    transformer.drain().await.unwrap();
    // One message dead-lettered, one waiting.
    env.announce("comments", "raw/comments/2026/03/03/x.json", b"[]")
        .await;
    transformer.drain().await.unwrap();
    env.announce("posts", "raw/posts/2026/03/04/waiting.json", b"[]")
        .await;

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_transformer"))
        .args(["status", "--json"])
        .envs(env.barge_env())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(3),
        "a non-empty dead-letter queue: {stderr}"
    );
    let status: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("status --json is JSON: {err}: {stderr}"));

    assert_eq!(status["queue"]["url"], env.queue_url.as_str());
    assert_eq!(status["queue"]["visible"], 1);
    assert_eq!(status["queue"]["in_flight"], 0);
    assert_eq!(
        status["dead_letter_queue"]["url"],
        env.dead_letter_url.as_str()
    );
    assert_eq!(status["dead_letter_queue"]["visible"], 1);
    let sources = status["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0]["source"], "posts");
    let loads = sources[0]["loads"].as_array().unwrap();
    let ledger = ledger(&env).await;
    assert_eq!(loads.len(), ledger.len());
    // Newest first: the rejecting batch, then the clean one.
    for (load, key) in loads.iter().zip([&rejecting, &clean]) {
        let entry = ledger.iter().find(|e| &e.key == key).unwrap();
        assert_eq!(load["key"], key.as_str());
        assert_eq!(load["records_read"], entry.records_read);
        assert_eq!(load["records_loaded"], entry.records_loaded);
        assert_eq!(load["records_rejected"], entry.records_rejected);
        assert_eq!(load["rows_changed"], entry.rows_changed);
        assert_eq!(load["rejects_url"].as_str(), entry.rejects_url.as_deref());
        assert!(load["replay_id"].is_null());
        assert!(load["duration_seconds"].as_f64().unwrap() >= 0.0);
        assert!(load["lag_seconds"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(loads[0]["records_rejected"], 1);
    let rejects_url = loads[0]["rejects_url"].as_str().unwrap();
    assert!(
        rejects_url.starts_with(&format!("s3://{}/errors/", env.settings.storage.bucket)),
        "{rejects_url}"
    );

    let table = std::process::Command::new(env!("CARGO_BIN_EXE_transformer"))
        .arg("status")
        .envs(env.barge_env())
        .output()
        .unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    for text in [
        clean.as_str(),
        rejecting.as_str(),
        rejects_url,
        "| dead letters | 1",
        "oldest message age: not reported",
    ] {
        assert!(table.contains(text), "{text:?} missing from\n{table}");
    }
}

#[tokio::test]
async fn a_ledger_of_an_earlier_version_is_migrated_in_place() {
    let env = TestEnv::new().await;
    let db = env.db().await;
    db.batch_execute(
        "CREATE SCHEMA barge;
         CREATE TABLE barge.loads (
             bucket text NOT NULL, key text NOT NULL, sha256 text NOT NULL, source text NOT NULL,
             fetched_at timestamptz NOT NULL, records_read bigint NOT NULL,
             records_loaded bigint NOT NULL, records_rejected bigint NOT NULL,
             rows_changed bigint NOT NULL, rejects_url text, message_id text NOT NULL,
             transformer_version text NOT NULL, received_at timestamptz NOT NULL,
             started_at timestamptz NOT NULL DEFAULT now(),
             committed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
             PRIMARY KEY (bucket, key, sha256));
         INSERT INTO barge.loads VALUES ('b', 'k', 's', 'posts', now(), 1, 1, 0, 1, NULL, 'm',
             '0.1.0', now());",
    )
    .await
    .unwrap();
    transformer(&env).await;
    transformer(&env).await;
    let key: Vec<String> = db
        .query(
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
             WHERE i.indrelid = 'barge.loads'::regclass AND i.indisprimary ORDER BY a.attnum",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(key, ["bucket", "key", "sha256", "replay_id"]);
    let replay_id: String = db
        .query_one("SELECT replay_id FROM barge.loads WHERE key = 'k'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(replay_id, "", "an earlier load is the object's own");
}
