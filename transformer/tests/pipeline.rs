//! The transformer, and the whole pipeline, against real LocalStack and PostgreSQL.

mod common;

use std::time::Duration;

use barge_core::{Column, ColumnType, Source};
use barge_localenv::{TestEnv, eventually, spawn_sample_api};
use chrono::{DateTime, NaiveDate, Utc};
use common::{
    block_a_load, blocked_sessions, daemon, json, ledger, load_is_blocked, lock_posts, posts,
    transformer,
};
use importer::Importer;
use transformer::{ProcessError, Transformer};

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
    let (env, importer, transformer) = pipeline(57).await;

    let announced = importer
        .import(&env.settings.sources[0])
        .await
        .unwrap()
        .objects[0]
        .clone();
    let report = transformer.drain().await.unwrap();

    assert!(
        report.dead_lettered.is_empty(),
        "{:?}",
        report.dead_lettered
    );
    assert_eq!(report.loaded.len(), 1);
    let loaded = &report.loaded[0];
    assert_eq!(loaded.key, announced.key);
    assert_eq!(
        (
            loaded.records_read,
            loaded.records_rejected,
            loaded.rows_changed
        ),
        (57, 0, 57)
    );
    assert_eq!(
        posts(&env).await,
        barge_sample_api::posts(57),
        "field for field"
    );
    let ledger = ledger(&env).await;
    assert_eq!(ledger.len(), 1);
    assert_eq!(
        (
            ledger[0].key.as_str(),
            ledger[0].records_loaded,
            ledger[0].rejects_url.as_deref()
        ),
        (announced.key.as_str(), 57, None)
    );
    assert_eq!(
        env.queued_messages().await,
        0,
        "the message is deleted after the commit"
    );
}

#[tokio::test]
async fn a_redelivered_or_duplicated_message_loads_once() {
    let (env, importer, transformer) = pipeline(20).await;
    let announced = importer
        .import(&env.settings.sources[0])
        .await
        .unwrap()
        .objects[0]
        .clone();
    // SQS is at-least-once: the same message twice, before and after the first load.
    env.send(&announced.to_json()).await;
    let report = transformer.drain().await.unwrap();
    assert_eq!(report.loaded.len(), 1, "{report:?}");
    assert_eq!(report.duplicates, [announced.key.as_str()]);

    env.send(&announced.to_json()).await;
    let report = transformer.drain().await.unwrap();
    assert!(report.loaded.is_empty(), "{report:?}");
    assert_eq!(report.duplicates, [announced.key.as_str()]);

    assert_eq!(posts(&env).await, barge_sample_api::posts(20));
    assert_eq!(ledger(&env).await.len(), 1, "one ledger entry per object");
    assert_eq!(env.queued_messages().await, 0, "duplicates are deleted");
}

#[tokio::test]
async fn an_older_batch_never_overwrites_what_a_newer_one_wrote() {
    let env = TestEnv::new().await;
    let transformer = transformer(&env).await;
    let older_at: DateTime<Utc> = "2026-11-24T10:00:00Z".parse().unwrap();
    let newer_at: DateTime<Utc> = "2026-11-24T11:00:00Z".parse().unwrap();
    let mut older = barge_sample_api::posts(3);
    for post in &mut older {
        post.title = format!("old title {}", post.id);
    }
    older.push(barge_sample_api::post(4));
    let newer = barge_sample_api::posts(3);

    // The newer batch loads first; the older one's message arrives late (or is replayed).
    env.announce_at("posts", "raw/posts/newer.json", &json(&newer), newer_at)
        .await;
    transformer.drain().await.unwrap();
    env.announce_at("posts", "raw/posts/older.json", &json(&older), older_at)
        .await;
    let report = transformer.drain().await.unwrap();

    assert_eq!(report.loaded.len(), 1, "{report:?}");
    assert_eq!(
        report.loaded[0].rows_changed, 1,
        "only post 4, which the newer batch did not have, is written"
    );
    let mut expected = newer.clone();
    expected.push(barge_sample_api::post(4));
    assert_eq!(posts(&env).await, expected, "rows keep the newer values");

    // A still newer batch with other values does overwrite.
    let mut newest = barge_sample_api::posts(1);
    newest[0].title = "newest".into();
    env.announce_at(
        "posts",
        "raw/posts/newest.json",
        &json(&newest),
        newer_at + chrono::Duration::minutes(1),
    )
    .await;
    transformer.drain().await.unwrap();
    assert_eq!(posts(&env).await[0].title, "newest");
}

