//! The importer's side of HTTP: one [`client`] for every source, and per source and run a
//! [`Requester`] that sends the source's headers, query parameters and credential, keeps to its
//! rate limit, tries again what may pass (connect errors, timeouts, 429, 5xx; `Retry-After`
//! honoured) and hands back only a 2xx answer that says it is JSON, whose body ([`Answer`]) is
//! read within `http.max_response_bytes`.
//!
//! Every URL in a log or an error is redacted ([`barge_core::redact_url`]): the credential may
//! travel in the query string.

use std::time::Duration;

use barge_core::Source;
use barge_core::fetch::{Auth, SecretRef};
use barge_core::metrics::{self, ImporterMetrics, SourceLabel, StatusLabels};
use barge_core::settings::HttpSettings;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::{
    AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::ImportError;

/// The `User-Agent` of every request: barge and its version, so an API's operators can tell who
/// is calling.
pub const USER_AGENT: &str = concat!("barge-importer/", env!("CARGO_PKG_VERSION"));

/// How much of a refused or unexpected body is quoted in an error: enough for the API's reason.
const BODY_START_BYTES: usize = 200;

/// The first pause before trying again (unless `http.max_backoff` is shorter).
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The longest spacing a rate limit imposes: a `rate_limit` under one request a week counts as
/// one a week.
const MAX_SPACING: Duration = Duration::from_secs(7 * 24 * 3600);

/// An HTTP client for the importer's sources: `http.timeout` to connect and between two reads
/// of an answer (never on the whole body, which may stream for long), and a `User-Agent`
/// naming barge. With `credentials`, for sources with `auth`, redirects stay within the origin
/// asked; without, reqwest's own policy follows up to ten anywhere.
pub fn client(settings: &HttpSettings, credentials: bool) -> reqwest::Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .connect_timeout(settings.timeout)
        .read_timeout(settings.timeout)
        .user_agent(USER_AGENT);
    let builder = if credentials {
        builder.redirect(same_origin_redirects())
    } else {
        builder
    };
    builder.build()
}

/// Follows redirects (at most ten) within the origin asked; a redirect to another host,
/// scheme or port is not followed, and its 3xx answer fails the run: reqwest would carry an
/// `X-Api-Key`-style credential header (or a query credential) along to that host.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().map(Url::origin);
        if attempt.previous().len() > 10 {
            attempt.error("more than 10 redirects")
        } else if first.is_some_and(|first| first != attempt.url().origin()) {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

/// Sends one source's requests during one run. Its credential is read when it is made, so a
/// rotated secret is picked up by the next run; its `Debug` never shows it.
#[derive(Debug)]
pub struct Requester<'a> {
    source: &'a Source,
    settings: &'a HttpSettings,
    client: &'a reqwest::Client,
    /// The source's headers, and the credential's header (marked sensitive).
    headers: HeaderMap,
    /// A credential sent some other way than in a header.
    credential: Option<Credential>,
    /// The secret, to blank out of an error body that echoes it back.
    secret: Option<SecretString>,
    /// The least time between two requests (retries included), from `rate_limit`.
    spacing: Option<Duration>,
    /// When the next request may be sent.
    next_request: Option<Instant>,
    /// Cuts a wait between two tries short (a `Retry-After` may be minutes).
    shutdown: CancellationToken,
    /// Where answers and retries are counted.
    metrics: ImporterMetrics,
}

/// A credential that does not travel as a plain header.
#[derive(Debug)]
enum Credential {
    /// `?<name>=<value>`.
    Query { name: String, value: SecretString },
    /// HTTP basic authentication.
    Basic {
        username: String,
        password: SecretString,
    },
}

/// Why one try failed in a way that may pass.
enum Failure {
    Status(reqwest::Response),
    Transport(reqwest::Error),
}

