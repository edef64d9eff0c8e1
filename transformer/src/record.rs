//! Mapping one JSON record onto a source's typed columns. Each JSON value must already have the
//! shape the column type expects: a surprising value is an error naming the field, never a guess,
//! and a value is never altered to fit (no rounding, no stripped characters, no wrapping).

use std::error::Error;

use std::borrow::Cow;

use barge_core::{Column, ColumnType, Source, json_kind};
use bytes::BytesMut;
use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use serde_json::Value;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::decode::{Field, Plan};

/// One typed value ready for binary COPY; text borrows from the record's JSON text when it can.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
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
    Text(Cow<'a, str>),
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
        ColumnType::Text => Type::TEXT,
        ColumnType::Boolean => Type::BOOL,
        ColumnType::Jsonb => Type::JSONB,
        ColumnType::Timestamptz => Type::TIMESTAMPTZ,
        ColumnType::Date => Type::DATE,
    }
}

/// Maps records of one source onto its columns, in declaration order.
#[derive(Debug)]
pub struct RecordMapper<'s> {
    source: &'s Source,
    plan: Plan,
}

impl<'s> RecordMapper<'s> {
    /// A mapper for `source`'s columns.
    pub fn new(source: &'s Source) -> Self {
        Self {
            source,
            plan: Plan::new(source),
        }
    }

    /// Decodes record `index` (its JSON text) and maps it onto the columns.
    pub fn map<'t>(&self, index: u64, text: &'t str) -> Result<Vec<Cell<'t>>, RecordError> {
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
            let field = decoded.take(&self.plan, column_index);
            let cell = map_field(column, field).map_err(|problem| RecordError {
                index,
                at: FieldRef {
                    field: column.json_field().to_owned(),
                    column: column.name.clone(),
                },
                problem,
            })?;
            cells.push(cell);
        }
        Ok(cells)
    }
}

fn map_field<'t>(column: &Column, field: Option<Field<'t>>) -> Result<Cell<'t>, String> {
    let field = match field {
        None | Some(Field::Null) if column.nullable => return Ok(Cell::Null),
        None => return Err("missing, and the column is not nullable".into()),
        Some(Field::Null) => return Err("null, and the column is not nullable".into()),
        Some(field) => field,
    };
    let expected = column.column_type.expected_json();
    let mismatch = |field: &Field<'_>| format!("expected {expected}, found {}", describe(field));
    let number = |field: &Field<'t>| match field {
        Field::Number(text) => Ok(text.clone()),
        other => Err(mismatch(other)),
    };
    let string = |field: Field<'t>| match field {
        Field::String(text) => Ok(text),
        other => Err(mismatch(&other)),
    };
    let out_of_range = |text: &str| {
        format!(
            "{} is out of range for {}",
            shorten(text),
            column.column_type.sql_name()
        )
    };
    let exact_integer = |field: &Field<'t>| {
        let text = number(field)?;
        match integer(&text) {
            Integer::Exact(wide) => Ok((wide, text)),
            Integer::NotOne => Err(mismatch(field)),
            Integer::OutOfRange => Err(out_of_range(&text)),
        }
    };
    Ok(match column.column_type {
        ColumnType::Bigint => Cell::Int8(exact_integer(&field)?.0),
        ColumnType::Integer => {
            let (wide, text) = exact_integer(&field)?;
            Cell::Int4(i32::try_from(wide).map_err(|_| out_of_range(&text))?)
        }
        ColumnType::Smallint => {
            let (wide, text) = exact_integer(&field)?;
            Cell::Int2(i16::try_from(wide).map_err(|_| out_of_range(&text))?)
        }
        ColumnType::DoublePrecision => Cell::Float8(double(&number(&field)?)?),
        ColumnType::Real => Cell::Float4(real(&number(&field)?)?),
        ColumnType::Text => {
            let text = string(field)?;
            if text.contains('\0') {
                return Err(NUL_PROBLEM.into());
            }
            Cell::Text(text)
        }
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
            let described = describe(&field);
            let text = string(field)?;
            let parsed = DateTime::parse_from_rfc3339(&text)
                .map_err(|_| format!("expected {expected}, found {described}"))?;
            if parsed.nanosecond() % 1_000 != 0 {
                return Err(format!(
                    "{described} has digits beyond microseconds, which PostgreSQL would drop"
                ));
            }
            // RFC 3339 has years 0000 to 9999, all within PostgreSQL's range.
            Cell::Timestamp(parsed.with_timezone(&Utc))
        }
        ColumnType::Date => {
            let described = describe(&field);
            let text = string(field)?;
            let date = NaiveDate::parse_from_str(&text, "%Y-%m-%d")
                .map_err(|_| format!("expected {expected}, found {described}"))?;
            if date.year() < EARLIEST_YEAR {
                return Err(format!(
                    "{described} is before 4713 BC, PostgreSQL's earliest"
                ));
            }
            Cell::Date(date)
        }
    })
}

