//! Every pagination style, the stop conditions, the loop guard, incremental runs and the
//! archive's object layout, against the sample API and real LocalStack.

use barge_core::fetch::{Incremental, PageStyle, Pagination};
use barge_core::{BatchMessage, RecordLayout, Source};
use barge_localenv::{TestEnv, spawn_sample_api_handle};
use barge_sample_api::SampleApi;
use importer::{ImportError, Importer, RunReport};

/// A test environment whose one source is `route` of a sample API serving `count` posts.
async fn env_for(count: i64, route: &str, edit: impl FnOnce(&mut Source)) -> (TestEnv, SampleApi) {
    let (api, base) = spawn_sample_api_handle(count).await;
    let mut env = TestEnv::new().await;
    let source = &mut env.settings.sources[0];
    source.url = Some(format!("{base}{route}"));
    edit(source);
    env.settings.validate().expect("valid settings");
    (env, api)
}

async fn run(env: &TestEnv) -> Result<RunReport, ImportError> {
    let importer = Importer::new(env.settings.clone(), env.aws.clone())
        .await
        .unwrap();
    importer.import(&env.settings.sources[0]).await
}

/// The ids of the records of `objects`, in order, read back from S3.
async fn archived_ids(env: &TestEnv, objects: &[BatchMessage]) -> Vec<i64> {
    let mut ids = Vec::new();
    for object in objects {
        let content = env.object(&object.key).await;
        let records = barge_core::split_records(&content, RecordLayout::Array).unwrap();
        assert_eq!(records.len() as u64, object.record_count, "{}", object.key);
        for record in records {
            let value: serde_json::Value = serde_json::from_str(&record).unwrap();
            ids.push(value["id"].as_i64().unwrap());
        }
    }
    ids
}

fn paged(style: PageStyle, edit: impl FnOnce(&mut Pagination)) -> Pagination {
    let mut pagination = Pagination {
        style,
        ..Pagination::default()
    };
    edit(&mut pagination);
    pagination
}

/// Runs `source` over 35 posts and checks that each post was archived once, in order, in
/// `objects` objects after `pages` requests, and that each object was announced.
async fn fetches_every_post_once(
    route: &str,
    pages: u64,
    objects: usize,
    edit: impl FnOnce(&mut Source),
) {
    let (env, _api) = env_for(35, route, edit).await;
    let report = run(&env)
        .await
        .unwrap_or_else(|err| panic!("{route}: {err}"));
    assert_eq!(report.pages, pages, "{route}: {report:?}");
    assert_eq!(report.records, 35, "{route}");
    assert_eq!(report.objects.len(), objects, "{route}: {report:?}");
    assert_eq!(
        archived_ids(&env, &report.objects).await,
        (1..=35).collect::<Vec<_>>(),
        "{route}"
    );
    assert_eq!(env.queued_messages().await, objects as u64, "{route}");
    assert!(!report.capped);
}

#[tokio::test]
async fn page_numbers_until_an_empty_page() {
    // 10, 10, 10, 5, then an empty page: four objects, five requests.
    fetches_every_post_once("/paged/posts", 5, 4, |source| {
        source.pagination = paged(PageStyle::Page, |p| {
            (p.size_param, p.size) = (Some("per_page".into()), Some(10));
        });
    })
    .await;
}

#[tokio::test]
async fn offsets_until_the_total_is_reached() {
    fetches_every_post_once("/offset/posts", 4, 4, |source| {
        source.records = "/items".into();
        source.pagination = paged(PageStyle::Offset, |p| {
            (p.size_param, p.size) = (Some("limit".into()), Some(10));
            p.total_field = Some("/total".into());
        });
    })
    .await;
}

#[tokio::test]
async fn cursors_until_has_more_is_false() {
    fetches_every_post_once("/cursor/posts", 4, 4, |source| {
        source.records = "/data".into();
        source.pagination = paged(PageStyle::Cursor, |p| {
            (p.size_param, p.size) = (Some("limit".into()), Some(10));
            p.cursor_field = Some("/next_cursor".into());
            p.has_more_field = Some("/has_more".into());
        });
    })
    .await;
}

#[tokio::test]
async fn next_urls_until_there_is_none() {
    fetches_every_post_once("/next/posts", 4, 4, |source| {
        source.records = "/results".into();
        source.pagination = paged(PageStyle::NextUrl, |p| {
            (p.size_param, p.size) = (Some("limit".into()), Some(10));
            p.next_url_field = Some("/next".into());
        });
    })
    .await;
}

#[tokio::test]
async fn link_headers_until_there_is_no_rel_next() {
    fetches_every_post_once("/link/posts", 4, 4, |source| {
        source.pagination = paged(PageStyle::LinkHeader, |p| {
            (p.size_param, p.size) = (Some("per_page".into()), Some(10));
        });
    })
    .await;
}

