//! What the importer remembers between runs, kept in S3 beside the archive so that any host can
//! carry on where another stopped:
//!
//! - `<state_prefix>/<source>/state.json`: the incremental mark and the digests of the pages
//!   the last run saw. Written only with a condition on the version read (`If-Match`, or
//!   `If-None-Match: *` for the first), so two importers on one source cannot clobber each
//!   other: the second write fails and its run with it.
//! - `<state_prefix>/<source>/pending/<object>.json`: one marker per archive object, written
//!   just before the object becomes visible and removed once the run's state is saved. A run
//!   that dies between the put and the SQS send (or before its state is saved) leaves markers;
//!   the next run announces their objects again (the transformer's ledger drops any duplicate)
//!   and remembers their pages, so nothing is lost and nothing is archived twice.

use std::cmp::Ordering;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use barge_core::BatchMessage;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the state and marker documents this build writes and reads.
const STATE_VERSION: u32 = 1;

/// A source's remembered state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceState {
    /// Always [`STATE_VERSION`].
    #[serde(default)]
    pub version: u32,
    /// The highest value of the incremental field seen in a complete run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<Value>,
    /// The SHA-256 of each page the last run saw, by page number (and of the pages of objects
    /// a run that did not finish announced): a page identical to the last one seen at its
    /// place is neither archived nor announced again.
    #[serde(default)]
    pub pages: Vec<PageDigest>,
    /// When this state was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
}

/// The digest of the page at one place of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageDigest {
    /// The page's number in its run, from 1.
    pub page: u64,
    /// Hex SHA-256 of its body.
    pub sha256: String,
}

impl SourceState {
    /// Records what was seen at each page's place, replacing what was there.
    pub fn remember<'a>(&mut self, pages: impl IntoIterator<Item = &'a PageDigest>) {
        for page in pages {
            self.pages.retain(|known| known.page != page.page);
            self.pages.push(page.clone());
        }
        self.pages.sort_by_key(|known| known.page);
    }

    /// Whether the last run saw exactly `sha256` at page `page`.
    pub fn unchanged(&self, page: u64, sha256: &str) -> bool {
        self.pages
            .iter()
            .any(|known| known.page == page && known.sha256 == sha256)
    }
}

/// A marker: an archive object and the pages in it, written before the object is visible.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    /// The message that announces (or announced) the object.
    pub message: BatchMessage,
    /// Digests of the pages whose records the object holds.
    pub pages: Vec<PageDigest>,
}

/// A state that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another importer wrote the state since this run read it.
    #[error(
        "s3://{bucket}/{key} changed since this run read it: is another importer running this \
         source? The run's objects are announced; its mark is not advanced"
    )]
    Conflict {
        /// The bucket.
        bucket: String,
        /// The state object's key.
        key: String,
    },
    /// S3 failed, or the document is not one this build reads.
    #[error("s3://{bucket}/{key}: {reason}")]
    Storage {
        /// The bucket.
        bucket: String,
        /// The object's key.
        key: String,
        /// What went wrong.
        reason: String,
    },
}

