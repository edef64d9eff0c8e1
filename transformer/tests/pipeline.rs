//! The transformer, and the whole pipeline, against real LocalStack and PostgreSQL.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use barge_core::{Column, ColumnType, Source};
use barge_localenv::{TestEnv, spawn_sample_api};
use barge_sample_api::Post;
use chrono::{DateTime, NaiveDate, Utc};
use importer::Importer;
use transformer::{ProcessError, Transformer};

async fn rows(env: &TestEnv) -> Vec<Post> {
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

fn json(posts: &[Post]) -> Vec<u8> {
    serde_json::to_vec(posts).unwrap()
}

async fn transformer(env: &TestEnv) -> Transformer {
    Transformer::new(env.settings.clone(), env.aws.clone())
        .await
        .unwrap()
}

/// A test environment whose `posts` source is the sample API serving `count` posts, with an
/// importer and a transformer for it.
async fn pipeline(count: i64) -> (TestEnv, Importer, Transformer) {
    let url = spawn_sample_api(count).await;
    let env = TestEnv::new().await.with_posts_url(&url);
    let importer = Importer::new(env.settings.clone(), env.aws.clone())
        .await
        .unwrap();
    let transformer = transformer(&env).await;
    (env, importer, transformer)
}

#[tokio::test]
async fn end_to_end_the_table_holds_exactly_the_served_posts() {
    let (env, importer, mut transformer) = pipeline(57).await;

    let announced = importer.import(&env.settings.sources[0]).await.unwrap();
    let report = transformer.drain().await.unwrap();

    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.loaded.len(), 1);
    assert_eq!(report.loaded[0].key, announced.key);
    assert_eq!(
        (report.loaded[0].records, report.loaded[0].changed),
        (57, 57)
    );
    assert_eq!(
        rows(&env).await,
        barge_sample_api::posts(57),
        "field for field"
    );
    assert_eq!(
        env.queued_messages().await,
        0,
        "the message is deleted after the commit"
    );
}

#[tokio::test]
async fn importing_twice_and_redelivering_leave_exactly_n_rows() {
    let (env, importer, mut transformer) = pipeline(20).await;

    let first = importer.import(&env.settings.sources[0]).await.unwrap();
    let second = importer.import(&env.settings.sources[0]).await.unwrap();
    assert_ne!(
        first.key, second.key,
        "each import is its own archived object"
    );
    let report = transformer.drain().await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let changed: Vec<u64> = report.loaded.iter().map(|l| l.changed).collect();
    assert_eq!(
        changed,
        [20, 0],
        "the second identical batch changes nothing"
    );
    assert_eq!(rows(&env).await, barge_sample_api::posts(20));

    // The same message delivered again (SQS is at-least-once).
    env.send(&first.to_json()).await;
    let report = transformer.drain().await.unwrap();
    assert_eq!(report.loaded.len(), 1);
    assert_eq!(report.loaded[0].changed, 0);
    assert_eq!(rows(&env).await, barge_sample_api::posts(20));
}

#[tokio::test]
async fn a_later_batch_updates_rows_and_the_last_duplicate_in_a_batch_wins() {
    let env = TestEnv::new().await;
    let mut transformer = transformer(&env).await;
    let original = barge_sample_api::posts(3);
    env.announce("posts", "raw/posts/a.json", &json(&original), 3)
        .await;
    transformer.drain().await.unwrap();

    let mut edited = original[1].clone();
    edited.title = "edited once".into();
    let mut edited_again = edited.clone();
    edited_again.title = "edited twice".into();
    let batch = [edited, barge_sample_api::post(4), edited_again.clone()];
    env.announce("posts", "raw/posts/b.json", &json(&batch), 3)
        .await;
    let report = transformer.drain().await.unwrap();

    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(
        report.loaded[0].changed, 2,
        "post 2 updated, post 4 inserted"
    );
    let expected = vec![
        original[0].clone(),
        edited_again,
        original[2].clone(),
        barge_sample_api::post(4),
    ];
    assert_eq!(rows(&env).await, expected);
}

