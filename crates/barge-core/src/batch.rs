//! The raw batch formats both daemons read: a JSON array of records, or NDJSON (one record per
//! line), identified by the SHA-256 of the object's bytes.
//!
//! Records are split without being decoded, chunk by chunk as the bytes arrive ([`Splitter`]),
//! so that neither daemon ever holds more than one record, whatever the object's size, and so
//! that one record's oddity (a lone surrogate, a duplicate key, deep nesting, broken syntax
//! inside it) is that record's problem, found and named when the transformer decodes it, and not
//! the whole batch's. What the splitter itself refuses is what makes the object as a whole
//! unreadable: not an array, truncated, garbage between or after records, invalid UTF-8, a
//! record beyond the size limit.
//!
//! The splitter only tracks strings and bracket depth, because no maintained crate splits a JSON
//! array incrementally into the raw text of its elements (serde_json's reader decodes byte by
//! byte and stops at the first bad element). A record's own syntax is left to whoever decodes it.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// A UTF-8 byte order mark, which some producers put before JSON; it is skipped, not an error.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// How an object lays out its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordLayout {
    /// One JSON array whose elements are the records.
    Array,
    /// Newline-delimited JSON: one record per non-blank line.
    Ndjson,
}

impl RecordLayout {
    /// NDJSON for keys ending in `.ndjson` or `.jsonl` (before any `.gz`) or the NDJSON content
    /// types; a JSON array otherwise. Never guessed from the content: a single JSON object would
    /// be valid NDJSON and a mistaken API response alike.
    pub fn of(key: &str, content_type: Option<&str>) -> Self {
        let name = key.strip_suffix(".gz").unwrap_or(key);
        let by_type = content_type.is_some_and(|t| {
            let t = t.split(';').next().unwrap_or_default().trim();
            [
                "application/x-ndjson",
                "application/jsonl",
                "application/jsonlines",
            ]
            .iter()
            .any(|known| t.eq_ignore_ascii_case(known))
        });
        if by_type || name.ends_with(".ndjson") || name.ends_with(".jsonl") {
            Self::Ndjson
        } else {
            Self::Array
        }
    }
}

/// Why bytes are not a batch; the caller adds where they came from. Offsets count bytes from
/// the start of the (decompressed) object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchFormatError {
    /// Nothing but whitespace.
    #[error("empty: expected a JSON array of records")]
    Empty,
    /// JSON text must be UTF-8.
    #[error("not UTF-8 text: invalid byte at offset {0}")]
    NotUtf8(u64),
    /// Not JSON at all (truncated, trailing garbage, …).
    #[error("not valid JSON: {0}")]
    NotJson(String),
    /// JSON, but not an array of records.
    #[error("expected a JSON array of records, found {0}")]
    NotArray(&'static str),
    /// Compressed, but not readable as gzip.
    #[error("not valid gzip: {0}")]
    Gzip(String),
    /// The object decompresses to more than the limit: a gzip bomb, or a misconfigured limit.
    #[error("larger than {0} bytes (decompressed), the limit for one object")]
    TooLarge(u64),
    /// One record is larger than the limit that bounds memory.
    #[error("record {index} is larger than {limit} bytes, the limit for one record")]
    RecordTooLarge {
        /// The record's index.
        index: u64,
        /// The limit, in bytes.
        limit: usize,
    },
}

/// What stopped [`Splitter::push`]: the bytes, or the caller's handling of a record.
#[derive(Debug)]
pub enum SplitError<E> {
    /// The bytes are not a batch.
    Format(BatchFormatError),
    /// The caller's record handler failed.
    Record(E),
}

impl<E> From<BatchFormatError> for SplitError<E> {
    fn from(err: BatchFormatError) -> Self {
        Self::Format(err)
    }
}