/// A number as `double precision`: any finite number (a decimal fraction is approximated, as
/// `double precision` always does), but an integer only when `f64` holds it exactly, and
/// nothing that would overflow to infinity or underflow to zero.
fn double(text: &str) -> Result<f64, String> {
    let float: f64 = text
        .parse()
        .map_err(|_| format!("{text} is not a number PostgreSQL reads"))?;
    if !float.is_finite() || (float == 0.0 && has_nonzero_digit(text)) {
        return Err(format!(
            "{} is out of range for double precision",
            shorten(text)
        ));
    }
    let integer_literal = !text.contains(['.', 'e', 'E']);
    if integer_literal && text.parse::<i128>().ok() != Some(float as i128) {
        return Err(format!(
            "{} cannot be stored exactly in double precision (integers beyond 2^53 lose \
             digits); declare the column bigint",
            shorten(text)
        ));
    }
    Ok(float)
}

/// A number as `real`: only a value that survives the trip through `f32` (its nearest `f32`
/// reads back as the same number), so `16777217` or `1e39` are errors, not `16777216` or
/// infinity.
fn real(text: &str) -> Result<f32, String> {
    let single: Option<f32> = text.parse().ok();
    let same = single
        .filter(|s| s.is_finite())
        .is_some_and(|s| s.to_string().parse::<f64>().ok() == text.parse::<f64>().ok());
    match single {
        Some(single) if same => Ok(single),
        _ => Err(format!(
            "{} cannot be stored exactly in real; declare the column double precision",
            shorten(text)
        )),
    }
}

/// Whether a number's mantissa (the part before any exponent) has a non-zero digit.
fn has_nonzero_digit(text: &str) -> bool {
    text.split(['e', 'E'])
        .next()
        .is_some_and(|mantissa| mantissa.chars().any(|c| ('1'..='9').contains(&c)))
}

/// 4713 BC in chrono's astronomical years: PostgreSQL's dates start there.
const EARLIEST_YEAR: i32 = -4712;

/// PostgreSQL cannot store U+0000 in `text` or `jsonb`; it would refuse the whole batch.
const NUL_PROBLEM: &str = "contains U+0000, which PostgreSQL cannot store";

