//! One object's load, streamed end to end: the download, the decoding and the COPY run side by
//! side, so that memory stays at a few chunks and one record whatever the object's size.
//!
//! ```text
//! S3 body ──chunks──▶ [download task: SHA-256, stall timeout]
//!                        ──chunks──▶ [blocking reader: gunzip, split, map, encode, spool rejects]
//!                                       ──COPY chunks──▶ [load transaction: COPY, merge, ledger]
//! ```
//!
//! The channels between the three are bounded, so a slow database slows the download rather
//! than filling memory. Nothing commits until the whole object is read: a digest that differs
//! from the announced one, an unreadable object or too many rejects roll the transaction back.
//! The digest of the bytes read is the object's identity in the ledger, which is why the load
//! claims the object only once the pipeline is done.

use std::io::{BufRead, Read};

use aws_sdk_s3::primitives::ByteStream;
use barge_core::batch::{BatchFormatError, RecordLayout, SplitError, Splitter};
use barge_core::settings::TransformerSettings;
use barge_core::{BatchMessage, Source};
use bytes::{Buf, Bytes};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

use crate::copy::CopyEncoder;
use crate::error::{self, FailureClass, GetFailure, ProcessError};
use crate::record::{Origin, RecordMapper, pg_type};
use crate::rejects::Rejects;

/// Chunks in flight between two stages: enough to keep each busy, few enough to bound memory.
const IN_FLIGHT: usize = 4;
/// Bytes decompressed per read.
const READ_BYTES: usize = 64 << 10;

/// An object a message announces: an importer's batch, or a file S3 reports created under a
/// landing prefix.
#[derive(Debug, Clone)]
pub struct Announced {
    /// Its bucket.
    pub bucket: String,
    /// Its key.
    pub key: String,
    /// The version to read, when the announcement names one (S3 events in a versioned bucket).
    pub version_id: Option<String>,
    /// The ETag the object must still have (`If-Match`), quoted: an S3 event's, when it names no
    /// version. Other bytes put under the key since are not this event's to load.
    pub if_match: Option<String>,
    /// The source it belongs to.
    pub source: String,
    /// When it was fetched (a batch), or the time of the S3 event that reports it (a landing
    /// object): the rows' `barge_fetched_at`.
    pub fetched_at: DateTime<Utc>,
    /// The SHA-256 its bytes must have (a batch's message says); none for a landing object,
    /// whose identity is the digest of whatever it holds.
    pub sha256: Option<String>,
    /// The replay run that announced the object again (`transformer replay`), if it did.
    pub replay: Option<String>,
}

impl Announced {
    /// The object a batch message announces.
    pub fn batch(batch: &BatchMessage) -> Self {
        Self {
            bucket: batch.bucket.clone(),
            key: batch.key.clone(),
            version_id: None,
            if_match: None,
            source: batch.source.clone(),
            fetched_at: batch.fetched_at,
            sha256: Some(batch.sha256.clone()),
            replay: batch.replay.clone(),
        }
    }

    /// The object an S3 event reports created under `source`'s landing prefix.
    pub fn landing(object: &crate::notice::CreatedObject, source: &Source) -> Self {
        Self {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            version_id: object.version_id.clone(),
            if_match: object
                .e_tag
                .as_ref()
                .filter(|_| object.version_id.is_none())
                .map(|e_tag| format!("\"{}\"", e_tag.trim_matches('"'))),
            source: source.name.clone(),
            fetched_at: object.event_time,
            sha256: None,
            replay: None,
        }
    }
}

/// The announced object, opened: its body still to be read.
pub struct Opened {
    body: ByteStream,
    gzip: bool,
    layout: RecordLayout,
    /// The object's size as stored, for `barge_transformer_read_bytes_total`.
    pub length: u64,
}

