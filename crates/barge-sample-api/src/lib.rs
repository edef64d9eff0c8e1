//! A stand-in for JSONPlaceholder: `GET /posts` answers a JSON array of `count` posts whose
//! content is a pure function of the post id, so the demo and tests run offline and can compare
//! every loaded row with what was served. Around it, the other ways real APIs page, fail and
//! misbehave, each a route, so that the importer is tested against all of them without internet.
//!
//! The count lives in a [`SampleApi`] handle and may change while serving ([`SampleApi::set_count`]),
//! so a test can "publish" posts between two importer runs. Every list route serves posts
//! `1..=count` and accepts `since_id=N`, keeping only the posts whose id is above N (how
//! incremental loading is tested). Paging parameters start at 1 (`page`, `per_page`, `limit`;
//! 0 is refused with a 400) and default to page 1 of 10 posts.
//!
//! | route | parameters | answer |
//! | --- | --- | --- |
//! | `GET /posts` | `since_id`, `delay_ms`, `stall_ms` | `[post, …]`, every post; after `delay_ms`; `stall_ms` pauses after the first byte |
//! | `GET /paged/posts` | `page`, `per_page`, `since_id` | `[post, …]`, that page; `[]` past the end |
//! | `GET /offset/posts` | `offset` (default 0), `limit`, `since_id` | `{"total": posts after since_id, "items": [post, …]}` |
//! | `GET /cursor/posts` | `cursor` (opaque, none = start), `limit`, `since_id` | `{"data": [post, …], "next_cursor": "…" or null, "has_more": bool}`; an unknown cursor is a 400 |
//! | `GET /next/posts` | `after` (an id, default 0), `limit`, `since_id` | `{"results": [post, …], "next": absolute URL of the next page or null}` |
//! | `GET /link/posts` | `page`, `per_page`, `since_id` | `[post, …]` with `Link: <…>; rel="first"`, and `, <…>; rel="next"` while more pages exist |
//! | `GET /trap/posts` | `cursor` | `{"data": posts 1-2 without a cursor, 3-4 with any, "next_cursor": "same-cursor", "has_more": true}`, forever |
//! | `GET /flaky/posts` | `key`, `times` (default 1), `fail` (default 503), `retry_after`, `since_id` | the first `times` requests of `key`: status `fail` with `{"error": reason}` (and `Retry-After`: the given value, or `date` for an HTTP-date 1-2 s ahead); then as `/posts` |
//! | `GET /slow/posts` | as `/posts` | as `/posts` (a name for tests that want slowness) |
//! | `GET /big` | `bytes` | a JSON array of strings of at least `bytes` and under `bytes + 101` bytes, streamed |
//! | `GET /html` | | 200 `text/html; charset=utf-8`: a login page instead of JSON |
//! | `GET /json-wrong-type` | as `/posts` | the `/posts` array as `text/plain` |
//! | `GET /orders` | `cursor`, `limit`, `since_id` (an order number) | `{"data": [order, …], "next_cursor": "…" or null, "has_more": bool}`: the [`ORDER_COUNT`] fixed orders of [`orders`], whatever the post count |
//! | `GET /private/posts` | `page`, `per_page` (pages only when one is given), `since_id`, `api_key` | `[post, …]` with credentials ([`SAMPLE_TOKEN`]), else 401 `{"error":"unauthorized"}` |
//!
//! JSON answers are `application/json`. Arrays of posts are streamed, made a chunk of posts at a
//! time as the client reads them, so that serving a million posts (`cargo xtask bench`) costs
//! neither the memory of the whole array nor a wait before the first byte.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::num::NonZeroU32;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, LINK, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpListener;

mod orders;

pub use orders::{ORDER_COUNT, order, orders};

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

/// The token `/private/posts` accepts, as a bearer token, an `X-Api-Key` header, an `api_key`
/// query parameter or the Basic auth password of [`SAMPLE_USER`]: tests of each way of sending
/// credentials share one secret.
pub const SAMPLE_TOKEN: &str = "sample-token";

/// The Basic auth user `/private/posts` accepts, with [`SAMPLE_TOKEN`] as password.
pub const SAMPLE_USER: &str = "sample";

/// `sample:sample-token` in base64, as `Authorization: Basic` carries it (checked by the tests
/// against reqwest's encoding), so that no base64 crate is needed.
const SAMPLE_BASIC: &str = "c2FtcGxlOnNhbXBsZS10b2tlbg==";

/// A running sample API's state, shared by its handlers and the test that started it: cloning
/// gives another handle on the same state.
#[derive(Debug, Clone, Default)]
pub struct SampleApi {
    shared: Arc<Shared>,
}

/// What [`SampleApi`] handles share.
#[derive(Debug, Default)]
struct Shared {
    /// How many posts the list routes serve; changed while serving to publish posts.
    count: AtomicI64,
    /// Requests seen per `key` of `/flaky/posts`, which decide when it stops failing.
    requests: Mutex<HashMap<String, u64>>,
}

