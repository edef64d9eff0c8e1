//! The raw batch format both daemons check: a JSON array of records, identified by the SHA-256 of
//! its bytes. The importer checks it before archiving; the transformer again before loading.
//!
//! Records are split without being decoded ([`RawValue`]s borrowing the bytes), so that one
//! record's oddity (a lone surrogate, a duplicate key, deep nesting) is that record's problem,
//! found and named when the transformer decodes it, and not the whole batch's.

use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// A UTF-8 byte order mark, which some producers put before JSON; it is skipped, not an error.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why bytes are not a batch; the caller adds where they came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchFormatError {
    /// Nothing but whitespace.
    #[error("empty: expected a JSON array of records")]
    Empty,
    /// JSON text must be UTF-8.
    #[error("not UTF-8 text: invalid byte at offset {0}")]
    NotUtf8(usize),
    /// Not JSON at all (truncated, trailing garbage, …).
    #[error("not valid JSON: {0}")]
    NotJson(String),
    /// JSON, but not an array of records.
    #[error("expected a JSON array of records, found {0}")]
    NotArray(&'static str),
}

/// The records of a raw batch, each still as its exact JSON text.
pub fn split_records(bytes: &[u8]) -> Result<Vec<&RawValue>, BatchFormatError> {
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    let text =
        std::str::from_utf8(bytes).map_err(|err| BatchFormatError::NotUtf8(err.valid_up_to()))?;
    let trimmed = text.trim_start_matches([' ', '\t', '\n', '\r']);
    if trimmed.is_empty() {
        return Err(BatchFormatError::Empty);
    }
    if !trimmed.starts_with('[') {
        // Parse it whole only to say what it is instead (or why it is not JSON).
        let whole: &RawValue =
            serde_json::from_str(text).map_err(|err| BatchFormatError::NotJson(err.to_string()))?;
        return Err(BatchFormatError::NotArray(raw_kind(whole)));
    }
    serde_json::from_str(text).map_err(|err| BatchFormatError::NotJson(err.to_string()))
}

/// Lower-case hex SHA-256 of a batch's bytes, as carried in the message and object metadata.
pub fn content_digest(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
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

/// The kind of a valid, undecoded JSON value, from its first character.
pub fn raw_kind(value: &RawValue) -> &'static str {
    match value.get().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(bytes: &[u8]) -> Result<Vec<String>, String> {
        split_records(bytes)
            .map(|records| records.iter().map(|r| r.get().to_owned()).collect())
            .map_err(|err| err.to_string())
    }

    #[test]
    fn arrays_are_batches_and_nothing_else_is() {
        assert_eq!(split(b"[{\"id\":1}, {} ]").unwrap(), ["{\"id\":1}", "{}"]);
        assert_eq!(split(b" []\n").unwrap(), Vec::<String>::new());
        assert_eq!(
            split(b"{\"data\":[]}").unwrap_err(),
            "expected a JSON array of records, found an object"
        );
        assert_eq!(
            split(b"\"text\"").unwrap_err(),
            "expected a JSON array of records, found a string"
        );
        assert_eq!(
            split(b"<html>").unwrap_err(),
            "not valid JSON: expected value at line 1 column 1"
        );
        assert_eq!(
            split(b"").unwrap_err(),
            "empty: expected a JSON array of records"
        );
        assert_eq!(
            split(b" \n\t").unwrap_err(),
            "empty: expected a JSON array of records"
        );
        assert_eq!(
            split(b"[1] x").unwrap_err(),
            "not valid JSON: trailing characters at line 1 column 5"
        );
        assert!(
            split(b"[{\"a\":1},")
                .unwrap_err()
                .starts_with("not valid JSON: EOF")
        );
        assert_eq!(
            split(b"[\"a\xffb\"]").unwrap_err(),
            "not UTF-8 text: invalid byte at offset 3"
        );
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        assert_eq!(split(b"\xEF\xBB\xBF[{}]").unwrap(), ["{}"]);
    }

    #[test]
    fn records_are_split_undecoded_so_their_problems_stay_theirs() {
        let deep = format!("[{}{}]", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(split(deep.as_bytes()).unwrap().len(), 1);
        assert_eq!(
            split(br#"[{"a":"\ud800"},{"a":1,"a":2}]"#).unwrap(),
            [r#"{"a":"\ud800"}"#, r#"{"a":1,"a":2}"#]
        );
    }

    #[test]
    fn digest_is_lower_hex_sha256() {
        assert_eq!(
            content_digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