/// Reads and writes the state of the sources in one bucket.
#[derive(Debug, Clone)]
pub struct StateStore {
    s3: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl StateStore {
    /// The store under `prefix` of `bucket`.
    pub fn new(s3: aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Self {
        Self {
            s3,
            bucket: bucket.to_owned(),
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }

    fn state_key(&self, source: &str) -> String {
        format!("{}/{source}/state.json", self.prefix)
    }

    fn pending_prefix(&self, source: &str) -> String {
        format!("{}/{source}/pending/", self.prefix)
    }

    /// The key of the marker of the object `object_key` of `source`.
    pub fn marker_key(&self, source: &str, object_key: &str) -> String {
        let name = object_key.rsplit('/').next().unwrap_or(object_key);
        format!("{}{name}", self.pending_prefix(source))
    }

    fn failed(&self, key: &str, reason: String) -> StateError {
        StateError::Storage {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            reason,
        }
    }

    /// The source's state and the version (ETag) it was read at; the default state and `None`
    /// when the source has none yet.
    pub async fn load(&self, source: &str) -> Result<(SourceState, Option<String>), StateError> {
        let key = self.state_key(source);
        let Some((body, etag)) = self.read(&key).await? else {
            return Ok((SourceState::default(), None));
        };
        let state: SourceState = serde_json::from_slice(&body)
            .map_err(|err| self.failed(&key, format!("not a barge state document: {err}")))?;
        if state.version != STATE_VERSION {
            return Err(self.failed(
                &key,
                format!(
                    "state version {} (this build reads {STATE_VERSION})",
                    state.version
                ),
            ));
        }
        Ok((state, Some(etag)))
    }

    /// Writes the source's state, on condition that it is still at `version` (or still absent);
    /// returns the new version.
    pub async fn save(
        &self,
        source: &str,
        state: &SourceState,
        version: Option<&str>,
    ) -> Result<String, StateError> {
        let key = self.state_key(source);
        let mut state = state.clone();
        state.version = STATE_VERSION;
        state.updated_at = Some(Utc::now());
        let body = serde_json::to_vec_pretty(&state).expect("a state always serializes");
        let put = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(body));
        let put = match version {
            Some(etag) => put.if_match(etag),
            None => put.if_none_match("*"),
        };
        match put.send().await {
            Ok(output) => Ok(output.e_tag.unwrap_or_default()),
            Err(err) => {
                let status = err.raw_response().map(|r| r.status().as_u16());
                // 412: the condition failed; 409: a concurrent conditional write won the race.
                if matches!(status, Some(412 | 409)) {
                    Err(StateError::Conflict {
                        bucket: self.bucket.clone(),
                        key,
                    })
                } else {
                    Err(self.failed(&key, barge_core::error_chain(&err)))
                }
            }
        }
    }

    /// Writes the marker of an object about to become visible.
    pub async fn write_marker(&self, marker: &Marker) -> Result<String, StateError> {
        let key = self.marker_key(&marker.message.source, &marker.message.key);
        let body = serde_json::to_vec(marker).expect("a marker always serializes");
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|err| self.failed(&key, barge_core::error_chain(&err)))?;
        Ok(key)
    }

    /// The markers `source`'s earlier runs left, with their keys, oldest first.
    pub async fn markers(&self, source: &str) -> Result<Vec<(String, Marker)>, StateError> {
        let prefix = self.pending_prefix(source);
        let mut keys = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| self.failed(&prefix, barge_core::error_chain(&err)))?;
            keys.extend(page.contents().iter().filter_map(|o| o.key.clone()));
        }
        // Object names are UUIDv7s: key order is creation order.
        keys.sort();
        let mut markers = Vec::with_capacity(keys.len());
        for key in keys {
            let Some((body, _)) = self.read(&key).await? else {
                continue;
            };
            let marker = serde_json::from_slice(&body)
                .map_err(|err| self.failed(&key, format!("not a barge marker: {err}")))?;
            markers.push((key, marker));
        }
        Ok(markers)
    }

    /// Removes markers whose objects are announced and whose pages are remembered.
    pub async fn delete_markers(&self, keys: &[String]) -> Result<(), StateError> {
        for chunk in keys.chunks(1000) {
            let objects = chunk
                .iter()
                .map(|key| ObjectIdentifier::builder().key(key).build())
                .collect::<Result<Vec<_>, _>>()
                .expect("a key is all an identifier needs");
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .expect("objects are set");
            let output = self
                .s3
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|err| self.failed(&chunk[0], barge_core::error_chain(&err)))?;
            if let Some(error) = output.errors().first() {
                return Err(self.failed(
                    error.key().unwrap_or_default(),
                    error.message().unwrap_or("not deleted").to_owned(),
                ));
            }
        }
        Ok(())
    }

    /// Whether the archive object `key` exists.
    pub async fn exists(&self, key: &str) -> Result<bool, StateError> {
        match self
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(false),
            Err(err) => Err(self.failed(key, barge_core::error_chain(&err))),
        }
    }

    /// The body and ETag of `key`, or `None` if there is no such object.
    async fn read(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, StateError> {
        let output = match self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None);
            }
            Err(err) => return Err(self.failed(key, barge_core::error_chain(&err))),
        };
        let etag = output.e_tag.clone().unwrap_or_default();
        let body = output
            .body
            .collect()
            .await
            .map_err(|err| self.failed(key, barge_core::error_chain(&err)))?
            .to_vec();
        Ok(Some((body, etag)))
    }
}

/// Why an incremental field's values cannot be compared.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MarkError(String);

/// The later of two marks: numbers compare as numbers, RFC 3339 timestamps as instants, other
/// strings as text. Values of different kinds (a number and a string) are an error, since
/// either order would be a guess.
pub fn later_mark(current: Option<Value>, candidate: &Value) -> Result<Option<Value>, MarkError> {
    let Some(current) = current else {
        return Ok(Some(candidate.clone()));
    };
    Ok(Some(
        if compare_marks(candidate, &current)? == Ordering::Greater {
            candidate.clone()
        } else {
            current
        },
    ))
}

