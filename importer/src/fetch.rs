//! Reading one page's answer into the run's archive objects: streamed straight through when the
//! page is the array of records, held whole (up to `http.max_response_bytes`) when the records
//! sit inside an envelope or are gathered across pages. Either way each page is hashed (a page
//! seen in the last run is skipped, one seen earlier in this run is a loop), every record is
//! checked as JSON, and the incremental field's highest value is kept.

use barge_core::batch::{BatchFormatError, RecordLayout, SplitError, Splitter};
use barge_core::{Settings, Source};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::ImportError;
use crate::http::Answer;
use crate::objects::Archiver;
use crate::pages::{self, PageFields};
use crate::state::{Marks, PageDigest, SourceState};

/// Page `page` of `source`, held whole in `body` (fetched from `url`, redacted): its records,
/// taken out of the envelope the source declares (`records`), and its paging fields.
pub fn envelope<'a>(
    source: &Source,
    url: &str,
    page: u64,
    body: &'a [u8],
) -> Result<pages::Envelope<'a>, ImportError> {
    let paging = |error| ImportError::Paging {
        source_name: source.name.clone(),
        url: url.to_owned(),
        error,
    };
    let text = std::str::from_utf8(body).map_err(|err| {
        paging(pages::PageError::Shape {
            page,
            problem: format!("not UTF-8 at offset {}", err.valid_up_to()),
        })
    })?;
    pages::read_envelope(text, &source.records, &source.pagination, page).map_err(paging)
}

/// What a run has seen so far.
#[derive(Debug, Default)]
pub struct Run {
    /// Digests of every page fetched, archived or not.
    pub pages: Vec<PageDigest>,
    /// Records fetched.
    pub records: u64,
    /// Pages identical to one of the last run's, not archived again.
    pub unchanged_pages: u64,
    /// The incremental field's values.
    pub marks: Marks,
}

/// One page being read.
pub struct Page<'a> {
    /// Its source.
    pub source: &'a Source,
    /// The state the run started from (for the last run's page digests).
    pub state: &'a SourceState,
    /// Its number in the run, from 1.
    pub number: u64,
    /// When it was asked for: the `fetched_at` of the object it starts.
    pub fetched_at: DateTime<Utc>,
}

impl Page<'_> {
    /// Streams a page that is the array of its records into an object of its own, checking it
    /// as it passes; returns its record count.
    pub async fn stream(
        &self,
        answer: &mut Answer,
        archiver: &mut Archiver<'_>,
        run: &mut Run,
        settings: &Settings,
    ) -> Result<(u64, PageFields), ImportError> {
        let url = barge_core::redact_url(answer.url.as_str());
        let mut splitter =
            Splitter::new(RecordLayout::Array, settings.transformer.max_record_bytes);
        let mut hasher = Sha256::new();
        let mut index = 0u64;
        let mut check = |record: &str| {
            let checked = self.check_record(index, record, &mut run.marks);
            index += 1;
            checked
        };
        let format_error = |err: SplitError<ImportError>| match err {
            SplitError::Format(format) => ImportError::Format {
                source_name: self.source.name.clone(),
                url: url.clone(),
                format,
            },
            SplitError::Record(err) => err,
        };
        while let Some(chunk) = answer.chunk().await? {
            hasher.update(&chunk);
            splitter.push(&chunk, &mut check).map_err(format_error)?;
            archiver.write_body(self.fetched_at, &chunk).await?;
        }
        let records = splitter.finish(&mut check).map_err(format_error)?;
        let digest = barge_core::batch::hex_digest(hasher.finalize());
        if self.seen(digest, &url, run)? {
            archiver.abort().await;
        } else {
            archiver.end_page(self.digest_of_last(run), records).await?;
        }
        Ok((records, PageFields::default()))
    }

    /// Reads a whole page, takes its records out of the envelope and adds them to the open
    /// object; returns its record count and paging fields.
    pub async fn buffer(
        &self,
        answer: &mut Answer,
        archiver: &mut Archiver<'_>,
        run: &mut Run,
        settings: &Settings,
    ) -> Result<(u64, PageFields), ImportError> {
        let url = barge_core::redact_url(answer.url.as_str());
        let body = answer
            .body_within(settings.http.max_page_bytes, self.number)
            .await?;
        let digest = barge_core::content_digest(&body);
        let envelope = envelope(self.source, &url, self.number, &body)?;
        let limit = settings.transformer.max_record_bytes;
        for (index, record) in envelope.records.iter().enumerate() {
            let index = index as u64;
            if record.get().len() > limit {
                return Err(ImportError::Format {
                    source_name: self.source.name.clone(),
                    url: url.clone(),
                    format: BatchFormatError::RecordTooLarge { index, limit },
                });
            }
            self.check_record(index, record.get(), &mut run.marks)?;
        }
        let records = envelope.records.len() as u64;
        if !self.seen(digest, &url, run)? {
            for record in &envelope.records {
                archiver.write_record(self.fetched_at, record.get()).await?;
            }
            archiver.end_page(self.digest_of_last(run), 0).await?;
        }
        Ok((records, envelope.fields))
    }

    /// Records the page's digest; `true` when the last run saw the same bytes at this page's
    /// place (it is not archived again). The same page twice in one run is a loop.
    fn seen(&self, sha256: String, url: &str, run: &mut Run) -> Result<bool, ImportError> {
        if run.pages.iter().any(|page| page.sha256 == sha256) {
            return Err(ImportError::Paging {
                source_name: self.source.name.clone(),
                url: url.to_owned(),
                error: pages::PageError::Loop {
                    page: self.number,
                    what: "a page identical to an earlier page of this run".into(),
                },
            });
        }
        let unchanged = self.state.unchanged(self.number, &sha256);
        run.pages.push(PageDigest {
            page: self.number,
            sha256,
        });
        if unchanged {
            run.unchanged_pages += 1;
            tracing::info!(
                page = self.number,
                "page unchanged since the last run; not archived again"
            );
        }
        Ok(unchanged)
    }

    fn digest_of_last(&self, run: &Run) -> PageDigest {
        run.pages
            .last()
            .cloned()
            .expect("`seen` recorded this page")
    }

    /// Checks that record `index` is JSON and, for an incremental source, takes in the value of
    /// its field.
    fn check_record(&self, index: u64, record: &str, marks: &mut Marks) -> Result<(), ImportError> {
        let Some(incremental) = &self.source.incremental else {
            return serde_json::from_str::<serde::de::IgnoredAny>(record)
                .map(drop)
                .map_err(|err| self.record_error(index, format!("not JSON: {err}")));
        };
        let value: Value = serde_json::from_str(record)
            .map_err(|err| self.record_error(index, format!("not JSON: {err}")))?;
        let field = &incremental.field;
        let found = if field.starts_with('/') {
            value.pointer(field)
        } else {
            value.get(field)
        };
        match found {
            None | Some(Value::Null) => Ok(()),
            Some(candidate @ (Value::Number(_) | Value::String(_))) => marks
                .observe(candidate)
                .map_err(|err| self.record_error(index, err.to_string())),
            Some(other) => Err(self.record_error(
                index,
                format!(
                    "incremental field {field:?} is {}, expected a number or a string",
                    barge_core::json_kind(other)
                ),
            )),
        }
    }

    fn record_error(&self, index: u64, problem: String) -> ImportError {
        ImportError::Record {
            source_name: self.source.name.clone(),
            page: self.number,
            index,
            problem,
        }
    }
}