/// Where the splitter is in the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first significant byte (skipping a BOM and whitespace).
    Start,
    /// Inside the array, where a record or `]` may come (right after `[`).
    FirstValue,
    /// After a comma: a record must come.
    NextValue,
    /// Inside a record.
    InRecord(Token),
    /// After a record: `,` or `]`.
    AfterValue,
    /// After the closing `]`: only whitespace.
    AfterArray,
    /// NDJSON: inside a line.
    InLine,
}

/// The kind of record being scanned, which decides where it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// An object or array, ending when its brackets balance.
    Compound,
    /// A string, ending at its closing quote.
    String,
    /// A number or literal, ending at whitespace, `,` or `]`.
    Scalar,
}

/// Splits an object's bytes, fed in chunks of any size, into the raw text of its records.
#[derive(Debug)]
pub struct Splitter {
    layout: RecordLayout,
    max_record_bytes: usize,
    state: State,
    /// Bytes consumed before the current chunk.
    offset: u64,
    /// Records emitted so far; the next record's index.
    records: u64,
    /// The current record's bytes from earlier chunks.
    carried: Vec<u8>,
    /// Offset of the current record's first byte.
    record_offset: u64,
    /// Bytes of a leading BOM seen so far.
    bom: usize,
    depth: u32,
    in_string: bool,
    escaped: bool,
}

fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// A byte that can be part of a number or a literal (`true`, `false`, `null`): anything else
/// ends such a record, and must then be `,`, `]` or whitespace.
fn is_scalar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'+' | b'.')
}

impl Splitter {
    /// A splitter for `layout` that refuses records longer than `max_record_bytes`.
    pub fn new(layout: RecordLayout, max_record_bytes: usize) -> Self {
        Self {
            layout,
            max_record_bytes,
            state: State::Start,
            offset: 0,
            records: 0,
            carried: Vec::new(),
            record_offset: 0,
            bom: 0,
            depth: 0,
            in_string: false,
            escaped: false,
        }
    }

    /// Records emitted so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Feeds the next chunk; `emit` is called with each record completed in it, in order.
    pub fn push<E>(
        &mut self,
        chunk: &[u8],
        emit: &mut impl FnMut(&str) -> Result<(), E>,
    ) -> Result<(), SplitError<E>> {
        let mut i = 0;
        // Start of the current record's bytes within this chunk, while one is open.
        let mut segment = matches!(self.state, State::InRecord(_) | State::InLine).then_some(0);
        while i < chunk.len() {
            let byte = chunk[i];
            match self.state {
                State::Start => {
                    let at = self.offset + i as u64;
                    if at < BOM.len() as u64 && at == self.bom as u64 && byte == BOM[self.bom] {
                        self.bom += 1;
                        i += 1;
                        continue;
                    }
                    if self.bom > 0 && self.bom < BOM.len() {
                        return Err(BatchFormatError::NotUtf8(0).into());
                    }
                    if is_space(byte) {
                        i += 1;
                        continue;
                    }
                    match self.layout {
                        RecordLayout::Ndjson => {
                            self.open(i, &mut segment);
                            self.state = State::InLine;
                        }
                        RecordLayout::Array if byte == b'[' => {
                            self.state = State::FirstValue;
                            i += 1;
                        }
                        RecordLayout::Array => {
                            return Err(match kind_of_first_byte(byte) {
                                Some(kind) => BatchFormatError::NotArray(kind),
                                None => self.not_json(i, "expected a JSON array"),
                            }
                            .into());
                        }
                    }
                }
                State::FirstValue | State::NextValue => {
                    if is_space(byte) {
                        i += 1;
                    } else if byte == b']' {
                        if self.state == State::NextValue {
                            return Err(self.not_json(i, "trailing comma before ]").into());
                        }
                        self.state = State::AfterArray;
                        i += 1;
                    } else if !matches!(byte, b'{' | b'[' | b'"') && !is_scalar(byte) {
                        let what = format!("expected a record, found {:?}", char::from(byte));
                        return Err(self.not_json(i, &what).into());
                    } else {
                        self.open(i, &mut segment);
                        let token = match byte {
                            b'{' | b'[' => {
                                self.depth = 1;
                                Token::Compound
                            }
                            b'"' => {
                                self.in_string = true;
                                Token::String
                            }
                            _ => Token::Scalar,
                        };
                        self.state = State::InRecord(token);
                        i += 1;
                    }
                }
                State::InRecord(token) => {
                    let start = segment.expect("a record is open");
                    match self.scan(token, chunk, i) {
                        Some(end) => {
                            self.close(chunk, start, end, emit)?;
                            segment = None;
                            self.state = State::AfterValue;
                            i = end;
                        }
                        None => i = chunk.len(),
                    }
                }
                State::AfterValue => {
                    match byte {
                        b',' => self.state = State::NextValue,
                        b']' => self.state = State::AfterArray,
                        _ if is_space(byte) => {}
                        _ => {
                            let what = format!("expected , or ] after record {}", self.records - 1);
                            return Err(self.not_json(i, &what).into());
                        }
                    }
                    i += 1;
                }
                State::AfterArray => {
                    if !is_space(byte) {
                        return Err(self
                            .not_json(i, "trailing characters after the array")
                            .into());
                    }
                    i += 1;
                }
                State::InLine => {
                    let start = segment.expect("a line is open");
                    match memchr::memchr(b'\n', &chunk[i..]) {
                        Some(newline) => {
                            let end = i + newline;
                            self.close(chunk, start, end, emit)?;
                            segment = None;
                            self.state = State::Start;
                            i = end + 1;
                        }
                        None => i = chunk.len(),
                    }
                }
            }
        }
        if let Some(start) = segment {
            self.carry(&chunk[start..])?;
        }
        self.offset += chunk.len() as u64;
        Ok(())
    }

