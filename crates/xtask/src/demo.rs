//! `cargo xtask demo`: the whole pipeline once, on local services, with the rows it loaded: both
//! ways in, the importer's batches and a file dropped into the landing zone.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use barge_core::fetch::{PageStyle, Pagination};
use barge_core::{Settings, Source};
use importer::Importer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use transformer::Transformer;

use crate::services::{Layout, Services};

/// Where the demo drops its file: the `posts` source's landing prefix.
const LANDING_PREFIX: &str = "landing/posts";
/// Posts in the dropped file, with ids after the sample API's.
const LANDING_POSTS: i64 = 10;
/// Posts per page the demo's importer asks the sample API for.
const DEMO_PAGE_SIZE: u64 = 25;

/// Starts the services and the sample API, provisions the default bucket, queue and database,
/// has S3 announce files created under the landing prefix, runs `importer once`, drops an
/// NDJSON file of more posts into the landing prefix, runs the transformer until the queue is
/// drained, and prints the result.
pub async fn run(posts: i64) -> anyhow::Result<ExitCode> {
    barge_core::telemetry::init(
        "warn,importer=info,transformer=info",
        barge_core::settings::LogFormat::Text,
    );
    let services = Services::start(Layout::ephemeral()?, false).await?;
    let outcome = pipeline(&services, posts).await;
    services.stop();
    outcome.map(|()| ExitCode::SUCCESS)
}

async fn pipeline(services: &Services, count: i64) -> anyhow::Result<()> {
    let sample_api = TcpListener::bind("127.0.0.1:0").await?;
    // Paged, as real APIs are: /paged/posts?per_page=25&page=1, 2, … until an empty page.
    let url = format!("http://{}/paged/posts", sample_api.local_addr()?);
    let stop_api = CancellationToken::new();
    let api = tokio::spawn(barge_sample_api::serve(
        sample_api,
        count,
        stop_api.clone().cancelled_owned(),
    ));
    eprintln!("xtask: sample API serves {count} posts at {url}");

    let mut posts = Source::jsonplaceholder_posts();
    posts.url = Some(url);
    posts.pagination = Pagination {
        style: PageStyle::Page,
        size_param: Some("per_page".into()),
        size: Some(DEMO_PAGE_SIZE),
        ..Pagination::default()
    };
    posts.landing_prefix = Some(LANDING_PREFIX.into());
    let mut settings = Settings {
        sources: vec![posts],
        ..Settings::default()
    };
    settings.database = services.database("barge");
    let aws = services.aws().await;
    let bucket = settings.storage.bucket.clone();
    barge_localenv::ensure_bucket(&aws, &bucket).await?;
    let (queue_url, _) =
        barge_localenv::ensure_queue(&aws, &settings.queue.queue, Default::default()).await?;
    barge_localenv::ensure_database(&services.database("postgres"), &settings.database.dbname)
        .await?;
    barge_localenv::notify_landings(&aws, &bucket, &queue_url, &[LANDING_PREFIX]).await?;
    println!(
        "\n== s3://{bucket}/{LANDING_PREFIX}/ is the posts source's landing zone: S3 announces \
         each object created there on {} (s3:ObjectCreated:*)",
        settings.queue.queue
    );

    println!("\n== importer once");
    let importer = Importer::new(settings.clone(), aws.clone()).await?;
    let mut batches = 0;
    for (source, outcome) in importer.run_once(&CancellationToken::new()).await {
        let report = outcome.with_context(|| format!("importing source {source}"))?;
        batches += report.objects.len();
        println!("{source}: {}", importer::describe(&report));
        for message in &report.objects {
            println!(
                "  {} records archived at s3://{}/{} and announced",
                message.record_count, message.bucket, message.key
            );
        }
    }

    let first = count + 1;
    let last = count + LANDING_POSTS;
    let dropped: Vec<u8> = (first..=last)
        .flat_map(|id| {
            let mut line =
                serde_json::to_vec(&barge_sample_api::post(id)).expect("posts serialize");
            line.push(b'\n');
            line
        })
        .collect();
    let landing_key = format!("{LANDING_PREFIX}/from a partner/posts {first}-{last}.ndjson");
    aws.s3
        .put_object()
        .bucket(&bucket)
        .key(&landing_key)
        .content_type("application/x-ndjson")
        .body(dropped.into())
        .send()
        .await
        .map_err(|err| anyhow::anyhow!(barge_core::error_chain(&err)))
        .context("dropping the landing file")?;
    println!(
        "\n== another system drops {LANDING_POSTS} posts (ids {first}–{last}) as NDJSON at \
         s3://{bucket}/{landing_key}"
    );
    // S3's test event, the importer's batches and the landing file's event.
    wait_for_messages(&aws, &queue_url, batches as u64 + 2).await?;

    println!("\n== transformer, until the queue is drained");
    let transformer = Transformer::new(settings.clone(), aws).await?;
    let report = transformer.drain().await?;
    if report.ignored > 0 {
        println!("S3's test event acknowledged");
    }
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

    ensure!(
        report.loaded.iter().any(|loaded| loaded.key == landing_key),
        "the landing file was not loaded"
    );

    stop_api.cancel();
    api.await??;
    show_rows(&settings, first).await
}

/// Waits until at least `count` messages are on the queue (S3 sends its events on its own
/// time), for at most 30 seconds.
async fn wait_for_messages(
    aws: &barge_core::aws::AwsClients,
    queue_url: &str,
    count: u64,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let queued = barge_localenv::queue_depth(aws, queue_url).await?;
        if queued >= count {
            return Ok(());
        }
        ensure!(
            started.elapsed() < Duration::from_secs(30),
            "only {queued} of {count} messages on the queue after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn show_rows(settings: &Settings, first_landed: i64) -> anyhow::Result<()> {
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
    let landed = client
        .query(
            "SELECT id, user_id, title, body FROM posts WHERE id >= $1 ORDER BY id LIMIT 3",
            &[&first_landed],
        )
        .await?;
    for (index, row) in rows.iter().chain(&landed).enumerate() {
        if index == rows.len() {
            println!("… and from the landing file (first 3):");
        }
        let id: i64 = row.get(0);
        let user_id: i64 = row.get(1);
        let title: String = row.get(2);
        let body: String = row.get(3);
        let body = body.replace('\n', "⏎");
        println!("{id:>4} {user_id:>7}  {title:<45} {:.40}…", body);
    }
    Ok(())
}
