//! Runs the sample API on its own, for trying the importer by hand without internet.

use clap::Parser;

/// Serve deterministic JSONPlaceholder-shaped posts at `GET /posts`, a commerce API's orders at
/// `GET /orders`, and the paged, failing and misbehaving variants the library documents.
#[derive(Parser)]
struct Cli {
    /// Address to listen on (the one `deploy/local/barge.toml` points at).
    #[arg(long, default_value = barge_sample_api::LOCAL_ADDRESS)]
    listen: String,
    /// How many posts `/posts` returns.
    #[arg(long, default_value_t = 100)]
    posts: i64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    barge_sample_api::serve_until_signal(&cli.listen, cli.posts).await
}
