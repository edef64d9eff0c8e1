//! The importer against real LocalStack, with the sample API or wiremock as the third-party API.

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use barge_core::fetch::{Compression, PageStyle, Pagination};
use barge_localenv::{Daemon, TestEnv, spawn_sample_api};
use importer::{ImportError, Importer};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn archives_the_untouched_body_and_announces_it() {
    let url = spawn_sample_api(12).await;
    let env = TestEnv::new().await.with_posts_url(&url);
    let served = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    let importer = Importer::new(env.settings.clone(), env.aws.clone())
        .await
        .unwrap();

    let report = importer.import(&env.settings.sources[0]).await.unwrap();

    assert_eq!(report.objects.len(), 1, "one page, one object");
    let message = report.objects[0].clone();
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
        parts[5].ends_with(".json.gz") && uuid_like(&parts[5][..parts[5].len() - 8]),
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
    assert_eq!(object.content_encoding(), Some("gzip"));
    let stored = object.body.collect().await.unwrap().into_bytes();
    assert_eq!(
        env.object(&message.key).await,
        served,
        "the archive holds the response byte for byte, gzip-compressed"
    );
    let digest = format!("{:x}", Sha256::digest(&stored));
    assert_eq!(message.sha256, digest);
    assert_eq!(message.record_count, 12);
    assert_eq!(message.source, "posts");
    assert_eq!(message.bucket, env.settings.storage.bucket);
    assert_eq!(metadata.get("source").map(String::as_str), Some("posts"));
    assert_eq!(metadata.get("record-count").map(String::as_str), Some("12"));
    assert_eq!(metadata.get("sha256"), Some(&digest));

    assert_eq!(env.batch_messages().await, [message]);
}

#[tokio::test]
async fn a_response_larger_than_a_part_streams_into_one_object_byte_for_byte() {
    // About 12 MiB: more than one 8 MiB part.
    let url = spawn_sample_api(100_000).await;
    let mut env = TestEnv::new().await.with_posts_url(&url);
    // Uncompressed, so that the object is larger than a part too.
    env.settings.sources[0].compression = Compression::None;
    let served = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    assert!(served.len() > 8 << 20, "{} bytes", served.len());
    let importer = Importer::new(env.settings.clone(), env.aws.clone())
        .await
        .unwrap();

    let report = importer.import(&env.settings.sources[0]).await.unwrap();
    let message = report.objects[0].clone();

    assert_eq!(env.object_keys().await, [message.key.as_str()]);
    let stored = env.object(&message.key).await;
    assert!(
        stored == served,
        "the archive holds the response byte for byte"
    );
    assert_eq!(message.sha256, format!("{:x}", Sha256::digest(&stored)));
    assert_eq!(message.record_count, 100_000);
    assert_eq!(env.open_uploads().await, 0);
    assert_eq!(env.batch_messages().await, [message]);
}

