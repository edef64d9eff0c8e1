//! Mapping one JSON record onto a source's typed columns. Each JSON value must already have the
//! shape the column type expects: a surprising value is an error naming the field, never a guess,
//! and a value is never altered to fit (no rounding, no stripped characters, no wrapping).

use std::error::Error;

use barge_core::{Column, ColumnType, Source, json_kind};
use bytes::BytesMut;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::value::RawValue;
use serde_json::{Number, Value};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::decode::decode_record;

/// Integral floats (`3.0`) are taken as integers only below 2^53, where an `f64` is exact.
const EXACT_FLOAT_INTEGER: f64 = 9_007_199_254_740_992.0;
/// 2^63: integral floats at or beyond it are outside `bigint` whatever their digits.
const BIGINT_BOUND: f64 = 9_223_372_036_854_775_808.0;

/// One typed value ready for binary COPY.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// SQL `NULL` (nullable columns only).
    Null,
    /// `bigint`.
    Int8(i64),
    /// `integer`.
    Int4(i32),
    /// `smallint`.
    Int2(i16),
    /// `double precision`.
    Float8(f64),
    /// `real`.
    Float4(f32),
    /// `text`.
    Text(String),
    /// `boolean`.
    Bool(bool),
    /// `jsonb`.
    Json(Value),
    /// `timestamptz`.
    Timestamp(DateTime<Utc>),
    /// `date`.
    Date(NaiveDate),
}

/// Why a record does not fit the declared columns; the caller adds the object key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("record {index}{at}: {problem}")]
pub struct RecordError {
    /// Position of the record in the batch's JSON array, from 0.
    pub index: usize,
    /// The field at fault, when the record is an object at all.
    pub at: FieldRef,
    /// What was wrong with it.
    pub problem: String,
}

/// A JSON field and the column it feeds; empty when the whole record is at fault.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldRef {
    /// The JSON field (or pointer) read.
    pub field: String,
    /// The column it was meant for.
    pub column: String,
}

impl std::fmt::Display for FieldRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.column.is_empty() {
            Ok(())
        } else {
            write!(f, ", field {:?} (column {:?})", self.field, self.column)
        }
    }
}

/// The PostgreSQL type of a column, for binary COPY.
pub fn pg_type(column_type: ColumnType) -> Type {
    match column_type {
        ColumnType::Bigint => Type::INT8,
        ColumnType::Integer => Type::INT4,
        ColumnType::Smallint => Type::INT2,
        ColumnType::DoublePrecision => Type::FLOAT8,
        ColumnType::Real => Type::FLOAT4,
        ColumnType::Text => Type::TEXT,
        ColumnType::Boolean => Type::BOOL,
        ColumnType::Jsonb => Type::JSONB,
        ColumnType::Timestamptz => Type::TIMESTAMPTZ,
        ColumnType::Date => Type::DATE,
    }
}

/// Decodes record `index` of a batch and maps it onto `source`'s columns, in declaration order.
pub fn map_record(
    source: &Source,
    index: usize,
    record: &RawValue,
) -> Result<Vec<Cell>, RecordError> {
    let value = decode_record(record).map_err(|err| RecordError {
        index,
        at: FieldRef::default(),
        problem: format!("cannot be decoded: {err}"),
    })?;
    map_value(source, index, &value)
}

/// Maps a decoded record onto `source`'s columns.
fn map_value(source: &Source, index: usize, record: &Value) -> Result<Vec<Cell>, RecordError> {
    if !record.is_object() {
        return Err(RecordError {
            index,
            at: FieldRef::default(),
            problem: format!("expected a JSON object, found {}", json_kind(record)),
        });
    }
    source
        .columns
        .iter()
        .map(|column| {
            map_field(column, lookup(record, column.json_field())).map_err(|problem| RecordError {
                index,
                at: FieldRef {
                    field: column.json_field().to_owned(),
                    column: column.name.clone(),
                },
                problem,
            })
        })
        .collect()
}

/// A top-level field, or an RFC 6901 pointer when the name starts with `/`.
fn lookup<'a>(record: &'a Value, field: &str) -> Option<&'a Value> {
    if field.starts_with('/') {
        record.pointer(field)
    } else {
        record.get(field)
    }
}