    /// Ends the object: a last NDJSON line without a newline is emitted; an array must be
    /// closed. Returns how many records there were.
    pub fn finish<E>(
        mut self,
        emit: &mut impl FnMut(&str) -> Result<(), E>,
    ) -> Result<u64, SplitError<E>> {
        if (1..BOM.len()).contains(&self.bom) && self.state == State::Start {
            return Err(BatchFormatError::NotUtf8(0).into());
        }
        match self.state {
            State::AfterArray => {}
            State::Start if self.layout == RecordLayout::Ndjson => {}
            State::InLine => self.close(&[], 0, 0, emit)?,
            State::Start => return Err(BatchFormatError::Empty.into()),
            State::InRecord(Token::Compound | Token::String) => {
                let what = format!("ended inside record {}", self.records);
                return Err(self.not_json(0, &what).into());
            }
            State::InRecord(Token::Scalar)
            | State::FirstValue
            | State::NextValue
            | State::AfterValue => {
                return Err(self
                    .not_json(0, "ended before the closing ] of the array")
                    .into());
            }
        }
        Ok(self.records)
    }

    /// Where the record that started at `i` ends (exclusive), if within this chunk.
    fn scan(&mut self, token: Token, chunk: &[u8], mut i: usize) -> Option<usize> {
        while i < chunk.len() {
            let byte = chunk[i];
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else {
                    // Skip to the next quote or backslash: most of a record is string content.
                    match memchr::memchr2(b'"', b'\\', &chunk[i..]) {
                        Some(found) => i += found,
                        None => return None,
                    }
                    if chunk[i] == b'\\' {
                        self.escaped = true;
                    } else {
                        self.in_string = false;
                        if token == Token::String {
                            return Some(i + 1);
                        }
                    }
                }
                i += 1;
                continue;
            }
            match token {
                Token::Scalar => {
                    if !is_scalar(byte) {
                        return Some(i);
                    }
                }
                Token::Compound | Token::String => match byte {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => {
                        self.depth -= 1;
                        if self.depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                },
            }
            i += 1;
        }
        None
    }

    /// Opens a record at `i` of the current chunk.
    fn open(&mut self, i: usize, segment: &mut Option<usize>) {
        *segment = Some(i);
        self.record_offset = self.offset + i as u64;
        self.carried.clear();
    }