#[tokio::test]
async fn a_large_response_that_is_not_a_batch_leaves_no_object_and_no_parts() {
    // 9 MiB of records, then the array never closes: a part is uploaded before the end shows it.
    let mut body = "[".to_owned();
    while body.len() < 9 << 20 {
        body.push_str(r#"{"id":1,"title":"a record of a response that breaks off"},"#);
    }
    let length = body.len();
    let api = Router::new().route(
        "/broken",
        get(move || async move {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/broken", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, api).await });
    let mut env = TestEnv::new().await.with_posts_url(&url);
    env.settings.sources[0].compression = Compression::None;
    let importer = Importer::new(env.settings.clone(), env.aws.clone())
        .await
        .unwrap();

    let error = importer.import(&env.settings.sources[0]).await.unwrap_err();

    let expected =
        format!("not valid JSON: ended before the closing ] of the array at offset {length}");
    assert!(error.to_string().ends_with(&expected), "{error}");
    assert!(env.object_keys().await.is_empty());
    assert_eq!(
        env.open_uploads().await,
        0,
        "the multipart upload is aborted"
    );
    assert!(env.batch_messages().await.is_empty());
}

/// `body` served as `application/json`.
fn json(body: &'static str) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
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
        // Each says it is JSON: what is checked here is what the body is.
        .route("/html", get(|| async { json("<html>hello</html>") }))
        .route(
            "/object",
            get(|| async { json(r#"{"data": [{"id": 1}]}"#) }),
        )
        .route(
            "/broken-record",
            get(|| async { json(r#"[{"id": 1}, {"id": }]"#) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, api).await });
    let mut env = TestEnv::new().await;
    // One try each: retries are tests/http.rs's.
    env.settings.http.max_attempts = 1;
    let importer = Importer::new(env.settings.clone(), env.aws.clone())
        .await
        .unwrap();
    let mut source = env.settings.sources[0].clone();
    let mut attempt = |route: &str| {
        source.url = Some(format!("{base}{route}"));
        let source = source.clone();
        let importer = importer.clone();
        async move { importer.import(&source).await.unwrap_err() }
    };

    // API keys in the query string never reach an error or a log.
    let down = attempt("/down?api_key=s3cr3t&page=2").await;
    assert!(matches!(down, ImportError::Status { status: 503, .. }));
    assert!(down.is_retryable());
    assert_eq!(
        down.to_string(),
        format!(
            "source \"posts\": GET {base}/down?api_key=***&page=*** answered HTTP 503: \
             \"maintenance until 3am\""
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
             not valid JSON: expected a JSON array at offset 0"
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
    let broken = attempt("/broken-record").await;
    assert_eq!(
        broken.to_string(),
        "source \"posts\": page 1, record 1: not JSON: expected value at line 1 column 8"
    );

    let refused = {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        source.url = Some(format!(
            "http://user:pa55@127.0.0.1:{port}/posts?token=s3cr3t"
        ));
        importer.import(&source).await.unwrap_err()
    };
    assert!(
        matches!(refused, ImportError::Transport { .. }),
        "{refused}"
    );
    let text = refused.to_string();
    assert!(
        text.contains("/posts?token=***") && !text.contains("s3cr3t") && !text.contains("pa55"),
        "{text}"
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
    broken.url = Some(format!("{url}/nope"));
    env.settings.sources.insert(0, broken);
    let importer = Importer::new(env.settings.clone(), env.aws.clone())
        .await
        .unwrap();

    let outcomes = importer.run_once(&CancellationToken::new()).await;

    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[0].0, "broken");
    assert!(matches!(
        outcomes[0].1,
        Err(ImportError::Status { status: 404, .. })
    ));
    assert_eq!(outcomes[1].0, "posts");
    let posted = outcomes[1].1.as_ref().expect("posts imported");
    assert_eq!(env.object_keys().await, [posted.objects[0].key.as_str()]);
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

/// An interval long enough that a daemon imports once in a test.
const HOUR: Duration = Duration::from_secs(3600);

/// An API whose `/slow?page=N` answers three posts of their own (page 1 without `page`) after a
/// second, for ever, reporting each request it starts on `started`; returns its base URL.
async fn slow_api(started: tokio::sync::mpsc::UnboundedSender<()>) -> String {
    #[derive(serde::Deserialize)]
    struct Paged {
        page: Option<i64>,
    }
    let api = Router::new()
        .route(
            "/slow",
            get(move |query: axum::extract::Query<Paged>| {
                let started = started.clone();
                async move {
                    let _ = started.send(());
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    let last = query.page.unwrap_or(1) * 3;
                    axum::Json(
                        (last - 2..=last)
                            .map(barge_sample_api::post)
                            .collect::<Vec<_>>(),
                    )
                }
            }),
        )
        .merge(barge_sample_api::router(3));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, api).await });
    base
}

/// `env` with the given `(name, url)` sources, fetched every `interval`.
fn with_sources(mut env: TestEnv, interval: Duration, sources: &[(&str, &str)]) -> TestEnv {
    env.settings.sources = sources
        .iter()
        .map(|(name, url)| {
            let mut source = barge_core::Source::jsonplaceholder_posts();
            (source.name, source.url, source.interval) =
                (name.to_string(), Some(url.to_string()), interval);
            source
        })
        .collect();
    env
}

#[tokio::test]
async fn daemon_imports_on_its_interval() {
    let url = spawn_sample_api(4).await;
    let env = with_sources(
        TestEnv::new().await,
        Duration::from_secs(1),
        &[("posts", &url)],
    );
    let daemon = Daemon::start(env!("CARGO_BIN_EXE_importer"), &["run"], &env, &[]);
    barge_localenv::eventually(Duration::from_secs(30), "two runs", || async {
        daemon.log().matches("run complete").count() >= 2
    })
    .await;
    daemon.terminate();
    let (code, log) = daemon.wait(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0), "{log}");
    // The API answered the same page each time: archived and announced once.
    assert_eq!(env.object_keys().await.len(), 1, "log:\n{log}");
    assert_eq!(env.queued_messages().await, 1, "log:\n{log}");
    assert!(log.contains("page unchanged since the last run"), "{log}");
}

#[tokio::test]
async fn sigterm_during_an_import_finishes_it_before_the_daemon_stops() {
    let (started, mut requests) = tokio::sync::mpsc::unbounded_channel();
    let base = slow_api(started).await;
    let env = with_sources(
        TestEnv::new().await,
        HOUR,
        &[("posts", &format!("{base}/slow"))],
    );
    let daemon = Daemon::start(env!("CARGO_BIN_EXE_importer"), &["run"], &env, &[]);
    requests.recv().await.expect("the daemon fetches");

    daemon.terminate();
    let (code, log) = daemon.wait(Duration::from_secs(20)).await;

    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("shutdown requested"), "{log}");
    assert_eq!(env.object_keys().await.len(), 1, "archived; log:\n{log}");
    assert_eq!(env.queued_messages().await, 1, "and announced; log:\n{log}");
}

#[tokio::test]
async fn sigterm_during_once_stops_each_run_after_its_page_under_way() {
    let (started, mut requests) = tokio::sync::mpsc::unbounded_channel();
    let base = slow_api(started).await;
    let mut env = with_sources(
        TestEnv::new().await,
        HOUR,
        &[
            ("slow", &format!("{base}/slow")),
            ("posts", &format!("{base}/posts")),
        ],
    );
    // An endless paged API: only the signal ends this run.
    env.settings.sources[0].pagination = Pagination {
        style: PageStyle::Page,
        ..Pagination::default()
    };
    let daemon = Daemon::start(env!("CARGO_BIN_EXE_importer"), &["once"], &env, &[]);
    requests.recv().await.expect("the first page is asked for");
    requests.recv().await.expect("the second page is asked for");

    daemon.terminate();
    let (code, log) = daemon.wait(Duration::from_secs(20)).await;

    assert_eq!(code, Some(1), "a run did not complete; log:\n{log}");
    let keys = env.object_keys().await;
    let slow = keys
        .iter()
        .filter(|key| key.starts_with("raw/slow/"))
        .count();
    let posts = keys
        .iter()
        .filter(|key| key.starts_with("raw/posts/"))
        .count();
    // Every page asked for was finished, archived and announced; no page was started after.
    let asked = 2 + std::iter::from_fn(|| requests.try_recv().ok()).count();
    assert_eq!((slow, posts), (asked, 1), "{keys:?}; log:\n{log}");
    assert_eq!(env.queued_messages().await, asked as u64 + 1, "log:\n{log}");
    assert!(log.contains("stopped by shutdown"), "{log}");
    assert!(
        log.contains("slow: FAILED") && log.contains("posts: ok"),
        "{log}"
    );
}

#[tokio::test]
async fn the_daemon_tells_systemd_it_is_ready_and_alive() {
    let url = spawn_sample_api(2).await;
    let env = with_sources(TestEnv::new().await, HOUR, &[("posts", &url)]);
    let systemd = barge_localenv::NotifySocket::bind();
    let daemon = Daemon::start(
        env!("CARGO_BIN_EXE_importer"),
        &["run"],
        &env,
        &[
            ("NOTIFY_SOCKET", systemd.path().to_str().unwrap()),
            ("WATCHDOG_USEC", "600000"),
        ],
    );
    // Idle between imports still counts as alive: the interval here is an hour.
    systemd.expect_ready_and_alive(Duration::from_secs(30), || daemon.log());
    daemon.terminate();
    let (code, log) = daemon.wait(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0), "{log}");
}
