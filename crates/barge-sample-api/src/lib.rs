//! A stand-in for JSONPlaceholder: `GET /posts` answers a JSON array of `count` posts whose
//! content is a pure function of the post id, so the demo and tests run offline and can compare
//! every loaded row with what was served. `GET /posts?delay_ms=N` answers after N ms.

use std::future::Future;

use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// One post, serialized with JSONPlaceholder's field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Post {
    /// Author; ten posts per user, as on JSONPlaceholder.
    pub user_id: i64,
    /// Post id, from 1.
    pub id: i64,
    /// Title; some carry quotes, non-ASCII text and escapes to exercise the whole path.
    pub title: String,
    /// Body; some span several lines.
    pub body: String,
}

/// The post with this id (ids start at 1).
pub fn post(id: i64) -> Post {
    let title = if id % 7 == 0 {
        format!("post {id}: \"quoted\" ünïcødé 🚀 back\\slash\ttab")
    } else {
        format!("post {id}: sunt aut facere repellat")
    };
    let body = if id % 5 == 0 {
        format!("line one of {id}\nline two, with a comma\nline three; done")
    } else {
        format!("quia et suscipit {id} recusandae consequuntur expedita")
    };
    Post {
        user_id: (id - 1) / 10 + 1,
        id,
        title,
        body,
    }
}

/// Posts 1 to `count`.
pub fn posts(count: i64) -> Vec<Post> {
    (1..=count).map(post).collect()
}

/// The API's routes, serving `count` posts.
pub fn router(count: i64) -> Router {
    Router::new()
        .route("/posts", get(list_posts))
        .with_state(count)
}

/// Query parameters of `/posts`.
#[derive(Debug, Deserialize)]
struct PostsQuery {
    /// Answer only after this many milliseconds: a slow API.
    delay_ms: Option<u64>,
}

async fn list_posts(
    State(count): State<i64>,
    Query(query): Query<PostsQuery>,
) -> axum::Json<Vec<Post>> {
    if let Some(delay) = query.delay_ms {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    axum::Json(posts(count))
}

/// Where the sample API listens for local runs: `deploy/local/barge.toml`'s source points here.
pub const LOCAL_ADDRESS: &str = "127.0.0.1:18089";

/// Serves `count` posts on `listen` until SIGTERM or SIGINT: the sample API as a program of its
/// own (its binary, and `cargo xtask up`).
pub async fn serve_until_signal(listen: &str, count: i64) -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::signal::unix::{SignalKind, signal};
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    eprintln!(
        "serving {count} posts at http://{}/posts",
        listener.local_addr()?
    );
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    serve(listener, count, async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
    .await?;
    Ok(())
}

/// Serves `count` posts on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    count: i64,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(count))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posts_have_jsonplaceholder_shape_and_stable_content() {
        let value = serde_json::to_value(post(14)).unwrap();
        let keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["body", "id", "title", "userId"]);
        assert_eq!(value["userId"], 2);
        assert_eq!(post(14), post(14));
        assert!(post(14).title.contains('"'));
        assert!(post(10).body.contains('\n'));
        assert_eq!(posts(3).iter().map(|p| p.id).collect::<Vec<_>>(), [1, 2, 3]);
    }
}
