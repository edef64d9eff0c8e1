//! Mapping one JSON record onto a source's typed columns. Each JSON value must already have the
//! shape the column type expects: a surprising value is an error naming the field, never a guess.

use std::error::Error;

use barge_core::{Column, ColumnType, Source, json_kind};
use bytes::BytesMut;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

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

/// Maps record `index` onto `source`'s columns, in declaration order.
pub fn map_record(source: &Source, index: usize, record: &Value) -> Result<Vec<Cell>, RecordError> {
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
            map_value(column, lookup(record, column.json_field())).map_err(|problem| RecordError {
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

fn map_value(column: &Column, value: Option<&Value>) -> Result<Cell, String> {
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
    Ok(match column.column_type {
        ColumnType::Bigint => Cell::Int8(integer(value).ok_or_else(mismatch)?),
        ColumnType::Integer => {
            let wide = integer(value).ok_or_else(mismatch)?;
            Cell::Int4(i32::try_from(wide).map_err(|_| out_of_range())?)
        }
        ColumnType::Smallint => {
            let wide = integer(value).ok_or_else(mismatch)?;
            Cell::Int2(i16::try_from(wide).map_err(|_| out_of_range())?)
        }
        ColumnType::DoublePrecision => Cell::Float8(value.as_f64().ok_or_else(mismatch)?),
        ColumnType::Real => Cell::Float4(value.as_f64().ok_or_else(mismatch)? as f32),
        ColumnType::Text => Cell::Text(value.as_str().ok_or_else(mismatch)?.to_owned()),
        ColumnType::Boolean => Cell::Bool(value.as_bool().ok_or_else(mismatch)?),
        ColumnType::Jsonb => Cell::Json(value.clone()),
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

/// An integer, or an integral float such as `3.0` that some APIs emit; `3.5` is not one.
fn integer(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        let float = value.as_f64()?;
        (float.fract() == 0.0 && float.abs() < 9.0e15).then_some(float as i64)
    })
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

    fn problem(record: Value) -> String {
        map_record(&source(), 3, &record).unwrap_err().to_string()
    }

    #[test]
    fn maps_every_type_in_column_order() {
        let record = json!({
            "id": 7, "userId": 2.0, "title": "t", "body": "b", "score": 1.5, "small": -3,
            "active": true, "meta": {"k": [1]}, "seen_at": "2026-11-24T01:02:03+01:00",
            "day": "2026-11-24", "address": {"city": "Gwenborough"}, "extra": "ignored"
        });
        let cells = map_record(&source(), 0, &record).unwrap();
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
            &json!({"id": 1, "userId": 1, "title": "", "body": "", "score": null}),
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
}