    /// Keeps the part of an open record that is in this chunk.
    fn carry(&mut self, part: &[u8]) -> Result<(), BatchFormatError> {
        if self.carried.len() + part.len() > self.max_record_bytes {
            return Err(BatchFormatError::RecordTooLarge {
                index: self.records,
                limit: self.max_record_bytes,
            });
        }
        self.carried.extend_from_slice(part);
        Ok(())
    }

    /// Completes the record ending at `end` of `chunk` and emits it; NDJSON lines lose a
    /// trailing `\r`, and blank lines are no records.
    fn close<E>(
        &mut self,
        chunk: &[u8],
        start: usize,
        end: usize,
        emit: &mut impl FnMut(&str) -> Result<(), E>,
    ) -> Result<(), SplitError<E>> {
        let bytes: &[u8] = if self.carried.is_empty() {
            &chunk[start..end]
        } else {
            self.carry(&chunk[start..end])?;
            &self.carried
        };
        if bytes.len() > self.max_record_bytes {
            return Err(BatchFormatError::RecordTooLarge {
                index: self.records,
                limit: self.max_record_bytes,
            }
            .into());
        }
        let bytes = match self.layout {
            RecordLayout::Ndjson => bytes.strip_suffix(b"\r").unwrap_or(bytes),
            RecordLayout::Array => bytes,
        };
        if bytes.iter().all(|b| is_space(*b)) {
            return Ok(());
        }
        // Every byte of every record is checked here, once: the SIMD check is several times
        // faster than the standard library's on non-ASCII text.
        let text = simdutf8::compat::from_utf8(bytes).map_err(|err| {
            BatchFormatError::NotUtf8(self.record_offset + err.valid_up_to() as u64)
        })?;
        self.records += 1;
        emit(text).map_err(SplitError::Record)
    }

    fn not_json(&self, i: usize, what: &str) -> BatchFormatError {
        BatchFormatError::NotJson(format!("{what} at offset {}", self.offset + i as u64))
    }
}

/// The kind of JSON value a first byte starts, with its article, if it starts one.
fn kind_of_first_byte(byte: u8) -> Option<&'static str> {
    Some(match byte {
        b'{' => "an object",
        b'[' => "an array",
        b'"' => "a string",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        b'-' | b'0'..=b'9' => "a number",
        _ => return None,
    })
}

/// The kind of a record from its raw text's first byte, for "expected an object, found …".
pub fn raw_kind(text: &str) -> &'static str {
    text.bytes()
        .find(|b| !is_space(*b))
        .and_then(kind_of_first_byte)
        .unwrap_or("not JSON")
}

/// The records of a whole batch in memory, as owned text: for tools and tests. The daemons
/// stream with [`Splitter`].
pub fn split_records(bytes: &[u8], layout: RecordLayout) -> Result<Vec<String>, BatchFormatError> {
    let mut splitter = Splitter::new(layout, usize::MAX);
    let mut records = Vec::new();
    let mut keep = |text: &str| {
        records.push(text.to_owned());
        Ok::<(), std::convert::Infallible>(())
    };
    let split = splitter
        .push(bytes, &mut keep)
        .and_then(|()| splitter.finish(&mut keep).map(drop));
    match split {
        Ok(()) => Ok(records),
        Err(SplitError::Format(err)) => Err(err),
        Err(SplitError::Record(never)) => match never {},
    }
}

/// Lower-case hex SHA-256 of a batch's bytes, as carried in the message (and in the metadata of
/// an archive object written in one request).
pub fn content_digest(bytes: &[u8]) -> String {
    hex_digest(Sha256::digest(bytes))
}

/// Lower-case hex of a finished SHA-256, for digests computed while streaming.
pub fn hex_digest(digest: impl std::fmt::LowerHex) -> String {
    format!("{digest:x}")
}

