//! Records that do not fit their source's columns: each is kept, exactly as it arrived, in an
//! NDJSON object under the errors prefix, one line per record:
//!
//! ```json
//! {"record_index":1,"field":"userId","column":"user_id","reason":"expected an integer, found a string \"one\"","record":{"id":2,"userId":"one"}}
//! ```
//!
//! `field` and `column` are `null` when the record as a whole is at fault. The object's key is a
//! function of the raw object's key and digest ([`rejects_key`]), so a retried load rewrites the
//! same object with the same lines instead of leaving a second copy.

use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};

use serde::Serialize;
use serde_json::value::RawValue;

use crate::record::RecordError;

/// Rejected records whose indices are remembered (8 MiB of them): enough to name the record of
/// any COPY error in all but absurd objects, while memory stays bounded whatever the object.
const TRACKED_INDICES: usize = 1 << 20;

/// The rejected records of one object, spooled to an unnamed temporary file as they are found,
/// so that an object with many rejects costs disk, not memory.
#[derive(Debug, Default)]
pub struct Rejects {
    spool: Option<BufWriter<File>>,
    count: u64,
    /// Indices of the first rejected records, in order: they map COPY's line numbers back to
    /// records.
    indices: Vec<u64>,
    /// The first rejected record's error, quoted when the object as a whole is refused.
    pub first: Option<RecordError>,
    line: Vec<u8>,
}

impl Rejects {
    /// Records rejected so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Spools record `text`, rejected for `error`.
    pub fn add(&mut self, error: RecordError, text: &str) -> io::Result<()> {
        self.line.clear();
        write_line(&mut self.line, &error, text);
        let spool = match &mut self.spool {
            Some(spool) => spool,
            None => self.spool.insert(BufWriter::new(tempfile::tempfile()?)),
        };
        spool.write_all(&self.line)?;
        self.count += 1;
        if self.indices.len() < TRACKED_INDICES {
            self.indices.push(error.index);
        }
        self.first.get_or_insert(error);
        Ok(())
    }

    /// The spooled NDJSON, rewound, if any record was rejected.
    pub fn into_file(self) -> io::Result<Option<File>> {
        let Some(spool) = self.spool else {
            return Ok(None);
        };
        let mut file = spool.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.rewind()?;
        Ok(Some(file))
    }

    /// The record index of COPY input line `line` (from 1): the rows copied are the records
    /// that were not rejected, in order. `None` past the rejects whose indices were kept.
    pub fn record_of_copy_line(&self, line: u64) -> Option<u64> {
        let mut index = line - 1;
        for &rejected in &self.indices {
            if rejected <= index {
                index += 1;
            } else {
                return Some(index);
            }
        }
        let all_tracked = self.count == self.indices.len() as u64;
        all_tracked.then_some(index)
    }
}

/// One NDJSON line.
#[derive(Serialize)]
struct Line<'a> {
    record_index: u64,
    field: Option<&'a str>,
    column: Option<&'a str>,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<&'a RawValue>,
    /// The record's text, for a record that is not JSON at all (and so cannot be `record`).
    #[serde(skip_serializing_if = "Option::is_none")]
    record_text: Option<&'a str>,
}

/// S3's longest key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// Where the rejects of raw object `key` with digest `sha256` are written:
/// `<errors prefix>/<key>.<16 hex of sha256>.rejects.ndjson`. When that would be longer than S3
/// allows, the key is cut (at a character boundary) to fit, followed by `~` and 16 hex of the
/// SHA-256 of the whole key, so that long keys sharing their start still have rejects of their
/// own.
pub fn rejects_key(errors_prefix: &str, key: &str, sha256: &str) -> String {
    let digest = sha256.get(..16).unwrap_or(sha256);
    let prefix = errors_prefix.trim_end_matches('/');
    let whole = format!("{prefix}/{key}.{digest}.rejects.ndjson");
    if whole.len() <= MAX_KEY_BYTES {
        return whole;
    }
    let key_digest = barge_core::content_digest(key.as_bytes());
    let suffix = format!("~{}.{digest}.rejects.ndjson", &key_digest[..16]);
    let room = MAX_KEY_BYTES
        .saturating_sub(prefix.len() + 1 + suffix.len())
        .min(key.len());
    let cut = (0..=room)
        .rev()
        .find(|&at| key.is_char_boundary(at))
        .unwrap_or_default();
    format!("{prefix}/{}{suffix}", &key[..cut])
}

