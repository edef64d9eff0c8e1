//! `importer run`'s operations endpoint against the sample API and LocalStack: after one run
//! of each source, `/metrics` (read by a Prometheus text-format parser) reports its exact pages,
//! records, objects, HTTP answers and retries, and the daemon is ready.

use std::time::Duration;

use barge_core::fetch::{PageStyle, Pagination};
use barge_localenv::{Daemon, Metrics, TestEnv, eventually, get, spawn_sample_api_handle};

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn metrics_count_a_run_exactly() {
    let (_api, base) = spawn_sample_api_handle(35).await;
    let mut env = TestEnv::new().await;
    let mut paged = barge_core::Source::jsonplaceholder_posts();
    paged.url = Some(format!("{base}/paged/posts"));
    paged.interval = Duration::from_secs(3600);
    paged.pagination = Pagination {
        style: PageStyle::Page,
        size_param: Some("per_page".into()),
        size: Some(10),
        ..Pagination::default()
    };
    let mut flaky = barge_core::Source::jsonplaceholder_posts();
    flaky.name = "flaky".into();
    flaky.url = Some(format!("{base}/flaky/posts?key=signals&times=2&fail=503"));
    flaky.interval = Duration::from_secs(3600);
    env.settings.sources = vec![paged, flaky];
    env.settings.validate().expect("valid settings");
    let daemon = Daemon::start(
        env!("CARGO_BIN_EXE_importer"),
        &["run"],
        &env,
        &[("BARGE__HTTP__MAX_BACKOFF", "100ms")],
    );
    let address = daemon.ops_address(LIMIT).await;
    let runs =
        |log: String| log.matches("run complete").count() + log.matches("run failed").count();
    eventually(LIMIT, "both runs end", || async { runs(daemon.log()) == 2 }).await;
    assert_eq!(
        daemon.log().matches("run complete").count(),
        2,
        "{}",
        daemon.log()
    );

    assert_eq!(get(address, "/health/ready").await.0, 200);
    let metrics = Metrics::scrape(address).await;
    let value = |name: &str, labels: &[(&str, &str)]| {
        metrics
            .value(name, labels)
            .unwrap_or_else(|| panic!("{name} {labels:?} missing; log:\n{}", daemon.log()))
    };
    let posts = [("source", "posts")];
    let flaky = [("source", "flaky")];
    // 10, 10, 10, 5, then an empty page: five pages, four objects.
    assert_eq!(value("barge_records_fetched_total", &posts), 35.0);
    assert_eq!(value("barge_importer_pages_total", &posts), 5.0);
    assert_eq!(value("barge_importer_objects_announced_total", &posts), 4.0);
    assert_eq!(
        value("barge_importer_fetch_duration_seconds_count", &posts),
        5.0
    );
    let responses = |source, class| {
        value(
            "barge_importer_http_responses_total",
            &[("source", source), ("status_class", class)],
        )
    };
    assert_eq!(responses("posts", "2xx"), 5.0);
    assert_eq!(value("barge_importer_http_retries_total", &posts), 0.0);
    // Two 503s, tried again, then the answer.
    assert_eq!(responses("flaky", "5xx"), 2.0);
    assert_eq!(responses("flaky", "2xx"), 1.0);
    assert_eq!(value("barge_importer_http_retries_total", &flaky), 2.0);
    assert_eq!(value("barge_records_fetched_total", &flaky), 35.0);
    assert!(value("barge_importer_fetched_bytes_total", &flaky) > 35.0 * 50.0);
    for source in ["posts", "flaky"] {
        let ok = [("source", source), ("outcome", "ok")];
        assert_eq!(value("barge_importer_runs_total", &ok), 1.0);
        let last = value("barge_importer_last_success_timestamp_seconds", &[ok[0]]);
        assert!(last > 1.7e9, "{last}");
    }
    daemon.terminate();
    let (code, log) = daemon.wait(LIMIT).await;
    assert_eq!(code, Some(0), "{log}");
}