impl SampleApi {
    /// State serving `count` posts, no flaky request seen.
    pub fn new(count: i64) -> Self {
        let api = Self::default();
        api.set_count(count);
        api
    }

    /// How many posts the list routes serve now.
    pub fn count(&self) -> i64 {
        self.shared.count.load(Ordering::Relaxed)
    }

    /// Serve `count` posts from the next request on: a test publishes posts (or removes some)
    /// between two importer runs.
    pub fn set_count(&self, count: i64) {
        self.shared.count.store(count, Ordering::Relaxed);
    }

    /// How many requests `/flaky/posts` has had with this `key`: what a retry test asserts.
    pub fn requests(&self, key: &str) -> u64 {
        self.requests_by_key().get(key).copied().unwrap_or(0)
    }

    /// Counts a request with `key`, returning how many came before it.
    fn count_request(&self, key: &str) -> u64 {
        let mut requests = self.requests_by_key();
        let seen = requests.entry(key.to_owned()).or_default();
        *seen += 1;
        *seen - 1
    }

    /// The per-key counters; a panic while holding them leaves plain numbers, still usable.
    fn requests_by_key(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The ids every list route serves: posts after `since_id` among `1..=count`, skipping `skip`
/// of them and taking at most `take`. One place for the arithmetic every kind of paging needs;
/// when past the end, an empty range whose end is `count`, so `end < count` means "more".
fn ids_after(count: i64, since_id: i64, skip: u64, take: u64) -> RangeInclusive<i64> {
    let as_id = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let first = since_id
        .max(0)
        .saturating_add(as_id(skip))
        .saturating_add(1);
    let last = count.min(first.saturating_add(as_id(take)) - 1);
    first..=last
}

/// Every id after `since_id`: the unpaged routes.
fn every_id_after(count: i64, since_id: i64) -> RangeInclusive<i64> {
    ids_after(count, since_id, 0, u64::MAX)
}

/// How many ids `ids` holds: `total` of `/offset/posts`.
fn len(ids: &RangeInclusive<i64>) -> i64 {
    (ids.end() - ids.start() + 1).max(0)
}

/// Items per chunk of a streamed array: a few hundred kilobytes of posts, so that chunk overhead
/// is nothing and memory is one chunk, whatever the count.
const CHUNK_ITEMS: i64 = 1_000;

/// A JSON array with an item per id of `ids`, each written by `write`, in chunks made only when
/// the one before has been taken: `[`, the items, `]`.
fn array_chunks(
    ids: RangeInclusive<i64>,
    write: fn(i64, &mut Vec<u8>),
) -> impl Iterator<Item = Bytes> + Send + 'static {
    let (first, last) = ids.into_inner();
    let chunks = (first..=last)
        .step_by(CHUNK_ITEMS as usize)
        .map(move |start| {
            let mut chunk = Vec::new();
            for id in start..=last.min(start.saturating_add(CHUNK_ITEMS - 1)) {
                if id > first {
                    chunk.push(b',');
                }
                write(id, &mut chunk);
            }
            Bytes::from(chunk)
        });
    std::iter::once(Bytes::from_static(b"["))
        .chain(chunks)
        .chain(std::iter::once(Bytes::from_static(b"]")))
}

/// Writes post `id` as JSON: the items of the post arrays.
fn write_post(id: i64, out: &mut Vec<u8>) {
    serde_json::to_writer(out, &post(id)).expect("a post serializes");
}

/// The JSON array of the posts `ids`, byte for byte what serializing them in one go gives.
fn post_chunks(ids: RangeInclusive<i64>) -> impl Iterator<Item = Bytes> + Send + 'static {
    array_chunks(ids, write_post)
}