/// Requests the object (the announced version, if any, or the announced ETag); `None` when the
/// key holds other bytes than the ETag's (put again since the event). A missing key or version,
/// or an object S3 will not serve (archived, encrypted with a key the transformer lacks, another
/// 4xx of its own) is permanent; anything else may pass ([`error::S3Failure::on_get`]).
pub async fn open(
    aws: &barge_core::aws::AwsClients,
    announced: &Announced,
) -> Result<Option<Opened>, ProcessError> {
    let (bucket, key) = (announced.bucket.clone(), announced.key.clone());
    let request = aws
        .s3
        .get_object()
        .bucket(&bucket)
        .key(&key)
        .set_version_id(announced.version_id.clone())
        .set_if_match(announced.if_match.clone());
    let object = match request.send().await {
        Ok(object) => object,
        Err(err) => {
            let reason = barge_core::error_chain(&err);
            return Err(match error::S3Failure::of(&err).on_get() {
                GetFailure::Replaced if announced.if_match.is_some() => return Ok(None),
                GetFailure::Missing => ProcessError::MissingObject {
                    bucket,
                    key,
                    reason,
                },
                GetFailure::Refused(refusal) => ProcessError::Refused {
                    bucket,
                    key,
                    refusal,
                    reason,
                },
                // No precondition was sent: S3 answering 412 is S3's fault.
                GetFailure::Replaced => ProcessError::Download {
                    bucket,
                    key,
                    reason,
                    class: FailureClass::Outage(error::Dependency::Storage),
                },
                GetFailure::Failed(class) => ProcessError::Download {
                    bucket,
                    key,
                    reason,
                    class,
                },
            });
        }
    };
    let gzip = object
        .content_encoding()
        .is_some_and(|encoding| encoding.to_ascii_lowercase().contains("gzip"))
        || key.ends_with(".gz");
    Ok(Some(Opened {
        layout: RecordLayout::of(&key, object.content_type()),
        gzip,
        length: object.content_length().unwrap_or_default().max(0) as u64,
        body: object.body,
    }))
}

/// The object's bytes as they arrived, hashed.
struct Downloaded {
    sha256: String,
}

/// What the reader made of the object.
#[derive(Debug, Default)]
pub struct Tally {
    /// Records in the object.
    pub records: u64,
    /// Records mapped and encoded for COPY.
    pub loaded: u64,
    /// The rejected ones.
    pub rejects: Rejects,
}

/// Why the reader stopped early.
#[derive(Debug)]
pub enum ReadError {
    /// The object is not a batch.
    Format(BatchFormatError),
    /// Rejected records could not be spooled to disk.
    Spool(std::io::Error),
    /// The load stopped taking rows (it failed; its error is the one to report).
    Stopped,
}

/// The streaming pipeline of one object.
pub struct Pipeline {
    download: AbortOnDropHandle<Result<Downloaded, ProcessError>>,
    reader: tokio::task::JoinHandle<(Tally, Result<(), ReadError>)>,
    /// COPY data, for [`crate::database::Load::copy`].
    pub chunks: mpsc::Receiver<Bytes>,
}

impl Pipeline {
    /// Starts downloading and reading `opened` as records of `source`.
    pub fn start(
        opened: Opened,
        announced: &Announced,
        source: &Source,
        limits: &TransformerSettings,
        stall: std::time::Duration,
    ) -> Self {
        let (bytes_in, bytes_out) = mpsc::channel(IN_FLIGHT);
        let (chunks_in, chunks) = mpsc::channel(IN_FLIGHT);
        let download = AbortOnDropHandle::new(tokio::spawn(download(
            opened.body,
            stall,
            bytes_in,
            announced.bucket.clone(),
            announced.key.clone(),
        )));
        let reader = Reader {
            source: source.clone(),
            origin: Origin {
                bucket: announced.bucket.clone(),
                key: announced.key.clone(),
                fetched_at: announced.fetched_at,
            },
            layout: opened.layout,
            gzip: opened.gzip,
            max_record_bytes: limits.max_record_bytes,
            max_object_bytes: limits.max_object_bytes,
        };
        Self {
            download,
            reader: reader.spawn(bytes_out, chunks_in),
            chunks,
        }
    }

