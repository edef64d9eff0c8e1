//! The crash test: two transformer daemons on one queue, SIGKILLed at random moments and
//! restarted, while objects (some announced twice, arriving in random order, overlapping in keys
//! and fetched at different times) keep coming, for a keyed source (`posts`) and an append-only
//! one (`events`, where a second load of an object would show as duplicate rows). In the end
//! both tables must hold exactly the rows computed independently from the generated data, the
//! ledger each object once, and the dead-letter queue nothing.
//!
//! Knobs: `BARGE_CRASH_KILLS` (default 20), `BARGE_CRASH_OBJECTS` (default 60) and
//! `BARGE_CRASH_SEED` (random by default; printed, so a failure can be replayed).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use barge_localenv::{QueueShape, TestEnv, TestEnvOptions, eventually};
use barge_sample_api::Post;
use chrono::{DateTime, Utc};
use common::{daemon, json, ledger};
use md5::{Digest, Md5};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|value| {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{name}={value} is not a number"))
        })
        .unwrap_or(default)
}

/// One generated object: its source, key, fetch time and records.
struct Object {
    source: &'static str,
    key: String,
    fetched_at: DateTime<Utc>,
    posts: Vec<Post>,
}

/// Objects whose records overlap in ids, so that the order of fetch times decides the values;
/// every other one is an `events` object.
fn generate(rng: &mut fastrand::Rng, objects: usize) -> Vec<Object> {
    let start: DateTime<Utc> = "2026-11-24T00:00:00Z".parse().unwrap();
    (0..objects)
        .map(|index| {
            let posts = (0..rng.usize(20..120))
                .map(|n| {
                    let id = rng.i64(1..=400);
                    Post {
                        user_id: rng.i64(1..=50),
                        id,
                        title: format!("object {index} record {n}: \"quoted\" ünï\tcode 🚀"),
                        body: format!("id {id}\nfrom object {index}\\ line {n}"),
                    }
                })
                .collect();
            let source = if index % 2 == 0 { "posts" } else { "events" };
            Object {
                source,
                key: format!("raw/{source}/2026/11/24/object-{index:04}.json"),
                fetched_at: start + chrono::Duration::seconds(index as i64),
                posts,
            }
        })
        .collect()
}

/// The `posts` rows a correct load must end with: per id, the last record of the most recently
/// fetched `posts` object holding it.
fn expected_posts(objects: &[Object]) -> Vec<Post> {
    let mut rows: BTreeMap<i64, (DateTime<Utc>, Post)> = BTreeMap::new();
    for object in objects.iter().filter(|o| o.source == "posts") {
        for post in &object.posts {
            let newer = rows
                .get(&post.id)
                .is_none_or(|(fetched_at, _)| *fetched_at <= object.fetched_at);
            if newer {
                rows.insert(post.id, (object.fetched_at, post.clone()));
            }
        }
    }
    rows.into_values().map(|(_, post)| post).collect()
}

/// The `events` rows: every record of every `events` object, once, in the order the database
/// is asked to sort them.
fn expected_events(objects: &[Object]) -> Vec<Post> {
    let mut rows: Vec<Post> = objects
        .iter()
        .filter(|o| o.source == "events")
        .flat_map(|o| o.posts.iter().cloned())
        .collect();
    rows.sort_by(|a, b| {
        (a.id, a.user_id, &a.title, &a.body).cmp(&(b.id, b.user_id, &b.title, &b.body))
    });
    rows
}

/// Row count and MD5 of `table` as the database computes them, ordered as [`digest`] expects.
async fn table_digest(env: &TestEnv, table: &str) -> (usize, String) {
    let row = env
        .db()
        .await
        .query_one(
            &format!(
                "SELECT count(*), md5(coalesce(string_agg(\
                   format('%s|%s|%s|%s', id, user_id, title, body), E'\\n' \
                   ORDER BY id, user_id, title, body), '')) FROM {table}"
            ),
            &[],
        )
        .await
        .unwrap();
    (row.get::<_, i64>(0) as usize, row.get(1))
}

