//! The importer's HTTP layer against the sample API: retries and `Retry-After`, the size limit,
//! the content check, each way of authenticating with a secret from each store, timeouts and the
//! rate limit. Timings are asserted only as lower bounds: the machines are shared.

use std::time::{Duration, Instant};

use axum::Router;
use axum::http::header::{CONTENT_TYPE, USER_AGENT};
use axum::http::{HeaderMap, Uri};
use axum::routing::get;
use barge_core::Source;
use barge_core::aws::AwsClients;
use barge_core::fetch::{Auth, SecretRef};
use barge_core::settings::HttpSettings;
use barge_localenv::{Daemon, TestEnv, spawn_sample_api_handle};
use barge_sample_api::{SAMPLE_TOKEN, SAMPLE_USER};
use importer::http::{Answer, Requester};
use importer::{ImportError, Importer};

/// The built-in posts source, fetching `url`.
fn source(url: &str) -> Source {
    Source {
        url: Some(url.to_owned()),
        ..Source::jsonplaceholder_posts()
    }
}

/// HTTP settings that keep tests short: backoff of a tenth of a second.
fn quick() -> HttpSettings {
    HttpSettings {
        max_backoff: Duration::from_millis(100),
        ..HttpSettings::default()
    }
}

/// A name no other test (or run) uses, for keys of the flaky route and secrets.
fn unique(what: &str) -> String {
    format!("{what}-{}", uuid::Uuid::new_v4().simple())
}

