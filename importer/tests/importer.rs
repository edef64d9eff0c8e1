//! The importer against real LocalStack, with the sample API or wiremock as the third-party API.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use barge_core::BatchMessage;
use barge_localenv::{TestEnv, spawn_sample_api};
use importer::{ImportError, Importer};
use sha2::{Digest, Sha256};

async fn receive_all(env: &TestEnv) -> Vec<BatchMessage> {
    let mut messages = Vec::new();
    loop {
        let received = env
            .aws
            .sqs
            .receive_message()
            .queue_url(&env.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default();
        if received.is_empty() {
            return messages;
        }
        for message in received {
            messages.push(BatchMessage::parse(message.body().unwrap()).expect("a batch message"));
        }
    }
}

#[tokio::test]
async fn archives_the_untouched_body_and_announces_it() {
    let url = spawn_sample_api(12).await;
    let env = TestEnv::new().await.with_posts_url(&url);
    let served = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    let importer = Importer::new(env.settings.clone(), env.aws.clone())
        .await
        .unwrap();

    let message = importer.import(&env.settings.sources[0]).await.unwrap();

    let keys = env.object_keys().await;
    assert_eq!(keys, [message.key.as_str()]);
    let parts: Vec<&str> = message.key.split('/').collect();
    assert_eq!(parts[..2], ["raw", "posts"]);
    assert_eq!(
        parts[2..5],
        message
            .fetched_at
            .format("%Y/%m/%d")
            .to_string()
            .split('/')
            .collect::<Vec<_>>()[..]
    );
    assert!(
        parts[5].ends_with(".json") && uuid_like(&parts[5][..parts[5].len() - 5]),
        "{}",
        message.key
    );

    let object = env
        .aws
        .s3
        .get_object()
        .bucket(&env.settings.storage.bucket)
        .key(&message.key)
        .send()
        .await
        .unwrap();
    let metadata = object.metadata().cloned().unwrap_or_default();
    assert_eq!(object.content_type(), Some("application/json"));
    let stored = object.body.collect().await.unwrap().into_bytes();
    assert_eq!(
        stored, served,
        "the archive holds the response byte for byte"
    );
    let digest = format!("{:x}", Sha256::digest(&stored));
    assert_eq!(message.sha256, digest);
    assert_eq!(message.record_count, 12);
    assert_eq!(message.source, "posts");
    assert_eq!(message.bucket, env.settings.storage.bucket);
    assert_eq!(metadata.get("source").map(String::as_str), Some("posts"));
    assert_eq!(metadata.get("record-count").map(String::as_str), Some("12"));
    assert_eq!(metadata.get("sha256"), Some(&digest));

    assert_eq!(receive_all(&env).await, [message]);
}

fn uuid_like(text: &str) -> bool {
    text.len() == 36 && text.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

#[tokio::test]
async fn bad_responses_are_named_and_write_nothing() {
    // A misbehaving third-party API, one route per way of misbehaving.
    let api = Router::new()
        .route(
            "/down",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "maintenance until 3am") }),
        )
        .route(
            "/missing",
            get(|| async { (StatusCode::NOT_FOUND, "no such thing") }),
        )
        .route("/html", get(|| async { "<html>hello</html>" }))
        .route("/object", get(|| async { r#"{"data": [{"id": 1}]}"# }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, api).await });
    let env = TestEnv::new().await;
    let importer = Importer::new(env.settings.clone(), env.aws.clone())
        .await
        .unwrap();
    let mut source = env.settings.sources[0].clone();
    let mut attempt = |route: &str| {
        source.url = format!("{base}{route}");
        let source = source.clone();
        let importer = importer.clone();
        async move { importer.import(&source).await.unwrap_err() }
    };

    let down = attempt("/down").await;
    assert!(matches!(down, ImportError::Status { status: 503, .. }));
    assert!(down.is_retryable());
    assert_eq!(
        down.to_string(),
        format!(
            "source \"posts\": GET {}/down answered HTTP 503: \"maintenance until 3am\"",
            base
        )
    );
    let missing = attempt("/missing").await;
    assert!(matches!(missing, ImportError::Status { status: 404, .. }));
    assert!(!missing.is_retryable());
    let html = attempt("/html").await;
    assert!(matches!(html, ImportError::Format { .. }), "{html}");
    assert_eq!(
        html.to_string(),
        format!(
            "source \"posts\": GET {base}/html did not return a batch: \
             not valid JSON: expected value at line 1 column 1"
        )
    );
    let object = attempt("/object").await;
    assert_eq!(
        object.to_string(),
        format!(
            "source \"posts\": GET {base}/object did not return a batch: \
             expected a JSON array of records, found an object"
        )
    );

    let refused = {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        source.url = format!("http://127.0.0.1:{port}/posts");
        importer.import(&source).await.unwrap_err()
    };
    assert!(
        matches!(refused, ImportError::Transport { .. }),
        "{refused}"
    );
    assert!(refused.is_retryable());

    assert!(env.object_keys().await.is_empty(), "nothing archived");
    assert_eq!(env.queued_messages().await, 0, "nothing announced");
}

#[tokio::test]
async fn once_reports_each_source_and_one_failure_does_not_stop_the_others() {
    let url = spawn_sample_api(3).await;
    let mut env = TestEnv::new().await.with_posts_url(&url);
    let mut broken = env.settings.sources[0].clone();
    broken.name = "broken".into();
    broken.url = format!("{url}/nope");
    env.settings.sources.insert(0, broken);
    let importer = Importer::new(env.settings.clone(), env.aws.clone())
        .await
        .unwrap();

    let outcomes = importer.run_once().await;

    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[0].0, "broken");
    assert!(matches!(
        outcomes[0].1,
        Err(ImportError::Status { status: 404, .. })
    ));
    assert_eq!(outcomes[1].0, "posts");
    let posted = outcomes[1].1.as_ref().expect("posts imported");
    assert_eq!(env.object_keys().await, [posted.key.as_str()]);
    assert_eq!(env.queued_messages().await, 1);
}

#[tokio::test]
async fn unknown_queue_fails_at_start_naming_it() {
    let mut env = TestEnv::new().await;
    env.settings.queue.queue = "no-such-queue-here".into();
    let err = Importer::new(env.settings.clone(), env.aws.clone())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot resolve SQS queue \"no-such-queue-here\""),
        "{err}"
    );
}