    /// Waits for both stages to end, and says which error, if any, is the object's; without one,
    /// the hex SHA-256 of the bytes read.
    ///
    /// After the COPY failed (`copy_failed`), the COPY's error is the one to report, and the
    /// download is not waited for (so there is no digest: `None`), unless the reader failed
    /// first (a stream that ended early can make the COPY fail too). Otherwise a failed download
    /// comes first (a short read makes any object look truncated), then a digest that is not the
    /// announced one, then the reader's own verdict.
    pub async fn finish(
        mut self,
        announced: &Announced,
        copy_failed: bool,
    ) -> (Tally, Result<Option<String>, ProcessError>) {
        // Nothing more will be copied: a reader still producing stops at its next chunk.
        self.chunks.close();
        let (tally, read) = match self.reader.await {
            Ok(read) => read,
            Err(panicked) => {
                let reason = panic_message(panicked);
                tracing::error!(reason, "the object reader panicked");
                let key = announced.key.clone();
                return (
                    Tally::default(),
                    Err(ProcessError::Internal { key, reason }),
                );
            }
        };
        if copy_failed && matches!(read, Ok(()) | Err(ReadError::Stopped)) {
            self.download.abort();
            return (tally, Ok(None));
        }
        let downloaded = match self
            .download
            .await
            .expect("the download task does not panic")
        {
            Ok(downloaded) => downloaded,
            Err(err) => return (tally, Err(err)),
        };
        if let Some(expected) = &announced.sha256
            && downloaded.sha256 != *expected
        {
            let err = ProcessError::Checksum {
                key: announced.key.clone(),
                expected: expected.clone(),
                actual: downloaded.sha256,
            };
            return (tally, Err(err));
        }
        let outcome = match read {
            Ok(()) => Ok(Some(downloaded.sha256)),
            // Only the COPY stops the reader, and it did not fail: nothing may commit.
            Err(ReadError::Stopped) => Err(ProcessError::Internal {
                key: announced.key.clone(),
                reason: "the load stopped taking rows before the object's end".into(),
            }),
            Err(ReadError::Format(format)) => Err(ProcessError::Format {
                key: announced.key.clone(),
                format,
            }),
            Err(ReadError::Spool(err)) => Err(ProcessError::Spool {
                key: announced.key.clone(),
                reason: err.to_string(),
            }),
        };
        (tally, outcome)
    }
}

/// What a panicked task said.
fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into()),
        Err(error) => error.to_string(),
    }
}

/// Forwards the body's chunks to the reader, hashing every byte; reads to the end even when
/// the reader has stopped, so that a corrupted object is reported as such.
async fn download(
    mut body: ByteStream,
    stall: std::time::Duration,
    to_reader: mpsc::Sender<Bytes>,
    bucket: String,
    key: String,
) -> Result<Downloaded, ProcessError> {
    let mut hasher = Sha256::new();
    loop {
        let chunk = match tokio::time::timeout(stall, body.next()).await {
            Err(_) => Err(format!("no data for {stall:?} while reading")),
            Ok(None) => {
                return Ok(Downloaded {
                    sha256: barge_core::batch::hex_digest(hasher.finalize()),
                });
            }
            Ok(Some(chunk)) => chunk.map_err(|err| barge_core::error_chain(&err)),
        };
        let chunk = chunk.map_err(|reason| ProcessError::Download {
            bucket: bucket.clone(),
            key: key.clone(),
            reason,
            class: error::storage_class(),
        })?;
        hasher.update(&chunk);
        // A reader that stopped no longer needs the bytes; the digest still does.
        let _ = to_reader.send(chunk).await;
    }
}

/// The downloaded chunks as a blocking reader, for the decoder thread.
struct ChannelReader {
    chunks: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChannelReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => break,
            }
        }
        Ok(&self.current)
    }

    fn consume(&mut self, amount: usize) {
        self.current.advance(amount);
    }
}

/// Decodes an object's records into COPY data, on a blocking thread.
struct Reader {
    source: Source,
    origin: Origin,
    layout: RecordLayout,
    gzip: bool,
    max_record_bytes: usize,
    max_object_bytes: u64,
}

/// gzip's magic bytes: a gzip object is read as one even when nothing declared it.
const GZIP_MAGIC: &[u8] = b"\x1f\x8b";

