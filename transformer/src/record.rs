//! Mapping one JSON record onto a source's typed columns. Each JSON value must already have the
//! shape the column type expects, or the one its declared conversion takes: a surprising value
//! is an error naming the field, never a guess, and a value is never altered to fit (no
//! rounding, no stripped characters, no shifted time zones).

use std::borrow::Cow;
use std::error::Error;

use barge_core::{Column, ColumnType, Convert, Element, Lineage, Source, json_kind};
use base64::Engine;
use bytes::BytesMut;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde_json::Value;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::decode::{Field, Plan};
use crate::numbers::{self, Integer, Numeric};
use crate::times::{self, TimeError, TimeForm};

/// One typed value ready for binary COPY; text borrows from the record's JSON text when it can.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    /// SQL `NULL` (nullable columns and elements only).
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
    /// `numeric`.
    Numeric(Numeric),
    /// `text`.
    Text(Cow<'a, str>),
    /// `boolean`.
    Bool(bool),
    /// `jsonb`.
    Json(Value),
    /// `timestamptz`.
    Timestamp(DateTime<Utc>),
    /// `timestamp` (without time zone).
    NaiveTimestamp(NaiveDateTime),
    /// `date`.
    Date(NaiveDate),
    /// `time` (without time zone).
    Time(NaiveTime),
    /// `uuid`.
    Uuid(uuid::Uuid),
    /// `bytea`.
    Bytes(Vec<u8>),
    /// An array of one element type.
    Array(Vec<Cell<'a>>),
}

/// Why a record does not fit the declared columns; the caller adds the object key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("record {index}{at}: {problem}")]
pub struct RecordError {
    /// Position of the record in the object, from 0.
    pub index: u64,
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
        ColumnType::Numeric(_) => Type::NUMERIC,
        ColumnType::Text => Type::TEXT,
        ColumnType::Boolean => Type::BOOL,
        ColumnType::Jsonb => Type::JSONB,
        ColumnType::Timestamptz => Type::TIMESTAMPTZ,
        ColumnType::Timestamp => Type::TIMESTAMP,
        ColumnType::Date => Type::DATE,
        ColumnType::Time => Type::TIME,
        ColumnType::Uuid => Type::UUID,
        ColumnType::Bytea => Type::BYTEA,
        ColumnType::Array(element) => match element {
            Element::Text => Type::TEXT_ARRAY,
            Element::Bigint => Type::INT8_ARRAY,
            Element::Integer => Type::INT4_ARRAY,
            Element::DoublePrecision => Type::FLOAT8_ARRAY,
            Element::Numeric(_) => Type::NUMERIC_ARRAY,
            Element::Boolean => Type::BOOL_ARRAY,
            Element::Uuid => Type::UUID_ARRAY,
            Element::Timestamptz => Type::TIMESTAMPTZ_ARRAY,
        },
    }
}

/// Where an object's records come from, for lineage columns.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The object's bucket.
    pub bucket: String,
    /// The object's key.
    pub key: String,
    /// When the batch was fetched.
    pub fetched_at: DateTime<Utc>,
}

/// Maps records of one source (from one object) onto its columns, in declaration order.
#[derive(Debug)]
pub struct RecordMapper<'s> {
    source: &'s Source,
    origin: Origin,
    plan: Plan,
}

impl<'s> RecordMapper<'s> {
    /// A mapper for `source`'s columns, of records from `origin`.
    pub fn new(source: &'s Source, origin: Origin) -> Self {
        Self {
            source,
            origin,
            plan: Plan::new(source),
        }
    }