/// The whole body of `answer`.
async fn body(answer: &mut Answer) -> Result<Vec<u8>, ImportError> {
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await? {
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// GETs `source`'s URL once through a requester made with `settings`, and reads the body;
/// returns the number of records of the JSON array answered.
async fn fetch(source: &Source, settings: &HttpSettings) -> Result<usize, ImportError> {
    let aws = AwsClients::from_env().await;
    fetch_with(source, settings, &aws).await
}

async fn fetch_with(
    source: &Source,
    settings: &HttpSettings,
    aws: &AwsClients,
) -> Result<usize, ImportError> {
    let client = importer::http::client(settings, true).unwrap();
    let mut requester = Requester::new(source, settings, &client, aws).await?;
    let url = url::Url::parse(source.url.as_deref().unwrap()).unwrap();
    let mut answer = requester.get(&url, 1).await?;
    let records: Vec<serde_json::Value> =
        serde_json::from_slice(&body(&mut answer).await?).expect("the answer is a JSON array");
    Ok(records.len())
}

#[tokio::test]
async fn retry_after_in_seconds_and_as_a_date_is_waited_for_then_the_answer_is_taken() {
    let (api, base) = spawn_sample_api_handle(5).await;
    for retry_after in ["1", "date"] {
        let key = unique("retry-after");
        let url =
            format!("{base}/flaky/posts?key={key}&times=1&fail=429&retry_after={retry_after}");
        let started = Instant::now();

        let records = fetch(&source(&url), &quick()).await.unwrap();

        assert_eq!(records, 5);
        assert_eq!(api.requests(&key), 2, "one 429, then the answer");
        // The backoff alone is a tenth of a second: only Retry-After explains the wait. A date
        // has whole seconds, so "two seconds ahead" is a little under one once truncated.
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(900),
            "{retry_after}: {waited:?}"
        );
    }
}

#[tokio::test]
async fn server_errors_are_tried_again_until_the_answer_comes() {
    let (api, base) = spawn_sample_api_handle(3).await;
    for (fail, times) in [(500, 1), (503, 2)] {
        let key = unique("server-error");
        let url = format!("{base}/flaky/posts?key={key}&times={times}&fail={fail}");

        let records = fetch(&source(&url), &quick()).await.unwrap();

        assert_eq!(records, 3);
        assert_eq!(api.requests(&key), times + 1);
    }
}

#[tokio::test]
async fn retries_exhausted_fail_with_the_last_status() {
    let (api, base) = spawn_sample_api_handle(3).await;
    let key = unique("exhausted");
    let url = format!("{base}/flaky/posts?key={key}&times=10&fail=503");
    let settings = HttpSettings {
        max_attempts: 3,
        ..quick()
    };

    let error = fetch(&source(&url), &settings).await.unwrap_err();

    assert!(
        matches!(
            error,
            ImportError::Status {
                status: 503,
                tries: 3,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.is_retryable());
    assert_eq!(
        error.to_string(),
        format!(
            "source \"posts\": GET {base}/flaky/posts?key=***&times=***&fail=*** answered HTTP \
             503 after 3 tries: \"{{\\\"error\\\":\\\"Service Unavailable\\\"}}\""
        )
    );
    assert_eq!(api.requests(&key), 3);
}

#[tokio::test]
async fn a_retry_after_above_the_maximum_fails_at_once_saying_what_was_asked() {
    let (api, base) = spawn_sample_api_handle(3).await;
    let key = unique("too-long");
    let url = format!("{base}/flaky/posts?key={key}&times=1&fail=429&retry_after=3600");
    let settings = HttpSettings {
        max_retry_after: Duration::from_secs(60),
        ..quick()
    };

    let error = fetch(&source(&url), &settings).await.unwrap_err();

    assert!(
        matches!(error, ImportError::RetryAfterTooLong { .. }),
        "{error}"
    );
    assert!(error.is_retryable(), "a later run may be let in");
    assert!(
        error.to_string().ends_with(
            "answered HTTP 429 with Retry-After: 3600 (3600 s), longer than \
             http.max_retry_after (60 s)"
        ),
        "{error}"
    );
    assert_eq!(api.requests(&key), 1, "not tried again");
}

#[tokio::test]
async fn a_client_error_fails_at_once() {
    let (_, base) = spawn_sample_api_handle(3).await;

    let error = fetch(&source(&format!("{base}/private/posts")), &quick())
        .await
        .unwrap_err();

    assert!(
        matches!(
            error,
            ImportError::Status {
                status: 401,
                tries: 1,
                ..
            }
        ),
        "{error}"
    );
    assert!(!error.is_retryable());
    assert!(
        error
            .to_string()
            .ends_with("answered HTTP 401: \"{\\\"error\\\":\\\"unauthorized\\\"}\""),
        "{error}"
    );
}

/// Imports `source` with `env`'s importer; on failure checks that nothing was archived,
/// left half-uploaded or announced.
async fn import(env: &TestEnv, source: &Source) -> Result<u64, ImportError> {
    let importer = Importer::new(env.settings.clone(), env.aws.clone())
        .await
        .unwrap();
    let outcome = importer.import(source).await;
    if outcome.is_err() {
        assert!(env.object_keys().await.is_empty(), "nothing archived");
        assert_eq!(env.open_uploads().await, 0, "no upload left open");
        assert_eq!(env.queued_messages().await, 0, "nothing announced");
    }
    outcome.map(|report| report.records)
}

#[tokio::test]
async fn a_body_over_the_limit_fails_whether_or_not_its_length_is_announced() {
    let (_, base) = spawn_sample_api_handle(3).await;
    // The same size with a Content-Length: axum announces a body it has whole.
    let whole = format!("[\"{}\"]", "x".repeat(20_000));
    let announced = Router::new().route(
        "/announced",
        get(move || async move { ([(CONTENT_TYPE, "application/json")], whole) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let announced_url = format!("http://{}/announced", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, announced).await });
    let mut env = TestEnv::new().await;
    env.settings.http.max_response_bytes = 16_384;

    // /big streams without a Content-Length: the limit is found while reading, after parts of
    // the body went to the archive's upload.
    let streamed = import(&env, &source(&format!("{base}/big?bytes=20000")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            streamed,
            ImportError::TooLarge {
                limit: 16_384,
                content_length: None,
                ..
            }
        ),
        "{streamed}"
    );
    assert_eq!(
        streamed.to_string(),
        format!(
            "source \"posts\": GET {base}/big?bytes=***: the body is larger than \
             http.max_response_bytes (16384 bytes)"
        )
    );
    assert!(!streamed.is_retryable());

    let at_once = import(&env, &source(&announced_url)).await.unwrap_err();
    assert!(
        at_once
            .to_string()
            .ends_with("(16384 bytes), Content-Length: 20004"),
        "{at_once}"
    );

    // Under the limit, the same route is a batch: 99 strings of 101 bytes with their commas.
    assert_eq!(
        import(&env, &source(&format!("{base}/big?bytes=10000")))
            .await
            .unwrap(),
        99
    );
}

#[tokio::test]
async fn html_and_plain_text_answers_fail_naming_their_content_type() {
    let (_, base) = spawn_sample_api_handle(3).await;
    let env = TestEnv::new().await;

    let html = import(&env, &source(&format!("{base}/html")))
        .await
        .unwrap_err();
    assert!(matches!(html, ImportError::NotJson { .. }), "{html}");
    assert!(!html.is_retryable());
    let text = html.to_string();
    assert!(
        text.starts_with(&format!(
            "source \"posts\": GET {base}/html answered Content-Type \"text/html; \
             charset=utf-8\", not JSON: \"<!DOCTYPE html>\\n<html><head><title>Sign in"
        )),
        "{text}"
    );

    let plain = import(&env, &source(&format!("{base}/json-wrong-type")))
        .await
        .unwrap_err();
    assert!(
        plain
            .to_string()
            .contains("answered Content-Type \"text/plain\", not JSON: \"[{\\\"userId\\\":1,"),
        "{plain}"
    );
}

/// `source` reading `/private/posts` with `auth`.
fn private(base: &str, name: &str, auth: Auth) -> Source {
    Source {
        name: name.to_owned(),
        auth: Some(auth),
        ..source(&format!("{base}/private/posts"))
    }
}

/// The four ways of sending a credential, each with the secret from `secret(kind)`.
fn every_auth(secret: impl Fn(&str) -> SecretRef) -> Vec<(&'static str, Auth)> {
    vec![
        (
            "bearer",
            Auth::Bearer {
                secret: secret("bearer"),
            },
        ),
        (
            "header",
            Auth::Header {
                name: "X-Api-Key".into(),
                secret: secret("header"),
            },
        ),
        (
            "query",
            Auth::Query {
                name: "api_key".into(),
                secret: secret("query"),
            },
        ),
        (
            "basic",
            Auth::Basic {
                username: SAMPLE_USER.into(),
                secret: secret("basic"),
            },
        ),
    ]
}

#[tokio::test]
async fn each_kind_of_auth_is_accepted_with_its_secret_from_secrets_manager_or_ssm() {
    let (_, base) = spawn_sample_api_handle(4).await;
    let env = TestEnv::new().await;
    let aws = &env.aws;
    // A plain Secrets Manager secret, a field of a JSON one, and an SSM SecureString.
    let plain = unique("barge-test/plain");
    let json = unique("barge-test/json");
    let parameter = format!("/{}", unique("barge-test/token"));
    aws.secrets
        .create_secret()
        .name(&plain)
        .secret_string(SAMPLE_TOKEN)
        .send()
        .await
        .unwrap();
    aws.secrets
        .create_secret()
        .name(&json)
        .secret_string(serde_json::json!({ "user": "x", "token": SAMPLE_TOKEN }).to_string())
        .send()
        .await
        .unwrap();
    aws.ssm
        .put_parameter()
        .name(&parameter)
        .value(SAMPLE_TOKEN)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let stores = [
        SecretRef::SecretsManager {
            id: plain,
            field: None,
        },
        SecretRef::SecretsManager {
            id: json,
            field: Some("token".into()),
        },
        SecretRef::Ssm(parameter),
    ];

    for store in &stores {
        for (kind, auth) in every_auth(|_| store.clone()) {
            let source = private(&base, kind, auth);
            let records = fetch_with(&source, &quick(), aws).await;
            assert_eq!(records.ok(), Some(4), "{kind} with {store}");
        }
    }
    // Through the importer too: archived and announced.
    let source = private(
        &base,
        "private",
        Auth::Bearer {
            secret: stores[2].clone(),
        },
    );
    assert_eq!(import(&env, &source).await.unwrap(), 4);
    assert_eq!(env.queued_messages().await, 1);
}

#[tokio::test]
async fn each_kind_of_auth_is_accepted_with_its_secret_from_the_environment() {
    let (_, base) = spawn_sample_api_handle(2).await;
    let mut env = TestEnv::new().await;
    env.settings.sources = every_auth(|_| SecretRef::Env("BARGE_TEST_SAMPLE_TOKEN".into()))
        .into_iter()
        .map(|(kind, auth)| private(&base, kind, auth))
        .collect();

    let daemon = Daemon::start(
        env!("CARGO_BIN_EXE_importer"),
        &["once"],
        &env,
        &[("BARGE_TEST_SAMPLE_TOKEN", SAMPLE_TOKEN)],
    );
    let (code, log) = daemon.wait(Duration::from_secs(60)).await;

    assert_eq!(code, Some(0), "{log}");
    assert_eq!(env.object_keys().await.len(), 4, "{log}");
    assert_eq!(env.queued_messages().await, 4, "{log}");
    assert!(!log.contains(SAMPLE_TOKEN), "{log}");
}

#[tokio::test]
async fn a_missing_secret_fails_naming_where_it_was_looked_for() {
    let (_, base) = spawn_sample_api_handle(2).await;
    let env = TestEnv::new().await;
    let missing = [
        (
            SecretRef::Env("BARGE_TEST_NO_SUCH_VARIABLE".into()),
            "cannot read the secret from environment variable BARGE_TEST_NO_SUCH_VARIABLE: it \
             is not set",
        ),
        (
            SecretRef::SecretsManager {
                id: "barge-test/no-such-secret".into(),
                field: None,
            },
            "cannot read secret \"barge-test/no-such-secret\" from AWS Secrets Manager: ",
        ),
        (
            SecretRef::Ssm("/barge-test/no-such-parameter".into()),
            "cannot read parameter \"/barge-test/no-such-parameter\" from AWS SSM Parameter \
             Store: ",
        ),
    ];
    for (secret, expected) in missing {
        let source = private(&base, "private", Auth::Bearer { secret });
        let error = import(&env, &source).await.unwrap_err();
        assert!(matches!(error, ImportError::Secret { .. }), "{error}");
        assert!(!error.is_retryable(), "{error}");
        let text = error.to_string();
        assert!(
            text.starts_with(&format!(
                "source \"private\": cannot read the API credential: {expected}"
            )),
            "{text}"
        );
    }
    // A JSON secret without the field names the field.
    let id = unique("barge-test/fieldless");
    env.aws
        .secrets
        .create_secret()
        .name(&id)
        .secret_string(r#"{"other": "sample-token"}"#)
        .send()
        .await
        .unwrap();
    let source = private(
        &base,
        "private",
        Auth::Header {
            name: "X-Api-Key".into(),
            secret: SecretRef::SecretsManager {
                id: id.clone(),
                field: Some("token".into()),
            },
        },
    );
    let error = import(&env, &source).await.unwrap_err().to_string();
    assert_eq!(
        error,
        format!(
            "source \"private\": cannot read the API credential: cannot read field \"token\" \
             of secret {id:?} from AWS Secrets Manager: the JSON object has no such field"
        )
    );
    assert!(!error.contains(SAMPLE_TOKEN), "{error}");
}

#[tokio::test]
async fn the_secret_never_shows_in_errors_logs_or_debug_output() {
    let (_, base) = spawn_sample_api_handle(2).await;
    let env = TestEnv::new().await;
    // A wrong token: the API refuses it, and the error must not quote it.
    let wrong = "wrong-token-0123456789";
    let id = unique("barge-test/wrong");
    env.aws
        .secrets
        .create_secret()
        .name(&id)
        .secret_string(wrong)
        .send()
        .await
        .unwrap();
    let settings = quick();
    let client = importer::http::client(&settings, true).unwrap();
    for (kind, auth) in every_auth(|_| SecretRef::SecretsManager {
        id: id.clone(),
        field: None,
    }) {
        let source = private(&base, kind, auth);
        let requester = Requester::new(&source, &settings, &client, &env.aws)
            .await
            .unwrap();
        let debug = format!("{requester:?} {source:?} {:?}", env.settings);
        assert!(!debug.contains(wrong), "{kind}: {debug}");
        let error = fetch_with(&source, &settings, &env.aws).await.unwrap_err();
        assert!(
            matches!(error, ImportError::Status { status: 401, .. }),
            "{kind}: {error}"
        );
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(wrong), "{kind}: {shown}");
    }
}

#[tokio::test]
async fn the_sources_headers_and_query_and_barges_user_agent_are_sent() {
    // An API that answers with what it was sent.
    let echo = Router::new().route(
        "/echo",
        get(|uri: Uri, headers: HeaderMap| async move {
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            let sent = serde_json::json!([{
                "query": uri.query().unwrap_or_default(),
                "agent": header(USER_AGENT.as_str()),
                "version": header("x-api-version"),
            }]);
            ([(CONTENT_TYPE, "application/json")], sent.to_string())
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/echo?fixed=1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, echo).await });
    let mut source = source(&url);
    source
        .headers
        .insert("X-Api-Version".into(), "2024-01".into());
    source.query.insert("limit".into(), "50".into());
    let settings = quick();
    let client = importer::http::client(&settings, true).unwrap();
    let aws = AwsClients::from_env().await;
    let mut requester = Requester::new(&source, &settings, &client, &aws)
        .await
        .unwrap();

    let mut answer = requester.get(&url.parse().unwrap(), 1).await.unwrap();

    assert_eq!(answer.url.as_str(), format!("{url}&limit=50"));
    let sent: serde_json::Value =
        serde_json::from_slice(&body(&mut answer).await.unwrap()).unwrap();
    assert_eq!(sent[0]["query"], "fixed=1&limit=50");
    assert_eq!(sent[0]["version"], "2024-01");
    assert_eq!(
        sent[0]["agent"],
        format!("barge-importer/{}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn the_rate_limit_spaces_requests_retries_included() {
    let (api, base) = spawn_sample_api_handle(2).await;
    let settings = HttpSettings {
        max_backoff: Duration::from_millis(10),
        ..HttpSettings::default()
    };
    let mut source = source(&format!("{base}/posts"));
    source.rate_limit = Some(4.0);
    let client = importer::http::client(&settings, true).unwrap();
    let aws = AwsClients::from_env().await;
    let mut requester = Requester::new(&source, &settings, &client, &aws)
        .await
        .unwrap();
    let url: url::Url = source.url.as_deref().unwrap().parse().unwrap();

    // 5 requests at 4 per second take at least a second.
    let started = Instant::now();
    for page in 1..=5 {
        let mut answer = requester.get(&url, page).await.unwrap();
        body(&mut answer).await.unwrap();
    }
    let spaced = started.elapsed();
    assert!(spaced >= Duration::from_secs(1), "{spaced:?}");

    // Two failures and the answer are three requests: half a second at 4 per second, although
    // the backoff is 10 ms.
    let key = unique("rate");
    let flaky: url::Url = format!("{base}/flaky/posts?key={key}&times=2&fail=500")
        .parse()
        .unwrap();
    let started = Instant::now();
    let mut answer = requester.get(&flaky, 1).await.unwrap();
    body(&mut answer).await.unwrap();
    assert_eq!(api.requests(&key), 3);
    // The first of them waited for its turn after the last request above, too.
    let spaced = started.elapsed();
    assert!(spaced >= Duration::from_millis(500), "{spaced:?}");
}

#[tokio::test]
async fn a_slow_answer_or_a_stalled_body_times_out() {
    let (_, base) = spawn_sample_api_handle(3).await;
    let settings = HttpSettings {
        timeout: Duration::from_millis(500),
        max_attempts: 2,
        ..quick()
    };

    // No answer within the timeout, twice.
    let started = Instant::now();
    let slow = fetch(
        &source(&format!("{base}/slow/posts?delay_ms=5000")),
        &settings,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(slow, ImportError::Transport { tries: 2, .. }),
        "{slow}"
    );
    assert!(slow.is_retryable());
    assert!(
        slow.to_string()
            .ends_with("failed after 2 tries: error sending request: operation timed out"),
        "{slow}"
    );
    assert!(started.elapsed() >= Duration::from_secs(1));

    // The answer starts, then the body stops: not retried, the body is half read.
    let stalled = fetch(&source(&format!("{base}/posts?stall_ms=5000")), &settings)
        .await
        .unwrap_err();
    assert!(
        matches!(stalled, ImportError::Transport { tries: 1, .. }),
        "{stalled}"
    );
    assert!(stalled.is_retryable());
    assert!(
        stalled.to_string().ends_with("operation timed out"),
        "{stalled}"
    );
}

#[tokio::test]
async fn each_retry_is_logged_with_its_status_attempt_delay_and_redacted_url() {
    let (api, base) = spawn_sample_api_handle(2).await;
    let key = unique("logged");
    let mut env = TestEnv::new().await;
    env.settings.sources = vec![source(&format!(
        "{base}/flaky/posts?key={key}&times=1&fail=503&api_key=s3cr3t-in-the-url"
    ))];

    let daemon = Daemon::start(
        env!("CARGO_BIN_EXE_importer"),
        &["once"],
        &env,
        &[("BARGE__HTTP__MAX_BACKOFF", "100ms")],
    );
    let (code, log) = daemon.wait(Duration::from_secs(60)).await;

    assert_eq!(code, Some(0), "{log}");
    assert_eq!(api.requests(&key), 2);
    let retry = log
        .lines()
        .find(|line| line.contains("request failed; trying again"))
        .unwrap_or_else(|| panic!("no retry logged:\n{log}"));
    for field in [
        "WARN",
        "status=503",
        "attempt=1",
        "max_attempts=5",
        "delay=100ms",
        &format!("url={base}/flaky/posts?key=***&times=***&fail=***&api_key=***"),
    ] {
        assert!(retry.contains(field), "{field} in {retry}");
    }
    assert!(!log.contains("s3cr3t-in-the-url"), "{log}");
}
