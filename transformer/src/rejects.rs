//! Records that do not fit their source's columns: each is kept, exactly as it arrived, in an
//! NDJSON object under the errors prefix, one line per record:
//!
//! ```json
//! {"record_index":1,"field":"userId","column":"user_id","reason":"expected an integer, found a string \"one\"","record":{"id":2,"userId":"one"}}
//! ```
//!
//! `field` and `column` are `null` when the record as a whole is at fault. The object's key is a
//! function of the raw object's key and digest, so a retried load rewrites the same object with
//! the same lines instead of leaving a second copy.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::record::RecordError;

/// One rejected record of a batch.
#[derive(Debug)]
pub struct Reject<'a> {
    /// Why it does not fit (with its index in the batch).
    pub error: RecordError,
    /// Its JSON text, as it arrived.
    pub record: &'a RawValue,
}

/// One NDJSON line.
#[derive(Serialize)]
struct Line<'a> {
    record_index: usize,
    field: Option<&'a str>,
    column: Option<&'a str>,
    reason: &'a str,
    record: &'a RawValue,
}

/// Where the rejects of raw object `key` with digest `sha256` are written.
pub fn rejects_key(errors_prefix: &str, key: &str, sha256: &str) -> String {
    let digest = sha256.get(..16).unwrap_or(sha256);
    format!(
        "{}/{key}.{digest}.rejects.ndjson",
        errors_prefix.trim_end_matches('/')
    )
}

/// The NDJSON text of `rejects`, one line each, in batch order.
pub fn to_ndjson(rejects: &[Reject<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for reject in rejects {
        let record = compact(reject.record);
        let at = &reject.error.at;
        let (field, column) = if at.column.is_empty() {
            (None, None)
        } else {
            (Some(at.field.as_str()), Some(at.column.as_str()))
        };
        let line = Line {
            record_index: reject.error.index,
            field,
            column,
            reason: &reject.error.problem,
            record: &record,
        };
        serde_json::to_writer(&mut out, &line).expect("strings and raw JSON always serialize");
        out.push(b'\n');
    }
    out
}

/// `raw` without the whitespace between its tokens, so that it fits on one NDJSON line. Every
/// token, strings and numbers included, stays byte for byte as it arrived: raw JSON cannot hold
/// an unescaped line break inside a string, so only insignificant whitespace goes.
fn compact(raw: &RawValue) -> Box<RawValue> {
    let mut text = String::with_capacity(raw.get().len());
    let (mut in_string, mut escaped) = (false, false);
    for c in raw.get().chars() {
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
    RawValue::from_string(text).expect("removing insignificant whitespace keeps JSON valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::FieldRef;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn lines_keep_the_record_exactly_on_one_line() {
        let pretty = raw("{\n  \"id\": 2,\n  \"userId\": \"o n\\\"e\",\n  \"n\": 1.50e3\n}");
        let whole = raw(r#"[1, 2]"#);
        let rejects = [
            Reject {
                error: RecordError {
                    index: 1,
                    at: FieldRef {
                        field: "userId".into(),
                        column: "user_id".into(),
                    },
                    problem: "expected an integer, found a string \"o n\\\"e\"".into(),
                },
                record: &pretty,
            },
            Reject {
                error: RecordError {
                    index: 4,
                    at: FieldRef::default(),
                    problem: "expected a JSON object, found an array".into(),
                },
                record: &whole,
            },
        ];
        let text = String::from_utf8(to_ndjson(&rejects)).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"record_index":1,"field":"userId","column":"user_id","reason":"expected an integer, found a string \"o n\\\"e\"","record":{"id":2,"userId":"o n\"e","n":1.50e3}}"#,
                "\n",
                r#"{"record_index":4,"field":null,"column":null,"reason":"expected a JSON object, found an array","record":[1,2]}"#,
                "\n"
            )
        );
    }

    #[test]
    fn keys_follow_the_raw_object() {
        assert_eq!(
            rejects_key("errors/", "raw/posts/2026/11/24/x.json", &"ab".repeat(32)),
            "errors/raw/posts/2026/11/24/x.json.abababababababab.rejects.ndjson"
        );
    }
}