/// What S3 user metadata may hold, besides letters and digits: RFC 3986's other unreserved
/// characters, and `/`. Everything else of a key is percent-encoded.
const METADATA_ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// The longest `raw-key` metadata value written (S3 allows 2 KB of user metadata in all).
pub const MAX_RAW_KEY_METADATA: usize = 1024;

/// The rejects object's `raw-key` metadata: the raw object's key percent-encoded as UTF-8 (S3
/// user metadata must be US-ASCII: AWS refuses anything else with 403 SignatureDoesNotMatch),
/// so that `landing/posts/café.json` is `landing/posts/caf%C3%A9.json`. `None` when longer than
/// [`MAX_RAW_KEY_METADATA`]: the rejects key and the ledger name the raw object anyway.
pub fn raw_key_metadata(key: &str) -> Option<String> {
    let encoded = percent_encoding::utf8_percent_encode(key, METADATA_ESCAPED).to_string();
    (encoded.len() <= MAX_RAW_KEY_METADATA).then_some(encoded)
}

/// Appends the NDJSON line of record `text` rejected for `error` to `out`.
pub fn write_line(out: &mut Vec<u8>, error: &RecordError, text: &str) {
    let compacted = compact(text);
    let (field, column) = if error.at.column.is_empty() {
        (None, None)
    } else {
        (
            Some(error.at.field.as_str()),
            Some(error.at.column.as_str()),
        )
    };
    let line = Line {
        record_index: error.index,
        field,
        column,
        reason: &error.problem,
        record: compacted.as_deref(),
        record_text: compacted.is_none().then_some(text),
    };
    serde_json::to_writer(&mut *out, &line).expect("strings and raw JSON always serialize");
    out.push(b'\n');
}

