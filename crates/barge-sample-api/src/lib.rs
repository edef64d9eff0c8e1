//! A stand-in for JSONPlaceholder: `GET /posts` answers a JSON array of `count` posts whose
//! content is a pure function of the post id, so the demo and tests run offline and can compare
//! every loaded row with what was served. `GET /posts?delay_ms=N` answers after N ms.
//!
//! The array is streamed, made a chunk of posts at a time as the client reads it, so that
//! serving a million posts (`cargo xtask bench`) costs neither the memory of the whole array nor
//! a wait before the first byte.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
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

/// Posts per chunk of the streamed body: a few hundred kilobytes, so that chunk overhead is
/// nothing and memory is one chunk, whatever the count.
const CHUNK_POSTS: usize = 1_000;

/// The JSON array of posts 1 to `count`, byte for byte what serializing [`posts`] gives, in
/// chunks made only when the one before has been taken.
fn body_chunks(count: i64) -> impl Iterator<Item = Bytes> + Send + 'static {
    let chunks = (1..=count).step_by(CHUNK_POSTS).map(move |first| {
        let last = count.min(first + CHUNK_POSTS as i64 - 1);
        let mut chunk = Vec::new();
        for id in first..=last {
            if id > 1 {
                chunk.push(b',');
            }
            serde_json::to_writer(&mut chunk, &post(id)).expect("a post serializes");
        }
        Bytes::from(chunk)
    });
    std::iter::once(Bytes::from_static(b"["))
        .chain(chunks)
        .chain(std::iter::once(Bytes::from_static(b"]")))
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

async fn list_posts(State(count): State<i64>, Query(query): Query<PostsQuery>) -> Response {
    if let Some(delay) = query.delay_ms {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let chunks = futures_util::stream::iter(body_chunks(count).map(Ok::<_, Infallible>));
    (
        [(CONTENT_TYPE, "application/json")],
        Body::from_stream(chunks),
    )
        .into_response()
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

    #[test]
    fn the_streamed_body_is_the_serialized_array() {
        for count in [0, 1, 999, 1_000, 1_001, 2_500] {
            let streamed: Vec<u8> = body_chunks(count).flatten().collect();
            assert_eq!(
                streamed,
                serde_json::to_vec(&posts(count)).unwrap(),
                "{count}"
            );
        }
        assert_eq!(body_chunks(2_500).count(), 5, "[, three chunks, ]");
    }
}