    /// Decodes record `index` (its JSON text) and maps it onto the columns.
    pub fn map<'t>(&'t self, index: u64, text: &'t str) -> Result<Vec<Cell<'t>>, RecordError> {
        let whole = |problem| RecordError {
            index,
            at: FieldRef::default(),
            problem,
        };
        let kind = barge_core::batch::raw_kind(text);
        if kind != "an object" {
            return Err(whole(if kind == "not JSON" {
                "cannot be decoded: not JSON".to_owned()
            } else {
                format!("expected a JSON object, found {kind}")
            }));
        }
        let mut decoded = self
            .plan
            .decode(text)
            .map_err(|err| whole(format!("cannot be decoded: {err}")))?;
        let mut cells = Vec::with_capacity(self.source.columns.len());
        for (column_index, column) in self.source.columns.iter().enumerate() {
            let cell = match column.lineage {
                Some(lineage) => self.lineage(lineage, index),
                None => {
                    let field = decoded.take(&self.plan, column_index);
                    map_field(column, field).map_err(|problem| RecordError {
                        index,
                        at: FieldRef {
                            field: column.json_field().to_owned(),
                            column: column.name.clone(),
                        },
                        problem,
                    })?
                }
            };
            cells.push(cell);
        }
        Ok(cells)
    }

    fn lineage(&self, lineage: Lineage, index: u64) -> Cell<'_> {
        match lineage {
            Lineage::Source => Cell::Text(Cow::Borrowed(&self.source.name)),
            Lineage::FetchedAt => Cell::Timestamp(self.origin.fetched_at),
            Lineage::Bucket => Cell::Text(Cow::Borrowed(&self.origin.bucket)),
            Lineage::Key => Cell::Text(Cow::Borrowed(&self.origin.key)),
            // An object holding more than 2^63 records cannot be read in this universe.
            Lineage::RecordIndex => Cell::Int8(i64::try_from(index).unwrap_or(i64::MAX)),
        }
    }
}

fn map_field<'t>(column: &Column, field: Option<Field<'t>>) -> Result<Cell<'t>, String> {
    let field = match field {
        None | Some(Field::Null) if column.nullable => return Ok(Cell::Null),
        None => return Err("missing, and the column is not nullable".into()),
        Some(Field::Null) => return Err("null, and the column is not nullable".into()),
        Some(field) => field,
    };
    let ColumnType::Array(element) = column.column_type else {
        return map_scalar(column, column.column_type, field);
    };
    let Field::Compound(Value::Array(values)) = field else {
        return Err(format!(
            "expected {}, found {}",
            column.expected_form(),
            describe(&field)
        ));
    };
    values
        .iter()
        .enumerate()
        .map(|(position, value)| match Field::from_value(value) {
            Field::Null if column.nullable_elements => Ok(Cell::Null),
            Field::Null => Err(format!(
                "element {position} is null, and the column does not declare nullable_elements"
            )),
            element_field => map_scalar(column, element.scalar(), element_field)
                .map_err(|problem| format!("element {position}: {problem}")),
        })
        .collect::<Result<_, _>>()
        .map(Cell::Array)
}