fn map_field(column: &Column, value: Option<&Value>) -> Result<Cell, String> {
    let value = match value {
        None | Some(Value::Null) if column.nullable => return Ok(Cell::Null),
        None => return Err("missing, and the column is not nullable".into()),
        Some(Value::Null) => return Err("null, and the column is not nullable".into()),
        Some(value) => value,
    };
    let expected = column.column_type.expected_json();
    let mismatch = || format!("expected {expected}, found {}", describe(value));
    let out_of_range = || {
        format!(
            "{value} is out of range for {}",
            column.column_type.sql_name()
        )
    };
    let exact_integer = || match integer(value) {
        Integer::Exact(wide) => Ok(wide),
        Integer::NotOne => Err(mismatch()),
        Integer::Inexact => Err(format!(
            "{value} has a fraction or exponent and is beyond 2^53, where its exact integer \
             value is unknown"
        )),
        Integer::OutOfRange => Err(out_of_range()),
    };
    Ok(match column.column_type {
        ColumnType::Bigint => Cell::Int8(exact_integer()?),
        ColumnType::Integer => {
            Cell::Int4(i32::try_from(exact_integer()?).map_err(|_| out_of_range())?)
        }
        ColumnType::Smallint => {
            Cell::Int2(i16::try_from(exact_integer()?).map_err(|_| out_of_range())?)
        }
        ColumnType::DoublePrecision => {
            Cell::Float8(double(value.as_number().ok_or_else(mismatch)?)?)
        }
        ColumnType::Real => Cell::Float4(real(value.as_number().ok_or_else(mismatch)?)?),
        ColumnType::Text => {
            let text = value.as_str().ok_or_else(mismatch)?;
            if text.contains('\0') {
                return Err(NUL_PROBLEM.into());
            }
            Cell::Text(text.to_owned())
        }
        ColumnType::Boolean => Cell::Bool(value.as_bool().ok_or_else(mismatch)?),
        ColumnType::Jsonb => {
            if contains_nul(value) {
                return Err(NUL_PROBLEM.into());
            }
            Cell::Json(value.clone())
        }
        ColumnType::Timestamptz => {
            let text = value.as_str().ok_or_else(mismatch)?;
            let parsed = DateTime::parse_from_rfc3339(text).map_err(|_| mismatch())?;
            Cell::Timestamp(parsed.with_timezone(&Utc))
        }
        ColumnType::Date => {
            let text = value.as_str().ok_or_else(mismatch)?;
            Cell::Date(NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| mismatch())?)
        }
    })
}

/// A number as `double precision`: any finite number (a decimal fraction is approximated, as
/// `double precision` always does), but an integer only when `f64` holds it exactly, and
/// nothing that would overflow to infinity or underflow to zero.
fn double(number: &Number) -> Result<f64, String> {
    let text = number.to_string();
    let float: f64 = text
        .parse()
        .map_err(|_| format!("{text} is not a number PostgreSQL reads"))?;
    if !float.is_finite() || (float == 0.0 && has_nonzero_digit(&text)) {
        return Err(format!("{text} is out of range for double precision"));
    }
    let integer_literal = !text.contains(['.', 'e', 'E']);
    if integer_literal && text.parse::<i128>().ok() != Some(float as i128) {
        return Err(format!(
            "{text} cannot be stored exactly in double precision (integers beyond 2^53 lose \
             digits); declare the column bigint"
        ));
    }
    Ok(float)
}

/// A number as `real`: only a value that survives the trip through `f32` (its nearest `f32`
/// reads back as the same number), so `16777217` or `1e39` are errors, not `16777216` or
/// infinity.
fn real(number: &Number) -> Result<f32, String> {
    let text = number.to_string();
    let single: Option<f32> = text.parse().ok();
    let same = single
        .filter(|s| s.is_finite())
        .is_some_and(|s| s.to_string().parse::<f64>().ok() == text.parse::<f64>().ok());
    match single {
        Some(single) if same => Ok(single),
        _ => Err(format!(
            "{text} cannot be stored exactly in real; declare the column double precision"
        )),
    }
}

/// Whether a number's mantissa (the part before any exponent) has a non-zero digit.
fn has_nonzero_digit(text: &str) -> bool {
    text.split(['e', 'E'])
        .next()
        .is_some_and(|mantissa| mantissa.chars().any(|c| ('1'..='9').contains(&c)))
}

/// PostgreSQL cannot store U+0000 in `text` or `jsonb`; it would refuse the whole batch.
const NUL_PROBLEM: &str = "contains U+0000, which PostgreSQL cannot store";

