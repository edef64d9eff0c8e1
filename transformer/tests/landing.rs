//! The landing zone against real LocalStack and PostgreSQL: files other systems drop under a
//! source's `landing_prefix`, announced by S3's own event notifications on the batch queue.

mod common;

use std::io::Write;
use std::time::Duration;

use aws_sdk_s3::operation::put_object::PutObjectOutput;
use barge_localenv::{TestEnv, eventually, spawn_sample_api};
use barge_sample_api::Post;
use chrono::{DateTime, Utc};
use common::{json, ledger, posts, transformer};
use importer::Importer;
use transformer::{Report, Transformer};

/// The `posts` source's landing prefix in these tests.
const LANDING: &str = "landing/posts";

/// A test environment whose `posts` source also takes files dropped under [`LANDING`], and
/// whose bucket announces objects created under `watched` on the test's queue.
async fn landing_env(watched: &str) -> TestEnv {
    let mut env = TestEnv::new().await;
    env.settings.sources[0].landing_prefix = Some(LANDING.into());
    env.watch_landing(watched).await;
    env
}

/// Posts with ids `ids`.
fn posts_with_ids(ids: std::ops::RangeInclusive<i64>) -> Vec<Post> {
    ids.map(barge_sample_api::post).collect()
}

fn ndjson(posts: &[Post]) -> Vec<u8> {
    let mut out = Vec::new();
    for post in posts {
        serde_json::to_writer(&mut out, post).unwrap();
        out.push(b'\n');
    }
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Puts `body` under `key` of the test's bucket, as another system would; returns S3's answer
/// (the ETag, and the version it made in a versioned bucket).
async fn drop_file(
    env: &TestEnv,
    key: &str,
    body: Vec<u8>,
    content_encoding: Option<&str>,
) -> PutObjectOutput {
    env.aws
        .s3
        .put_object()
        .bucket(&env.settings.storage.bucket)
        .key(key)
        .set_content_encoding(content_encoding.map(str::to_owned))
        .body(body.into())
        .send()
        .await
        .unwrap()
}

/// Turns versioning on for the test's bucket, as Terraform's data bucket has it.
async fn enable_versioning(env: &TestEnv) {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    env.aws
        .s3
        .put_bucket_versioning()
        .bucket(&env.settings.storage.bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// Field `field` of the object an S3 event's first record names (`versionId`, `eTag`).
fn event_object(body: &str, field: &str) -> Option<String> {
    let event: serde_json::Value = serde_json::from_str(body).unwrap();
    event["Records"][0]["s3"]["object"][field]
        .as_str()
        .map(str::to_owned)
}

/// The `eventTime` of an S3 event's first record.
fn event_time(body: &str) -> DateTime<Utc> {
    let event: serde_json::Value = serde_json::from_str(body).unwrap();
    event["Records"][0]["eventTime"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Waits until at least `count` messages are on the test's queue (S3 sends its events on its
/// own time).
async fn wait_for_messages(env: &TestEnv, count: u64) {
    eventually(
        Duration::from_secs(30),
        &format!("{count} S3 events on the queue"),
        || async { env.queued_messages().await >= count },
    )
    .await;
}

/// Waits for `messages` messages, drains the queue, and checks that nothing was dead-lettered.
async fn drain_cleanly(env: &TestEnv, transformer: &Transformer, messages: u64) -> Report {
    wait_for_messages(env, messages).await;
    let report = transformer.drain().await.unwrap();
    assert!(
        report.dead_lettered.is_empty(),
        "{:?}",
        report.dead_lettered
    );
    report
}

/// Receives the `count` messages on the queue and deletes them; returns their bodies.
async fn take_messages(env: &TestEnv, count: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    while bodies.len() < count {
        let received = env.receive(&env.queue_url, 5).await;
        assert!(!received.is_empty(), "{} of {count} messages", bodies.len());
        for message in received {
            env.aws
                .sqs
                .delete_message()
                .queue_url(&env.queue_url)
                .set_receipt_handle(message.receipt_handle)
                .send()
                .await
                .unwrap();
            bodies.push(message.body.unwrap());
        }
    }
    assert_eq!(bodies.len(), count, "{bodies:?}");
    bodies
}

/// An S3 event notification of one created object, as AWS writes it.
fn event_body(bucket: &str, encoded_key: &str, event_name: &str) -> String {
    serde_json::json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-25T10:00:00.000Z",
        "eventName": event_name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "landing",
            "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
            "object": {"key": encoded_key, "size": 2, "eTag": "d751713988987e9331980363e24189ce",
                       "sequencer": "0065F0A1B2C3D4E5F6"}
        }
    }]})
    .to_string()
}

