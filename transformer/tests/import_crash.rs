//! An importer that archives a batch but cannot announce it loses nothing, and nothing is
//! loaded twice: the next run announces the orphan, and does not archive its page again.

mod common;

use barge_localenv::{TestEnv, spawn_sample_api};
use common::{ledger, posts, transformer};
use importer::{ImportError, Importer};

#[tokio::test]
async fn an_object_archived_but_not_announced_is_announced_by_the_next_run_and_loaded_once() {
    let url = spawn_sample_api(15).await;
    let mut env = TestEnv::new().await.with_posts_url(&url);
    // Append-only: a second load of the same records would show as duplicate rows.
    env.settings.sources[0].primary_key.clear();
    let source = env.settings.sources[0].clone();
    let transformer = transformer(&env).await;

    // The put succeeds, the send fails: the state of a run that died in between.
    let mut unreachable_queue = env.settings.clone();
    unreachable_queue.queue.queue = format!("{}-gone", env.queue_url);
    let broken = Importer::new(unreachable_queue, env.aws.clone())
        .await
        .unwrap();
    let error = broken.import(&source).await.unwrap_err();
    assert!(matches!(error, ImportError::Announce { .. }), "{error}");
    assert!(error.is_retryable());
    assert_eq!(env.object_keys().await.len(), 1, "archived");
    assert_eq!(env.queued_messages().await, 0, "not announced");

    let importer = Importer::new(env.settings.clone(), env.aws.clone())
        .await
        .unwrap();
    let report = importer.import(&source).await.unwrap();
    assert_eq!(report.recovered, 1, "{report:?}");
    assert_eq!(report.unchanged_pages, 1);
    assert!(
        report.objects.is_empty(),
        "the page is not archived a second time"
    );
    let drained = transformer.drain().await.unwrap();
    assert_eq!(drained.loaded.len(), 1, "{drained:?}");

    // A later run of the same API adds nothing either.
    let again = importer.import(&source).await.unwrap();
    assert_eq!((again.recovered, again.objects.len()), (0, 0));
    assert!(transformer.drain().await.unwrap().loaded.is_empty());

    assert_eq!(posts(&env).await.len(), 15, "every post, once");
    assert_eq!(ledger(&env).await.len(), 1);
    assert_eq!(env.object_keys().await.len(), 1);
}