/// Maps a non-null field onto `scalar`, the column's type or its element type.
fn map_scalar<'t>(
    column: &Column,
    scalar: ColumnType,
    field: Field<'t>,
) -> Result<Cell<'t>, String> {
    let mismatch = |field: &Field<'_>| {
        format!(
            "expected {}, found {}",
            column.expected_form(),
            describe(field)
        )
    };
    let out_of_range = |text: &str| format!("{} is out of range for {scalar}", shorten(text));
    // The value's text when it is a number, or, with `convert = "string"`, a string holding one.
    let number = |field: &Field<'t>| match field {
        Field::Number(text) => Ok(text.clone()),
        Field::String(text) if column.convert == Some(Convert::String) && is_json_number(text) => {
            Ok(text.clone())
        }
        other => Err(mismatch(other)),
    };
    let exact_integer = |field: &Field<'t>| {
        let text = number(field)?;
        match numbers::integer(&text) {
            Integer::Exact(wide) => Ok((wide, text)),
            Integer::NotOne => Err(mismatch(field)),
            Integer::OutOfRange => Err(out_of_range(&text)),
        }
    };
    let form = match (column.convert, column.format.as_deref()) {
        (Some(unit @ (Convert::EpochSeconds | Convert::EpochMilliseconds)), _) => {
            TimeForm::Epoch(unit)
        }
        (_, Some(format)) => TimeForm::Format(format),
        _ => TimeForm::Iso,
    };
    // The text a time column parses: a string, or a number for the epoch conversions.
    let time_text = |field: &Field<'t>| match (form, field) {
        (TimeForm::Epoch(_), Field::Number(text)) => Ok(text.clone()),
        (TimeForm::Iso | TimeForm::Format(_), Field::String(text)) => Ok(text.clone()),
        (_, other) => Err(mismatch(other)),
    };
    let time_error = |error: TimeError| match error {
        TimeError::Form(None) => mismatch(&field),
        TimeError::Form(Some(reason)) => format!("{} ({reason})", mismatch(&field)),
        TimeError::Value(problem) => format!("{} {problem}", describe(&field)),
    };
    Ok(match scalar {
        ColumnType::Bigint => Cell::Int8(exact_integer(&field)?.0),
        ColumnType::Integer => {
            let (wide, text) = exact_integer(&field)?;
            Cell::Int4(i32::try_from(wide).map_err(|_| out_of_range(&text))?)
        }
        ColumnType::Smallint => {
            let (wide, text) = exact_integer(&field)?;
            Cell::Int2(i16::try_from(wide).map_err(|_| out_of_range(&text))?)
        }
        ColumnType::DoublePrecision => Cell::Float8(numbers::double(&number(&field)?)?),
        ColumnType::Real => Cell::Float4(numbers::real(&number(&field)?)?),
        ColumnType::Numeric(limits) => Cell::Numeric(Numeric::parse(&number(&field)?, limits)?),
        ColumnType::Text => match field {
            Field::String(text) if text.contains('\0') => return Err(NUL_PROBLEM.into()),
            Field::String(text) => Cell::Text(text),
            other => return Err(mismatch(&other)),
        },
        ColumnType::Boolean => match field {
            Field::Bool(value) => Cell::Bool(value),
            other => return Err(mismatch(&other)),
        },
        ColumnType::Jsonb => {
            let value = field.into_value()?;
            if let Some(problem) = jsonb_problem(&value) {
                return Err(problem);
            }
            Cell::Json(value)
        }
        ColumnType::Timestamptz => {
            Cell::Timestamp(times::timestamptz(&time_text(&field)?, form).map_err(time_error)?)
        }
        ColumnType::Timestamp => {
            Cell::NaiveTimestamp(times::timestamp(&time_text(&field)?, form).map_err(time_error)?)
        }
        ColumnType::Date => Cell::Date(times::date(&time_text(&field)?, form).map_err(time_error)?),
        ColumnType::Time => Cell::Time(times::time(&time_text(&field)?, form).map_err(time_error)?),
        ColumnType::Uuid => match &field {
            Field::String(text) => Cell::Uuid(
                uuid::Uuid::try_parse(text)
                    .map_err(|_| format!("{} is not a UUID", describe(&field)))?,
            ),
            other => return Err(mismatch(other)),
        },
        ColumnType::Bytea => match &field {
            Field::String(text) => Cell::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(text.as_bytes())
                    .map_err(|err| format!("{} is not base64: {err}", describe(&field)))?,
            ),
            other => return Err(mismatch(other)),
        },
        ColumnType::Array(_) => unreachable!("arrays hold scalars"),
    })
}

/// Whether `text` is exactly a JSON number (no sign `+`, no spaces, no `NaN`), the only strings
/// `convert = "string"` takes.
fn is_json_number(text: &str) -> bool {
    // serde_json would skip surrounding whitespace; a number starts with `-` or a digit and ends
    // with a digit.
    text.starts_with(|c: char| c == '-' || c.is_ascii_digit())
        && text.ends_with(|c: char| c.is_ascii_digit())
        && serde_json::from_str::<serde_json::Number>(text).is_ok()
}

/// PostgreSQL cannot store U+0000 in `text` or `jsonb`; it would refuse the whole batch.
const NUL_PROBLEM: &str = "contains U+0000, which PostgreSQL cannot store";