#[tokio::test]
async fn records_per_object_gathers_whole_pages_across_pages() {
    // Pages of 10; an object closes once it holds 15 or more: 20, then the last 15.
    let (env, _api) = env_for(35, "/paged/posts", |source| {
        source.pagination = paged(PageStyle::Page, |p| {
            (p.size_param, p.size) = (Some("per_page".into()), Some(10));
        });
        source.records_per_object = Some(15);
    })
    .await;
    let report = run(&env).await.unwrap();
    let counts: Vec<u64> = report.objects.iter().map(|o| o.record_count).collect();
    assert_eq!(counts, [20, 15]);
    assert_eq!(
        archived_ids(&env, &report.objects).await,
        (1..=35).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn max_pages_ends_the_run_early_and_says_so() {
    let (env, _api) = env_for(35, "/paged/posts", |source| {
        source.pagination = paged(PageStyle::Page, |p| {
            (p.size_param, p.size) = (Some("per_page".into()), Some(10));
            p.max_pages = 2;
        });
    })
    .await;
    let report = run(&env).await.unwrap();
    assert!(report.capped);
    assert_eq!((report.pages, report.records), (2, 20));
    assert!(importer::describe(&report).contains("stopped at pagination.max_pages"));
}

#[tokio::test]
async fn a_repeating_cursor_is_a_loop_named_by_source_and_page() {
    let (env, _api) = env_for(35, "/trap/posts", |source| {
        source.records = "/data".into();
        source.pagination = paged(PageStyle::Cursor, |p| {
            p.cursor_field = Some("/next_cursor".into());
        });
    })
    .await;
    let error = run(&env).await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with("source \"posts\": GET ")
            && text.ends_with(
                "page 2 points back to cursor \"same-cursor\" already followed: stopping instead of looping"
            ),
        "{text}"
    );
    assert!(!error.is_retryable());
    // The whole pages before the loop are kept: archived and announced, not lost.
    assert_eq!(env.queued_messages().await, 2);
}

#[tokio::test]
async fn an_api_that_ignores_the_page_parameter_is_a_loop() {
    let (env, _api) = env_for(5, "/posts", |source| {
        source.pagination = paged(PageStyle::Page, |_| {});
    })
    .await;
    let text = run(&env).await.unwrap_err().to_string();
    assert!(
        text.contains("page 2 points back to a page identical to an earlier page of this run"),
        "{text}"
    );
}

#[tokio::test]
async fn records_missing_from_the_envelope_are_a_clear_error() {
    let (env, _api) = env_for(5, "/offset/posts", |source| {
        source.records = "/data".into();
    })
    .await;
    let text = run(&env).await.unwrap_err().to_string();
    assert!(
        text.ends_with("page 1: no records at \"/data\" (the page is an object with keys [\"items\", \"total\"])"),
        "{text}"
    );
    assert!(env.object_keys().await.is_empty());
}

#[tokio::test]
async fn a_second_run_fetches_only_newer_records_and_an_unchanged_page_is_not_archived_again() {
    let (env, api) = env_for(20, "/paged/posts", |source| {
        source.pagination = paged(PageStyle::Page, |p| {
            (p.size_param, p.size) = (Some("per_page".into()), Some(10));
        });
        source.incremental = Some(Incremental {
            field: "id".into(),
            param: "since_id".into(),
            start: None,
        });
    })
    .await;
    let first = run(&env).await.unwrap();
    assert_eq!(
        archived_ids(&env, &first.objects).await,
        (1..=20).collect::<Vec<_>>()
    );
    assert_eq!(first.mark, Some(serde_json::json!(20)));

    api.set_count(27);
    let second = run(&env).await.unwrap();
    assert_eq!(
        archived_ids(&env, &second.objects).await,
        (21..=27).collect::<Vec<_>>(),
        "only the records newer than the mark"
    );
    assert_eq!(second.mark, Some(serde_json::json!(27)));

    // Nothing new: the empty page is all there is, and nothing is archived.
    let third = run(&env).await.unwrap();
    assert!(third.objects.is_empty(), "{third:?}");
    assert_eq!(third.mark, Some(serde_json::json!(27)));
    assert_eq!(env.queued_messages().await, 2 + 1);
}

#[tokio::test]
async fn the_same_page_twice_is_archived_and_announced_once() {
    let (env, _api) = env_for(12, "/posts", |_| {}).await;
    let first = run(&env).await.unwrap();
    let second = run(&env).await.unwrap();
    assert_eq!((first.objects.len(), second.objects.len()), (1, 0));
    assert_eq!(second.unchanged_pages, 1);
    assert_eq!(env.object_keys().await.len(), 1);
    assert_eq!(env.queued_messages().await, 1);
}

#[tokio::test]
async fn a_page_to_be_held_whole_is_bounded_by_max_page_bytes() {
    let (mut env, _api) = env_for(5, "/big?bytes=300000", |source| {
        source.records_per_object = Some(1000);
    })
    .await;
    env.settings.http.max_page_bytes = 100_000;
    let error = run(&env).await.unwrap_err();
    assert!(
        matches!(
            error,
            ImportError::PageTooLarge {
                page: 1,
                limit: 100_000,
                ..
            }
        ),
        "{error}"
    );
    assert!(env.object_keys().await.is_empty());
    // The same page streams through when it is archived as it comes.
    env.settings.sources[0].records_per_object = None;
    let report = run(&env).await.unwrap();
    assert_eq!(report.objects.len(), 1);
}

#[tokio::test]
async fn whole_pages_gathered_before_a_failure_are_archived_not_dropped() {
    let (env, _api) = env_for(35, "/trap/posts", |source| {
        source.records = "/data".into();
        source.records_per_object = Some(1000);
        source.pagination = paged(PageStyle::Cursor, |p| {
            p.cursor_field = Some("/next_cursor".into());
        });
    })
    .await;
    run(&env).await.unwrap_err();
    let keys = env.object_keys().await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let content = env.object(&keys[0]).await;
    let records = barge_core::split_records(&content, RecordLayout::Array).unwrap();
    assert_eq!(records.len(), 4, "pages 1 and 2, whole");
    assert_eq!(env.queued_messages().await, 1);
}

/// An API serving `/items?page=N` (three posts per page, two pages, newest first) whose next
/// link comes on a `Link` line of its own; returns its URL.
async fn newest_first_with_link_lines() -> String {
    use axum::extract::Query;
    use axum::http::header::LINK;
    use axum::response::{AppendHeaders, IntoResponse};
    #[derive(serde::Deserialize)]
    struct Paged {
        page: Option<i64>,
    }
    let api = axum::Router::new().route(
        "/items",
        axum::routing::get(|Query(Paged { page }): Query<Paged>| async move {
            let page = page.unwrap_or(1);
            let first = 7 - 3 * page;
            let posts: Vec<_> = (first.max(1)..=first + 2)
                .rev()
                .map(barge_sample_api::post)
                .collect();
            let mut links = vec![(LINK, "</items?page=1>; rel=\"first\"".to_owned())];
            if page < 2 {
                links.push((LINK, format!("</items?page={}>; rel=\"next\"", page + 1)));
            }
            (AppendHeaders(links), axum::Json(posts)).into_response()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/items", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, api).await });
    url
}

#[tokio::test]
async fn a_link_header_split_over_lines_is_followed_and_an_unsorted_capped_run_keeps_its_mark() {
    let url = newest_first_with_link_lines().await;
    let mut env = TestEnv::new().await.with_posts_url(&url);
    env.settings.sources[0].pagination = paged(PageStyle::LinkHeader, |_| {});
    let report = run(&env).await.unwrap();
    assert_eq!(
        archived_ids(&env, &report.objects).await,
        [6, 5, 4, 3, 2, 1]
    );

    // Newest first and cut short: moving the mark to 6 would skip 1 to 3 for good.
    env.settings.sources[0].pagination.max_pages = 1;
    env.settings.sources[0].name = "capped".into();
    env.settings.sources[0].incremental = Some(Incremental {
        field: "id".into(),
        param: "since_id".into(),
        start: None,
    });
    let error = run(&env).await.unwrap_err().to_string();
    assert!(
        error.contains("does not send records in ascending order of \"id\""),
        "{error}"
    );
}

#[tokio::test]
async fn a_redirect_to_another_origin_is_followed_only_without_credentials() {
    let (_api, base) = spawn_sample_api_handle(3).await;
    // Another port is another origin.
    let target = format!("{base}/posts");
    let redirector = axum::Router::new().route(
        "/moved",
        axum::routing::get(move || {
            let target = target.clone();
            async move { axum::response::Redirect::temporary(&target) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/moved", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, redirector).await });
    let mut env = TestEnv::new().await.with_posts_url(&url);
    assert_eq!(run(&env).await.unwrap().records, 3);

    // Any value will do as the token: the point is that it must not leave the origin.
    env.settings.sources[0].auth = Some(barge_core::fetch::Auth::Bearer {
        secret: barge_core::fetch::SecretRef::Env("PATH".into()),
    });
    let error = run(&env).await.unwrap_err();
    assert!(
        matches!(error, ImportError::Status { status: 307, .. }),
        "{error}"
    );
}