#[tokio::test]
async fn a_later_batch_updates_rows_and_the_last_duplicate_in_a_batch_wins() {
    let env = TestEnv::new().await;
    let transformer = transformer(&env).await;
    let original = barge_sample_api::posts(3);
    env.announce("posts", "raw/posts/a.json", &json(&original))
        .await;
    transformer.drain().await.unwrap();

    let mut edited = original[1].clone();
    edited.title = "edited once".into();
    let mut edited_again = edited.clone();
    edited_again.title = "edited twice".into();
    let batch = [edited, barge_sample_api::post(4), edited_again.clone()];
    env.announce("posts", "raw/posts/b.json", &json(&batch))
        .await;
    let report = transformer.drain().await.unwrap();

    assert!(
        report.dead_lettered.is_empty(),
        "{:?}",
        report.dead_lettered
    );
    assert_eq!(
        report.loaded[0].rows_changed, 2,
        "post 2 updated, post 4 inserted"
    );
    let expected = vec![
        original[0].clone(),
        edited_again,
        original[2].clone(),
        barge_sample_api::post(4),
    ];
    assert_eq!(posts(&env).await, expected);
}

#[tokio::test]
async fn a_source_without_primary_key_appends_each_object_once() {
    let mut env = TestEnv::new().await;
    env.settings.sources[0].primary_key.clear();
    let transformer = transformer(&env).await;
    let batch = json(&barge_sample_api::posts(3));
    let first = env.announce("posts", "raw/posts/e1.json", &batch).await;
    env.announce("posts", "raw/posts/e2.json", &batch).await;
    env.send(&first.to_json()).await;

    let report = transformer.drain().await.unwrap();

    assert_eq!(report.loaded.len(), 2, "{report:?}");
    assert_eq!(report.duplicates, ["raw/posts/e1.json"]);
    let rows = posts(&env).await;
    assert_eq!(rows.len(), 6, "two objects of three events each, once each");
    let ids: Vec<i64> = rows.iter().map(|p| p.id).collect();
    assert_eq!(ids, [1, 1, 2, 2, 3, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_transformers_racing_on_one_object_load_it_once() {
    let mut env = TestEnv::new().await;
    // Append-only: a second load would show as duplicate rows, not be merged away.
    env.settings.sources[0].primary_key.clear();
    let first = transformer(&env).await;
    let second = transformer(&env).await;
    let lock = lock_posts(&env).await;
    let announced = env
        .announce(
            "posts",
            "raw/posts/raced.json",
            &json(&barge_sample_api::posts(3)),
        )
        .await;
    let first_run = tokio::spawn(async move { first.drain().await.unwrap() });
    eventually(Duration::from_secs(30), "the first load blocks", || {
        load_is_blocked(&env)
    })
    .await;
    // The duplicate message reaches the second transformer while the first load is open: it
    // finds no committed ledger row, so it loads too. Both COPY once the lock goes; whichever
    // claims the object first loads it, and the other's claim waits on it, then finds it loaded.
    env.send(&announced.to_json()).await;
    let second_run = tokio::spawn(async move { second.drain().await.unwrap() });
    eventually(
        Duration::from_secs(30),
        "the second load waits too",
        || async { blocked_sessions(&env).await >= 2 },
    )
    .await;
    drop(lock);

    let (first, second) = (first_run.await.unwrap(), second_run.await.unwrap());

    let (winner, loser) = if first.loaded.is_empty() {
        (second, first)
    } else {
        (first, second)
    };
    assert_eq!(winner.loaded.len(), 1, "{winner:?}");
    assert_eq!(loser.duplicates, ["raw/posts/raced.json"], "{loser:?}");
    assert!(loser.loaded.is_empty(), "{loser:?}");
    assert_eq!(posts(&env).await, barge_sample_api::posts(3), "loaded once");
    assert_eq!(ledger(&env).await.len(), 1);
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
        field: field.map(Into::into),
        nullable,
        ..Column::new(name, column_type)
    })
    .collect();
    env.settings.sources = vec![Source {
        name: "events".into(),
        url: Some("http://127.0.0.1:1/unused".into()),
        interval: Duration::from_secs(60),
        table: "events".into(),
        primary_key: vec!["id".into()],
        columns,
        max_reject_ratio: 0.0,
        ..Source::jsonplaceholder_posts()
    }];
    let transformer = transformer(&env).await;
    let batch = r#"[
        {"id": 9007199254740993, "small": -32768, "medium": 2147483647, "ratio": 0.1,
         "score": 1.5, "label": "naïve \"text\"\n", "active": false,
         "payload": {"nested": [1, null, "x"], "big": 123456789012345678901234567890.5},
         "seen_at": "2026-11-24T01:02:03.456+02:00",
         "day": "2026-02-28", "address": {"city": "Gwenborough"}},
        {"id": 2, "small": 0, "medium": 0, "ratio": -1e300, "score": 0, "label": "",
         "active": true, "payload": "just a string", "seen_at": "1970-01-01T00:00:00Z", "day": "1999-12-31"}
    ]"#;
    env.announce("events", "raw/events/types.json", batch.as_bytes())
        .await;

    let report = transformer.drain().await.unwrap();

    assert!(
        report.dead_lettered.is_empty(),
        "{:?}",
        report.dead_lettered
    );
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
    let payload: String = env
        .db()
        .await
        .query_one(
            "SELECT payload::text FROM events WHERE id = 9007199254740993",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        payload, r#"{"big": 123456789012345678901234567890.5, "nested": [1, null, "x"]}"#,
        "jsonb keeps every digit"
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
async fn a_database_refusal_rolls_back_the_batch_and_dead_letters_it_with_the_reason() {
    let env = TestEnv::new().await;
    let transformer = transformer(&env).await;
    env.db()
        .await
        .batch_execute("ALTER TABLE posts ADD CONSTRAINT short_titles CHECK (length(title) < 5)")
        .await
        .unwrap();
    let announced = env
        .announce(
            "posts",
            "raw/posts/long.json",
            &json(&barge_sample_api::posts(2)),
        )
        .await;

    let report = transformer.drain().await.unwrap();

    assert!(report.loaded.is_empty());
    let error = &report.dead_lettered[0].error;
    assert!(matches!(error, ProcessError::Database { .. }), "{error}");
    assert!(
        !error.is_transient(),
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
    assert!(posts(&env).await.is_empty(), "the transaction rolled back");
    assert!(
        ledger(&env).await.is_empty(),
        "the ledger entry rolled back"
    );
    assert_eq!(env.queued_messages().await, 0);
    let letters = env.dead_letters().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].body, announced.to_json(), "the body is kept");
    assert_eq!(letters[0].attributes["barge-error-class"], "database");
    assert_eq!(letters[0].attributes["barge-error"], text);
}

#[tokio::test]
async fn daemon_stops_promptly_and_cleanly_on_sigterm_while_polling() {
    let env = TestEnv::new().await;
    let daemon = daemon(&env, &[("BARGE__QUEUE__WAIT_SECONDS", "20")]);
    daemon
        .wait_for_log("polling for batches", Duration::from_secs(30))
        .await;
    // Let the first 20-second long poll begin, then stop the daemon in the middle of it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.terminate();
    // The idle poll is abandoned rather than waited out.
    let (code, log) = daemon.wait(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("shutdown requested") && log.contains("transformer stopped"),
        "{log}"
    );
}

#[tokio::test]
async fn sigterm_during_a_load_finishes_it_within_the_grace_period() {
    let env = TestEnv::new().await;
    transformer(&env).await; // creates the table, so that the test can lock it
    let daemon = daemon(&env, &[("BARGE__TRANSFORMER__SHUTDOWN_GRACE", "60s")]);
    let lock = block_a_load(&env, "raw/posts/p.json", 5).await;

    daemon.terminate();
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(lock);
    let (code, log) = daemon.wait(Duration::from_secs(30)).await;

    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("batch committed"), "{log}");
    assert_eq!(posts(&env).await, barge_sample_api::posts(5));
    assert_eq!(env.queued_messages().await, 0, "deleted after the commit");
}