#[tokio::test]
async fn bad_batches_are_named_left_on_the_queue_and_do_not_stop_the_others() {
    let env = TestEnv::new().await;
    let mut transformer = transformer(&env).await;
    let posts = barge_sample_api::posts(10);
    let bad_record = br#"[{"id": 100, "userId": 1, "title": "t", "body": "b"}, {"id": 101, "userId": "one", "title": "t", "body": "b"}]"#;

    env.announce("posts", "raw/posts/good-1.json", &json(&posts[..5]), 5)
        .await;
    env.announce("posts", "raw/posts/not json.json", b"this is not json", 0)
        .await;
    env.announce("posts", "raw/posts/object.json", br#"{"posts": []}"#, 0)
        .await;
    env.announce("posts", "raw/posts/bad-record.json", bad_record, 2)
        .await;
    env.announce("comments", "raw/comments/x.json", b"[]", 0)
        .await;
    let tampered = env
        .announce("posts", "raw/posts/tampered.json", b"[]", 0)
        .await;
    env.aws
        .s3
        .put_object()
        .bucket(&tampered.bucket)
        .key(&tampered.key)
        .body(b"[ ]".to_vec().into())
        .send()
        .await
        .unwrap();
    env.send(r#"{"Service":"Amazon S3","Event":"s3:TestEvent"}"#)
        .await;
    env.announce("posts", "raw/posts/good-2.json", &json(&posts[5..]), 5)
        .await;

    let report = transformer.drain().await.unwrap();

    let mut loaded: Vec<&str> = report.loaded.iter().map(|l| l.key.as_str()).collect();
    loaded.sort();
    assert_eq!(loaded, ["raw/posts/good-1.json", "raw/posts/good-2.json"]);
    assert_eq!(rows(&env).await, posts, "nothing of a bad batch is loaded");
    let mut errors: Vec<String> = report.failed.iter().map(|f| f.error.to_string()).collect();
    errors.sort();
    assert_eq!(errors.len(), 6, "{errors:#?}");
    assert!(errors.iter().all(|e| !e.is_empty()));
    let expected_prefixes = [
        "message body is unusable: not a barge batch message".to_owned(),
        "raw/comments/x.json: source \"comments\" is not declared in the settings".to_owned(),
        "raw/posts/bad-record.json: record 1, field \"userId\" (column \"user_id\"): expected an integer, found a string \"one\"".to_owned(),
        "raw/posts/not json.json: not valid JSON: expected ident at line 1 column 2".to_owned(),
        "raw/posts/object.json: expected a JSON array of records, found an object".to_owned(),
        "raw/posts/tampered.json: SHA-256 is ".to_owned(),
    ];
    for (error, prefix) in errors.iter().zip(&expected_prefixes) {
        assert!(
            error.starts_with(prefix.as_str()),
            "{error:?} should start with {prefix:?}"
        );
    }
    assert!(report.failed.iter().all(|f| !f.error.is_retryable()));
    assert!(report.failed.iter().all(|f| !f.message_id.is_empty()));
    // Failed messages stay on the queue (in flight until their visibility timeout, then
    // redelivered, then dead-lettered); loaded ones are gone.
    assert_eq!(env.queued_messages().await, 6);
}

#[tokio::test]
async fn every_column_type_round_trips_through_postgres() {
    let mut env = TestEnv::new().await;
    let columns: Vec<Column> = [
        ("id", ColumnType::Bigint, None, false),
        ("small", ColumnType::Smallint, None, false),
        ("medium", ColumnType::Integer, None, false),
        ("ratio", ColumnType::DoublePrecision, None, false),
        ("score", ColumnType::Real, None, false),
        ("label", ColumnType::Text, None, false),
        ("active", ColumnType::Boolean, None, false),
        ("payload", ColumnType::Jsonb, None, false),
        ("seen_at", ColumnType::Timestamptz, None, false),
        ("day", ColumnType::Date, None, false),
        ("city", ColumnType::Text, Some("/address/city"), true),
    ]
    .into_iter()
    .map(|(name, column_type, field, nullable)| Column {
        name: name.into(),
        column_type,
        field: field.map(Into::into),
        nullable,
    })
    .collect();
    env.settings.sources = vec![Source {
        name: "events".into(),
        url: "http://127.0.0.1:1/unused".into(),
        interval: Duration::from_secs(60),
        table: "events".into(),
        primary_key: vec!["id".into()],
        columns,
    }];
    let mut transformer = transformer(&env).await;
    let batch = r#"[
        {"id": 9007199254740993, "small": -32768, "medium": 2147483647, "ratio": 0.1,
         "score": 1.5, "label": "naïve \"text\"\n", "active": false,
         "payload": {"nested": [1, null, "x"]}, "seen_at": "2026-11-24T01:02:03.456+02:00",
         "day": "2026-02-28", "address": {"city": "Gwenborough"}},
        {"id": 2, "small": 0, "medium": 0, "ratio": -1e300, "score": 0, "label": "",
         "active": true, "payload": "just a string", "seen_at": "1970-01-01T00:00:00Z", "day": "1999-12-31"}
    ]"#;
    env.announce("events", "raw/events/types.json", batch.as_bytes(), 2)
        .await;

    let report = transformer.drain().await.unwrap();

    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let rows = env
        .db()
        .await
        .query(
            "SELECT id, small, medium, ratio, score, label, active, payload, seen_at, day, city \
             FROM events ORDER BY id DESC",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let first = &rows[0];
    assert_eq!(first.get::<_, i64>(0), 9007199254740993);
    assert_eq!(first.get::<_, i16>(1), -32768);
    assert_eq!(first.get::<_, i32>(2), 2147483647);
    assert_eq!(first.get::<_, f64>(3), 0.1);
    assert_eq!(first.get::<_, f32>(4), 1.5);
    assert_eq!(first.get::<_, String>(5), "naïve \"text\"\n");
    assert!(!first.get::<_, bool>(6));
    assert_eq!(
        first.get::<_, serde_json::Value>(7),
        serde_json::json!({"nested": [1, null, "x"]})
    );
    assert_eq!(
        first.get::<_, DateTime<Utc>>(8),
        "2026-11-23T23:02:03.456Z".parse::<DateTime<Utc>>().unwrap()
    );
    assert_eq!(
        first.get::<_, NaiveDate>(9),
        NaiveDate::from_ymd_opt(2026, 2, 28).unwrap()
    );
    assert_eq!(
        first.get::<_, Option<String>>(10).as_deref(),
        Some("Gwenborough")
    );
    let second = &rows[1];
    assert_eq!(second.get::<_, f64>(3), -1e300);
    assert_eq!(
        second.get::<_, serde_json::Value>(7),
        serde_json::json!("just a string")
    );
    assert_eq!(
        second.get::<_, Option<String>>(10),
        None,
        "a missing nullable field is NULL"
    );
}

#[tokio::test]
async fn a_database_refusal_rolls_back_the_batch_and_keeps_the_message() {
    let env = TestEnv::new().await;
    let mut transformer = transformer(&env).await;
    env.db()
        .await
        .batch_execute("ALTER TABLE posts ADD CONSTRAINT short_titles CHECK (length(title) < 5)")
        .await
        .unwrap();
    env.announce(
        "posts",
        "raw/posts/long.json",
        &json(&barge_sample_api::posts(2)),
        2,
    )
    .await;

    let report = transformer.drain().await.unwrap();

    assert!(report.loaded.is_empty());
    let error = &report.failed[0].error;
    assert!(matches!(error, ProcessError::Database { .. }), "{error}");
    assert!(
        !error.is_retryable(),
        "a check violation will not pass on redelivery"
    );
    let text = error.to_string();
    assert!(
        text.starts_with("raw/posts/long.json: loading into table \"posts\" failed: "),
        "{text}"
    );
    assert!(
        text.contains("short_titles"),
        "PostgreSQL's own message is kept: {text}"
    );
    assert!(
        rows(&env).await.is_empty(),
        "the transaction was rolled back"
    );
    assert_eq!(env.queued_messages().await, 1);
}

// Multi-threaded: the test blocks reading the daemon's stderr while the in-process API serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_stops_promptly_and_cleanly_on_sigterm_while_polling() {
    let env = TestEnv::new().await;
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_transformer"))
        .arg("run")
        .envs(env.barge_env())
        .env("BARGE__QUEUE__WAIT_SECONDS", "20")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(daemon.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    for line in stderr.by_ref() {
        let line = line.unwrap();
        let polling = line.contains("polling for batches");
        log.push(line);
        if polling {
            break;
        }
    }
    // Let the first 20-second long poll begin, then stop the daemon in the middle of it.
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    log.extend(stderr.map(Result::unwrap));
    let status = daemon.wait().unwrap();
    let waited = signalled.elapsed();
    let log = log.join("\n");
    assert!(status.success(), "exit {status}; log:\n{log}");
    assert!(
        log.contains("shutdown requested") && log.contains("transformer stopped"),
        "{log}"
    );
    // The idle poll is abandoned rather than waited out.
    assert!(
        waited < Duration::from_secs(15),
        "took {waited:?} to stop; log:\n{log}"
    );
}