/// `raw` without the whitespace between its tokens, so that it fits on one NDJSON line; `None`
/// when it is not JSON at all. Every token, strings and numbers included, stays byte for byte as
/// it arrived: raw JSON cannot hold an unescaped line break inside a string, so only
/// insignificant whitespace goes.
fn compact(raw: &str) -> Option<Box<RawValue>> {
    let mut text = String::with_capacity(raw.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in raw.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if c.is_ascii_whitespace() {
            continue;
        }
        text.push(c);
    }
    RawValue::from_string(text).ok()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::record::FieldRef;

    fn error(index: u64, field: &str, problem: &str) -> RecordError {
        RecordError {
            index,
            at: FieldRef {
                field: field.into(),
                column: field.to_lowercase(),
            },
            problem: problem.into(),
        }
    }

    #[test]
    fn lines_keep_the_record_exactly_on_one_line() {
        let pretty = "{\n  \"id\": 2,\n  \"userId\": \"o n\\\"e\",\n  \"n\": 1.50e3\n}";
        let mut rejects = Rejects::default();
        rejects
            .add(error(1, "userId", "expected an integer"), pretty)
            .unwrap();
        let whole = RecordError {
            index: 4,
            at: FieldRef::default(),
            problem: "expected a JSON object, found an array".into(),
        };
        rejects.add(whole, "[1, 2]").unwrap();
        rejects
            .add(error(6, "id", "cannot be decoded"), "{\"id\":}")
            .unwrap();
        assert_eq!(rejects.count(), 3);
        let mut text = String::new();
        rejects
            .into_file()
            .unwrap()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"record_index":1,"field":"userId","column":"userid","reason":"expected an integer","record":{"id":2,"userId":"o n\"e","n":1.50e3}}"#,
                "\n",
                r#"{"record_index":4,"field":null,"column":null,"reason":"expected a JSON object, found an array","record":[1,2]}"#,
                "\n",
                r#"{"record_index":6,"field":"id","column":"id","reason":"cannot be decoded","record_text":"{\"id\":}"}"#,
                "\n"
            )
        );
    }

    #[test]
    fn copy_lines_skip_rejected_records() {
        let mut rejects = Rejects::default();
        assert_eq!(rejects.record_of_copy_line(3), Some(2));
        for index in [0, 2, 3, 7] {
            rejects.add(error(index, "id", "x"), "{}").unwrap();
        }
        // Loaded records: 1, 4, 5, 6, 8, …
        let lines: Vec<Option<u64>> = (1..=5)
            .map(|line| rejects.record_of_copy_line(line))
            .collect();
        assert_eq!(lines, [1, 4, 5, 6, 8].map(Some));
    }

    #[test]
    fn no_rejects_no_file() {
        assert!(Rejects::default().into_file().unwrap().is_none());
    }

    #[test]
    fn keys_follow_the_raw_object() {
        assert_eq!(
            rejects_key("errors/", "raw/posts/2026/11/24/x.json", &"ab".repeat(32)),
            "errors/raw/posts/2026/11/24/x.json.abababababababab.rejects.ndjson"
        );
    }

    #[test]
    fn keys_too_long_for_s3_are_cut_and_told_apart_by_a_digest() {
        let sha256 = "ab".repeat(32);
        // Fits exactly: unchanged.
        let fits = format!("landing/{}", "k".repeat(MAX_KEY_BYTES - 47));
        let key = rejects_key("errors", &fits, &sha256);
        assert_eq!(key.len(), MAX_KEY_BYTES);
        assert_eq!(
            key,
            format!("errors/{fits}.abababababababab.rejects.ndjson")
        );
        // One byte more, or S3's longest key with multi-byte characters at the cut: cut to fit.
        let longer = format!("{fits}k");
        let accented = format!("landing/{}", "é".repeat(508));
        assert_eq!(accented.len(), MAX_KEY_BYTES);
        for raw in [&longer, &accented] {
            let key = rejects_key("errors/", raw, &sha256);
            assert!(key.len() <= MAX_KEY_BYTES, "{}", key.len());
            assert!(key.len() >= MAX_KEY_BYTES - 1, "as much of the key as fits");
            let digest = &barge_core::content_digest(raw.as_bytes())[..16];
            let suffix = format!("~{digest}.abababababababab.rejects.ndjson");
            assert!(key.ends_with(&suffix), "{key}");
            let kept = &key["errors/".len()..key.len() - suffix.len()];
            assert!(raw.starts_with(kept), "{kept}");
        }
        // Two long keys that differ only past the cut: two rejects objects.
        let other = format!("{fits}x");
        assert_ne!(
            rejects_key("errors", &longer, &sha256),
            rejects_key("errors", &other, &sha256)
        );
        assert_eq!(
            rejects_key("errors", &longer, &sha256),
            rejects_key("errors", &longer, &sha256),
            "a retried load rewrites the same object"
        );
    }

    #[test]
    fn the_raw_key_metadata_is_ascii() {
        assert_eq!(
            raw_key_metadata("landing/posts/café + déjà vu~_.json").unwrap(),
            "landing/posts/caf%C3%A9%20%2B%20d%C3%A9j%C3%A0%20vu~_.json"
        );
        assert_eq!(
            raw_key_metadata("raw/posts/2026/11/24/0-a.json.gz").unwrap(),
            "raw/posts/2026/11/24/0-a.json.gz"
        );
        assert_eq!(raw_key_metadata("100%").unwrap(), "100%25");
        let decoded = |encoded: &str| {
            percent_encoding::percent_decode_str(encoded)
                .decode_utf8()
                .unwrap()
                .into_owned()
        };
        let key = "landing/日本/ü €🚀?#&=.json";
        let encoded = raw_key_metadata(key).unwrap();
        assert!(encoded.is_ascii(), "{encoded}");
        assert_eq!(decoded(&encoded), key);
        // 342 × 3 bytes, each encoded as 9: over the limit, left out.
        assert_eq!(raw_key_metadata(&"日".repeat(342)), None);
        assert!(raw_key_metadata(&"日".repeat(113)).is_some());
    }
}