/// A 200 answer streaming `chunks`; with `stall`, pausing that long after the first chunk (a
/// body that stops mid-way, for read timeouts).
fn streamed(
    chunks: impl Iterator<Item = Bytes> + Send + 'static,
    stall: Option<Duration>,
) -> Response {
    let body =
        futures_util::stream::iter(chunks.enumerate()).then(move |(index, chunk)| async move {
            if index == 1
                && let Some(stall) = stall
            {
                tokio::time::sleep(stall).await;
            }
            Ok::<_, Infallible>(chunk)
        });
    (
        [(CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

/// A refused request, answered with its status and `{"error": message}`: how the routes fail.
#[derive(Debug)]
struct Refusal(StatusCode, &'static str);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let Self(status, message) = self;
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

/// `http://` and the request's Host: the start of the absolute URLs of `/next/posts` and
/// `/link/posts`, right whatever port or name the test reached the API by.
fn base_url(headers: &HeaderMap) -> Result<String, Refusal> {
    let host = headers.get(HOST).and_then(|host| host.to_str().ok());
    let host = host.ok_or(Refusal(StatusCode::BAD_REQUEST, "no Host header"))?;
    Ok(format!("http://{host}"))
}

/// `&since_id=N` when N filters anything: kept in the next-page URLs the API builds.
fn since_param(since_id: i64) -> String {
    if since_id > 0 {
        format!("&since_id={since_id}")
    } else {
        String::new()
    }
}

/// Page size when a request gives none.
const DEFAULT_LIMIT: NonZeroU32 = NonZeroU32::new(10).expect("not zero");

/// The API's routes, serving `count` posts.
pub fn router(count: i64) -> Router {
    router_with(SampleApi::new(count))
}

/// The API's routes on shared state, for a test that changes the count or reads the counters.
pub fn router_with(api: SampleApi) -> Router {
    Router::new()
        .route("/posts", get(list_posts))
        .route("/paged/posts", get(paged_posts))
        .route("/offset/posts", get(offset_posts))
        .route("/cursor/posts", get(cursor_posts))
        .route("/next/posts", get(next_posts))
        .route("/link/posts", get(link_posts))
        .route("/trap/posts", get(trap_posts))
        .route("/flaky/posts", get(flaky_posts))
        .route("/slow/posts", get(list_posts))
        .route("/big", get(big))
        .route("/html", get(html))
        .route("/json-wrong-type", get(json_wrong_type))
        .route("/private/posts", get(private_posts))
        .route("/orders", get(list_orders))
        .with_state(api)
}

/// Query parameters of `/posts`, `/slow/posts` and `/json-wrong-type`.
#[derive(Debug, Deserialize)]
struct PostsQuery {
    /// Only posts with a greater id.
    #[serde(default)]
    since_id: i64,
    /// Answer only after this many milliseconds: a slow API.
    delay_ms: Option<u64>,
    /// Pause this many milliseconds after the first byte of the body: a stalled transfer.
    stall_ms: Option<u64>,
}

/// Every post after `since_id`, as a streamed array.
async fn list_posts(State(api): State<SampleApi>, Query(query): Query<PostsQuery>) -> Response {
    if let Some(delay) = query.delay_ms {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    streamed(
        post_chunks(every_id_after(api.count(), query.since_id)),
        query.stall_ms.map(Duration::from_millis),
    )
}

/// Query parameters of the page-numbered routes: `/paged/posts`, `/link/posts`, `/private/posts`.
#[derive(Debug, Deserialize)]
struct PageQuery {
    /// Only posts with a greater id.
    #[serde(default)]
    since_id: i64,
    /// Page number, from 1.
    page: Option<NonZeroU32>,
    /// Posts per page.
    per_page: Option<NonZeroU32>,
}

impl PageQuery {
    /// The page asked for, 1 by default.
    fn page(&self) -> u32 {
        self.page.unwrap_or(NonZeroU32::MIN).get()
    }

    /// The page size asked for, [`DEFAULT_LIMIT`] by default.
    fn per_page(&self) -> u32 {
        self.per_page.unwrap_or(DEFAULT_LIMIT).get()
    }

    /// The ids on the page asked for.
    fn ids(&self, count: i64) -> RangeInclusive<i64> {
        let per_page = u64::from(self.per_page());
        ids_after(
            count,
            self.since_id,
            u64::from(self.page() - 1) * per_page,
            per_page,
        )
    }
}

/// One page, as a plain array: the simplest paging, where the client stops at an empty page.
async fn paged_posts(State(api): State<SampleApi>, Query(query): Query<PageQuery>) -> Response {
    streamed(post_chunks(query.ids(api.count())), None)
}

/// Query parameters of `/offset/posts`.
#[derive(Debug, Deserialize)]
struct OffsetQuery {
    /// Only posts with a greater id.
    #[serde(default)]
    since_id: i64,
    /// Posts to skip.
    #[serde(default)]
    offset: u64,
    /// Posts to answer at most.
    limit: Option<NonZeroU32>,
}

/// The answer of `/offset/posts`.
#[derive(Debug, Serialize)]
struct OffsetPage {
    /// How many posts there are after `since_id`, on every page: the client stops at it.
    total: i64,
    /// This page's posts.
    items: Vec<Post>,
}

/// Offset/limit paging with a total, as many search APIs do.
async fn offset_posts(
    State(api): State<SampleApi>,
    Query(query): Query<OffsetQuery>,
) -> Json<OffsetPage> {
    let count = api.count();
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).get();
    Json(OffsetPage {
        total: len(&every_id_after(count, query.since_id)),
        items: ids_after(count, query.since_id, query.offset, limit.into())
            .map(post)
            .collect(),
    })
}

/// Query parameters of `/cursor/posts` and `/trap/posts`.
#[derive(Debug, Deserialize)]
struct CursorQuery {
    /// Only posts with a greater id.
    #[serde(default)]
    since_id: i64,
    /// Where the page starts, as the previous page's `next_cursor` gave it; none for the first.
    cursor: Option<String>,
    /// Posts to answer at most.
    limit: Option<NonZeroU32>,
}

/// The answer of `/cursor/posts`, `/trap/posts` (items: posts) and `/orders` (items: orders).
#[derive(Debug, Serialize)]
struct CursorPage<T = Post> {
    /// This page's items.
    data: Vec<T>,
    /// The cursor of the next page, null on the last.
    next_cursor: Option<String>,
    /// Whether there is a next page.
    has_more: bool,
}

/// The cursor of the page after post `id`: opaque to clients (not a number), so that they pass
/// it back rather than compute one.
fn encode_cursor(id: i64) -> String {
    format!("c{id:x}")
}

/// The post id a cursor from [`encode_cursor`] stands after; `None` for anything else.
fn decode_cursor(cursor: &str) -> Option<i64> {
    i64::from_str_radix(cursor.strip_prefix('c')?, 16).ok()
}

/// The page of `query` among items `1..=count`, each made by `item`: cursor paging, as Stripe-
/// and Slack-like APIs do.
fn cursor_page<T>(
    query: &CursorQuery,
    count: i64,
    item: fn(i64) -> T,
) -> Result<CursorPage<T>, Refusal> {
    let after = match query.cursor.as_deref() {
        None => 0,
        Some(cursor) => {
            decode_cursor(cursor).ok_or(Refusal(StatusCode::BAD_REQUEST, "invalid cursor"))?
        }
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).get();
    let ids = ids_after(count, after.max(query.since_id), 0, limit.into());
    let has_more = *ids.end() < count;
    Ok(CursorPage {
        next_cursor: has_more.then(|| encode_cursor(*ids.end())),
        has_more,
        data: ids.map(item).collect(),
    })
}

/// The posts, a cursor page at a time.
async fn cursor_posts(
    State(api): State<SampleApi>,
    Query(query): Query<CursorQuery>,
) -> Result<Json<CursorPage>, Refusal> {
    cursor_page(&query, api.count(), post).map(Json)
}

/// The fixed [`orders::orders`], a cursor page at a time (`since_id` is an order number).
async fn list_orders(Query(query): Query<CursorQuery>) -> Result<Json<CursorPage<Value>>, Refusal> {
    cursor_page(&query, ORDER_COUNT, orders::order).map(Json)
}

/// A broken cursor API: every page says there is another at the same cursor, with posts that
/// differ from the first call's, so that only a client that notices a repeated cursor stops.
/// Serves posts 1-4 whatever the count.
async fn trap_posts(Query(query): Query<CursorQuery>) -> Json<CursorPage> {
    let ids = if query.cursor.is_none() { 1..=2 } else { 3..=4 };
    Json(CursorPage {
        data: ids.map(post).collect(),
        next_cursor: Some("same-cursor".to_owned()),
        has_more: true,
    })
}

/// Query parameters of `/next/posts`.
#[derive(Debug, Deserialize)]
struct NextQuery {
    /// Only posts with a greater id.
    #[serde(default)]
    since_id: i64,
    /// The page starts after this post id; the `next` URL sets it.
    #[serde(default)]
    after: i64,
    /// Posts to answer at most.
    limit: Option<NonZeroU32>,
}

/// The answer of `/next/posts`.
#[derive(Debug, Serialize)]
struct NextPage {
    /// This page's posts.
    results: Vec<Post>,
    /// The absolute URL of the next page, null on the last.
    next: Option<String>,
}

/// Paging by next-page URLs in the body, as Django REST framework does.
async fn next_posts(
    State(api): State<SampleApi>,
    Query(query): Query<NextQuery>,
    headers: HeaderMap,
) -> Result<Json<NextPage>, Refusal> {
    let base = base_url(&headers)?;
    let count = api.count();
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    let ids = ids_after(
        count,
        query.after.max(query.since_id),
        0,
        limit.get().into(),
    );
    let next = (*ids.end() < count).then(|| {
        let since = since_param(query.since_id);
        format!("{base}/next/posts?after={}&limit={limit}{since}", ids.end())
    });
    Ok(Json(NextPage {
        results: ids.map(post).collect(),
        next,
    }))
}

/// Paging by `Link` header, as GitHub does: `rel="first"` always, then `rel="next"` while more
/// pages exist, so that a client must pick the relation rather than take the first link.
async fn link_posts(
    State(api): State<SampleApi>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let base = base_url(&headers)?;
    let count = api.count();
    let ids = query.ids(count);
    let since = since_param(query.since_id);
    let page_url = |page: u64| {
        let per_page = query.per_page();
        format!("<{base}/link/posts?page={page}&per_page={per_page}{since}>")
    };
    let mut link = format!("{}; rel=\"first\"", page_url(1));
    if *ids.end() < count {
        let next = page_url(u64::from(query.page()) + 1);
        link.push_str(&format!(", {next}; rel=\"next\""));
    }
    let mut response = streamed(post_chunks(ids), None);
    let link = HeaderValue::try_from(link).expect("the Host header and numbers are header text");
    response.headers_mut().insert(LINK, link);
    Ok(response)
}

/// Query parameters of `/flaky/posts`.
#[derive(Debug, Deserialize)]
struct FlakyQuery {
    /// Only posts with a greater id.
    #[serde(default)]
    since_id: i64,
    /// Names the counter of requests; a test uses its own.
    key: String,
    /// How many requests with `key` fail.
    times: Option<u64>,
    /// Their status: 429, 500, 503 or any other 4xx or 5xx.
    fail: Option<u16>,
    /// Their `Retry-After`: `date` for an HTTP-date 1-2 s ahead, anything else sent as given
    /// (seconds, or a malformed value to test that); no header without it.
    retry_after: Option<String>,
}

/// An API that fails `times` times before it answers: retries, backoff and `Retry-After`.
async fn flaky_posts(
    State(api): State<SampleApi>,
    Query(query): Query<FlakyQuery>,
) -> Result<Response, Refusal> {
    let status = StatusCode::from_u16(query.fail.unwrap_or(503))
        .ok()
        .filter(|status| status.is_client_error() || status.is_server_error())
        .ok_or(Refusal(
            StatusCode::BAD_REQUEST,
            "fail is not an error status",
        ))?;
    let retry_after = query
        .retry_after
        .map(|retry_after| match retry_after.as_str() {
            // HTTP-dates have whole seconds: two ahead is at least one ahead once truncated.
            "date" => httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2)),
            _ => retry_after,
        })
        .map(HeaderValue::try_from)
        .transpose()
        .map_err(|_| Refusal(StatusCode::BAD_REQUEST, "retry_after is not header text"))?;
    if api.count_request(&query.key) >= query.times.unwrap_or(1) {
        let ids = every_id_after(api.count(), query.since_id);
        return Ok(streamed(post_chunks(ids), None));
    }
    let reason = status.canonical_reason().unwrap_or("failure");
    let mut response = Refusal(status, reason).into_response();
    if let Some(retry_after) = retry_after {
        response.headers_mut().insert(RETRY_AFTER, retry_after);
    }
    Ok(response)
}

/// Query parameters of `/big`.
#[derive(Debug, Deserialize)]
struct BigQuery {
    /// The least size of the answer, in bytes.
    bytes: u64,
}

/// Letters in each string of `/big`: with the quotes and a comma, 101 bytes an item.
const BIG_ITEM_LETTERS: usize = 98;

/// A JSON array of at least `bytes` (and under `bytes + 101`) bytes, streamed without being
/// built whole: a response too large for the client's limit.
async fn big(Query(query): Query<BigQuery>) -> Response {
    let item = BIG_ITEM_LETTERS as u64 + 3;
    // n items take n * item - 1 bytes with the brackets; enough of them to reach `bytes`.
    let items = query.bytes.saturating_sub(1).div_ceil(item);
    let write = |_: i64, out: &mut Vec<u8>| {
        out.push(b'"');
        out.extend_from_slice(&[b'x'; BIG_ITEM_LETTERS]);
        out.push(b'"');
    };
    let items = i64::try_from(items).unwrap_or(i64::MAX);
    streamed(array_chunks(1..=items, write), None)
}

/// What `/html` answers: the login page a misconfigured or expired session gets instead of JSON.
const LOGIN_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\
<body><form method=\"post\" action=\"/login\"><input name=\"user\">\
<input name=\"password\" type=\"password\"><button>Sign in</button></form></body></html>\n";

/// A 200 HTML page: a client must check the content type, not only the status.
async fn html() -> Response {
    ([(CONTENT_TYPE, "text/html; charset=utf-8")], LOGIN_PAGE).into_response()
}

/// `/posts` labelled `text/plain`: valid JSON under the wrong content type, which a client may
/// accept or refuse but must decide on.
async fn json_wrong_type(state: State<SampleApi>, query: Query<PostsQuery>) -> Response {
    let mut response = list_posts(state, query).await;
    let text = HeaderValue::from_static("text/plain");
    response.headers_mut().insert(CONTENT_TYPE, text);
    response
}

/// The `api_key` query parameter of `/private/posts`.
#[derive(Debug, Deserialize)]
struct ApiKeyQuery {
    /// [`SAMPLE_TOKEN`], for APIs that take credentials in the URL.
    api_key: Option<String>,
}

/// Whether the request carries [`SAMPLE_TOKEN`] in any of the ways `/private/posts` takes it.
fn authorized(headers: &HeaderMap, api_key: Option<&str>) -> bool {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let by_authorization =
        match header(AUTHORIZATION.as_str()).and_then(|value| value.split_once(' ')) {
            Some((scheme, credentials)) if scheme.eq_ignore_ascii_case("bearer") => {
                credentials == SAMPLE_TOKEN
            }
            Some((scheme, credentials)) if scheme.eq_ignore_ascii_case("basic") => {
                credentials == SAMPLE_BASIC
            }
            _ => false,
        };
    by_authorization || header("x-api-key") == Some(SAMPLE_TOKEN) || api_key == Some(SAMPLE_TOKEN)
}

/// An API that needs credentials: every post after `since_id`, or a page of them when `page` or
/// `per_page` is given; 401 without [`SAMPLE_TOKEN`].
async fn private_posts(
    State(api): State<SampleApi>,
    Query(query): Query<PageQuery>,
    Query(key): Query<ApiKeyQuery>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    if !authorized(&headers, key.api_key.as_deref()) {
        return Err(Refusal(StatusCode::UNAUTHORIZED, "unauthorized"));
    }
    let count = api.count();
    let ids = if query.page.is_none() && query.per_page.is_none() {
        every_id_after(count, query.since_id)
    } else {
        query.ids(count)
    };
    Ok(streamed(post_chunks(ids), None))
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
    serve_api(listener, SampleApi::new(count), shutdown).await
}

/// Serves `api`'s routes on `listener` until `shutdown` completes: for a caller that keeps a
/// handle on the state.
pub async fn serve_api(
    listener: TcpListener,
    api: SampleApi,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router_with(api))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves `count` posts on a free loopback port for as long as the runtime runs; returns the
/// state's handle and the base URL, `http://127.0.0.1:PORT` (routes are appended to it).
pub async fn spawn(count: i64) -> std::io::Result<(SampleApi, String)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let api = SampleApi::new(count);
    tokio::spawn(serve_api(listener, api.clone(), std::future::pending()));
    Ok((api, base_url))
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
            let streamed: Vec<u8> = post_chunks(1..=count).flatten().collect();
            assert_eq!(
                streamed,
                serde_json::to_vec(&posts(count)).unwrap(),
                "{count}"
            );
        }
        assert_eq!(post_chunks(1..=2_500).count(), 5, "[, three chunks, ]");
    }

    /// An API serving `count` posts on a loopback port: its handle and base URL.
    async fn start(count: i64) -> (SampleApi, String) {
        spawn(count).await.expect("bind loopback")
    }

    /// Status, headers and JSON body of `GET url`.
    async fn get_json(request: reqwest::RequestBuilder) -> (u16, HeaderMap, serde_json::Value) {
        let response = request.send().await.expect("the API answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("a body");
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&body)));
        (status, headers, value)
    }

    /// Status, headers and JSON body of `GET url`, with no credentials.
    async fn get(url: &str) -> (u16, HeaderMap, serde_json::Value) {
        get_json(reqwest::Client::new().get(url)).await
    }

    /// The status of `GET url`.
    async fn status_of(url: &str) -> u16 {
        reqwest::get(url)
            .await
            .expect("the API answers")
            .status()
            .as_u16()
    }

    /// Follows a paged route from `url` to the end, `next` giving each page's next URL: the
    /// ids of the posts under `items` on all pages, and the pages.
    async fn walk(
        url: &str,
        items: &str,
        next: impl Fn(&serde_json::Value) -> Option<String>,
    ) -> (Vec<i64>, Vec<serde_json::Value>) {
        let (mut seen, mut pages, mut url) = (Vec::new(), Vec::new(), Some(url.to_owned()));
        while let Some(page_url) = url {
            let (_, _, page) = get(&page_url).await;
            seen.extend(ids(&page[items]));
            url = next(&page);
            pages.push(page);
        }
        (seen, pages)
    }

    /// The post ids in an array of posts.
    fn ids(posts: &serde_json::Value) -> Vec<i64> {
        let posts = posts.as_array().expect("an array of posts");
        posts
            .iter()
            .map(|post| post["id"].as_i64().unwrap())
            .collect()
    }

    /// The content type of an answer.
    fn content_type(headers: &HeaderMap) -> &str {
        headers[CONTENT_TYPE].to_str().unwrap()
    }

    #[tokio::test]
    async fn posts_are_the_serialized_array_and_follow_the_count() {
        let (api, base) = start(2_500).await;
        let response = reqwest::get(format!("{base}/posts")).await.unwrap();
        assert_eq!(content_type(response.headers()), "application/json");
        let body = response.bytes().await.unwrap();
        assert_eq!(body, serde_json::to_vec(&posts(2_500)).unwrap());

        let (_, _, since) = get(&format!("{base}/posts?since_id=2497")).await;
        assert_eq!(ids(&since), [2498, 2499, 2500]);
        api.set_count(2_502);
        let (_, _, since) = get(&format!("{base}/posts?since_id=2497")).await;
        assert_eq!(ids(&since), [2498, 2499, 2500, 2501, 2502]);
        let (_, _, none) = get(&format!("{base}/posts?since_id=9999")).await;
        assert_eq!(ids(&none), [0; 0]);
    }

    #[tokio::test]
    async fn paged_posts_number_pages_from_one_and_end_empty() {
        let (_, base) = start(25).await;
        let (status, headers, first) = get(&format!("{base}/paged/posts")).await;
        assert_eq!((status, content_type(&headers)), (200, "application/json"));
        assert_eq!(ids(&first), (1..=10).collect::<Vec<_>>());
        let (_, _, page) = get(&format!("{base}/paged/posts?page=3&per_page=10")).await;
        assert_eq!(ids(&page), (21..=25).collect::<Vec<_>>());
        let (_, _, past) = get(&format!("{base}/paged/posts?page=4")).await;
        assert_eq!(past, serde_json::json!([]));
        let (_, _, since) = get(&format!("{base}/paged/posts?since_id=20&per_page=3&page=2")).await;
        assert_eq!(ids(&since), [24, 25]);
        assert_eq!(status_of(&format!("{base}/paged/posts?page=0")).await, 400);
    }

    #[tokio::test]
    async fn offset_posts_carry_the_total_after_since_id() {
        let (_, base) = start(25).await;
        let (_, _, page) = get(&format!("{base}/offset/posts?offset=20&limit=10")).await;
        let keys: Vec<_> = page.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["items", "total"]);
        assert_eq!(page["total"], 25);
        assert_eq!(ids(&page["items"]), (21..=25).collect::<Vec<_>>());
        let (_, _, first) = get(&format!("{base}/offset/posts?since_id=5")).await;
        assert_eq!(first["total"], 20);
        assert_eq!(ids(&first["items"]), (6..=15).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn cursor_posts_walk_to_a_null_cursor() {
        let (_, base) = start(25).await;
        let (seen, pages) = walk(&format!("{base}/cursor/posts?since_id=3"), "data", |page| {
            let cursor = page["next_cursor"].as_str()?;
            assert!(cursor.parse::<i64>().is_err(), "opaque: {cursor}");
            Some(format!("{base}/cursor/posts?cursor={cursor}"))
        })
        .await;
        assert_eq!(seen, (4..=25).collect::<Vec<_>>());
        let has_more: Vec<_> = pages.iter().map(|page| page["has_more"].clone()).collect();
        assert_eq!(has_more, [true, true, false]);
        assert_eq!(
            status_of(&format!("{base}/cursor/posts?cursor=12")).await,
            400
        );
    }

    #[tokio::test]
    async fn next_posts_link_absolute_urls_keeping_limit_and_since_id() {
        let (_, base) = start(25).await;
        let first = format!("{base}/next/posts?limit=7&since_id=2");
        let (seen, pages) = walk(&first, "results", |page| {
            page["next"].as_str().map(str::to_owned)
        })
        .await;
        assert_eq!(seen, (3..=25).collect::<Vec<_>>());
        let second = format!("{base}/next/posts?after=9&limit=7&since_id=2");
        assert_eq!((pages.len(), &pages[0]["next"]), (4, &second.into()));
    }

    #[tokio::test]
    async fn link_posts_name_the_next_page_after_the_first() {
        let (_, base) = start(25).await;
        let (_, headers, page) = get(&format!("{base}/link/posts?per_page=10&since_id=1")).await;
        assert_eq!(ids(&page), (2..=11).collect::<Vec<_>>());
        let first = format!("<{base}/link/posts?page=1&per_page=10&since_id=1>; rel=\"first\"");
        let next = format!("<{base}/link/posts?page=2&per_page=10&since_id=1>; rel=\"next\"");
        assert_eq!(headers[LINK], format!("{first}, {next}"));
        let (_, headers, page) = get(&format!("{base}/link/posts?page=3&since_id=1")).await;
        assert_eq!(ids(&page), (22..=25).collect::<Vec<_>>());
        assert_eq!(headers[LINK], first, "no next on the last page");
    }

    #[tokio::test]
    async fn orders_walk_by_cursor_to_exactly_the_fixed_orders() {
        let (_, base) = start(3).await;
        let (mut pages, mut url) = (Vec::new(), Some(format!("{base}/orders?limit=25")));
        while let Some(page_url) = url {
            let (_, _, page) = get(&page_url).await;
            url = page["next_cursor"]
                .as_str()
                .map(|cursor| format!("{base}/orders?limit=25&cursor={cursor}"));
            pages.push(page);
        }
        let served: Vec<serde_json::Value> = pages
            .iter()
            .flat_map(|page| page["data"].as_array().unwrap().clone())
            .collect();
        assert_eq!(
            served,
            orders(),
            "every order, once, in order, whatever the post count"
        );
        let has_more: Vec<_> = pages.iter().map(|page| page["has_more"].clone()).collect();
        assert_eq!(has_more, [true, true, false]);
        let body = reqwest::get(format!("{base}/orders?limit=7&since_id=6"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            body.contains("\"amount\":123456789012345678.90,"),
            "decimals are served with every digit: {body}"
        );
    }

    #[tokio::test]
    async fn the_trap_repeats_its_cursor_with_new_posts() {
        let (_, base) = start(100).await;
        let (_, _, first) = get(&format!("{base}/trap/posts")).await;
        assert_eq!(ids(&first["data"]), [1, 2]);
        for _ in 0..3 {
            let (_, _, again) = get(&format!("{base}/trap/posts?cursor=same-cursor")).await;
            assert_eq!(ids(&again["data"]), [3, 4]);
            assert_eq!(again["next_cursor"], "same-cursor");
            assert_eq!(again["has_more"], true);
        }
    }

    #[tokio::test]
    async fn flaky_posts_fail_as_often_as_asked_per_key() {
        let (api, base) = start(5).await;
        let url = format!("{base}/flaky/posts?key=a&times=2&fail=429&retry_after=3&since_id=3");
        for _ in 0..2 {
            let (status, headers, body) = get(&url).await;
            assert_eq!((status, headers[RETRY_AFTER].to_str().unwrap()), (429, "3"));
            assert_eq!(body, serde_json::json!({"error": "Too Many Requests"}));
        }
        let (status, _, posts) = get(&url).await;
        assert_eq!((status, ids(&posts)), (200, vec![4, 5]));
        assert_eq!(api.requests("a"), 3);

        let (status, headers, _) = get(&format!("{base}/flaky/posts?key=b&retry_after=date")).await;
        assert_eq!(status, 503);
        let date = headers[RETRY_AFTER].to_str().unwrap();
        let ahead = httpdate::parse_http_date(date)
            .unwrap()
            .duration_since(SystemTime::now())
            .expect("in the future");
        assert!(ahead <= Duration::from_secs(2), "{ahead:?}");
        let (status, headers, body) = get(&format!("{base}/flaky/posts?key=c&fail=500")).await;
        assert_eq!((status, headers.get(RETRY_AFTER)), (500, None));
        assert_eq!(body["error"], "Internal Server Error");
        assert_eq!(
            (api.requests("b"), api.requests("c"), api.requests("d")),
            (1, 1, 0)
        );
    }

    #[tokio::test]
    async fn slow_posts_wait_before_or_stall_within_the_body() {
        let (_, base) = start(3).await;
        let started = std::time::Instant::now();
        let (_, _, delayed) = get(&format!("{base}/slow/posts?delay_ms=300")).await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(ids(&delayed), [1, 2, 3]);

        let started = std::time::Instant::now();
        let mut response = reqwest::get(format!("{base}/slow/posts?stall_ms=500"))
            .await
            .unwrap();
        assert_eq!(response.chunk().await.unwrap().unwrap(), "[");
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "the first byte is not held"
        );
        let mut rest = Vec::new();
        while let Some(chunk) = response.chunk().await.unwrap() {
            rest.extend_from_slice(&chunk);
        }
        assert!(started.elapsed() >= Duration::from_millis(500));
        assert_eq!(rest, &serde_json::to_vec(&posts(3)).unwrap()[1..]);
    }

    #[tokio::test]
    async fn big_is_an_array_of_about_the_size_asked() {
        let (_, base) = start(0).await;
        for bytes in [0, 1, 2, 102, 103, 1_000_000] {
            let response = reqwest::get(format!("{base}/big?bytes={bytes}"))
                .await
                .unwrap();
            assert_eq!(content_type(response.headers()), "application/json");
            let body = response.bytes().await.unwrap();
            assert!(
                (bytes..bytes + 101).contains(&(body.len() as u64)),
                "{bytes}: {}",
                body.len()
            );
            let strings: Vec<String> = serde_json::from_slice(&body).unwrap();
            assert_eq!(strings.len(), body.len() / 101, "{bytes}");
        }
        assert_eq!(
            array_chunks(1..=2_500, |_, _| {}).count(),
            5,
            "streamed in chunks"
        );
    }

    #[tokio::test]
    async fn html_and_text_answers_keep_their_content_types() {
        let (_, base) = start(3).await;
        let page = reqwest::get(format!("{base}/html")).await.unwrap();
        assert_eq!(page.status().as_u16(), 200);
        assert_eq!(content_type(page.headers()), "text/html; charset=utf-8");
        assert!(page.text().await.unwrap().starts_with("<!DOCTYPE html>"));
        let (status, headers, posts) = get(&format!("{base}/json-wrong-type?since_id=1")).await;
        assert_eq!((status, content_type(&headers)), (200, "text/plain"));
        assert_eq!(ids(&posts), [2, 3]);
    }

    #[tokio::test]
    async fn private_posts_take_the_token_every_way_and_refuse_others() {
        let (_, base) = start(25).await;
        let url = format!("{base}/private/posts");
        let client = reqwest::Client::new();
        let accepted = [
            client.get(&url).bearer_auth(SAMPLE_TOKEN),
            client.get(&url).header("X-Api-Key", SAMPLE_TOKEN),
            client.get(format!("{url}?api_key={SAMPLE_TOKEN}")),
            client.get(&url).basic_auth(SAMPLE_USER, Some(SAMPLE_TOKEN)),
        ];
        for request in accepted {
            let (status, _, posts) = get_json(request).await;
            assert_eq!((status, ids(&posts)), (200, (1..=25).collect()));
        }
        let refused = [
            client.get(&url),
            client.get(&url).bearer_auth("wrong"),
            client.get(&url).header("X-Api-Key", "wrong"),
            client.get(&url).basic_auth(SAMPLE_USER, Some("wrong")),
            client.get(&url).basic_auth("other", Some(SAMPLE_TOKEN)),
        ];
        for request in refused {
            let (status, headers, body) = get_json(request).await;
            assert_eq!((status, content_type(&headers)), (401, "application/json"));
            assert_eq!(body, serde_json::json!({"error": "unauthorized"}));
        }
        let paged = client.get(format!("{url}?since_id=2&page=2&per_page=5"));
        let (_, _, posts) = get_json(paged.bearer_auth(SAMPLE_TOKEN)).await;
        assert_eq!(ids(&posts), (8..=12).collect::<Vec<_>>());
    }
}
