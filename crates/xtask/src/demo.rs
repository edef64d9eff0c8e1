//! `cargo xtask demo`: the whole pipeline once, on local services, with the rows it loaded.

use std::process::ExitCode;

use anyhow::{Context, ensure};
use barge_core::{Settings, Source};
use importer::Importer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use transformer::Transformer;

use crate::services::{Layout, Services};

/// Starts the services and the sample API, provisions the default bucket, queue and database,
/// runs `importer once` and the transformer until the queue is drained, and prints the result.
pub async fn run(posts: i64) -> anyhow::Result<ExitCode> {
    barge_core::telemetry::init("warn,importer=info,transformer=info");
    let services = Services::start(Layout::ephemeral()?, false).await?;
    let outcome = pipeline(&services, posts).await;
    services.stop();
    outcome.map(|()| ExitCode::SUCCESS)
}

async fn pipeline(services: &Services, posts: i64) -> anyhow::Result<()> {
    let sample_api = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/posts", sample_api.local_addr()?);
    let stop_api = CancellationToken::new();
    let api = tokio::spawn(barge_sample_api::serve(
        sample_api,
        posts,
        stop_api.clone().cancelled_owned(),
    ));
    eprintln!("xtask: sample API serves {posts} posts at {url}");

    let mut posts = Source::jsonplaceholder_posts();
    posts.url = Some(url);
    let mut settings = Settings {
        sources: vec![posts],
        ..Settings::default()
    };
    settings.database = services.database("barge");
    let aws = services.aws().await;
    barge_localenv::ensure_bucket(&aws, &settings.storage.bucket).await?;
    barge_localenv::ensure_queue(&aws, &settings.queue.queue, Default::default()).await?;
    barge_localenv::ensure_database(&services.database("postgres"), &settings.database.dbname)
        .await?;

    println!("\n== importer once");
    let importer = Importer::new(settings.clone(), aws.clone()).await?;
    for (source, outcome) in importer.run_once(&CancellationToken::new()).await {
        let report = outcome.with_context(|| format!("importing source {source}"))?;
        println!("{source}: {}", importer::describe(&report));
        for message in &report.objects {
            println!(
                "  {} records archived at s3://{}/{} and announced",
                message.record_count, message.bucket, message.key
            );
        }
    }

    println!("\n== transformer, until the queue is drained");
    let transformer = Transformer::new(settings.clone(), aws).await?;
    let report = transformer.drain().await?;
    for loaded in &report.loaded {
        println!(
            "{}: {} records from {} committed ({} rows inserted or changed, {} rejected)",
            loaded.source,
            loaded.records_read,
            loaded.key,
            loaded.rows_changed,
            loaded.records_rejected
        );
    }
    let failed = report.dead_lettered.iter().chain(&report.retry_later);
    for failed in failed.clone() {
        println!("message {} not loaded: {}", failed.message_id, failed.error);
    }
    ensure!(failed.count() == 0, "some messages failed to load");

    stop_api.cancel();
    api.await??;
    show_rows(&settings).await
}

async fn show_rows(settings: &Settings) -> anyhow::Result<()> {
    let client = settings.database.connect().await?;
    let count: i64 = client
        .query_one("SELECT count(*) FROM posts", &[])
        .await?
        .get(0);
    println!(
        "\n== {count} rows in table posts of database {} (first 5)",
        settings.database.dbname
    );
    println!("{:>4} {:>7}  {:<45} body", "id", "user_id", "title");
    let rows = client
        .query(
            "SELECT id, user_id, title, body FROM posts ORDER BY id LIMIT 5",
            &[],
        )
        .await?;
    for row in rows {
        let id: i64 = row.get(0);
        let user_id: i64 = row.get(1);
        let title: String = row.get(2);
        let body: String = row.get(3);
        let body = body.replace('\n', "⏎");
        println!("{id:>4} {user_id:>7}  {title:<45} {:.40}…", body);
    }
    Ok(())
}