fn compare_marks(a: &Value, b: &Value) -> Result<Ordering, MarkError> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let exact =
                |n: &serde_json::Number| n.as_i64().map(i128::from).or(n.as_u64().map(i128::from));
            match (exact(x), exact(y)) {
                (Some(x), Some(y)) => Ok(x.cmp(&y)),
                _ => {
                    let (x, y) = (x.as_f64(), y.as_f64());
                    x.zip(y)
                        .and_then(|(x, y)| x.partial_cmp(&y))
                        .ok_or_else(|| MarkError(format!("cannot compare {a} with {b}")))
                }
            }
        }
        (Value::String(x), Value::String(y)) => {
            let instant = |text: &str| DateTime::parse_from_rfc3339(text).ok();
            Ok(match (instant(x), instant(y)) {
                (Some(x), Some(y)) => x.cmp(&y),
                _ => x.cmp(y),
            })
        }
        _ => Err(MarkError(format!(
            "the incremental field holds {a} and {b}: values of different kinds cannot be ordered"
        ))),
    }
}

/// The incremental field's values as a run meets them: the highest, and whether they came in
/// ascending order (which decides whether a run cut short may still move the mark).
#[derive(Debug, Default)]
pub struct Marks {
    /// The highest value seen.
    pub highest: Option<Value>,
    /// The value of the record before.
    previous: Option<Value>,
    /// In ascending order, the highest value below the last one: every record of it was seen,
    /// which may not hold for the last value when a run is cut short.
    pub below_last: Option<Value>,
    /// Whether a value was lower than the one before it.
    pub out_of_order: bool,
}

impl Marks {
    /// Takes in the next record's value.
    pub fn observe(&mut self, value: &Value) -> Result<(), MarkError> {
        if let Some(previous) = &self.previous {
            match compare_marks(value, previous)? {
                Ordering::Less => self.out_of_order = true,
                Ordering::Greater => self.below_last = Some(previous.clone()),
                Ordering::Equal => {}
            }
        }
        self.previous = Some(value.clone());
        self.highest = later_mark(self.highest.take(), value)?;
        Ok(())
    }
}

/// The text a mark is sent as: a string as it is, a number as written.
pub fn mark_text(mark: &Value) -> String {
    match mark {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn later(a: Value, b: Value) -> Value {
        later_mark(Some(a), &b).unwrap().unwrap()
    }

    #[test]
    fn marks_compare_by_kind() {
        assert_eq!(later(json!(9), json!(10)), json!(10));
        assert_eq!(later(json!(10), json!(9)), json!(10));
        assert_eq!(later(json!(1.5), json!(2)), json!(2));
        assert_eq!(
            later(json!(9007199254740993_i64), json!(9007199254740992_i64)),
            json!(9007199254740993_i64)
        );
        // The same instant in another offset is not later; a later instant is, whatever its text.
        assert_eq!(
            later(
                json!("2026-01-01T10:00:00+02:00"),
                json!("2026-01-01T09:00:00Z")
            ),
            json!("2026-01-01T09:00:00Z")
        );
        assert_eq!(
            later(
                json!("2026-01-01T10:00:00Z"),
                json!("2026-01-01T11:00:00+02:00")
            ),
            json!("2026-01-01T10:00:00Z")
        );
        assert_eq!(later(json!("b"), json!("a")), json!("b"));
        assert!(later_mark(Some(json!(1)), &json!("2")).is_err());
        assert_eq!(later_mark(None, &json!(3)).unwrap(), Some(json!(3)));
        assert_eq!(
            mark_text(&json!("2026-01-01T00:00:00Z")),
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(mark_text(&json!(42)), "42");
    }

    #[test]
    fn marks_know_whether_they_came_in_order() {
        let mut ascending = Marks::default();
        for value in [json!(1), json!(1), json!(5)] {
            ascending.observe(&value).unwrap();
        }
        assert_eq!(
            (ascending.highest, ascending.out_of_order),
            (Some(json!(5)), false)
        );
        assert_eq!(ascending.below_last, Some(json!(1)));
        let mut newest_first = Marks::default();
        for value in [json!(9), json!(3)] {
            newest_first.observe(&value).unwrap();
        }
        assert_eq!(
            (newest_first.highest, newest_first.out_of_order),
            (Some(json!(9)), true)
        );
    }

    #[test]
    fn a_page_is_remembered_at_its_place() {
        let digest = |page, sha256: &str| PageDigest {
            page,
            sha256: sha256.into(),
        };
        let mut state = SourceState::default();
        state.remember(&[digest(2, "b"), digest(1, "a")]);
        assert!(state.unchanged(1, "a") && state.unchanged(2, "b"));
        assert!(
            !state.unchanged(2, "a"),
            "the same bytes elsewhere are another page"
        );
        // A later run saw other bytes at page 1: going back to "a" is a change again.
        state.remember(&[digest(1, "c")]);
        assert!(!state.unchanged(1, "a") && state.unchanged(1, "c"));
        assert_eq!(state.pages.len(), 2);
    }
}