/// Whether a string or key anywhere in `value` contains U+0000.
fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(values) => values.iter().any(contains_nul),
        Value::Object(map) => map
            .iter()
            .any(|(key, value)| key.contains('\0') || contains_nul(value)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// What a JSON value is as an integer.
enum Integer {
    /// An integer, or an integral float such as `3.0` that some APIs emit, below 2^53.
    Exact(i64),
    /// Not an integer at all (`3.5`, a string, …).
    NotOne,
    /// An integral float at or beyond 2^53: its digits were already rounded.
    Inexact,
    /// Beyond what `bigint` holds.
    OutOfRange,
}

fn integer(value: &Value) -> Integer {
    let Value::Number(number) = value else {
        return Integer::NotOne;
    };
    if let Some(exact) = number.as_i64() {
        return Integer::Exact(exact);
    }
    if number.is_u64() {
        return Integer::OutOfRange;
    }
    let float = number.as_f64().unwrap_or(f64::NAN);
    if float.fract() != 0.0 || !float.is_finite() {
        Integer::NotOne
    } else if float.abs() < EXACT_FLOAT_INTEGER {
        Integer::Exact(float as i64)
    } else if float.abs() >= BIGINT_BOUND {
        Integer::OutOfRange
    } else {
        Integer::Inexact
    }
}

fn describe(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 40 {
        format!(
            "{} {}…",
            json_kind(value),
            text.chars().take(40).collect::<String>()
        )
    } else {
        format!("{} {text}", json_kind(value))
    }
}

impl ToSql for Cell {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Cell::Null => Ok(IsNull::Yes),
            Cell::Int8(v) => v.to_sql(ty, out),
            Cell::Int4(v) => v.to_sql(ty, out),
            Cell::Int2(v) => v.to_sql(ty, out),
            Cell::Float8(v) => v.to_sql(ty, out),
            Cell::Float4(v) => v.to_sql(ty, out),
            Cell::Text(v) => v.to_sql(ty, out),
            Cell::Bool(v) => v.to_sql(ty, out),
            Cell::Json(v) => v.to_sql(ty, out),
            Cell::Timestamp(v) => v.to_sql(ty, out),
            Cell::Date(v) => v.to_sql(ty, out),
        }
    }

    /// Every cell is built for its column's declared type, and each arm's own `to_sql` checks
    /// the type again, so accepting all types here cannot let a mismatch through silently.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source() -> Source {
        let mut source = Source::jsonplaceholder_posts();
        let column = |name: &str, column_type, nullable| Column {
            name: name.into(),
            column_type,
            field: None,
            nullable,
        };
        source.columns.extend([
            column("score", ColumnType::DoublePrecision, true),
            column("small", ColumnType::Smallint, true),
            column("active", ColumnType::Boolean, true),
            column("meta", ColumnType::Jsonb, true),
            column("seen_at", ColumnType::Timestamptz, true),
            column("day", ColumnType::Date, true),
        ]);
        source.columns.push(Column {
            name: "city".into(),
            column_type: ColumnType::Text,
            field: Some("/address/city".into()),
            nullable: true,
        });
        source
    }

    fn raw(record: &Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(record).unwrap()
    }

    fn problem(record: Value) -> String {
        map_record(&source(), 3, &raw(&record))
            .unwrap_err()
            .to_string()
    }

    fn problem_of_text(text: &str) -> String {
        let record = RawValue::from_string(text.to_owned()).unwrap();
        map_record(&source(), 3, &record).unwrap_err().to_string()
    }

    #[test]
    fn maps_every_type_in_column_order() {
        let record = json!({
            "id": 7, "userId": 2.0, "title": "t", "body": "b", "score": 1.5, "small": -3,
            "active": true, "meta": {"k": [1]}, "seen_at": "2026-11-24T01:02:03+01:00",
            "day": "2026-11-24", "address": {"city": "Gwenborough"}, "extra": "ignored"
        });
        let cells = map_record(&source(), 0, &raw(&record)).unwrap();
        assert_eq!(
            cells,
            [
                Cell::Int8(7),
                Cell::Int8(2),
                Cell::Text("t".into()),
                Cell::Text("b".into()),
                Cell::Float8(1.5),
                Cell::Int2(-3),
                Cell::Bool(true),
                Cell::Json(json!({"k": [1]})),
                Cell::Timestamp("2026-11-24T00:02:03Z".parse().unwrap()),
                Cell::Date(NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()),
                Cell::Text("Gwenborough".into()),
            ]
        );
    }

    #[test]
    fn nullable_columns_take_missing_and_null() {
        let cells = map_record(
            &source(),
            0,
            &raw(&json!({"id": 1, "userId": 1, "title": "", "body": "", "score": null})),
        )
        .unwrap();
        assert!(cells[4..].iter().all(|c| *c == Cell::Null), "{cells:?}");
    }

    #[test]
    fn errors_name_record_field_column_and_problem() {
        assert_eq!(
            problem(json!({"id": 1, "title": "t", "body": "b"})),
            "record 3, field \"userId\" (column \"user_id\"): missing, and the column is not nullable"
        );
        assert_eq!(
            problem(json!({"id": "1", "userId": 1, "title": "t", "body": "b"})),
            "record 3, field \"id\" (column \"id\"): expected an integer, found a string \"1\""
        );
        assert_eq!(
            problem(json!({"id": 1.5, "userId": 1, "title": "t", "body": "b"})),
            "record 3, field \"id\" (column \"id\"): expected an integer, found a number 1.5"
        );
        assert_eq!(
            problem(json!({"id": 1, "userId": 1, "title": null, "body": "b"})),
            "record 3, field \"title\" (column \"title\"): null, and the column is not nullable"
        );
        assert_eq!(
            problem(json!({"id": 1, "userId": 1, "title": "t", "body": "b", "small": 40000})),
            "record 3, field \"small\" (column \"small\"): 40000 is out of range for smallint"
        );
        assert!(
            problem(
                json!({"id": 1, "userId": 1, "title": "t", "body": "b", "seen_at": "yesterday"})
            )
            .contains("expected an RFC 3339 timestamp string, found a string \"yesterday\"")
        );
        assert_eq!(
            problem(json!([1, 2])),
            "record 3: expected a JSON object, found an array"
        );
    }

    #[test]
    fn integers_are_exact_or_errors() {
        let id = |text: &str| {
            let record = format!(r#"{{"id": {text}, "userId": 1, "title": "t", "body": "b"}}"#);
            let record = RawValue::from_string(record).unwrap();
            map_record(&source(), 0, &record)
                .map(|cells| cells[0].clone())
                .map_err(|err| err.problem)
        };
        assert_eq!(id("9223372036854775807"), Ok(Cell::Int8(i64::MAX)));
        assert_eq!(id("-9223372036854775808"), Ok(Cell::Int8(i64::MIN)));
        assert_eq!(id("1.0"), Ok(Cell::Int8(1)));
        assert_eq!(id("-2e3"), Ok(Cell::Int8(-2000)));
        assert_eq!(
            id("9223372036854775808"),
            Err("9223372036854775808 is out of range for bigint".into())
        );
        assert_eq!(
            id("-9223372036854775809"),
            Err("-9223372036854775809 is out of range for bigint".into())
        );
        assert_eq!(
            id("1.5"),
            Err("expected an integer, found a number 1.5".into())
        );
        assert!(
            id("9007199254740993.0")
                .unwrap_err()
                .contains("beyond 2^53")
        );
    }

    #[test]
    fn floats_are_exact_where_the_type_promises_it() {
        let column = |text: &str| {
            let record =
                format!(r#"{{"id":1,"userId":1,"title":"t","body":"b","score":{text},"small":1}}"#);
            let record = RawValue::from_string(record).unwrap();
            map_record(&source(), 0, &record).map(|cells| cells[4].clone())
        };
        assert_eq!(column("0.1"), Ok(Cell::Float8(0.1)));
        assert_eq!(column("-1e300"), Ok(Cell::Float8(-1e300)));
        assert_eq!(
            column("9007199254740992"),
            Ok(Cell::Float8(9007199254740992.0))
        );
        assert!(
            column("9007199254740993")
                .unwrap_err()
                .problem
                .contains("exactly")
        );
        assert!(column("123456789012345678901234567890").is_err());
        assert!(
            column("1e400")
                .unwrap_err()
                .problem
                .contains("out of range")
        );
        assert!(
            column("1e-400")
                .unwrap_err()
                .problem
                .contains("out of range")
        );
        assert_eq!(column("0e-400"), Ok(Cell::Float8(0.0)));
    }

    #[test]
    fn real_takes_only_what_survives_f32() {
        let mut real_source = source();
        real_source.columns[4].column_type = ColumnType::Real;
        let column = |text: &str| {
            let record = format!(r#"{{"id":1,"userId":1,"title":"t","body":"b","score":{text}}}"#);
            let record = RawValue::from_string(record).unwrap();
            map_record(&real_source, 0, &record).map(|cells| cells[4].clone())
        };
        assert_eq!(column("1.1"), Ok(Cell::Float4(1.1)));
        assert_eq!(column("16777216"), Ok(Cell::Float4(16777216.0)));
        assert_eq!(column("-0.5e-3"), Ok(Cell::Float4(-0.0005)));
        for altered in ["16777217", "1e39", "0.30000000000000004", "1e-50"] {
            let problem = column(altered).unwrap_err().problem;
            assert!(
                problem.contains("cannot be stored exactly in real"),
                "{altered}: {problem}"
            );
        }
    }

    #[test]
    fn whole_record_problems_name_the_record() {
        assert_eq!(
            problem_of_text(r#"{"id": 1, "id": 2, "userId": 1, "title": "t", "body": "b"}"#),
            "record 3: cannot be decoded: duplicate key \"id\" at line 1 column 14"
        );
        assert!(
            problem_of_text(r#"{"id": 1, "userId": 1, "title": "\ud800", "body": "b"}"#)
                .starts_with("record 3: cannot be decoded: ")
        );
    }

    #[test]
    fn nul_is_refused_in_text_and_jsonb_never_stripped() {
        assert_eq!(
            problem(json!({"id": 1, "userId": 1, "title": "a\u{0}b", "body": "b"})),
            "record 3, field \"title\" (column \"title\"): contains U+0000, which PostgreSQL cannot store"
        );
        assert!(
            problem(
                json!({"id": 1, "userId": 1, "title": "t", "body": "b", "meta": {"k": ["\u{0}"]}})
            )
            .contains("field \"meta\" (column \"meta\"): contains U+0000")
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Any JSON value, nested a few levels.
        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>()
                    .prop_filter("JSON numbers are finite", |f| f.is_finite())
                    .prop_map(Value::from),
                "\\PC{0,20}".prop_map(Value::String),
                any::<String>().prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 40, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::btree_map("[a-zA-Z_/]{0,8}", inner, 0..6)
                        .prop_map(|map| Value::Object(map.into_iter().collect())),
                ]
            })
        }

        /// A posts-shaped record whose fields are arbitrary values.
        fn posts_like() -> impl Strategy<Value = Value> {
            (json_value(), json_value(), json_value(), json_value(), json_value()).prop_map(
                |(id, user, title, body, meta)| {
                    serde_json::json!({"id": id, "userId": user, "title": title, "body": body, "meta": meta})
                },
            )
        }

        proptest! {
            #[test]
            fn mapping_never_panics_and_names_the_record(
                record in prop_oneof![json_value(), posts_like()],
                index in any::<usize>(),
            ) {
                match map_record(&source(), index, &raw(&record)) {
                    Ok(cells) => prop_assert_eq!(cells.len(), source().columns.len()),
                    Err(error) => prop_assert_eq!(error.index, index),
                }
            }

            #[test]
            fn strict_decoding_agrees_with_serde_json_where_keys_are_unique(value in json_value()) {
                prop_assert_eq!(decode_record(&raw(&value)).unwrap(), value);
            }

            #[test]
            fn a_batch_splits_into_exactly_its_records(records in prop::collection::vec(json_value(), 0..8)) {
                let bytes = serde_json::to_vec_pretty(&records).unwrap();
                let split = barge_core::split_records(&bytes).unwrap();
                prop_assert_eq!(split.len(), records.len());
                for (raw, record) in split.iter().zip(&records) {
                    prop_assert_eq!(&decode_record(raw).unwrap(), record);
                }
            }

            #[test]
            fn every_bigint_loads_exactly(id in any::<i64>()) {
                let record = json!({"id": id, "userId": 1, "title": "t", "body": "b"});
                prop_assert_eq!(&map_record(&source(), 0, &raw(&record)).unwrap()[0], &Cell::Int8(id));
            }

            #[test]
            fn integral_floats_load_exactly_below_two_to_the_53(id in -9_007_199_254_740_991_i64..9_007_199_254_740_992) {
                let record = RawValue::from_string(format!(r#"{{"id":{id}.0,"userId":1,"title":"t","body":"b"}}"#)).unwrap();
                prop_assert_eq!(&map_record(&source(), 0, &record).unwrap()[0], &Cell::Int8(id));
            }

            #[test]
            fn text_is_kept_exactly_or_refused_for_nul(title in any::<String>()) {
                let record = json!({"id": 1, "userId": 1, "title": title, "body": "b"});
                let mapped = map_record(&source(), 0, &raw(&record));
                if title.contains('\0') {
                    prop_assert!(mapped.unwrap_err().problem.contains("U+0000"));
                } else {
                    prop_assert_eq!(&mapped.unwrap()[2], &Cell::Text(title));
                }
            }
        }
    }
}
