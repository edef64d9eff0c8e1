//! Long loads and a PostgreSQL that goes away: the heartbeat keeps a slow load's message from a
//! second worker, a database restart in the middle of a load costs time, not data, and a long
//! outage does not dead-letter the backlog.

mod common;

use std::time::Duration;

use barge_localenv::postgres::Cluster;
use barge_localenv::{QueueShape, TestEnv, TestEnvOptions, eventually};
use common::{block_a_load, json, ledger, load_is_blocked, lock_posts, posts, transformer};
use tokio_util::sync::CancellationToken;

/// Starts the transformer's daemon loop in this process; cancel the token to stop it.
async fn run_transformer(env: &TestEnv) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let transformer = transformer(env).await;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move { transformer.run(&stop).await });
    (shutdown, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_keeps_a_load_longer_than_the_visibility_timeout_from_other_workers() {
    let env = TestEnv::with(TestEnvOptions {
        queue: QueueShape {
            visibility_timeout_seconds: 3,
            max_receive_count: 5,
        },
        ..TestEnvOptions::default()
    })
    .await;
    let (shutdown, task) = run_transformer(&env).await;
    let lock = block_a_load(&env, "raw/posts/slow.json", 4).await;

    // Three visibility timeouts pass while the load waits; a second worker polling all along
    // must never be handed the message.
    let competitor_got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let received = env.receive(&env.queue_url, 1).await;
            if !received.is_empty() {
                return received;
            }
        }
    })
    .await;
    assert!(
        competitor_got.is_err(),
        "a second worker received the message of a load in progress: {competitor_got:?}"
    );

    lock.batch_execute("COMMIT").await.unwrap();
    eventually(Duration::from_secs(30), "the load commits", || async {
        ledger(&env).await.len() == 1
    })
    .await;
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(posts(&env).await, barge_sample_api::posts(4));
    eventually(Duration::from_secs(5), "the message is deleted", || async {
        env.queued_messages().await == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_in_the_middle_of_a_load_costs_time_not_rows() {
    let cluster = Cluster::start_private().await.unwrap();
    let env = TestEnv::with(TestEnvOptions {
        queue: QueueShape {
            visibility_timeout_seconds: 5,
            max_receive_count: 3,
        },
        database_admin: Some(cluster.settings("postgres")),
    })
    .await;
    let (shutdown, task) = run_transformer(&env).await;
    let lock = lock_posts(&env).await;
    let first = barge_sample_api::posts(30);
    env.announce("posts", "raw/posts/first.json", &json(&first[..20]))
        .await;
    env.announce("posts", "raw/posts/second.json", &json(&first[10..]))
        .await;
    eventually(Duration::from_secs(30), "a load blocks on the lock", || {
        load_is_blocked(&env)
    })
    .await;

    // Fast shutdown ends every session, the blocked load's included; ten seconds later the
    // server is back, with the lock gone.
    cluster.stop();
    tokio::time::sleep(Duration::from_secs(10)).await;
    cluster.resume().unwrap();
    drop(lock);

    eventually(
        Duration::from_secs(90),
        "both objects load after the restart",
        || async { ledger(&env).await.len() == 2 },
    )
    .await;
    assert!(
        !task.is_finished(),
        "the daemon kept running through the outage"
    );
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(posts(&env).await, first, "nothing lost, nothing duplicated");
    assert_eq!(env.queued_messages().await, 0);
    assert_eq!(env.dead_lettered_messages().await, 0);
}

/// Visible and in-flight messages on the test's queue.
async fn visible_and_in_flight(env: &TestEnv) -> (u64, u64) {
    use aws_sdk_sqs::types::QueueAttributeName::{
        ApproximateNumberOfMessages, ApproximateNumberOfMessagesNotVisible,
    };
    let attributes = env
        .aws
        .sqs
        .get_queue_attributes()
        .queue_url(&env.queue_url)
        .attribute_names(ApproximateNumberOfMessages)
        .attribute_names(ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    let count = |name| attributes[&name].parse::<u64>().unwrap();
    (
        count(ApproximateNumberOfMessages),
        count(ApproximateNumberOfMessagesNotVisible),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_redrive_limit_dead_letters_nothing() {
    let cluster = Cluster::start_private().await.unwrap();
    let (visibility, max_receives) = (3, 2);
    let env = TestEnv::with(TestEnvOptions {
        queue: QueueShape {
            visibility_timeout_seconds: visibility,
            max_receive_count: max_receives,
        },
        database_admin: Some(cluster.settings("postgres")),
    })
    .await;
    let (shutdown, task) = run_transformer(&env).await;
    cluster.stop();
    let stopped = std::time::Instant::now();
    let posts = barge_sample_api::posts(60);
    for (index, chunk) in posts.chunks(10).enumerate() {
        env.announce("posts", &format!("raw/posts/{index}.json"), &json(chunk))
            .await;
    }

    // The breaker opens: the message in hand is held and tried again, every other one handed
    // back, and none received while PostgreSQL is down.
    eventually(
        Duration::from_secs(20),
        "five messages handed back, one held",
        || async { visible_and_in_flight(&env).await == (5, 1) },
    )
    .await;
    let outage = Duration::from_secs(2 * u64::from(visibility * max_receives) + 3);
    tokio::time::sleep(outage.saturating_sub(stopped.elapsed())).await;
    assert_eq!(
        visible_and_in_flight(&env).await,
        (5, 1),
        "nothing more is received while the database is down"
    );
    cluster.resume().unwrap();

    eventually(Duration::from_secs(90), "the backlog loads", || async {
        ledger(&env).await.len() == 6
    })
    .await;
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(common::posts(&env).await, posts);
    assert_eq!(
        env.dead_lettered_messages().await,
        0,
        "nothing dead-lettered"
    );
    assert_eq!(env.queued_messages().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_elsewhere_delays_a_load_without_blocking_it_for_good() {
    let mut env = TestEnv::new().await;
    env.settings.database.lock_timeout = Duration::from_secs(1);
    let (shutdown, task) = run_transformer(&env).await;
    // An ALTER TABLE or a forgotten transaction elsewhere holds the table.
    let lock = block_a_load(&env, "raw/posts/p.json", 3).await;

    // Each wait is cut at the lock timeout and retried, never one wait all along.
    let db = env.db().await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let longest: f64 = db
            .query_one(
                "SELECT coalesce(max(extract(epoch FROM clock_timestamp() - query_start)), 0)::float8 \
                 FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
                &[&env.settings.database.dbname],
            )
            .await
            .unwrap()
            .get(0);
        assert!(
            longest < 2.5,
            "a statement has waited {longest} s for the lock"
        );
    }
    lock.batch_execute("COMMIT").await.unwrap();

    eventually(Duration::from_secs(60), "the load commits", || async {
        ledger(&env).await.len() == 1
    })
    .await;
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(posts(&env).await, barge_sample_api::posts(3));
}
