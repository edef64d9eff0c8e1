//! The raw batch format both daemons check: a JSON array of records, identified by the SHA-256 of
//! its bytes. The importer checks it before archiving; the transformer again before loading.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Why bytes are not a batch; the caller adds where they came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchFormatError {
    /// Not JSON at all.
    #[error("not valid JSON: {0}")]
    NotJson(String),
    /// JSON, but not an array of records.
    #[error("expected a JSON array of records, found {0}")]
    NotArray(&'static str),
}

/// The records of a raw batch.
pub fn parse_records(bytes: &[u8]) -> Result<Vec<Value>, BatchFormatError> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Array(records)) => Ok(records),
        Ok(other) => Err(BatchFormatError::NotArray(json_kind(&other))),
        Err(err) => Err(BatchFormatError::NotJson(err.to_string())),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_are_batches_and_nothing_else_is() {
        assert_eq!(parse_records(b"[{\"id\":1},{}]").unwrap().len(), 2);
        assert_eq!(parse_records(b"[]").unwrap().len(), 0);
        assert_eq!(
            parse_records(b"{\"data\":[]}").unwrap_err().to_string(),
            "expected a JSON array of records, found an object"
        );
        assert_eq!(
            parse_records(b"<html>").unwrap_err().to_string(),
            "not valid JSON: expected value at line 1 column 1"
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