#[tokio::test]
async fn sigterm_past_the_grace_period_rolls_back_and_hands_every_message_back_at_once() {
    let env = TestEnv::new().await;
    transformer(&env).await;
    let _lock = lock_posts(&env).await;
    let daemon = daemon(&env, &[("BARGE__TRANSFORMER__SHUTDOWN_GRACE", "1s")]);
    for name in ["a", "b", "c"] {
        env.announce(
            "posts",
            &format!("raw/posts/{name}.json"),
            &json(&barge_sample_api::posts(2)),
        )
        .await;
    }
    eventually(Duration::from_secs(30), "a load blocks on the lock", || {
        load_is_blocked(&env)
    })
    .await;

    daemon.terminate();
    let (code, log) = daemon.wait(Duration::from_secs(20)).await;

    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("grace period over"), "{log}");
    assert!(ledger(&env).await.is_empty(), "nothing committed");
    // Handed back: visible again now, not after the 60 s visibility timeout.
    let received = env.receive(&env.queue_url, 2).await;
    let mut bodies: Vec<String> = received.into_iter().filter_map(|m| m.body).collect();
    bodies.sort();
    assert_eq!(
        bodies.len(),
        3,
        "every held message is visible again: {bodies:?}"
    );
}

#[tokio::test]
async fn a_second_sigterm_stops_at_once_and_loses_nothing() {
    let env = TestEnv::new().await;
    transformer(&env).await;
    let daemon = daemon(&env, &[("BARGE__TRANSFORMER__SHUTDOWN_GRACE", "60s")]);
    let lock = block_a_load(&env, "raw/posts/p.json", 5).await;

    daemon.terminate();
    daemon
        .wait_for_log("shutdown requested", Duration::from_secs(10))
        .await;
    daemon.terminate();
    // Far inside the 60 s grace period: the second signal does not wait for the load.
    let (code, log) = daemon.wait(Duration::from_secs(15)).await;

    assert_eq!(code, Some(143), "{log}");
    assert!(log.contains("second signal: stopping at once"), "{log}");
    drop(lock);
    assert!(
        ledger(&env).await.is_empty(),
        "the abandoned load rolled back"
    );
    assert!(posts(&env).await.is_empty());
    assert_eq!(
        env.queued_messages().await,
        1,
        "the message was not consumed"
    );
}

