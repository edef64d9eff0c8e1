//! Killing the importer mid-run loses nothing and archives nothing twice: the next run
//! announces what the killed one left unannounced and skips the pages it already archived.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use barge_core::fetch::{PageStyle, Pagination};
use barge_localenv::{Daemon, TestEnv};
use importer::Importer;

/// Pages served by [`slow_pages`]: five pages of three posts, then an empty one.
const PAGES: i64 = 5;

/// An API serving `/slow?page=N` (posts 3N-2 to 3N, none past page five) after half a
/// second, reporting each page asked for on `asked`; returns the URL.
async fn slow_pages(asked: tokio::sync::mpsc::UnboundedSender<i64>) -> String {
    #[derive(serde::Deserialize)]
    struct Paged {
        page: i64,
    }
    let api = Router::new().route(
        "/slow",
        get(move |Query(Paged { page }): Query<Paged>| {
            let asked = asked.clone();
            async move {
                let _ = asked.send(page);
                tokio::time::sleep(Duration::from_millis(500)).await;
                let posts: Vec<_> = if page > PAGES {
                    Vec::new()
                } else {
                    (page * 3 - 2..=page * 3)
                        .map(barge_sample_api::post)
                        .collect()
                };
                axum::Json(posts)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slow", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, api).await });
    url
}

#[tokio::test]
async fn a_run_killed_mid_way_is_completed_by_the_next_without_archiving_a_page_twice() {
    let (asked, mut pages) = tokio::sync::mpsc::unbounded_channel();
    let url = slow_pages(asked).await;
    let mut env = TestEnv::new().await.with_posts_url(&url);
    env.settings.sources[0].pagination = Pagination {
        style: PageStyle::Page,
        ..Pagination::default()
    };
    let daemon = Daemon::start(env!("CARGO_BIN_EXE_importer"), &["once"], &env, &[]);
    // Page 3 asked for: pages 1 and 2 are archived, announced, and not yet in the state.
    while pages.recv().await != Some(3) {}
    daemon.kill();
    let archived_before = env.object_keys().await;
    assert_eq!(archived_before.len(), 2, "{archived_before:?}");
    let markers = env.all_object_keys().await.len() - archived_before.len();
    assert_eq!(
        markers, 2,
        "a marker per object, since the run never saved its state"
    );

    let importer = Importer::new(env.settings.clone(), env.aws.clone())
        .await
        .unwrap();
    let report = importer.import(&env.settings.sources[0]).await.unwrap();

    assert_eq!(report.recovered, 2, "{report:?}");
    assert_eq!(
        report.unchanged_pages, 2,
        "pages 1 and 2 are not archived again"
    );
    assert_eq!(report.objects.len(), 3, "pages 3 to 5");
    let archived = env.object_keys().await;
    assert_eq!(archived.len(), PAGES as usize, "{archived:?}");
    // Pages 1 and 2 were announced twice (the ledger loads an object once); every archived
    // object is announced, and nothing else is.
    let messages = env.batch_messages().await;
    assert_eq!(messages.len(), PAGES as usize + 2);
    let announced: BTreeSet<&str> = messages.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(announced, archived.iter().map(String::as_str).collect());
    assert_eq!(
        env.all_object_keys().await.len(),
        PAGES as usize + 1,
        "the markers are gone; the state is saved"
    );
}