/// What PostgreSQL's `jsonb` would refuse anywhere in `value`: U+0000 in a string or key, or a
/// number beyond `numeric`.
fn jsonb_problem(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => text.contains('\0').then(|| NUL_PROBLEM.to_owned()),
        Value::Number(number) => {
            let text = number.to_string();
            (!numeric_fits(&text)).then(|| {
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

/// What a JSON value is as an integer.
enum Integer {
    /// An integer, also when written with a zero fraction or an exponent (`3.0`, `-2e3`).
    Exact(i64),
    /// Not an integer at all (`3.5`, `1e-400`, a string, …).
    NotOne,
    /// Beyond what `bigint` holds.
    OutOfRange,
}

/// Decided from the number's decimal text, never through `f64`, which would round
/// `1.0000000000000001` to `1`.
fn integer(text: &str) -> Integer {
    let decimal = match Decimal::parse(text) {
        Ok(decimal) => decimal,
        Err(ExponentBeyondI64 { negative: true }) => return Integer::NotOne,
        Err(ExponentBeyondI64 { negative: false }) => return Integer::OutOfRange,
    };
    if decimal.digits.is_empty() {
        return Integer::Exact(0);
    }
    let digits = &decimal.digits;
    let integer_digits = if decimal.shift >= 0 {
        // i64 has 19 digits; more is out of range before any arithmetic.
        if digits.len() as i64 + decimal.shift > 19 {
            return Integer::OutOfRange;
        }
        format!("{digits}{}", "0".repeat(decimal.shift as usize))
    } else {
        let cut = decimal.shift.unsigned_abs() as usize;
        if cut >= digits.len() {
            return Integer::NotOne;
        }
        let (integral, fractional) = digits.split_at(digits.len() - cut);
        if fractional.chars().any(|c| c != '0') {
            return Integer::NotOne;
        }
        if integral.len() > 19 {
            return Integer::OutOfRange;
        }
        integral.to_owned()
    };
    let magnitude: i128 = integer_digits.parse().expect("at most 19 decimal digits");
    let signed = if decimal.negative {
        -magnitude
    } else {
        magnitude
    };
    i64::try_from(signed).map_or(Integer::OutOfRange, Integer::Exact)
}

/// A JSON number's text as `digits × 10^shift`, taken apart without any rounding.
struct Decimal {
    negative: bool,
    /// Significant digits, leading zeros dropped (empty for zero).
    digits: String,
    shift: i64,
}

/// A number whose exponent does not fit an `i64`: astronomically large or small.
struct ExponentBeyondI64 {
    negative: bool,
}

impl Decimal {
    fn parse(text: &str) -> Result<Self, ExponentBeyondI64> {
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
            Some((mantissa, exponent)) => {
                let parsed = exponent.parse::<i64>().map_err(|_| ExponentBeyondI64 {
                    negative: exponent.starts_with('-'),
                })?;
                (mantissa, parsed)
            }
            None => (unsigned, 0),
        };
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits: String = whole.chars().chain(fraction.chars()).collect();
        Ok(Self {
            negative,
            digits: digits.trim_start_matches('0').to_owned(),
            shift: exponent.saturating_sub(fraction.len() as i64),
        })
    }
}

/// Whether PostgreSQL's `numeric` (what `jsonb` stores numbers as) holds `text`: at most 131072
/// digits before the point and 16383 after it as written (`0e-99999` overflows too; checked
/// against PostgreSQL 15).
fn numeric_fits(text: &str) -> bool {
    Decimal::parse(text).is_ok_and(|decimal| {
        let before_point = decimal.digits.len() as i64 + decimal.shift;
        -decimal.shift <= 16_383 && (decimal.digits.is_empty() || before_point <= 131_072)
    })
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
fn shorten(text: &str) -> String {
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

    fn raw(record: &Value) -> String {
        record.to_string()
    }

    /// Maps with a fresh mapper; the cells own their text, so they outlive `text`.
    fn map_record(
        source: &Source,
        index: u64,
        text: &str,
    ) -> Result<Vec<Cell<'static>>, RecordError> {
        let cells = RecordMapper::new(source).map(index, text)?;
        Ok(cells
            .into_iter()
            .map(|cell| match cell {
                Cell::Null => Cell::Null,
                Cell::Int8(v) => Cell::Int8(v),
                Cell::Int4(v) => Cell::Int4(v),
                Cell::Int2(v) => Cell::Int2(v),
                Cell::Float8(v) => Cell::Float8(v),
                Cell::Float4(v) => Cell::Float4(v),
                Cell::Text(v) => Cell::Text(Cow::Owned(v.into_owned())),
                Cell::Bool(v) => Cell::Bool(v),
                Cell::Json(v) => Cell::Json(v),
                Cell::Timestamp(v) => Cell::Timestamp(v),
                Cell::Date(v) => Cell::Date(v),
            })
            .collect())
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
        for too_big in ["1e19", "1e400", "-9.3e18", "1e99999999999999999999"] {
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