/// What PostgreSQL's `jsonb` would refuse anywhere in `value`: U+0000 in a string or key, or a
/// number beyond `numeric`.
fn jsonb_problem(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => text.contains('\0').then(|| NUL_PROBLEM.to_owned()),
        Value::Number(number) => {
            let text = number.to_string();
            (!numbers::numeric_fits(&text)).then(|| {
                format!(
                    "{} is beyond what PostgreSQL's jsonb (numeric) holds",
                    shorten(&text)
                )
            })
        }
        Value::Array(values) => values.iter().find_map(jsonb_problem),
        Value::Object(map) => map.iter().find_map(|(key, value)| {
            if key.contains('\0') {
                Some(NUL_PROBLEM.to_owned())
            } else {
                jsonb_problem(value)
            }
        }),
        Value::Null | Value::Bool(_) => None,
    }
}

/// A field's kind and (shortened) JSON text, for errors.
fn describe(field: &Field<'_>) -> String {
    match field {
        Field::Null => "null".to_owned(),
        Field::Bool(value) => format!("a boolean {value}"),
        Field::Number(text) => format!("a number {}", shorten(text)),
        Field::String(text) => format!(
            "a string {}",
            shorten(&serde_json::to_string(text).expect("strings serialize"))
        ),
        Field::Compound(value) => format!("{} {}", json_kind(value), shorten(&value.to_string())),
    }
}

/// `text` cut to 40 characters: errors quote values, never whole (possibly huge) ones.
pub fn shorten(text: &str) -> String {
    if text.chars().count() > 40 {
        format!("{}…", text.chars().take(40).collect::<String>())
    } else {
        text.to_owned()
    }
}

