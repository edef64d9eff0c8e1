//! Turning a run's pages into archive objects: one per page, or one per `records_per_object`
//! records gathered across pages; gzip-compressed unless the source says otherwise; each
//! finished as marker → visible object → SQS message (see [`crate::state`]).
//!
//! A page whose records are the whole body goes in untouched. Records taken out of an envelope
//! (`records = "/data"`), or gathered from several pages, go in as a JSON array of their text
//! exactly as the API sent it.

use std::io::Write;

use barge_core::BatchMessage;
use barge_core::Source;
use barge_core::fetch::Compression;
use barge_core::message::{MESSAGE_VERSION, archive_key};
use chrono::{DateTime, Utc};
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use crate::archive::Upload;
use crate::state::{Marker, PageDigest, StateStore};
use crate::{ImportError, Importer};

/// The objects of one run of one source.
pub struct Archiver<'a> {
    importer: &'a Importer,
    store: &'a StateStore,
    source: &'a Source,
    open: Option<OpenObject<'a>>,
    /// Messages of the objects archived and announced so far.
    pub announced: Vec<BatchMessage>,
    /// Markers of those objects, removed once the run's state is saved.
    pub markers: Vec<String>,
    /// Digests of the pages those objects hold.
    pub archived_pages: Vec<PageDigest>,
}

/// An object being written.
struct OpenObject<'a> {
    upload: Upload<'a>,
    gzip: Option<GzEncoder<Vec<u8>>>,
    /// Digest of the stored bytes: what the transformer checks.
    hasher: Sha256,
    records: u64,
    pages: Vec<PageDigest>,
    fetched_at: DateTime<Utc>,
    /// Records are being written as an array of their own (rather than a page's body).
    in_array: bool,
    /// A page is being written and has not ended: the object cannot be finished as it is.
    partial: bool,
}

impl<'a> Archiver<'a> {
    /// The archiver of one run of `source`.
    pub fn new(importer: &'a Importer, store: &'a StateStore, source: &'a Source) -> Self {
        Self {
            importer,
            store,
            source,
            open: None,
            announced: Vec::new(),
            markers: Vec::new(),
            archived_pages: Vec::new(),
        }
    }