impl Reader {
    /// Reads the object arriving on `bytes` on a blocking thread, sending COPY data to
    /// `chunks`; the task ends with what it read and why it stopped, if it stopped early.
    fn spawn(
        self,
        bytes: mpsc::Receiver<Bytes>,
        chunks: mpsc::Sender<Bytes>,
    ) -> tokio::task::JoinHandle<(Tally, Result<(), ReadError>)> {
        tokio::task::spawn_blocking(move || {
            let mut tally = Tally::default();
            let input = ChannelReader {
                chunks: bytes,
                current: Bytes::new(),
            };
            let outcome = self.read(input, &chunks, &mut tally);
            (tally, outcome)
        })
    }

    fn read(
        &self,
        mut input: ChannelReader,
        chunks: &mpsc::Sender<Bytes>,
        tally: &mut Tally,
    ) -> Result<(), ReadError> {
        let mapper = RecordMapper::new(&self.source, self.origin.clone());
        let types = self
            .source
            .columns
            .iter()
            .map(|c| pg_type(c.column_type))
            .collect();
        let mut encoder = CopyEncoder::new(types, self.origin.fetched_at);
        let mut splitter = Splitter::new(self.layout, self.max_record_bytes);
        let mut on_record = |text: &str| -> Result<(), ReadError> {
            let index = tally.records;
            tally.records += 1;
            let mapped = mapper.map(index, text).and_then(|cells| {
                encoder
                    .row(&cells)
                    .map_err(|problem| crate::record::RecordError {
                        index,
                        at: Default::default(),
                        problem,
                    })
            });
            match mapped {
                Ok(()) => tally.loaded += 1,
                Err(error) => tally.rejects.add(error, text).map_err(ReadError::Spool)?,
            }
            if let Some(chunk) = encoder.full_chunk() {
                chunks
                    .blocking_send(chunk)
                    .map_err(|_| ReadError::Stopped)?;
            }
            Ok(())
        };
        let gzip = self.gzip
            || input
                .fill_buf()
                .is_ok_and(|start| start.starts_with(GZIP_MAGIC));
        let mut fed = 0u64;
        let mut feed = |bytes: &[u8], splitter: &mut Splitter| -> Result<(), ReadError> {
            fed += bytes.len() as u64;
            if fed > self.max_object_bytes {
                return Err(ReadError::Format(BatchFormatError::TooLarge(
                    self.max_object_bytes,
                )));
            }
            splitter.push(bytes, &mut on_record).map_err(split_error)
        };
        if gzip {
            let mut decoder = flate2::bufread::MultiGzDecoder::new(&mut input);
            let mut buffer = vec![0; READ_BYTES];
            loop {
                let n = decoder
                    .read(&mut buffer)
                    .map_err(|err| ReadError::Format(BatchFormatError::Gzip(err.to_string())))?;
                if n == 0 {
                    break;
                }
                feed(&buffer[..n], &mut splitter)?;
            }
        } else {
            loop {
                let available = input.fill_buf().expect("channel reads never fail");
                if available.is_empty() {
                    break;
                }
                let n = available.len();
                feed(available, &mut splitter)?;
                input.consume(n);
            }
        }
        splitter.finish(&mut on_record).map_err(split_error)?;
        chunks
            .blocking_send(encoder.finish())
            .map_err(|_| ReadError::Stopped)
    }
}