impl<'a> Requester<'a> {
    /// A requester for one run of `source`: checks its headers and reads its credential (from
    /// the environment, Secrets Manager or SSM Parameter Store) now.
    pub async fn new(
        source: &'a Source,
        settings: &'a HttpSettings,
        client: &'a reqwest::Client,
        aws: &barge_core::aws::AwsClients,
    ) -> Result<Self, ImportError> {
        let secret = match &source.auth {
            Some(auth) => Some(
                barge_core::secrets::resolve(auth.secret(), aws)
                    .await
                    .map_err(|error| ImportError::Secret {
                        source_name: source.name.clone(),
                        error,
                    })?,
            ),
            None => None,
        };
        Self::with_secret(source, settings, client, secret)
    }

    /// A requester for `source` whose credential the caller has read already: `secret` is the
    /// value of `source.auth`'s secret (none is sent without both). Checks the headers.
    pub fn with_secret(
        source: &'a Source,
        settings: &'a HttpSettings,
        client: &'a reqwest::Client,
        secret: Option<SecretString>,
    ) -> Result<Self, ImportError> {
        let invalid = |problem: String| ImportError::Request {
            source_name: source.name.clone(),
            problem,
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &source.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("headers: {name:?} is not a header name")))?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                invalid(format!(
                    "headers: the value of {name} holds characters a header cannot carry"
                ))
            })?;
            headers.insert(name, value);
        }
        let mut credential = None;
        let mut echoed = None;
        if let (Some(auth), Some(secret)) = (&source.auth, secret) {
            echoed = Some(secret.clone());
            let header_value = |text: &str, from: &SecretRef| {
                let mut value = HeaderValue::from_str(text).map_err(|_| {
                    invalid(format!(
                        "the secret from {from} holds characters a header cannot carry \
                         (a line break?)"
                    ))
                })?;
                value.set_sensitive(true);
                Ok::<_, ImportError>(value)
            };
            match auth {
                Auth::Bearer { secret: from } => {
                    let bearer = format!("Bearer {}", secret.expose_secret());
                    headers.insert(AUTHORIZATION, header_value(&bearer, from)?);
                }
                Auth::Header { name, secret: from } => {
                    let name = HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| invalid(format!("auth.name {name:?} is not a header name")))?;
                    headers.insert(name, header_value(secret.expose_secret(), from)?);
                }
                Auth::Query { name, .. } => {
                    credential = Some(Credential::Query {
                        name: name.clone(),
                        value: secret,
                    });
                }
                Auth::Basic { username, .. } => {
                    credential = Some(Credential::Basic {
                        username: username.clone(),
                        password: secret,
                    });
                }
            }
        }
        let spacing = source.rate_limit.map(|rate| {
            Duration::try_from_secs_f64(1.0 / rate)
                .unwrap_or(MAX_SPACING)
                .min(MAX_SPACING)
        });
        Ok(Self {
            source,
            settings,
            client,
            headers,
            credential,
            secret: echoed,
            spacing,
            next_request: None,
            shutdown: CancellationToken::new(),
            metrics: ImporterMetrics::default(),
        })
    }

    /// Makes a wait between two tries end with [`ImportError::Interrupted`] once `shutdown`
    /// fires, so that a stop is not held up by a backoff or a `Retry-After`.
    pub fn stop_on(mut self, shutdown: &CancellationToken) -> Self {
        self.shutdown = shutdown.clone();
        self
    }

    /// Counts answers and retries into `metrics` (the daemon's, which `/metrics` serves).
    pub fn counted_in(mut self, metrics: &ImporterMetrics) -> Self {
        self.metrics = metrics.clone();
        self
    }

    /// GETs `url` (page `page` of the run, for the logs) with the source's query parameters,
    /// headers and credential, once the rate limit allows. Connect errors, timeouts, 429 and
    /// 5xx are tried again, up to `http.max_attempts` tries in all, after a backoff or the
    /// answer's `Retry-After`; other statuses fail at once. Returns the answer of a 2xx whose
    /// `Content-Type` is JSON (or absent) and whose `Content-Length`, if any, is within
    /// `http.max_response_bytes`.
    pub async fn get(&mut self, url: &Url, page: u64) -> Result<Answer, ImportError> {
        // Set, not appended: a next-page URL the API built usually carries them already.
        let mut target = url.clone();
        for (name, value) in &self.source.query {
            crate::pages::set_param(&mut target, name, value);
        }
        if let Some(Credential::Query { name, value }) = &self.credential {
            crate::pages::set_param(&mut target, name, value.expose_secret());
        }
        let shown = barge_core::redact_url(target.as_str());
        let max_attempts = self.settings.max_attempts.max(1);
        let mut delays = backoff(self.settings.max_backoff);
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.pace().await;
            let mut request = self
                .client
                .get(target.clone())
                .headers(self.headers.clone());
            if let Some(Credential::Basic { username, password }) = &self.credential {
                request = request.basic_auth(username, Some(password.expose_secret()));
            }
            let sent = request.send().await;
            let status = sent
                .as_ref()
                .ok()
                .map(|response| response.status().as_u16());
            self.metrics
                .http_responses
                .get_or_create(&StatusLabels {
                    source: self.source.name.clone(),
                    status_class: metrics::status_class(status),
                })
                .inc();
            let failure = match sent {
                Ok(response) if response.status().is_success() => {
                    return self.answer(response, &shown).await;
                }
                Ok(response) if may_pass(response.status()) => Failure::Status(response),
                Ok(response) => return Err(self.status_error(response, &shown, attempt).await),
                Err(err) if err.is_builder() || err.is_redirect() => {
                    return Err(self.transport_error(err, &shown, attempt));
                }
                // Its URL may carry the credential: errors and logs show `shown`.
                Err(err) => Failure::Transport(err.without_url()),
            };
            if attempt >= max_attempts {
                return Err(match failure {
                    Failure::Status(response) => self.status_error(response, &shown, attempt).await,
                    Failure::Transport(err) => self.transport_error(err, &shown, attempt),
                });
            }
            let (status, reason, asked) = match &failure {
                Failure::Status(response) => {
                    let header = response.headers().get(RETRY_AFTER);
                    let asked = header.and_then(|value| {
                        Some((value, retry_after(value.to_str().ok()?, Utc::now())?))
                    });
                    (Some(response.status().as_u16()), None, asked)
                }
                Failure::Transport(err) => (None, Some(barge_core::error_chain(err)), None),
            };
            if let Some((value, wait)) = asked
                && wait > self.settings.max_retry_after
            {
                return Err(ImportError::RetryAfterTooLong {
                    source_name: self.source.name.clone(),
                    url: shown,
                    status: status.unwrap_or_default(),
                    retry_after: String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    asked_seconds: wait.as_secs(),
                    limit_seconds: self.settings.max_retry_after.as_secs(),
                });
            }
            let delay = match asked {
                Some((_, wait)) => wait,
                None => delays.next().unwrap_or(self.settings.max_backoff),
            };
            tracing::warn!(
                source = %self.source.name,
                url = %shown,
                page,
                status,
                error = reason.as_deref(),
                attempt,
                max_attempts,
                delay = ?delay,
                retry_after = asked.is_some(),
                "request failed; trying again"
            );
            drop(failure);
            self.metrics
                .http_retries
                .get_or_create(&SourceLabel::of(&self.source.name))
                .inc();
            tokio::select! {
                () = self.shutdown.cancelled() => {
                    return Err(ImportError::Interrupted {
                        source_name: self.source.name.clone(),
                    });
                }
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Waits until the rate limit allows the next request.
    async fn pace(&mut self) {
        let Some(spacing) = self.spacing else {
            return;
        };
        if let Some(next) = self.next_request {
            tokio::time::sleep_until(next).await;
        }
        self.next_request = Some(Instant::now() + spacing);
    }

    /// The answer of a 2xx `response`, if its content type and announced length are acceptable.
    async fn answer(
        &self,
        mut response: reqwest::Response,
        shown: &str,
    ) -> Result<Answer, ImportError> {
        if let Some(content_type) = response.headers().get(CONTENT_TYPE) {
            let content_type = String::from_utf8_lossy(content_type.as_bytes()).into_owned();
            if !is_json(&content_type) {
                return Err(ImportError::NotJson {
                    source_name: self.source.name.clone(),
                    url: shown.to_owned(),
                    content_type,
                    body_start: self.body_start(&mut response).await,
                });
            }
        }
        let limit = self.settings.max_response_bytes;
        let final_url = barge_core::redact_url(response.url().as_str());
        if let Some(length) = response.content_length()
            && length > limit
        {
            return Err(ImportError::TooLarge {
                source_name: self.source.name.clone(),
                url: final_url,
                limit,
                content_length: Some(length),
            });
        }
        Ok(Answer {
            url: response.url().clone(),
            headers: response.headers().clone(),
            response,
            source_name: self.source.name.clone(),
            shown: final_url,
            limit,
            received: 0,
        })
    }

    async fn status_error(
        &self,
        mut response: reqwest::Response,
        shown: &str,
        tries: u32,
    ) -> ImportError {
        ImportError::Status {
            source_name: self.source.name.clone(),
            url: shown.to_owned(),
            status: response.status().as_u16(),
            tries,
            body_start: self.body_start(&mut response).await,
        }
    }

    /// The first bytes of a body (what an API says about a refusal, or what it sent instead of
    /// JSON), as text, with the secret blanked out for APIs that quote the credential they
    /// refused: read long enough that a secret across the cut is blanked whole.
    async fn body_start(&self, response: &mut reqwest::Response) -> String {
        let secret = self
            .secret
            .as_ref()
            .map(|secret| secret.expose_secret())
            .filter(|secret| !secret.is_empty());
        let wanted = BODY_START_BYTES + secret.map_or(0, str::len);
        let mut start = Vec::new();
        while start.len() < wanted {
            match response.chunk().await {
                Ok(Some(chunk)) => start.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        start.truncate(wanted);
        let mut text = String::from_utf8_lossy(&start).into_owned();
        if let Some(secret) = secret {
            text = text.replace(secret, "***");
        }
        let mut cut = text.len().min(BODY_START_BYTES);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text
    }

    fn transport_error(&self, err: reqwest::Error, shown: &str, tries: u32) -> ImportError {
        ImportError::Transport {
            source_name: self.source.name.clone(),
            url: shown.to_owned(),
            tries,
            reason: barge_core::error_chain(&err.without_url()),
        }
    }
}

/// A 2xx answer whose body is still to be read, chunk by chunk, within
/// `http.max_response_bytes`.
#[derive(Debug)]
pub struct Answer {
    /// The URL that answered, after redirects. Not for logs: it may carry the credential (use
    /// [`Answer::redacted_url`]).
    pub url: Url,
    /// The answer's headers (`Link` for pagination, …).
    pub headers: HeaderMap,
    response: reqwest::Response,
    source_name: String,
    /// `url`, redacted.
    shown: String,
    limit: u64,
    received: u64,
}

impl Answer {
    /// The next chunk of the body, `None` at its end. A body growing past
    /// `http.max_response_bytes` is [`ImportError::TooLarge`]; a connection that breaks or
    /// stalls for `http.timeout` is [`ImportError::Transport`].
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ImportError> {
        let chunk = self
            .response
            .chunk()
            .await
            .map_err(|err| ImportError::Transport {
                source_name: self.source_name.clone(),
                url: self.shown.clone(),
                tries: 1,
                reason: barge_core::error_chain(&err.without_url()),
            })?;
        if let Some(bytes) = &chunk {
            self.received += bytes.len() as u64;
            if self.received > self.limit {
                return Err(ImportError::TooLarge {
                    source_name: self.source_name.clone(),
                    url: self.shown.clone(),
                    limit: self.limit,
                    content_length: None,
                });
            }
        }
        Ok(chunk)
    }

    /// The whole body, which must be at most `limit` bytes (`http.max_page_bytes`): a page held
    /// whole to be taken apart. Page `page` of the run names it in the error.
    pub async fn body_within(&mut self, limit: u64, page: u64) -> Result<Vec<u8>, ImportError> {
        let mut body = Vec::with_capacity(self.content_length().unwrap_or(0).min(limit) as usize);
        while let Some(chunk) = self.chunk().await? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(ImportError::PageTooLarge {
                    source_name: self.source_name.clone(),
                    url: self.shown.clone(),
                    page,
                    limit,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The `rel="next"` target of the answer's `Link` header, which may come as several lines,
    /// one per relation.
    pub fn link_next(&self) -> Option<String> {
        self.headers
            .get_all(reqwest::header::LINK)
            .iter()
            .find_map(|value| crate::pages::link_next(&String::from_utf8_lossy(value.as_bytes())))
    }

    /// How many bytes of the body were read so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The URL that answered, fit for logs and errors.
    pub fn redacted_url(&self) -> &str {
        &self.shown
    }

    /// The body's length, when the answer announced it.
    pub fn content_length(&self) -> Option<u64> {
        self.response.content_length()
    }
}

/// Whether a try answered with `status` may pass later: throttling and server errors.
fn may_pass(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// The pauses between tries: exponential with jitter, from a second (or `max` if shorter) up to
/// `max`.
fn backoff(max: Duration) -> impl Iterator<Item = Duration> {
    barge_core::backoff::exponential(FIRST_BACKOFF.min(max), max)
        // Jitter may add up to the delay itself: the maximum is the maximum.
        .map(move |delay| delay.min(max))
}

/// How long a `Retry-After` value asks to wait, at `now`: delay-seconds, or an HTTP-date (a date
/// in the past means now). `None` if it is neither.
pub(crate) fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    // IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) is RFC 2822's date-time.
    let date = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (date.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// Whether `content_type` says JSON: `application/json`, `application/<anything>+json`,
/// `text/json` or `application/x-ndjson`, parameters (`charset`) ignored. An empty value counts
/// as none.
pub(crate) fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence.is_empty() {
        return true;
    }
    match essence.split_once('/') {
        Some(("application", "json" | "x-ndjson")) | Some(("text", "json")) => true,
        Some(("application", subtype)) => {
            subtype.len() > "+json".len() && subtype.ends_with("+json")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = at("2025-10-21T07:28:00Z");
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            retry_after("Tue, 21 Oct 2025 07:30:30 GMT", now),
            Some(Duration::from_secs(150))
        );
        // A date already past means now.
        assert_eq!(
            retry_after("Tue, 21 Oct 2025 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for nonsense in ["", "-5", "1.5", "soon", "2025-10-21T07:30:00Z"] {
            assert_eq!(retry_after(nonsense, now), None, "{nonsense:?}");
        }
    }

    #[test]
    fn json_content_types_are_told_from_the_rest() {
        for json in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON;charset=UTF-8",
            "application/vnd.api+json",
            "application/problem+json",
            "text/json",
            "application/x-ndjson",
            "",
        ] {
            assert!(is_json(json), "{json:?}");
        }
        for other in [
            "text/html",
            "text/html; charset=utf-8",
            "text/plain",
            "application/xml",
            "application/+json",
            "application/jsonp",
            "application/octet-stream",
            "json",
        ] {
            assert!(!is_json(other), "{other:?}");
        }
    }

    #[test]
    fn the_backoff_starts_at_a_second_and_stays_within_its_maximum() {
        let max = Duration::from_secs(8);
        let delays: Vec<Duration> = backoff(max).take(10).collect();
        assert!(delays[0] >= FIRST_BACKOFF, "{delays:?}");
        assert!(delays.iter().all(|delay| *delay <= max), "{delays:?}");
        assert_eq!(delays[9], max, "{delays:?}");
        let short = Duration::from_millis(100);
        assert!(backoff(short).take(3).all(|delay| delay == short));
    }
}
