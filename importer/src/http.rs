//! Placeholder HTTP layer, replaced by the retrying one (branch `http`).

use bytes::Bytes;
use url::Url;

use crate::ImportError;

/// How much of an error response's body is quoted: enough for the API's reason.
const STATUS_BODY_BYTES: usize = 200;

/// Requests of one run of one source.
pub struct Requester<'a> {
    client: &'a reqwest::Client,
    source: &'a barge_core::Source,
    limit: u64,
}

/// A successful answer.
pub struct Answer {
    /// The URL answered.
    pub url: Url,
    /// Its headers.
    pub headers: reqwest::header::HeaderMap,
    response: reqwest::Response,
    read: u64,
    limit: u64,
    source_name: String,
}

impl<'a> Requester<'a> {
    /// Requests of `source`.
    pub fn new(client: &'a reqwest::Client, source: &'a barge_core::Source, limit: u64) -> Self {
        Self {
            client,
            source,
            limit,
        }
    }

    /// GETs `url`.
    pub async fn get(&mut self, url: &Url, _page: u64) -> Result<Answer, ImportError> {
        let redacted = barge_core::redact_url(url.as_str());
        let transport = |err: reqwest::Error| ImportError::Transport {
            source_name: self.source.name.clone(),
            url: redacted.clone(),
            reason: barge_core::error_chain(&err.without_url()),
        };
        let mut request = self.client.get(url.clone());
        for (name, value) in &self.source.headers {
            request = request.header(name, value);
        }
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            let mut start = Vec::new();
            while start.len() < STATUS_BODY_BYTES {
                match response.chunk().await {
                    Ok(Some(chunk)) => start.extend_from_slice(&chunk),
                    Ok(None) | Err(_) => break,
                }
            }
            start.truncate(STATUS_BODY_BYTES);
            return Err(ImportError::Status {
                source_name: self.source.name.clone(),
                url: redacted,
                status: status.as_u16(),
                body_start: String::from_utf8_lossy(&start).into_owned(),
            });
        }
        Ok(Answer {
            url: response.url().clone(),
            headers: response.headers().clone(),
            response,
            read: 0,
            limit: self.limit,
            source_name: self.source.name.clone(),
        })
    }
}

impl Answer {
    /// The next chunk of the body.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ImportError> {
        let chunk = self
            .response
            .chunk()
            .await
            .map_err(|err| ImportError::Transport {
                source_name: self.source_name.clone(),
                url: barge_core::redact_url(self.url.as_str()),
                reason: barge_core::error_chain(&err.without_url()),
            })?;
        if let Some(chunk) = &chunk {
            self.read += chunk.len() as u64;
            if self.read > self.limit {
                return Err(ImportError::Transport {
                    source_name: self.source_name.clone(),
                    url: barge_core::redact_url(self.url.as_str()),
                    reason: "too large".into(),
                });
            }
        }
        Ok(chunk)
    }
}
