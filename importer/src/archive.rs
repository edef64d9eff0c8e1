//! Writing one raw batch to S3 as it arrives from the API: the body is hashed and uploaded in
//! parts as it streams, so the importer's memory is one part whatever the response's size.
//!
//! A body that fits in one part is written with a single `PutObject`; a larger one with a
//! multipart upload. Either way the write is conditional (`If-None-Match: *`, so an archived key
//! is never overwritten) and nothing becomes visible before the whole body has been checked: an
//! upload that fails or whose body turns out not to be a batch is aborted, leaving no object.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};

/// Size of each uploaded part (S3's minimum is 5 MiB): the importer's memory per import.
const PART_BYTES: usize = 8 << 20;

/// An archive object being written.
pub struct Upload<'a> {
    s3: &'a aws_sdk_s3::Client,
    bucket: &'a str,
    key: String,
    source: &'a str,
    /// `gzip` when the bytes are compressed.
    content_encoding: Option<&'static str>,
    pending: BytesMut,
    /// Set once the body outgrew one part.
    multipart: Option<Multipart>,
}

/// A multipart upload under way.
struct Multipart {
    id: String,
    parts: Vec<CompletedPart>,
}

/// Why writing the archive object failed: the SDK's full error chain.
pub type UploadError = String;

impl<'a> Upload<'a> {
    /// Starts writing `key` of `bucket` for `source`, whose bytes are encoded as
    /// `content_encoding` says (`Some("gzip")`); nothing is sent yet.
    pub fn new(
        s3: &'a aws_sdk_s3::Client,
        bucket: &'a str,
        key: String,
        source: &'a str,
        content_encoding: Option<&'static str>,
    ) -> Self {
        Self {
            s3,
            bucket,
            key,
            source,
            content_encoding,
            pending: BytesMut::new(),
            multipart: None,
        }
    }

    /// Adds the next bytes of the body, uploading a part whenever one is full.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), UploadError> {
        self.pending.extend_from_slice(bytes);
        while self.pending.len() >= PART_BYTES {
            let part = self.pending.split_to(PART_BYTES).freeze();
            self.upload_part(part).await?;
        }
        Ok(())
    }

    /// The object's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Makes the object visible, with the batch's digest and record count as metadata when it
    /// is small enough for one request (a multipart upload's metadata is fixed before the
    /// digest is known; the SQS message carries both either way).
    pub async fn finish(mut self, sha256: &str, record_count: u64) -> Result<(), UploadError> {
        let body = self.pending.split().freeze();
        if self.multipart.is_none() {
            return self
                .s3
                .put_object()
                .bucket(self.bucket)
                .key(&self.key)
                .if_none_match("*")
                .content_type("application/json")
                .set_content_encoding(self.content_encoding.map(Into::into))
                .metadata("source", self.source)
                .metadata("record-count", record_count.to_string())
                .metadata("sha256", sha256)
                .body(ByteStream::from(body))
                .send()
                .await
                .map(drop)
                .map_err(|err| barge_core::error_chain(&err));
        }
        if !body.is_empty()
            && let Err(err) = self.upload_part(body).await
        {
            self.abort().await;
            return Err(err);
        }
        let multipart = self.multipart.take().expect("checked above");
        let completed = self
            .s3
            .complete_multipart_upload()
            .bucket(self.bucket)
            .key(&self.key)
            .upload_id(&multipart.id)
            .if_none_match("*")
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(multipart.parts))
                    .build(),
            )
            .send()
            .await;
        if let Err(err) = completed {
            abort(self.s3, self.bucket, &self.key, &multipart.id).await;
            return Err(barge_core::error_chain(&err));
        }
        Ok(())
    }

    /// Gives up: a multipart upload under way is aborted, so no part lingers (or is billed).
    pub async fn abort(mut self) {
        if let Some(multipart) = self.multipart.take() {
            abort(self.s3, self.bucket, &self.key, &multipart.id).await;
        }
    }

    async fn upload_part(&mut self, part: Bytes) -> Result<(), UploadError> {
        let multipart = match &mut self.multipart {
            Some(multipart) => multipart,
            None => {
                let created = self
                    .s3
                    .create_multipart_upload()
                    .bucket(self.bucket)
                    .key(&self.key)
                    .content_type("application/json")
                    .set_content_encoding(self.content_encoding.map(Into::into))
                    .metadata("source", self.source)
                    .send()
                    .await
                    .map_err(|err| barge_core::error_chain(&err))?;
                let id = created
                    .upload_id
                    .ok_or("S3 started a multipart upload without an upload id")?;
                self.multipart.insert(Multipart {
                    id,
                    parts: Vec::new(),
                })
            }
        };
        let number = i32::try_from(multipart.parts.len() + 1).unwrap_or(i32::MAX);
        let uploaded = self
            .s3
            .upload_part()
            .bucket(self.bucket)
            .key(&self.key)
            .upload_id(&multipart.id)
            .part_number(number)
            .body(ByteStream::from(part))
            .send()
            .await
            .map_err(|err| barge_core::error_chain(&err))?;
        multipart.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(uploaded.e_tag)
                .build(),
        );
        Ok(())
    }
}

async fn abort(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, id: &str) {
    let aborted = s3
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .send()
        .await;
    if let Err(err) = aborted {
        tracing::warn!(
            error = %barge_core::error_chain(&err),
            key,
            "could not abort a multipart upload; a bucket lifecycle rule removes its parts"
        );
    }
}
