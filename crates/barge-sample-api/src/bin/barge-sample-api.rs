//! Runs the sample API on its own, for trying the importer by hand without internet.

use anyhow::Context;
use clap::Parser;

/// Serve deterministic JSONPlaceholder-shaped posts at `GET /posts`.
#[derive(Parser)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089")]
    listen: String,
    /// How many posts `/posts` returns.
    #[arg(long, default_value_t = 100)]
    posts: i64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let listener = tokio::net::TcpListener::bind(&cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    eprintln!(
        "serving {} posts at http://{}/posts",
        cli.posts,
        listener.local_addr()?
    );
    barge_sample_api::serve(listener, cli.posts, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