/// A JSON value's kind with its article, for messages like "found an object, expected …".
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(bytes: &[u8]) -> Result<Vec<String>, String> {
        split_records(bytes, RecordLayout::Array).map_err(|err| err.to_string())
    }

    fn ndjson(bytes: &[u8]) -> Result<Vec<String>, String> {
        split_records(bytes, RecordLayout::Ndjson).map_err(|err| err.to_string())
    }

    /// Splits `bytes` fed in chunks of `size`, with a record limit.
    fn split_chunked(
        bytes: &[u8],
        layout: RecordLayout,
        size: usize,
        limit: usize,
    ) -> Result<Vec<String>, BatchFormatError> {
        let mut splitter = Splitter::new(layout, limit);
        let mut records = Vec::new();
        let mut keep = |text: &str| {
            records.push(text.to_owned());
            Ok::<(), ()>(())
        };
        let unwrap = |err: SplitError<()>| match err {
            SplitError::Format(err) => err,
            SplitError::Record(()) => unreachable!(),
        };
        for chunk in bytes.chunks(size.max(1)) {
            splitter.push(chunk, &mut keep).map_err(unwrap)?;
        }
        splitter.finish(&mut keep).map_err(unwrap)?;
        Ok(records)
    }

    #[test]
    fn arrays_are_batches_and_nothing_else_is() {
        assert_eq!(split(b"[{\"id\":1}, {} ]").unwrap(), ["{\"id\":1}", "{}"]);
        assert_eq!(split(b" []\n").unwrap(), Vec::<String>::new());
        assert!(
            split(b"{\"data\":[]}")
                .unwrap_err()
                .starts_with("expected a JSON array of records, found an object")
        );
        assert!(
            split(b"\"text\"")
                .unwrap_err()
                .starts_with("expected a JSON array of records, found a string")
        );
        let refused: [(&[u8], &str); 12] = [
            (
                b"<html>",
                "not valid JSON: expected a JSON array at offset 0",
            ),
            (b"", "empty: expected a JSON array of records"),
            (b" \n\t", "empty: expected a JSON array of records"),
            (
                b"[1] x",
                "not valid JSON: trailing characters after the array at offset 4",
            ),
            (
                b"[{\"a\":1},",
                "not valid JSON: ended before the closing ] of the array at offset 9",
            ),
            (
                b"[{\"a\":1},{\"b\"",
                "not valid JSON: ended inside record 1 at offset 13",
            ),
            (
                b"[{}{}]",
                "not valid JSON: expected , or ] after record 0 at offset 3",
            ),
            (
                b"[{},]",
                "not valid JSON: trailing comma before ] at offset 4",
            ),
            (
                b"[,{}]",
                "not valid JSON: expected a record, found ',' at offset 1",
            ),
            (
                b"[x\", {\"id\":1}, \"y\"]",
                "not valid JSON: expected , or ] after record 0 at offset 2",
            ),
            (
                b"[}]",
                "not valid JSON: expected a record, found '}' at offset 1",
            ),
            (b"[\"a\xffb\"]", "not UTF-8 text: invalid byte at offset 3"),
        ];
        for (bytes, error) in refused {
            assert_eq!(split(bytes).unwrap_err(), error, "{bytes:?}");
        }
    }

    #[test]
    fn records_of_every_kind_end_where_json_says() {
        assert_eq!(
            split(br#"[1,-2.5e3 ,"a,]\"",true,null,[1,[2]],{"a":"}"}]"#).unwrap(),
            [
                "1",
                "-2.5e3",
                r#""a,]\"""#,
                "true",
                "null",
                "[1,[2]]",
                r#"{"a":"}"}"#
            ]
        );
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        assert_eq!(split(b"\xEF\xBB\xBF[{}]").unwrap(), ["{}"]);
        assert_eq!(ndjson(b"\xEF\xBB\xBF{}\n").unwrap(), ["{}"]);
        assert!(split(b"\xEF\xBB[{}]").is_err());
        assert!(ndjson(b"\xEF").is_err());
    }

    #[test]
    fn ndjson_is_one_record_per_non_blank_line() {
        assert_eq!(
            ndjson(b"{\"a\":1}\r\n\n  \n[2]\n{\"b\":\"x\\ny\"}").unwrap(),
            ["{\"a\":1}", "[2]", "{\"b\":\"x\\ny\"}"]
        );
        assert_eq!(ndjson(b"").unwrap(), Vec::<String>::new());
        assert_eq!(ndjson(b"{}\n{\n").unwrap(), ["{}", "{"]);
    }

    #[test]
    fn layout_comes_from_the_key_or_content_type_never_the_content() {
        assert_eq!(RecordLayout::of("a/b.json", None), RecordLayout::Array);
        assert_eq!(RecordLayout::of("a/b.json.gz", None), RecordLayout::Array);
        assert_eq!(
            RecordLayout::of("a/b.ndjson.gz", None),
            RecordLayout::Ndjson
        );
        assert_eq!(RecordLayout::of("a/b.jsonl", None), RecordLayout::Ndjson);
        assert_eq!(
            RecordLayout::of("a/b", Some("application/x-ndjson; charset=utf-8")),
            RecordLayout::Ndjson
        );
    }

    #[test]
    fn records_are_split_undecoded_so_their_problems_stay_theirs() {
        let deep = format!("[{}{}]", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(split(deep.as_bytes()).unwrap().len(), 1);
        assert_eq!(
            split(br#"[{"a":"\ud800"},{"a":1,"a":2},{"a":}]"#).unwrap(),
            [r#"{"a":"\ud800"}"#, r#"{"a":1,"a":2}"#, r#"{"a":}"#]
        );
    }

    #[test]
    fn records_beyond_the_limit_are_refused_without_being_held() {
        let bytes = br#"[{"a":"0123456789"},{"a":"01234567890123456789"}]"#;
        assert_eq!(
            split_chunked(bytes, RecordLayout::Array, 3, 20),
            Err(BatchFormatError::RecordTooLarge {
                index: 1,
                limit: 20
            })
        );
        assert_eq!(
            split_chunked(bytes, RecordLayout::Array, 100, 30)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn digest_is_lower_hex_sha256() {
        assert_eq!(
            content_digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            // Quotes, backslashes, brackets, commas, newlines and multi-byte characters: every
            // byte the scanner must not mistake for structure.
            "[a\"\\\\\\[\\]{},\n é🚀\u{7f}]{0,12}"
        }

        proptest! {
            #[test]
            fn chunk_boundaries_never_change_the_records(
                texts in prop::collection::vec(text(), 0..6),
                size in 1usize..9,
                pretty in any::<bool>(),
            ) {
                let records: Vec<Value> = texts
                    .iter()
                    .map(|t| serde_json::json!({"t": t, "n": [t, {"k": t}]}))
                    .collect();
                let array = if pretty {
                    serde_json::to_vec_pretty(&records).unwrap()
                } else {
                    serde_json::to_vec(&records).unwrap()
                };
                let expected: Vec<String> =
                    records.iter().map(|r| serde_json::to_string(r).unwrap()).collect();
                let split = split_chunked(&array, RecordLayout::Array, size, usize::MAX).unwrap();
                let reparsed: Vec<Value> =
                    split.iter().map(|s| serde_json::from_str(s).unwrap()).collect();
                prop_assert_eq!(&reparsed, &records);
                let lines = expected.join("\n");
                prop_assert_eq!(
                    split_chunked(lines.as_bytes(), RecordLayout::Ndjson, size, usize::MAX).unwrap(),
                    expected
                );
            }

            #[test]
            fn any_bytes_split_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..64), size in 1usize..5) {
                let whole = split_records(&bytes, RecordLayout::Array);
                prop_assert_eq!(split_chunked(&bytes, RecordLayout::Array, size, usize::MAX), whole);
            }
        }
    }
}