#[tokio::test]
async fn a_password_that_looks_like_a_number_is_used_verbatim_and_never_printed() {
    let env = TestEnv::new().await;
    let role = format!("numeric_{}", &env.settings.database.dbname[5..13]);
    env.db()
        .await
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '83920174'"
        ))
        .await
        .unwrap();
    let right = daemon(
        &env,
        &[
            ("BARGE__DATABASE__USER", role.as_str()),
            ("BARGE__DATABASE__PASSWORD", "83920174"),
        ],
    );
    right
        .wait_for_log("polling for batches", Duration::from_secs(30))
        .await;
    right.terminate();
    let (code, log) = right.wait(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0), "{log}");

    let wrong = daemon(
        &env,
        &[
            ("BARGE__DATABASE__USER", role.as_str()),
            ("BARGE__DATABASE__PASSWORD", "839201745"),
        ],
    );
    let (code, log) = wrong.wait(Duration::from_secs(30)).await;
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("password authentication failed"), "{log}");
    assert!(!log.contains("83920174"), "the password is printed:\n{log}");
}

#[tokio::test]
async fn the_password_comes_from_secrets_manager_and_is_read_again_after_a_rotation() {
    let mut env = TestEnv::new().await;
    let role = format!("rotated_{}", &env.settings.database.dbname[5..13]);
    let admin = env.db().await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN SUPERUSER PASSWORD 'first'"
        ))
        .await
        .unwrap();
    let secret = format!("barge/{}", env.settings.database.dbname);
    let rds_json =
        |password: &str| serde_json::json!({"username": role, "password": password}).to_string();
    env.aws
        .secrets
        .create_secret()
        .name(&secret)
        .secret_string(rds_json("first"))
        .send()
        .await
        .unwrap();
    env.settings.database.user = role.clone();
    env.settings.database.password = None;
    env.settings.database.password_secret = Some(secret.clone());
    let transformer = transformer(&env).await;
    env.announce(
        "posts",
        "raw/posts/s1.json",
        &json(&barge_sample_api::posts(2)),
    )
    .await;
    assert_eq!(transformer.drain().await.unwrap().loaded.len(), 1);

    // RDS rotates the password it manages: the role's and the secret's change together, and the
    // transformer's session goes (the next load reconnects).
    admin
        .batch_execute(&format!("ALTER ROLE {role} PASSWORD 'second'"))
        .await
        .unwrap();
    env.aws
        .secrets
        .put_secret_value()
        .secret_id(&secret)
        .secret_string(rds_json("second"))
        .send()
        .await
        .unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
            &[&role],
        )
        .await
        .unwrap();
    env.announce(
        "posts",
        "raw/posts/s2.json",
        &json(&barge_sample_api::posts(3)),
    )
    .await;
    let report = transformer.drain().await.unwrap();
    assert_eq!(report.loaded.len(), 1, "{report:?}");
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM posts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 3);

    env.settings.database.password_secret = Some(format!("{secret}-missing"));
    let Err(err) = Transformer::new(env.settings.clone(), env.aws.clone()).await else {
        panic!("started without its password");
    };
    assert!(
        err.to_string().starts_with(&format!(
            "cannot read secret \"{secret}-missing\" from AWS Secrets Manager"
        )),
        "{err}"
    );
}