fn split_error(err: SplitError<ReadError>) -> ReadError {
    match err {
        SplitError::Format(format) => ReadError::Format(format),
        SplitError::Record(err) => err,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use barge_core::{Column, ColumnType};
    use futures_util::SinkExt;

    use super::*;

    /// A source with every column type, each nullable.
    fn every_type() -> Source {
        let mut source = Source::jsonplaceholder_posts();
        source.primary_key.clear();
        source.table = "every_type".into();
        source.columns = [
            ("id", ColumnType::Bigint),
            ("i4", ColumnType::Integer),
            ("i2", ColumnType::Smallint),
            ("f8", ColumnType::DoublePrecision),
            ("f4", ColumnType::Real),
            ("txt", ColumnType::Text),
            ("flag", ColumnType::Boolean),
            ("doc", ColumnType::Jsonb),
            ("at", ColumnType::Timestamptz),
            ("day", ColumnType::Date),
            ("num", ColumnType::Numeric(None)),
            ("uid", ColumnType::Uuid),
            ("naive", ColumnType::Timestamp),
            ("clock", ColumnType::Time),
            ("tags", ColumnType::Array(barge_core::Element::Text)),
        ]
        .into_iter()
        .map(|(name, column_type)| Column {
            nullable: name != "id",
            nullable_elements: name == "tags",
            ..Column::new(name, column_type)
        })
        .collect();
        source
    }

    /// Records written as raw JSON text: escapes of every kind, multi-byte characters (whose
    /// bytes chunk boundaries will split), NULLs and missing fields, the types' extremes.
    fn records() -> Vec<String> {
        let mut records = vec![
            r#"{"id":1,"i4":-2147483648,"i2":32767,"f8":1.5e300,"f4":0.25,"txt":"caf\u00e9 \ud83d\ude80 \"q\" back\\slash\nnew\ttab \/","flag":true,"doc":{"k":["é",1.0,null,{"n":-0}]},"at":"2026-11-25T10:11:12.123456+05:30","day":"2026-02-28","num":123456789012345678901234567890.123456789,"uid":"67E55044-10B1-426F-9247-BB680E5FE0C8","naive":"2024-02-29T23:59:59.123456","clock":"07:05:00.5","tags":["a","b\"c",null,"\u00e9"]}"#.to_owned(),
            r#"{"id":2,"i4":null,"i2":null,"f8":null,"f4":null,"txt":null,"flag":null,"doc":null,"at":null,"day":null}"#.to_owned(),
            r#"{"id":3}"#.to_owned(),
            r#"{"id":4,"txt":"日本語テキスト🚀🚀","doc":"just a string \u0041","f8":-0.0,"day":"0001-01-01","at":"1970-01-01T00:00:00Z","flag":false}"#.to_owned(),
            r#"{"id":5,"txt":"","doc":[],"i4":2147483647,"i2":-32768,"f8":1.2345e20,"num":-1e-30,"tags":[]}"#.to_owned(),
        ];
        let mut rng = fastrand::Rng::with_seed(8);
        for id in 6..200 {
            let text: String = (0..rng.usize(0..40))
                .map(|_| match rng.u8(0..6) {
                    0 => "\\\"".to_owned(),
                    1 => "\\\\".to_owned(),
                    2 => format!("\\u{:04x}", rng.u32(0x20..0xd000)),
                    3 => "ü€🚀".chars().nth(rng.usize(0..3)).unwrap().to_string(),
                    4 => "\\n".to_owned(),
                    _ => rng.alphanumeric().to_string(),
                })
                .collect();
            records.push(format!(
                r#"{{"id":{id},"txt":"{text}","doc":{{"t":"{text}"}},"i4":{},"num":{}.{:0>3},"tags":["{text}"]}}"#,
                rng.i32(..),
                rng.i64(..),
                rng.u16(0..1000)
            ));
        }
        records
    }

    #[test]
    fn a_landing_object_without_a_version_must_keep_the_events_etag() {
        let source = Source::jsonplaceholder_posts();
        let object = |version_id: Option<&str>, e_tag: Option<&str>| crate::notice::CreatedObject {
            event_name: "ObjectCreated:Put".into(),
            event_time: "2026-11-25T10:11:12Z".parse().unwrap(),
            bucket: "b".into(),
            key: "landing/posts/a.json".into(),
            size: Some(2),
            version_id: version_id.map(str::to_owned),
            e_tag: e_tag.map(str::to_owned),
        };
        let if_match =
            |version_id, e_tag| Announced::landing(&object(version_id, e_tag), &source).if_match;
        assert_eq!(
            if_match(None, Some("0123abcd")).as_deref(),
            Some("\"0123abcd\"")
        );
        assert_eq!(
            if_match(None, Some("\"0123abcd-2\"")).as_deref(),
            Some("\"0123abcd-2\"")
        );
        assert_eq!(
            if_match(Some("v1"), Some("0123abcd")),
            None,
            "the version says"
        );
        assert_eq!(if_match(None, None), None);
    }

    /// Runs the reader over `object` split into chunks of `size`; returns the COPY data.
    async fn encode(source: &Source, object: Vec<u8>, size: usize, gzip: bool) -> Vec<Bytes> {
        let (bytes_in, bytes_out) = mpsc::channel(IN_FLIGHT);
        let (chunks_in, mut chunks) = mpsc::channel(IN_FLIGHT);
        let reader = Reader {
            source: source.clone(),
            origin: Origin {
                bucket: "b".into(),
                key: "k".into(),
                fetched_at: "2026-11-25T00:00:00Z".parse().unwrap(),
            },
            layout: RecordLayout::Array,
            gzip,
            max_record_bytes: 1 << 20,
            max_object_bytes: 1 << 30,
        };
        let reading = reader.spawn(bytes_out, chunks_in);
        let feeding = tokio::spawn(async move {
            for chunk in object.chunks(size) {
                bytes_in.send(Bytes::copy_from_slice(chunk)).await.unwrap();
            }
        });
        let mut copy = Vec::new();
        while let Some(chunk) = chunks.recv().await {
            copy.push(chunk);
        }
        feeding.await.unwrap();
        let (tally, outcome) = reading.await.unwrap();
        outcome.unwrap();
        assert_eq!(tally.rejects.count(), 0, "{:?}", tally.rejects.first);
        copy
    }

    /// What barge loads equals what PostgreSQL itself reads from the same JSON, whatever the
    /// chunk boundaries (inside escapes and multi-byte characters) and plain or gzip.
    #[tokio::test]
    async fn copy_data_is_what_postgres_reads_from_the_json_at_any_chunking() {
        let env = barge_localenv::TestEnv::new().await;
        let client = env.db().await;
        let source = every_type();
        let array = format!("[{}]", records().join(",\n"));
        client
            .batch_execute(&crate::database::create_table_sql("public", &source))
            .await
            .unwrap();
        // PostgreSQL's own reading of the same JSON, column by column.
        client
            .batch_execute(
                "CREATE TABLE expected (LIKE every_type);
                 CREATE TABLE json_text (doc text)",
            )
            .await
            .unwrap();
        client
            .execute("INSERT INTO json_text VALUES ($1)", &[&array])
            .await
            .unwrap();
        client
            .batch_execute(
                "INSERT INTO expected SELECT (j->>'id')::bigint, (j->>'i4')::integer,
                   (j->>'i2')::smallint, (j->>'f8')::float8, (j->>'f4')::real, j->>'txt',
                   (j->>'flag')::boolean, CASE WHEN j->'doc' = 'null' THEN NULL ELSE j->'doc' END,
                   (j->>'at')::timestamptz, (j->>'day')::date, (j->>'num')::numeric,
                   (j->>'uid')::uuid, (j->>'naive')::timestamp, (j->>'clock')::time,
                   CASE WHEN j ? 'tags'
                     THEN ARRAY(SELECT jsonb_array_elements_text(j->'tags')) END,
                   '2026-11-25T00:00:00Z'
                 FROM json_text, jsonb_array_elements(doc::jsonb) AS e(j)",
            )
            .await
            .unwrap();
        let mut gzipped = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzipped.write_all(array.as_bytes()).unwrap();
        let gzipped = gzipped.finish().unwrap();
        let cases = [1, 2, 3, 5, 7, 64, 1 << 20]
            .into_iter()
            .map(|size| (size, false))
            .chain([(1, true), (13, true), (4096, true)]);
        for (size, gzip) in cases {
            let object = if gzip {
                gzipped.clone()
            } else {
                array.clone().into_bytes()
            };
            let copy = encode(&source, object, size, gzip).await;
            client.batch_execute("TRUNCATE every_type").await.unwrap();
            let sink = client
                .copy_in::<_, Bytes>(&crate::database::copy_sql("every_type", &source))
                .await
                .unwrap();
            let mut sink = std::pin::pin!(sink);
            for chunk in copy {
                sink.send(chunk).await.unwrap();
            }
            assert_eq!(sink.finish().await.unwrap(), records().len() as u64);
            let differing: i64 = client
                .query_one(
                    "SELECT count(*) FROM ((TABLE every_type EXCEPT ALL TABLE expected)
                     UNION ALL (TABLE expected EXCEPT ALL TABLE every_type)) d",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(differing, 0, "chunks of {size} bytes, gzip {gzip}");
        }
    }
}