/// `(barge-error-class, barge-error)` of every dead-lettered message, sorted.
async fn dead_letter_reasons(env: &TestEnv) -> Vec<(String, String)> {
    let mut letters: Vec<(String, String)> = env
        .dead_letters()
        .await
        .into_iter()
        .map(|letter| {
            (
                letter.attributes["barge-error-class"].clone(),
                letter.attributes["barge-error"].clone(),
            )
        })
        .collect();
    letters.sort();
    letters
}

/// `(key, sha256, fetched_at, message_id)` of every ledger row, by key.
async fn ledger_identity(env: &TestEnv) -> Vec<(String, String, DateTime<Utc>, String)> {
    env.db()
        .await
        .query(
            "SELECT key, sha256, fetched_at, message_id FROM barge.loads ORDER BY key, committed_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect()
}

#[tokio::test]
async fn a_file_dropped_into_the_landing_prefix_is_loaded_field_for_field() {
    let env = landing_env(LANDING).await;
    let transformer = transformer(&env).await;
    let key = format!("{LANDING}/drop 2026-11-25/café ünïcode + plus.json");
    let dropped = posts_with_ids(1..=25);
    let body = json(&dropped);
    // The "folder" the S3 console creates first: acknowledged, not loaded.
    drop_file(
        &env,
        &format!("{LANDING}/drop 2026-11-25/"),
        Vec::new(),
        None,
    )
    .await;
    drop_file(&env, &key, body.clone(), None).await;

    let report = drain_cleanly(&env, &transformer, 2).await;

    assert_eq!(report.loaded.len(), 1, "{report:?}");
    assert_eq!(report.ignored, 1, "the folder marker");
    let loaded = &report.loaded[0];
    assert_eq!(
        (loaded.source.as_str(), loaded.key.as_str()),
        ("posts", key.as_str())
    );
    assert_eq!(
        (
            loaded.records_read,
            loaded.records_rejected,
            loaded.rows_changed
        ),
        (25, 0, 25)
    );
    assert_eq!(posts(&env).await, dropped, "field for field");
    let identity = ledger_identity(&env).await;
    assert_eq!(identity.len(), 1);
    let (ledger_key, sha256, fetched_at, _) = &identity[0];
    assert_eq!(ledger_key, &key, "the key as stored, decoded");
    assert_eq!(sha256, &barge_core::content_digest(&body));
    assert!(
        (Utc::now() - *fetched_at).num_seconds().abs() < 60,
        "fetched_at is the event's time: {fetched_at}"
    );
    let row_time: DateTime<Utc> = env
        .db()
        .await
        .query_one("SELECT DISTINCT barge_fetched_at FROM posts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(row_time, *fetched_at);
    assert_eq!(env.queued_messages().await, 0, "the event is deleted");
}

#[tokio::test]
async fn ndjson_and_gzip_landing_files_load() {
    let env = landing_env(LANDING).await;
    let transformer = transformer(&env).await;
    drop_file(
        &env,
        &format!("{LANDING}/a.ndjson"),
        ndjson(&posts_with_ids(1..=10)),
        None,
    )
    .await;
    drop_file(
        &env,
        &format!("{LANDING}/b.json.gz"),
        gzip(&json(&posts_with_ids(11..=20))),
        Some("gzip"),
    )
    .await;
    drop_file(
        &env,
        &format!("{LANDING}/c.jsonl.gz"),
        gzip(&ndjson(&posts_with_ids(21..=30))),
        None,
    )
    .await;
    // Neither declared nor named: only gzip's magic bytes say what it is.
    drop_file(
        &env,
        &format!("{LANDING}/d.json"),
        gzip(&json(&posts_with_ids(31..=40))),
        None,
    )
    .await;

    let report = drain_cleanly(&env, &transformer, 4).await;

    assert_eq!(report.loaded.len(), 4, "{report:?}");
    assert_eq!(posts(&env).await, posts_with_ids(1..=40), "field for field");
    assert!(
        ledger(&env)
            .await
            .iter()
            .all(|row| row.records_read == 10 && row.records_loaded == 10)
    );
}

#[tokio::test]
async fn the_same_event_twice_loads_once_and_new_bytes_under_the_key_are_a_new_object() {
    let env = landing_env(LANDING).await;
    let transformer = transformer(&env).await;
    let key = format!("{LANDING}/daily.json");
    let first = json(&posts_with_ids(1..=5));
    drop_file(&env, &key, first.clone(), None).await;
    wait_for_messages(&env, 1).await;
    // SQS is at-least-once: S3's event, delivered twice.
    let event = take_messages(&env, 1).await.remove(0);
    env.send(&event).await;
    env.send(&event).await;

    let report = transformer.drain().await.unwrap();

    assert_eq!(report.loaded.len(), 1, "{report:?}");
    assert_eq!(report.duplicates, [key.as_str()], "{report:?}");
    let identity = ledger_identity(&env).await;
    assert_eq!(identity.len(), 1);
    assert_eq!(
        identity[0].2,
        event_time(&event),
        "fetched_at is the event's eventTime"
    );

    // The same bytes put again: a new event, the same object.
    drop_file(&env, &key, first.clone(), None).await;
    wait_for_messages(&env, 1).await;
    let report = transformer.drain().await.unwrap();
    assert!(report.loaded.is_empty(), "{report:?}");
    assert_eq!(report.duplicates, [key.as_str()]);

    // New bytes under the same key: a new object, loaded; the newer file's rows win (each is
    // rewritten with the newer file's time, one with a new title).
    let mut changed = posts_with_ids(1..=5);
    changed[0].title = "changed upstream".into();
    let second = json(&changed);
    drop_file(&env, &key, second.clone(), None).await;
    wait_for_messages(&env, 1).await;
    let report = transformer.drain().await.unwrap();
    assert_eq!(report.loaded.len(), 1, "{report:?}");
    assert_eq!(report.loaded[0].rows_changed, 5);
    assert_eq!(posts(&env).await, changed);
    let digests: Vec<String> = ledger_identity(&env)
        .await
        .into_iter()
        .map(|(_, sha256, _, _)| sha256)
        .collect();
    assert_eq!(
        digests,
        [
            barge_core::content_digest(&first),
            barge_core::content_digest(&second)
        ]
    );
}

#[tokio::test]
async fn objects_outside_every_landing_prefix_and_other_events_are_dead_lettered_with_the_reason() {
    // S3 announces all of landing/, but only landing/posts/ is a source's.
    let env = landing_env("landing").await;
    let transformer = transformer(&env).await;
    let bucket = env.settings.storage.bucket.clone();
    drop_file(&env, "landing/postsx/stray.json", b"[]".to_vec(), None).await;
    wait_for_messages(&env, 1).await;
    let other_bucket = event_body("someone-elses", "landing/posts/x.json", "ObjectCreated:Put");
    env.send(&other_bucket).await;
    let removed = event_body(&bucket, "landing/posts/gone.json", "ObjectRemoved:Delete");
    env.send(&removed).await;
    let not_utf8 = event_body(&bucket, "landing/posts/%FF.json", "ObjectCreated:Put");
    env.send(&not_utf8).await;

    let report = transformer.drain().await.unwrap();

    assert!(report.loaded.is_empty(), "{report:?}");
    assert_eq!(report.dead_lettered.len(), 4, "{report:?}");
    let letters = dead_letter_reasons(&env).await;
    let zone = format!(
        "not in a landing zone: S3 events are loaded only for objects of bucket {bucket} under \
         a source's landing_prefix (landing prefixes: landing/posts/ of source \"posts\")"
    );
    assert_eq!(
        letters,
        [
            (
                "malformed-message".to_owned(),
                format!(
                    "message body is unusable: S3 event record 0: key \"landing/posts/%FF.json\" \
                     of bucket {bucket} does not decode to UTF-8 (keys are URL-encoded UTF-8)"
                )
            ),
            (
                "outside-landing-zone".to_owned(),
                format!("s3://someone-elses/landing/posts/x.json: {zone}")
            ),
            (
                "outside-landing-zone".to_owned(),
                format!("s3://{bucket}/landing/postsx/stray.json: {zone}")
            ),
            (
                "unsupported-event".to_owned(),
                format!(
                    "message body is unusable: S3 event record 0: aws:s3 event \
                     \"ObjectRemoved:Delete\" (version 2.1) for s3://{bucket}/landing/posts/gone.json: \
                     only aws:s3 ObjectCreated:* events of version 2.x announce objects to load"
                )
            ),
        ]
    );
    assert!(posts(&env).await.is_empty());
    assert!(ledger(&env).await.is_empty());
    assert_eq!(env.queued_messages().await, 0);
}

#[tokio::test]
async fn every_record_of_an_event_loads_before_the_message_goes() {
    let env = landing_env(LANDING).await;
    let transformer = transformer(&env).await;
    // Two files, whose own events the test takes off the queue, to send one event naming both
    // (S3 sends one record per message, but the format allows several).
    let bucket = env.settings.storage.bucket.clone();
    let (a, b) = (
        format!("{LANDING}/one.json"),
        format!("{LANDING}/two.ndjson"),
    );
    drop_file(&env, &a, json(&posts_with_ids(1..=3)), None).await;
    drop_file(&env, &b, ndjson(&posts_with_ids(4..=6)), None).await;
    wait_for_messages(&env, 2).await;
    // Each file's own record (with its ETag, which the transformer reads the file If-Match);
    // a made-up one for a file that is not there.
    let taken: Vec<serde_json::Value> = take_messages(&env, 2)
        .await
        .iter()
        .map(|body| serde_json::from_str::<serde_json::Value>(body).unwrap()["Records"][0].clone())
        .collect();
    let record = |key: &str| {
        taken
            .iter()
            .find(|record| record["s3"]["object"]["key"] == key)
            .cloned()
            .unwrap_or_else(|| {
                let body: serde_json::Value =
                    serde_json::from_str(&event_body(&bucket, key, "ObjectCreated:Put")).unwrap();
                body["Records"][0].clone()
            })
    };
    let two = serde_json::json!({"Records": [record(&a), record(&b)]}).to_string();
    env.send(&two).await;
    // A second record whose object is gone: the first loads, the message is dead-lettered.
    let missing = format!("{LANDING}/missing.json");
    let partly = serde_json::json!({"Records": [record(&a), record(&missing)]}).to_string();
    env.send(&partly).await;

    let report = transformer.drain().await.unwrap();

    assert_eq!(posts(&env).await, posts_with_ids(1..=6));
    let mut keys: Vec<&str> = report.loaded.iter().map(|l| l.key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, [a.as_str(), b.as_str()], "{report:?}");
    assert_eq!(report.dead_lettered.len(), 1, "{report:?}");
    assert_eq!(report.dead_lettered[0].error.kind(), "missing-object");
    assert_eq!(ledger(&env).await.len(), 2);
}

#[tokio::test]
async fn importer_batches_and_landing_files_share_the_queue_and_the_table() {
    let url = spawn_sample_api(20).await;
    let env = landing_env(LANDING).await.with_posts_url(&url);
    let importer = Importer::new(env.settings.clone(), env.aws.clone())
        .await
        .unwrap();
    let transformer = transformer(&env).await;
    let announced = importer
        .import(&env.settings.sources[0])
        .await
        .unwrap()
        .objects[0]
        .clone();
    drop_file(
        &env,
        &format!("{LANDING}/more posts.ndjson"),
        ndjson(&posts_with_ids(21..=30)),
        None,
    )
    .await;

    let report = drain_cleanly(&env, &transformer, 2).await;

    let mut keys: Vec<String> = report.loaded.iter().map(|l| l.key.clone()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            format!("{LANDING}/more posts.ndjson"),
            announced.key.clone()
        ]
    );
    assert_eq!(posts(&env).await, posts_with_ids(1..=30));
    assert!(
        !env.object_keys()
            .await
            .iter()
            .any(|key| key.starts_with("errors/")),
        "nothing rejected"
    );
}

#[tokio::test]
async fn in_a_versioned_bucket_an_event_loads_the_version_it_announces() {
    let env = landing_env(LANDING).await;
    enable_versioning(&env).await;
    let transformer = transformer(&env).await;
    let key = format!("{LANDING}/daily.json");
    let first = posts_with_ids(1..=3);
    let mut second = first.clone();
    second[0].title = "put again before the first event was handled".into();
    let version_a = drop_file(&env, &key, json(&first), None)
        .await
        .version_id
        .unwrap();
    let version_b = drop_file(&env, &key, json(&second), None)
        .await
        .version_id
        .unwrap();
    assert_ne!(version_a, version_b);
    wait_for_messages(&env, 2).await;
    let mut events = take_messages(&env, 2).await;
    events.sort_by_key(|body| event_object(body, "versionId") != Some(version_a.clone()));
    assert_eq!(
        events
            .iter()
            .map(|e| event_object(e, "versionId"))
            .collect::<Vec<_>>(),
        [Some(version_a), Some(version_b)],
        "each event names its version"
    );

    // A's event, though the key now holds B: A's rows.
    env.send(&events[0]).await;
    let report = transformer.drain().await.unwrap();
    assert_eq!(report.loaded.len(), 1, "{report:?}");
    assert_eq!(posts(&env).await, first, "the version the event announced");
    let digests: Vec<String> = ledger_identity(&env)
        .await
        .into_iter()
        .map(|(_, sha256, _, _)| sha256)
        .collect();
    assert_eq!(digests, [barge_core::content_digest(&json(&first))]);

    // Then B's: B's rows.
    env.send(&events[1]).await;
    let report = transformer.drain().await.unwrap();
    assert_eq!(report.loaded.len(), 1, "{report:?}");
    assert_eq!(posts(&env).await, second);

    // A file deleted before its event is handled: its version is still there, and loads.
    let deleted = format!("{LANDING}/deleted.json");
    drop_file(&env, &deleted, json(&posts_with_ids(4..=5)), None).await;
    env.aws
        .s3
        .delete_object()
        .bucket(&env.settings.storage.bucket)
        .key(&deleted)
        .send()
        .await
        .unwrap();
    let report = drain_cleanly(&env, &transformer, 1).await;
    assert_eq!(report.loaded.len(), 1, "{report:?}");
    assert_eq!(report.loaded[0].key, deleted);
    assert_eq!(posts(&env).await.len(), 5);
}

#[tokio::test]
async fn files_s3_will_not_serve_are_dead_lettered_with_the_reason_and_the_others_load() {
    use aws_sdk_s3::types::StorageClass;
    let env = landing_env(LANDING).await;
    enable_versioning(&env).await;
    let transformer = transformer(&env).await;
    let bucket = env.settings.storage.bucket.clone();
    let put = |key: &str| {
        env.aws
            .s3
            .put_object()
            .bucket(&bucket)
            .key(format!("{LANDING}/{key}"))
            .body(json(&posts_with_ids(1..=2)).into())
    };
    // Archived: S3 answers 403 InvalidObjectState until it is restored.
    put("archived.json")
        .storage_class(StorageClass::Glacier)
        .send()
        .await
        .unwrap();
    // Encrypted with a key of the producer's own (SSE-C): 400 InvalidRequest without it.
    put("sse-c.json")
        .sse_customer_algorithm("AES256")
        .sse_customer_key("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
        .sse_customer_key_md5("hRasmdxgYDKV3nvbahU1MA==")
        .send()
        .await
        .unwrap();
    let fine = format!("{LANDING}/fine.json");
    drop_file(&env, &fine, json(&posts_with_ids(3..=4)), None).await;
    wait_for_messages(&env, 3).await;
    // A version that does not exist (expired since, say): 404 NoSuchVersion.
    let no_version = serde_json::to_string(&{
        let mut event: serde_json::Value = serde_json::from_str(&event_body(
            &bucket,
            &format!("{LANDING}/fine.json"),
            "ObjectCreated:Put",
        ))
        .unwrap();
        event["Records"][0]["s3"]["object"]["versionId"] =
            "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY".into();
        event
    })
    .unwrap();
    env.send(&no_version).await;

    let report = transformer.drain().await.unwrap();

    assert!(report.retry_later.is_empty(), "no outage: {report:?}");
    assert_eq!(report.loaded.len(), 1, "{report:?}");
    assert_eq!(report.loaded[0].key, fine);
    assert_eq!(posts(&env).await, posts_with_ids(3..=4));
    let letters = dead_letter_reasons(&env).await;
    let kinds: Vec<&str> = letters.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["archived-object", "encrypted-object", "missing-object"],
        "{letters:#?}"
    );
    assert!(
        letters[0].1.starts_with(&format!(
            "s3://{bucket}/{LANDING}/archived.json: S3 will not serve it: it is archived"
        )),
        "{}",
        letters[0].1
    );
    assert!(
        letters[0].1.contains("InvalidObjectState"),
        "{}",
        letters[0].1
    );
    assert!(
        letters[1].1.contains("a customer-provided SSE-C key"),
        "{}",
        letters[1].1
    );
    assert!(letters[2].1.contains("NoSuchVersion"), "{}", letters[2].1);
}

#[tokio::test]
async fn rejects_of_files_with_non_ascii_or_very_long_keys_are_written() {
    let env = landing_env(LANDING).await;
    let transformer = transformer(&env).await;
    let bucket = env.settings.storage.bucket.clone();
    // Nine good records and one whose userId is not a number.
    let body = |first: i64| {
        let mut records: Vec<serde_json::Value> = posts_with_ids(first..=first + 9)
            .iter()
            .map(|post| serde_json::to_value(post).unwrap())
            .collect();
        records[4]["userId"] = "one".into();
        serde_json::to_vec(&records).unwrap()
    };
    let accented = format!("{LANDING}/café déjà vu.json");
    // S3's longest key: its rejects key would be longer than S3 allows.
    let long = format!("{LANDING}/{}", "ü".repeat(505));
    assert_eq!(long.len(), transformer::rejects::MAX_KEY_BYTES);
    drop_file(&env, &accented, body(1), None).await;
    drop_file(&env, &long, body(11), None).await;

    let report = drain_cleanly(&env, &transformer, 2).await;

    assert!(report.retry_later.is_empty(), "{report:?}");
    assert_eq!(report.loaded.len(), 2, "{report:?}");
    assert_eq!(posts(&env).await.len(), 18, "the good records of both");
    for raw_key in [&accented, &long] {
        let loaded = report.loaded.iter().find(|l| &l.key == raw_key).unwrap();
        assert_eq!((loaded.records_loaded, loaded.records_rejected), (9, 1));
        let url = loaded.rejects_url.as_deref().unwrap();
        let rejects_key = url
            .strip_prefix(&format!("s3://{bucket}/"))
            .unwrap()
            .to_owned();
        assert!(rejects_key.len() <= transformer::rejects::MAX_KEY_BYTES);
        let lines = String::from_utf8(env.object(&rejects_key).await).unwrap();
        assert_eq!(lines.lines().count(), 1, "{lines}");
        assert!(lines.contains(r#""userId":"one""#), "{lines}");
        let head = env
            .aws
            .s3
            .head_object()
            .bucket(&bucket)
            .key(&rejects_key)
            .send()
            .await
            .unwrap();
        let metadata = head.metadata().unwrap();
        assert_eq!(metadata["record-count"], "1");
        let raw_key_metadata = metadata.get("raw-key").map(String::as_str);
        if raw_key == &accented {
            assert_eq!(
                rejects_key,
                format!(
                    "errors/{accented}.{}.rejects.ndjson",
                    &barge_core::content_digest(&body(1))[..16]
                )
            );
            assert_eq!(
                raw_key_metadata,
                Some("landing/posts/caf%C3%A9%20d%C3%A9j%C3%A0%20vu.json"),
                "percent-encoded: S3 metadata is US-ASCII"
            );
        } else {
            assert!(rejects_key.contains('~'), "cut, with the key's digest");
            assert_eq!(raw_key_metadata, None, "too long for S3's metadata");
        }
    }
}

#[tokio::test]
async fn without_versions_an_event_whose_file_was_put_again_is_superseded_by_the_newer_one() {
    let env = landing_env(LANDING).await;
    let transformer = transformer(&env).await;
    let key = format!("{LANDING}/daily.json");
    let first = json(&posts_with_ids(1..=3));
    let mut changed = posts_with_ids(1..=3);
    changed[2].title = "put again before the first event was handled".into();
    let second = json(&changed);
    drop_file(&env, &key, first, None).await;
    let e_tag_b = drop_file(&env, &key, second.clone(), None)
        .await
        .e_tag
        .unwrap();
    wait_for_messages(&env, 2).await;
    let events = take_messages(&env, 2).await;
    let e_tag_b = e_tag_b.trim_matches('"');
    let event_b = events
        .iter()
        .find(|body| event_object(body, "eTag").as_deref() == Some(e_tag_b))
        .expect("the second put's event names its ETag");
    assert!(
        events
            .iter()
            .all(|body| event_object(body, "versionId").is_none())
    );
    // The first file's event first: the key already holds the second file.
    let event_a = events.iter().find(|body| *body != event_b).unwrap();
    env.send(event_a).await;
    let report = transformer.drain().await.unwrap();
    assert_eq!(report.superseded, [key.as_str()], "{report:?}");
    assert!(report.loaded.is_empty() && report.dead_lettered.is_empty());
    assert_eq!(env.queued_messages().await, 0, "acknowledged");
    assert!(
        ledger(&env).await.is_empty(),
        "nothing loaded under A's time"
    );

    env.send(event_b).await;
    let report = transformer.drain().await.unwrap();
    assert_eq!(report.loaded.len(), 1, "{report:?}");
    assert_eq!(posts(&env).await, changed);
    let identity = ledger_identity(&env).await;
    assert_eq!(identity.len(), 1);
    let (_, sha256, fetched_at, _) = &identity[0];
    assert_eq!(sha256, &barge_core::content_digest(&second));
    assert_eq!(
        *fetched_at,
        event_time(event_b),
        "the bytes' own event's time"
    );
}