    /// Starts an object for a page fetched at `fetched_at`, unless one is open.
    fn object(&mut self, fetched_at: DateTime<Utc>) -> &mut OpenObject<'a> {
        let importer = self.importer;
        let source = self.source;
        self.open.get_or_insert_with(|| {
            let storage = &importer.settings.storage;
            let (extension, encoding, gzip) = match source.compression {
                Compression::Gzip => (
                    "json.gz",
                    Some("gzip"),
                    Some(GzEncoder::new(Vec::new(), flate2::Compression::default())),
                ),
                Compression::None => ("json", None, None),
            };
            let name = format!("{}.{extension}", uuid::Uuid::now_v7());
            let key = archive_key(&storage.prefix, &source.name, fetched_at, &name);
            OpenObject {
                upload: Upload::new(
                    &importer.aws.s3,
                    &storage.bucket,
                    key,
                    &source.name,
                    encoding,
                ),
                gzip,
                hasher: Sha256::new(),
                records: 0,
                pages: Vec::new(),
                fetched_at,
                in_array: false,
                partial: false,
            }
        })
    }

    /// Writes a page's body as it streams (a page that is the array of its records, one object
    /// per page).
    pub async fn write_body(
        &mut self,
        fetched_at: DateTime<Utc>,
        bytes: &[u8],
    ) -> Result<(), ImportError> {
        let object = self.object(fetched_at);
        object.partial = true;
        object
            .emit(bytes)
            .await
            .map_err(|reason| self.archive_error(reason))
    }

    /// Adds one record's text to the array of the open object (started if need be).
    pub async fn write_record(
        &mut self,
        fetched_at: DateTime<Utc>,
        record: &str,
    ) -> Result<(), ImportError> {
        let object = self.object(fetched_at);
        let separator: &[u8] = if object.in_array { b"," } else { b"[" };
        object.in_array = true;
        object.partial = true;
        object.records += 1;
        let written = async {
            object.emit(separator).await?;
            object.emit(record.as_bytes()).await
        }
        .await;
        written.map_err(|reason| self.archive_error(reason))
    }

    /// Closes a page: `records` were written as its body (0 when they went in one by one with
    /// [`Archiver::write_record`]). The object is finished when it is one page's, or holds
    /// `records_per_object` records.
    pub async fn end_page(&mut self, digest: PageDigest, records: u64) -> Result<(), ImportError> {
        let Some(object) = &mut self.open else {
            return Ok(());
        };
        object.pages.push(digest);
        object.records += records;
        object.partial = false;
        let full = match self.source.records_per_object {
            None => true,
            Some(limit) => object.records >= limit,
        };
        if full { self.finish().await } else { Ok(()) }
    }

    /// Finishes the open object, if any: the marker, then the object, then the message. An
    /// object without records is dropped instead.
    pub async fn finish(&mut self) -> Result<(), ImportError> {
        let Some(mut object) = self.open.take() else {
            return Ok(());
        };
        if object.records == 0 {
            object.upload.abort().await;
            return Ok(());
        }
        let key = object.upload.key().to_owned();
        let closed = async {
            if object.in_array {
                object.emit(b"]").await?;
            }
            if let Some(gzip) = object.gzip.take() {
                let tail = gzip.finish().map_err(|err| err.to_string())?;
                object.hasher.update(&tail);
                object.upload.write(&tail).await?;
            }
            Ok::<_, String>(())
        }
        .await;
        if let Err(reason) = closed {
            object.upload.abort().await;
            return Err(self.archive_error_for(&key, reason));
        }
        let storage = &self.importer.settings.storage;
        let message = BatchMessage {
            version: MESSAGE_VERSION,
            source: self.source.name.clone(),
            bucket: storage.bucket.clone(),
            key: key.clone(),
            record_count: object.records,
            sha256: barge_core::batch::hex_digest(object.hasher.finalize()),
            fetched_at: object.fetched_at,
            replay: None,
        };
        let marker = Marker {
            message: message.clone(),
            pages: object.pages.clone(),
        };
        let marker_key = match self.store.write_marker(&marker).await {
            Ok(marker_key) => marker_key,
            Err(err) => {
                object.upload.abort().await;
                return Err(ImportError::State {
                    source_name: self.source.name.clone(),
                    error: err,
                });
            }
        };
        object
            .upload
            .finish(&message.sha256, message.record_count)
            .await
            .map_err(|reason| self.archive_error_for(&key, reason))?;
        self.importer.announce(&message).await?;
        self.markers.push(marker_key);
        self.archived_pages.extend(object.pages);
        self.announced.push(message);
        Ok(())
    }

    /// After a failure: the open object is finished if it holds only whole pages (their records
    /// are not lost), dropped if a page was being written into it.
    pub async fn salvage(&mut self) -> Result<(), ImportError> {
        match &self.open {
            Some(object) if !object.partial => self.finish().await,
            _ => {
                self.abort().await;
                Ok(())
            }
        }
    }

    /// Drops the open object, leaving nothing in S3.
    pub async fn abort(&mut self) {
        if let Some(object) = self.open.take() {
            object.upload.abort().await;
        }
    }

    fn archive_error(&self, reason: String) -> ImportError {
        let key = self
            .open
            .as_ref()
            .map(|object| object.upload.key().to_owned())
            .unwrap_or_default();
        self.archive_error_for(&key, reason)
    }

    fn archive_error_for(&self, key: &str, reason: String) -> ImportError {
        ImportError::Archive {
            source_name: self.source.name.clone(),
            bucket: self.importer.settings.storage.bucket.clone(),
            key: key.to_owned(),
            reason,
        }
    }
}

impl OpenObject<'_> {
    /// Compresses (if so declared), hashes and uploads `bytes`.
    async fn emit(&mut self, bytes: &[u8]) -> Result<(), String> {
        match &mut self.gzip {
            None => {
                self.hasher.update(bytes);
                self.upload.write(bytes).await
            }
            Some(gzip) => {
                gzip.write_all(bytes).map_err(|err| err.to_string())?;
                let compressed = std::mem::take(gzip.get_mut());
                self.hasher.update(&compressed);
                self.upload.write(&compressed).await
            }
        }
    }
}