// Multi-threaded: the test blocks reading the daemon's stderr while the in-process API serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_imports_on_its_interval_and_stops_cleanly_on_sigterm() {
    let url = spawn_sample_api(4).await;
    let env = TestEnv::new().await;
    let config = std::env::temp_dir().join(format!("{}.toml", env.settings.queue.queue));
    std::fs::write(
        &config,
        format!(
            r#"
            [[sources]]
            name = "posts"
            url = "{url}"
            interval = "1s"
            table = "posts"
            primary_key = ["id"]
            columns = [{{ name = "id", type = "bigint" }}]
            "#
        ),
    )
    .unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_importer"))
        .args(["--config", config.to_str().unwrap(), "run"])
        .envs(env.barge_env())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(daemon.stderr.take().unwrap());
    let mut archived = 0;
    let mut log = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        if line.contains("batch archived and announced") {
            archived += 1;
            if archived == 2 {
                // Two imports a second apart: the interval drives the daemon.
                Command::new("kill")
                    .args(["-TERM", &daemon.id().to_string()])
                    .status()
                    .unwrap();
            }
        }
        log.push(line);
    }
    let status = daemon.wait().unwrap();
    let log = log.join("\n");
    assert!(status.success(), "exit {status}; log:\n{log}");
    assert!(log.contains("shutdown requested"), "{log}");
    assert!(log.contains("source stopped"), "{log}");
    let objects = env.object_keys().await.len();
    assert!(objects >= 2, "{objects} objects; log:\n{log}");
    // Every archived object was announced, including one that was under way at SIGTERM.
    assert_eq!(env.queued_messages().await, objects as u64, "log:\n{log}");
}