impl ToSql for Cell<'_> {
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
            Cell::Numeric(v) => v.to_sql(ty, out),
            Cell::Text(v) => v.to_sql(ty, out),
            Cell::Bool(v) => v.to_sql(ty, out),
            Cell::Json(v) => v.to_sql(ty, out),
            Cell::Timestamp(v) => v.to_sql(ty, out),
            Cell::NaiveTimestamp(v) => v.to_sql(ty, out),
            Cell::Date(v) => v.to_sql(ty, out),
            Cell::Time(v) => v.to_sql(ty, out),
            Cell::Uuid(v) => v.to_sql(ty, out),
            Cell::Bytes(v) => v.to_sql(ty, out),
            // postgres-types encodes the array header and each element with the member type.
            Cell::Array(v) => v.to_sql(ty, out),
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
            nullable,
            ..Column::new(name, column_type)
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
            field: Some("/address/city".into()),
            nullable: true,
            ..Column::new("city", ColumnType::Text)
        });
        source
    }

    fn raw(record: &Value) -> String {
        record.to_string()
    }

    /// Maps with a fresh mapper; the cells own their text, so they outlive `text`.
    fn map_record(
        source: &Source,
        index: u64,
        text: &str,
    ) -> Result<Vec<Cell<'static>>, RecordError> {
        let mapper = RecordMapper::new(source, origin());
        let cells = mapper.map(index, text)?;
        Ok(cells.into_iter().map(owned).collect())
    }

    fn origin() -> Origin {
        Origin {
            bucket: "archive".into(),
            key: "raw/orders/a b.json".into(),
            fetched_at: "2026-11-25T10:00:00Z".parse().unwrap(),
        }
    }

    fn owned(cell: Cell<'_>) -> Cell<'static> {
        match cell {
            Cell::Text(v) => Cell::Text(Cow::Owned(v.into_owned())),
            Cell::Array(cells) => Cell::Array(cells.into_iter().map(owned).collect()),
            Cell::Null => Cell::Null,
            Cell::Int8(v) => Cell::Int8(v),
            Cell::Int4(v) => Cell::Int4(v),
            Cell::Int2(v) => Cell::Int2(v),
            Cell::Float8(v) => Cell::Float8(v),
            Cell::Float4(v) => Cell::Float4(v),
            Cell::Numeric(v) => Cell::Numeric(v),
            Cell::Bool(v) => Cell::Bool(v),
            Cell::Json(v) => Cell::Json(v),
            Cell::Timestamp(v) => Cell::Timestamp(v),
            Cell::NaiveTimestamp(v) => Cell::NaiveTimestamp(v),
            Cell::Date(v) => Cell::Date(v),
            Cell::Time(v) => Cell::Time(v),
            Cell::Uuid(v) => Cell::Uuid(v),
            Cell::Bytes(v) => Cell::Bytes(v),
        }
    }

    /// One column `c` of `column_type`, edited, mapping `value` (JSON text) in record 7.
    fn one(column_type: &str, edit: fn(&mut Column), value: &str) -> Result<Cell<'static>, String> {
        let mut source = Source::jsonplaceholder_posts();
        let mut column = Column::new("c", column_type.to_owned().try_into().unwrap());
        edit(&mut column);
        source.columns = vec![column];
        source.primary_key.clear();
        source.validate().unwrap();
        map_record(&source, 7, &format!(r#"{{"c":{value}}}"#))
            .map(|mut cells| cells.remove(0))
            .map_err(|err| err.to_string())
    }

    #[test]
    fn arrays_take_their_elements_and_nulls_only_where_declared() {
        let text = |s: &str| Cell::Text(Cow::Owned(s.into()));
        assert_eq!(
            one("text[]", |_| {}, r#"["a","b"]"#),
            Ok(Cell::Array(vec![text("a"), text("b")]))
        );
        assert_eq!(one("bigint[]", |_| {}, "[]"), Ok(Cell::Array(vec![])));
        assert_eq!(
            one("text[]", |_| {}, r#"["a",null]"#),
            Err(
                "record 7, field \"c\" (column \"c\"): element 1 is null, and the column \
                 does not declare nullable_elements"
                    .into()
            )
        );
        assert_eq!(
            one("text[]", |c| c.nullable_elements = true, r#"[null]"#),
            Ok(Cell::Array(vec![Cell::Null]))
        );
        assert_eq!(
            one("integer[]", |_| {}, "[1, 2.5]"),
            Err(
                "record 7, field \"c\" (column \"c\"): element 1: expected an array of \
                 elements each an integer, found a number 2.5"
                    .into()
            )
        );
        assert!(
            one("boolean[]", |_| {}, "true")
                .unwrap_err()
                .contains("found a boolean true")
        );
        assert!(
            one("uuid[]", |_| {}, "[[]]")
                .unwrap_err()
                .contains("element 0")
        );
    }

    #[test]
    fn numbers_sent_as_strings_convert_only_when_declared() {
        let string = |c: &mut Column| c.convert = Some(Convert::String);
        assert!(
            one("numeric", |_| {}, r#""19.99""#)
                .unwrap_err()
                .contains("expected a decimal number, found a string \"19.99\"")
        );
        assert_eq!(
            one("numeric(4,2)", string, r#""19.99""#),
            Ok(Cell::Numeric(Numeric::parse("19.99", None).unwrap()))
        );
        assert_eq!(one("bigint", string, r#""123""#), Ok(Cell::Int8(123)));
        assert!(
            one("numeric", string, "true")
                .unwrap_err()
                .contains("expected a decimal number, or a string holding one, found a boolean")
        );
        assert_eq!(one("bigint", string, "123"), Ok(Cell::Int8(123)));
        for not_numbers in [
            r#"" 1""#, r#""1 ""#, r#""+1""#, r#""0x1""#, r#""NaN""#, r#""""#,
        ] {
            assert!(
                one("bigint", string, not_numbers)
                    .unwrap_err()
                    .contains("expected an integer, or a string holding one"),
                "{not_numbers}"
            );
        }
        assert!(
            one("numeric(4,2)", string, r#""19.999""#)
                .unwrap_err()
                .contains("would be rounded")
        );
    }

    #[test]
    fn uuids_bytes_and_times_take_their_text_forms() {
        let uuid = uuid::Uuid::parse_str("67e55044-10b1-426f-9247-bb680e5fe0c8").unwrap();
        for form in [
            r#""67e55044-10b1-426f-9247-bb680e5fe0c8""#,
            r#""67E5504410B1426F9247BB680E5FE0C8""#,
            r#""{67e55044-10b1-426f-9247-bb680e5fe0c8}""#,
            r#""urn:uuid:67e55044-10b1-426f-9247-bb680e5fe0c8""#,
        ] {
            assert_eq!(one("uuid", |_| {}, form), Ok(Cell::Uuid(uuid)), "{form}");
        }
        assert!(
            one("uuid", |_| {}, r#""67e55044""#)
                .unwrap_err()
                .contains("is not a UUID")
        );
        assert_eq!(
            one("bytea", |_| {}, r#""AAH/""#),
            Ok(Cell::Bytes(vec![0, 1, 255]))
        );
        assert!(
            one("bytea", |_| {}, r#""AAH""#)
                .unwrap_err()
                .contains("is not base64")
        );
        assert!(
            one("timestamp", |_| {}, r#""2024-01-01T00:00:00+01:00""#)
                .unwrap_err()
                .contains("carries a UTC offset")
        );
        assert!(
            one(
                "timestamptz",
                |c| c.convert = Some(Convert::EpochMilliseconds),
                r#""1700000000000""#
            )
            .unwrap_err()
            .contains("expected a number of milliseconds since 1970-01-01, found a string")
        );
        assert_eq!(
            one(
                "timestamptz",
                |c| c.convert = Some(Convert::EpochMilliseconds),
                "1700000000000"
            ),
            Ok(Cell::Timestamp("2023-11-14T22:13:20Z".parse().unwrap()))
        );
        assert!(
            one(
                "date",
                |c| c.format = Some("%d/%m/%Y".into()),
                r#""2024-01-01""#
            )
            .unwrap_err()
            .contains(
                "expected a string in the format \"%d/%m/%Y\", found a string \"2024-01-01\" \
                     (input contains invalid characters)"
            )
        );
    }

    #[test]
    fn lineage_columns_take_the_batch_not_the_record() {
        let mut source = Source::jsonplaceholder_posts();
        let lineage = |name: &str, lineage: Lineage| Column {
            lineage: Some(lineage),
            ..Column::new(name, lineage.column_type())
        };
        source.columns = vec![
            Column::new("id", ColumnType::Bigint),
            lineage("source", Lineage::Source),
            lineage("fetched", Lineage::FetchedAt),
            lineage("bucket", Lineage::Bucket),
            lineage("key", Lineage::Key),
            lineage("index", Lineage::RecordIndex),
        ];
        source.validate().unwrap();
        // A record field named like a lineage column is not read.
        let cells = map_record(&source, 41, r#"{"id":5,"key":"not this","index":"x"}"#).unwrap();
        let text = |s: &str| Cell::Text(Cow::Owned(s.into()));
        assert_eq!(
            cells,
            [
                Cell::Int8(5),
                text("posts"),
                Cell::Timestamp(origin().fetched_at),
                text("archive"),
                text("raw/orders/a b.json"),
                Cell::Int8(41),
            ]
        );
    }

    fn problem(record: Value) -> String {
        map_record(&source(), 3, &raw(&record))
            .unwrap_err()
            .to_string()
    }

    fn problem_of_text(text: &str) -> String {
        map_record(&source(), 3, text).unwrap_err().to_string()
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
            .contains(
                "expected an RFC 3339 timestamp string with offset, found a string \"yesterday\""
            )
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
        assert_eq!(
            id("9007199254740993.0"),
            Ok(Cell::Int8(9_007_199_254_740_993))
        );
        assert_eq!(id("92233720368547758.07e2"), Ok(Cell::Int8(i64::MAX)));
        assert_eq!(id("-0.0"), Ok(Cell::Int8(0)));
        assert_eq!(id("1e2"), Ok(Cell::Int8(100)));
        assert_eq!(id("12300e-2"), Ok(Cell::Int8(123)));
        for not_integers in ["1.0000000000000001", "4.9999999999999999", "1e-400", "0.5"] {
            assert!(
                id(not_integers)
                    .unwrap_err()
                    .starts_with("expected an integer"),
                "{not_integers}"
            );
        }
        for too_big in [
            "1e19",
            "1e400",
            "-9.3e18",
            "1e99999999999999999999",
            "1e9223372036854775807",
        ] {
            assert!(
                id(too_big).unwrap_err().contains("out of range"),
                "{too_big}"
            );
        }
    }

    #[test]
    fn floats_are_exact_where_the_type_promises_it() {
        let column = |text: &str| {
            let record =
                format!(r#"{{"id":1,"userId":1,"title":"t","body":"b","score":{text},"small":1}}"#);
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
    fn what_postgres_would_change_or_refuse_is_a_record_error() {
        let field = |json: &str| {
            let record = format!(r#"{{"id":1,"userId":1,"title":"t","body":"b",{json}}}"#);
            map_record(&source(), 0, &record)
                .err()
                .map(|err| err.problem)
        };
        let seen = |problem: Option<String>, expected: &str| {
            assert!(
                problem.as_deref().is_some_and(|p| p.contains(expected)),
                "{problem:?}"
            );
        };
        seen(
            field(r#""seen_at":"2024-05-01T12:00:00.1234567Z""#),
            "beyond microseconds",
        );
        assert_eq!(field(r#""seen_at":"2024-05-01T12:00:00.123456000Z""#), None);
        seen(field(r#""day":"-5000-01-01""#), "before 4713 BC");
        seen(
            field(r#""meta":{"big":1e200000}"#),
            "beyond what PostgreSQL's jsonb",
        );
        seen(
            field(r#""meta":[1e-20000]"#),
            "beyond what PostgreSQL's jsonb",
        );
        seen(
            field(r#""meta":0e-99999"#),
            "beyond what PostgreSQL's jsonb",
        );
        seen(
            field(r#""meta":1e131072"#),
            "beyond what PostgreSQL's jsonb",
        );
        assert_eq!(
            field(r#""meta":{"ok":9.9e131071,"small":1e-16383,"zero":0e-16383}"#),
            None
        );
        let huge = format!(r#""small":{}"#, "9".repeat(5000));
        let problem = field(&huge).unwrap();
        assert!(problem.len() < 100, "values are quoted short: {problem}");
    }

    #[test]
    fn real_takes_only_what_survives_f32() {
        let mut real_source = source();
        real_source.columns[4].column_type = ColumnType::Real;
        let column = |text: &str| {
            let record = format!(r#"{{"id":1,"userId":1,"title":"t","body":"b","score":{text}}}"#);
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
                index in any::<u64>(),
            ) {
                match map_record(&source(), index, &raw(&record)) {
                    Ok(cells) => prop_assert_eq!(cells.len(), source().columns.len()),
                    Err(error) => prop_assert_eq!(error.index, index),
                }
            }

            #[test]
            fn strict_decoding_agrees_with_serde_json_where_keys_are_unique(value in json_value()) {
                prop_assert_eq!(crate::decode::decode_value(&raw(&value)).unwrap(), value);
            }

            #[test]
            fn a_batch_splits_into_exactly_its_records(records in prop::collection::vec(json_value(), 0..8)) {
                let bytes = serde_json::to_vec_pretty(&records).unwrap();
                let split = barge_core::split_records(&bytes, barge_core::RecordLayout::Array).unwrap();
                prop_assert_eq!(split.len(), records.len());
                for (raw, record) in split.iter().zip(&records) {
                    prop_assert_eq!(&crate::decode::decode_value(raw).unwrap(), record);
                }
            }

            #[test]
            fn every_bigint_loads_exactly(id in any::<i64>()) {
                let record = json!({"id": id, "userId": 1, "title": "t", "body": "b"});
                prop_assert_eq!(&map_record(&source(), 0, &raw(&record)).unwrap()[0], &Cell::Int8(id));
            }

            #[test]
            fn integral_floats_load_exactly_below_two_to_the_53(id in -9_007_199_254_740_991_i64..9_007_199_254_740_992) {
                let record = format!(r#"{{"id":{id}.0,"userId":1,"title":"t","body":"b"}}"#);
                prop_assert_eq!(&map_record(&source(), 0, &record).unwrap()[0], &Cell::Int8(id));
            }

            #[test]
            fn text_is_kept_exactly_or_refused_for_nul(title in any::<String>()) {
                let record = json!({"id": 1, "userId": 1, "title": title, "body": "b"});
                let mapped = map_record(&source(), 0, &raw(&record));
                if title.contains('\0') {
                    prop_assert!(mapped.unwrap_err().problem.contains("U+0000"));
                } else {
                    prop_assert_eq!(&mapped.unwrap()[2], &Cell::Text(title.into()));
                }
            }
        }
    }
}
