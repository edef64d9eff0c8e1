//! Object formats against real LocalStack and PostgreSQL: JSON arrays and NDJSON, plain or gzip
//! (declared by Content-Encoding, by the key's suffix, or only by its magic bytes), and the limits
//! that keep memory and work bounded whatever an object holds.

mod common;

use std::io::Write;

use barge_core::BatchMessage;
use barge_core::message::MESSAGE_VERSION;
use barge_localenv::TestEnv;
use common::{json, ledger, posts, transformer};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// NDJSON text of posts, one per line, with a blank line and a CRLF thrown in.
fn ndjson(posts: &[barge_sample_api::Post]) -> Vec<u8> {
    let mut out = Vec::new();
    for (index, post) in posts.iter().enumerate() {
        serde_json::to_writer(&mut out, post).unwrap();
        out.extend_from_slice(if index == 0 { b"\r\n\n" } else { b"\n" });
    }
    out
}

/// Writes `body` under `key` with `content_encoding`, and announces it as a `posts` batch.
async fn announce(env: &TestEnv, key: &str, body: Vec<u8>, content_encoding: Option<&str>) {
    let message = BatchMessage {
        version: MESSAGE_VERSION,
        source: "posts".into(),
        bucket: env.settings.storage.bucket.clone(),
        key: key.into(),
        record_count: 0,
        sha256: barge_core::content_digest(&body),
        fetched_at: chrono::Utc::now(),
        replay: None,
    };
    env.aws
        .s3
        .put_object()
        .bucket(&message.bucket)
        .key(key)
        .set_content_encoding(content_encoding.map(str::to_owned))
        .body(body.into())
        .send()
        .await
        .unwrap();
    env.send(&message.to_json()).await;
}

#[tokio::test]
async fn gzip_and_ndjson_objects_load_like_json_arrays() {
    let env = TestEnv::new().await;
    let served = barge_sample_api::posts(50);
    let part = |range: std::ops::Range<usize>| &served[range];
    announce(
        &env,
        "raw/posts/a.json.gz",
        gzip(&json(part(0..10))),
        Some("gzip"),
    )
    .await;
    announce(&env, "raw/posts/b.json", gzip(&json(part(10..20))), None).await;
    announce(&env, "raw/posts/c.ndjson", ndjson(part(20..30)), None).await;
    announce(
        &env,
        "raw/posts/d.jsonl.gz",
        gzip(&ndjson(part(30..40))),
        None,
    )
    .await;
    announce(&env, "raw/posts/e.json", json(part(40..50)), None).await;

    let report = transformer(&env).await.drain().await.unwrap();

    assert!(
        report.dead_lettered.is_empty(),
        "{:?}",
        report.dead_lettered
    );
    assert_eq!(report.loaded.len(), 5, "{report:?}");
    assert_eq!(posts(&env).await, served, "field for field");
    assert!(
        ledger(&env)
            .await
            .iter()
            .all(|row| row.records_read == 10 && row.records_loaded == 10)
    );
}

#[tokio::test]
async fn a_gzip_bomb_and_an_oversized_record_are_unreadable_not_out_of_memory() {
    let mut env = TestEnv::new().await;
    env.settings.transformer.max_object_bytes = 1 << 20;
    env.settings.transformer.max_record_bytes = 64 << 10;
    // A few KiB of gzip that inflate to 8 MiB of whitespace inside an array.
    let mut bomb = b"[".to_vec();
    bomb.resize(8 << 20, b' ');
    bomb.push(b']');
    announce(&env, "raw/posts/bomb.json.gz", gzip(&bomb), Some("gzip")).await;
    let mut huge = barge_sample_api::post(1);
    huge.body = "x".repeat(100 << 10);
    announce(
        &env,
        "raw/posts/huge.json",
        json(&[barge_sample_api::post(2), huge]),
        None,
    )
    .await;
    announce(
        &env,
        "raw/posts/bad.json.gz",
        b"not gzip at all".to_vec(),
        Some("gzip"),
    )
    .await;

    let report = transformer(&env).await.drain().await.unwrap();

    assert!(report.loaded.is_empty(), "{report:?}");
    let mut reasons: Vec<String> = env
        .dead_letters()
        .await
        .into_iter()
        .map(|dead| {
            assert_eq!(dead.attributes["barge-error-class"], "unreadable-object");
            dead.attributes["barge-error"].clone()
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "raw/posts/bad.json.gz: not valid gzip: invalid gzip header",
            "raw/posts/bomb.json.gz: larger than 1048576 bytes (decompressed), the limit for one object",
            "raw/posts/huge.json: record 1 is larger than 65536 bytes, the limit for one record",
        ]
    );
    assert!(
        posts(&env).await.is_empty(),
        "nothing of a refused object loads"
    );
    assert!(ledger(&env).await.is_empty());
}