#[tokio::test]
async fn a_copy_line_postgres_refuses_is_named_by_its_record() {
    let mut env = TestEnv::new().await;
    env.settings.sources[0].primary_key.clear(); // append-only: COPY straight into the table
    let transformer = transformer(&env).await;
    env.db()
        .await
        .batch_execute("ALTER TABLE posts ADD CONSTRAINT no_three CHECK (id <> 3)")
        .await
        .unwrap();
    let mut batch: Vec<serde_json::Value> = barge_sample_api::posts(3)
        .iter()
        .map(|post| serde_json::to_value(post).unwrap())
        .collect();
    // Record 1 is rejected by barge, so record 3 (id 3) is the COPY's third line.
    batch.insert(1, serde_json::json!({"id": "not a number"}));
    env.announce(
        "posts",
        "raw/posts/c.json",
        &serde_json::to_vec(&batch).unwrap(),
    )
    .await;

    let report = transformer.drain().await.unwrap();

    let error = report.dead_lettered[0].error.to_string();
    assert!(error.contains("no_three"), "{error}");
    assert!(
        error.ends_with("\nCONTEXT: COPY posts, line 3 (record 3)"),
        "{error}"
    );
}

#[tokio::test]
async fn a_table_that_differs_from_its_declaration_stops_the_start_with_the_differences() {
    let env = TestEnv::new().await;
    env.db()
        .await
        .batch_execute(
            "CREATE TABLE posts (id bigint, user_id bigint, title integer NOT NULL, \
             body text NOT NULL, extra text NOT NULL, PRIMARY KEY (id, user_id))",
        )
        .await
        .unwrap();

    let Err(err) = Transformer::new(env.settings.clone(), env.aws.clone()).await else {
        panic!("the transformer started on a table that differs from its declaration");
    };

    assert_eq!(
        err.to_string(),
        "live tables differ from their declared sources (change the table or the declaration): \
         table \"posts\": column \"title\" is integer, declared text; column \"barge_fetched_at\" \
         is missing; column \"extra\" is NOT NULL without a default, and the source does not fill \
         it; primary key is (id, user_id), declared (id)"
    );
}

#[tokio::test]
async fn the_daemon_tells_systemd_it_is_ready_alive_and_stopping() {
    let env = TestEnv::new().await;
    let systemd = barge_localenv::NotifySocket::bind();
    let daemon = daemon(
        &env,
        &[
            ("NOTIFY_SOCKET", systemd.path().to_str().unwrap()),
            ("WATCHDOG_USEC", "600000"),
        ],
    );
    systemd.expect_ready_and_alive(Duration::from_secs(30), || daemon.log());

    daemon.terminate();
    let lines = systemd.collect_until(Duration::from_secs(10), |lines| {
        lines.iter().any(|l| l == "STOPPING=1")
    });
    assert!(lines.iter().any(|l| l == "STOPPING=1"), "{lines:?}");
    let (code, log) = daemon.wait(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0), "{log}");
}