/// MD5 of the rows, one `id|user_id|title|body` line each, in their order: the same text the
/// database digests in [`table_digest`].
fn digest(rows: &[Post]) -> String {
    let text: Vec<String> = rows
        .iter()
        .map(|p| format!("{}|{}|{}|{}", p.id, p.user_id, p.title, p.body))
        .collect();
    format!("{:x}", Md5::digest(text.join("\n").as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sigkills_of_two_transformers_lose_and_duplicate_nothing() {
    let kills = knob("BARGE_CRASH_KILLS", 20);
    let object_count = knob("BARGE_CRASH_OBJECTS", 60) as usize;
    let seed = knob("BARGE_CRASH_SEED", fastrand::u64(..));
    println!("crash test: seed {seed}, {kills} kills, {object_count} objects");
    let mut rng = fastrand::Rng::with_seed(seed);
    let objects = generate(&mut rng, object_count);

    // A short visibility timeout so that a killed daemon's messages come back quickly. Every
    // kill costs the messages it held one receive, so the redrive limit leaves room for that.
    let mut env = TestEnv::with(TestEnvOptions {
        queue: QueueShape {
            visibility_timeout_seconds: 4,
            max_receive_count: 30,
        },
        ..TestEnvOptions::default()
    })
    .await;
    let mut events = env.settings.sources[0].clone();
    (events.name, events.table) = ("events".into(), "events".into());
    events.primary_key.clear();
    env.settings.sources.push(events);
    // Tables exist before the daemons race to start.
    common::transformer(&env).await;

    // Archive everything first, then announce in random order while the daemons are killed.
    let mut bodies = Vec::new();
    for object in &objects {
        let body = json(&object.posts);
        env.aws
            .s3
            .put_object()
            .bucket(&env.settings.storage.bucket)
            .key(&object.key)
            .body(body.clone().into())
            .send()
            .await
            .unwrap();
        let message = barge_core::BatchMessage {
            version: barge_core::message::MESSAGE_VERSION,
            source: object.source.into(),
            bucket: env.settings.storage.bucket.clone(),
            key: object.key.clone(),
            record_count: object.posts.len() as u64,
            sha256: barge_core::content_digest(&body),
            fetched_at: object.fetched_at,
            replay: None,
        };
        bodies.push(message.to_json());
        if rng.u8(..10) == 0 {
            bodies.push(message.to_json());
        }
    }
    rng.shuffle(&mut bodies);
    let duplicates = bodies.len() - objects.len();

    let mut daemons = [daemon(&env, &[]), daemon(&env, &[])];
    let started = Instant::now();
    let mut next_body = bodies.iter();
    let mut killed = 0;
    while killed < kills {
        // Messages keep arriving while the daemons die and come back.
        for body in next_body.by_ref().take(rng.usize(1..=4)) {
            env.send(body).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(100..900))).await;
        let victim = rng.usize(..2);
        let replacement = daemon(&env, &[]);
        std::mem::replace(&mut daemons[victim], replacement).kill();
        killed += 1;
    }
    for body in next_body {
        env.send(body).await;
    }
    println!(
        "crash test: {killed} kills in {:?}, {duplicates} duplicate messages",
        started.elapsed()
    );

    eventually(
        Duration::from_secs(180),
        "every object loads and the queue empties",
        || async { ledger(&env).await.len() == objects.len() && env.queued_messages().await == 0 },
    )
    .await;
    for daemon in daemons {
        daemon.terminate();
        let (code, log) = daemon.wait(Duration::from_secs(30)).await;
        assert_eq!(code, Some(0), "{log}");
    }

    for (table, expected) in [
        ("posts", expected_posts(&objects)),
        ("events", expected_events(&objects)),
    ] {
        assert_eq!(
            table_digest(&env, table).await,
            (expected.len(), digest(&expected)),
            "{table} differs from the generated data (seed {seed})"
        );
    }
    // One ledger row per object, and what each row says it loaded is what the object held.
    let ledger = ledger(&env).await;
    let mut expected_counts: Vec<(String, i64)> = objects
        .iter()
        .map(|o| (o.key.clone(), o.posts.len() as i64))
        .collect();
    expected_counts.sort();
    let counts: Vec<(String, i64)> = ledger
        .iter()
        .map(|row| (row.key.clone(), row.records_loaded))
        .collect();
    assert_eq!(counts, expected_counts, "each object once in the ledger");
    assert_eq!(
        env.dead_lettered_messages().await,
        0,
        "nothing dead-lettered"
    );
}
