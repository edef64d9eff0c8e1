//! What a sample says about each field: every value is observed, then [`Observed::decide`]
//! picks the narrowest column type that takes every sampled value as it is (the transformer
//! never alters a value to fit, so a guess too narrow would reject records).
//!
//! Numbers: integers that fit → `integer` / `bigint` (always `bigint` for a field named like an
//! id, since ids outgrow a sample), wider integers and decimals → `numeric` (exact; never
//! `double precision`, which would change `0.1`). Strings that all parse → `uuid`,
//! `timestamptz` (RFC 3339 with an offset), `timestamp` (no offset), `date`, `time`; numbers
//! sent partly as strings → the number type with `convert = "string"`. Arrays of one scalar
//! type → `T[]`. Objects and anything mixed → `jsonb`.

use std::collections::HashSet;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use super::json::Json;

/// How wide a JSON integer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Width {
    /// Fits `integer` (int4).
    I32,
    /// Fits `bigint` (int8).
    I64,
    /// Only `numeric` holds it.
    Wider,
}

/// What the numbers of a field (sent as JSON numbers or as strings) were like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Numbers {
    /// Whether every one was an integer (no fraction, no exponent).
    integers: bool,
    /// The widest integer.
    width: Width,
    /// The least and greatest integer, while every one fits `bigint`: epoch times show here.
    range: Option<(i64, i64)>,
}

impl Numbers {
    /// The shape of one number's `text`.
    fn of(text: &str) -> Self {
        let integers = !text.contains(['.', 'e', 'E']);
        let value = integers.then(|| text.parse::<i64>().ok()).flatten();
        let width = match value {
            Some(value) if i32::try_from(value).is_ok() => Width::I32,
            Some(_) => Width::I64,
            None => Width::Wider,
        };
        Self {
            integers,
            width,
            range: value.map(|value| (value, value)),
        }
    }

    /// Both shapes together.
    fn join(self, other: Self) -> Self {
        Self {
            integers: self.integers && other.integers,
            width: self.width.max(other.width),
            range: self
                .range
                .zip(other.range)
                .map(|((low, high), (other_low, other_high))| {
                    (low.min(other_low), high.max(other_high))
                }),
        }
    }

    /// The narrowest exact type: `bigint` for ids whatever their sampled width.
    fn column_type(self, id_like: bool) -> &'static str {
        match (self.integers, self.width) {
            (false, _) | (true, Width::Wider) => "numeric",
            (true, _) if id_like => "bigint",
            (true, Width::I32) => "integer",
            (true, Width::I64) => "bigint",
        }
    }
}

/// Which typed forms every string of a field had so far.
#[derive(Debug, Clone, Copy)]
struct Strings {
    uuid: bool,
    timestamptz: bool,
    timestamp: bool,
    date: bool,
    time: bool,
    /// The numbers, while every string held a JSON number's text.
    numbers: Option<Numbers>,
}

/// 4713 BC, PostgreSQL's earliest date, in chrono's astronomical years: an earlier value would
/// be rejected by the transformer.
const POSTGRES_EARLIEST_YEAR: i32 = -4712;

impl Strings {
    /// The forms `text` has.
    fn of(text: &str) -> Self {
        Self {
            uuid: text.len() == 36 && uuid::Uuid::try_parse(text).is_ok(),
            timestamptz: text.as_bytes().get(10) == Some(&b'T')
                && DateTime::parse_from_rfc3339(text).is_ok_and(|time| no_leap(time.time()))
                && fraction_digits(text) <= 6,
            timestamp: ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
                .iter()
                .any(|format| {
                    NaiveDateTime::parse_from_str(text, format).is_ok_and(|time| {
                        no_leap(time.time()) && time.year() >= POSTGRES_EARLIEST_YEAR
                    })
                })
                && fraction_digits(text) <= 6,
            date: text.len() == 10
                && NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .is_ok_and(|date| date.year() >= POSTGRES_EARLIEST_YEAR),
            time: text.len() >= 8
                && NaiveTime::parse_from_str(text, "%H:%M:%S%.f").is_ok_and(no_leap)
                && fraction_digits(text) <= 6,
            numbers: is_number_text(text).then(|| Numbers::of(text)),
        }
    }

    /// The forms both had.
    fn join(self, other: Self) -> Self {
        Self {
            uuid: self.uuid && other.uuid,
            timestamptz: self.timestamptz && other.timestamptz,
            timestamp: self.timestamp && other.timestamp,
            date: self.date && other.date,
            time: self.time && other.time,
            numbers: self
                .numbers
                .zip(other.numbers)
                .map(|(one, other)| one.join(other)),
        }
    }

    /// The type every string fits, `text` when none is narrower.
    fn column_type(self) -> &'static str {
        if self.uuid {
            "uuid"
        } else if self.timestamptz {
            "timestamptz"
        } else if self.timestamp {
            "timestamp"
        } else if self.date {
            "date"
        } else if self.time {
            "time"
        } else {
            "text"
        }
    }
}

/// Whether `time` is not a leap second (`23:59:60`), which chrono reads and the transformer
/// rejects.
fn no_leap(time: NaiveTime) -> bool {
    time.nanosecond() < 1_000_000_000
}

/// Digits after the decimal point of the seconds of a time or timestamp (PostgreSQL keeps six).
fn fraction_digits(text: &str) -> usize {
    text.split_once('.').map_or(0, |(_, rest)| {
        rest.bytes().take_while(u8::is_ascii_digit).count()
    })
}

/// Whether `text` is a JSON number's text, as `convert = "string"` takes it.
/// A key value as the column it is proposed for stores it: `1`, `1.0` and `"1"` (with
/// `convert = "string"`) are one number, UUIDs differing in case one UUID; other strings are
/// themselves (marked apart from numbers).
fn identity(value: &Json) -> String {
    match value {
        Json::Number(text) => canonical_number(text),
        Json::String(text) => match uuid::Uuid::try_parse(text) {
            Ok(uuid) => uuid.to_string(),
            Err(_) if is_number_text(text) => canonical_number(text),
            Err(_) => format!("\"{text}"),
        },
        other => other.text(),
    }
}

/// A JSON number's value, the same text however it is written.
fn canonical_number(text: &str) -> String {
    barge_core::decimal::Decimal::parse(text).map_or_else(|_| text.to_owned(), |d| d.canonical())
}

fn is_number_text(text: &str) -> bool {
    text.parse::<serde_json::Number>().is_ok() && text.trim() == text
}

/// Types a column may hold an array of.
const ARRAY_ELEMENTS: [&str; 8] = [
    "text",
    "bigint",
    "integer",
    "double precision",
    "numeric",
    "boolean",
    "uuid",
    "timestamptz",
];

/// How long an example may be in a comment.
const EXAMPLE_CHARS: usize = 40;

/// Everything seen of one field across the sample.
#[derive(Debug, Default)]
pub struct Observed {
    /// Values other than `null`.
    pub present: u64,
    /// `null`s.
    pub nulls: u64,
    booleans: u64,
    /// JSON numbers (not strings).
    numbers: Option<Numbers>,
    number_count: u64,
    strings: Option<Strings>,
    string_count: u64,
    /// The elements of every array, observed as one field.
    elements: Option<Box<Observed>>,
    array_count: u64,
    /// Objects.
    pub objects: u64,
    /// The first value other than `null`, as compact JSON.
    example: Option<String>,
    /// Each scalar value's text, while none repeated: kept only for fields named like an id.
    distinct: Option<HashSet<String>>,
    /// Whether a scalar value repeated (or a value was not a scalar).
    repeated: bool,
}

/// A column as proposed for a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// The column type, as written in the settings.
    pub column_type: String,
    /// `convert = …`, when values need an opt-in conversion.
    pub convert: Option<&'static str>,
    /// `nullable_elements = true`: an array held a `null`.
    pub nullable_elements: bool,
    /// What the user should know or may want to change.
    pub hints: Vec<String>,
}

impl Proposal {
    fn plain(column_type: &str) -> Self {
        Self {
            column_type: column_type.to_owned(),
            convert: None,
            nullable_elements: false,
            hints: Vec::new(),
        }
    }
}

impl Observed {
    /// An empty observation; `id_like` keeps the values to tell whether they are unique.
    pub fn new(id_like: bool) -> Self {
        Self {
            distinct: id_like.then(HashSet::new),
            ..Self::default()
        }
    }

    /// Takes in one value of the field.
    pub fn observe(&mut self, value: &Json) {
        if *value == Json::Null {
            self.nulls += 1;
            return;
        }
        self.present += 1;
        if self.example.is_none() {
            self.example = Some(truncate(&value.text()));
        }
        match value {
            Json::Null => {}
            Json::Bool(_) => self.booleans += 1,
            Json::Number(text) => {
                let shape = Numbers::of(text);
                self.numbers = Some(self.numbers.map_or(shape, |seen| seen.join(shape)));
                self.number_count += 1;
            }
            Json::String(text) => {
                let shape = Strings::of(text);
                self.strings = Some(self.strings.map_or(shape, |seen| seen.join(shape)));
                self.string_count += 1;
            }
            Json::Array(items) => {
                self.array_count += 1;
                let elements = self.elements.get_or_insert_with(Box::default);
                for item in items {
                    elements.observe(item);
                }
            }
            Json::Object(_) => self.objects += 1,
        }
        if let Some(distinct) = &mut self.distinct {
            let scalar = matches!(value, Json::Number(_) | Json::String(_));
            if !scalar || !distinct.insert(identity(value)) {
                self.repeated = true;
                self.distinct = None;
            }
        }
    }

    /// Whether every value was an object (and there was one): a field `--flatten` descends into.
    pub fn only_objects(&self) -> bool {
        self.objects > 0 && self.objects == self.present
    }

    /// Whether the field could be a primary key: named like an id, in every one of `records`
    /// records, never `null`, never repeated.
    pub fn unique_in(&self, records: u64) -> bool {
        self.distinct.is_some() && !self.repeated && self.present == records
    }

    /// What was seen, for the column's comment: `records` records were sampled.
    pub fn summary(&self, records: u64) -> String {
        let missing = records.saturating_sub(self.present + self.nulls);
        let mut text = format!("{} of {records} records", self.present);
        match (self.nulls, missing) {
            (0, 0) => {}
            (nulls, 0) => text.push_str(&format!(", {nulls} null")),
            (0, missing) => text.push_str(&format!(", {missing} missing")),
            (nulls, missing) => text.push_str(&format!(", {nulls} null, {missing} missing")),
        }
        if let Some(example) = &self.example {
            text.push_str(&format!("; e.g. {example}"));
        }
        text
    }

    /// The narrowest column that takes every value seen; `name` is the field's own name (for
    /// id-like and time-like hints).
    pub fn decide(&self, name: &str) -> Proposal {
        let id_like = is_id_like(name);
        let kinds = [
            self.booleans,
            self.number_count,
            self.string_count,
            self.array_count,
            self.objects,
        ];
        let kinds_seen = kinds.iter().filter(|count| **count > 0).count();
        if kinds_seen == 0 {
            let mut proposal = Proposal::plain("text");
            proposal
                .hints
                .push("only null or missing in the sample: the type is a guess".into());
            return proposal;
        }
        match (self.numbers, self.strings) {
            (Some(numbers), Some(strings)) if kinds_seen == 2 => {
                if let Some(in_strings) = strings.numbers {
                    let mut proposal =
                        Proposal::plain(numbers.join(in_strings).column_type(id_like));
                    proposal.convert = Some("string");
                    proposal.hints.push(format!(
                        "{} numbers, {} strings holding numbers",
                        self.number_count, self.string_count
                    ));
                    return proposal;
                }
            }
            _ if kinds_seen > 1 => {}
            (Some(numbers), None) => {
                let mut proposal = Proposal::plain(numbers.column_type(id_like));
                proposal.hints.extend(epoch_hint(numbers, name));
                return proposal;
            }
            (None, Some(strings)) => {
                let mut proposal = Proposal::plain(strings.column_type());
                if let (Some(numbers), "text") = (strings.numbers, strings.column_type()) {
                    proposal.hints.push(format!(
                        "all strings look like numbers: consider convert = \"string\" with type {}",
                        numbers.column_type(id_like)
                    ));
                }
                return proposal;
            }
            _ => {}
        }
        if kinds_seen == 1 && self.booleans > 0 {
            return Proposal::plain("boolean");
        }
        if kinds_seen == 1
            && let Some(elements) = &self.elements
        {
            return array_of(elements, name);
        }
        let mut proposal = Proposal::plain("jsonb");
        if kinds_seen > 1 {
            let names = ["booleans", "numbers", "strings", "arrays", "objects"];
            let mixed: Vec<String> = kinds
                .iter()
                .zip(names)
                .filter(|(count, _)| **count > 0)
                .map(|(count, name)| format!("{count} {name}"))
                .collect();
            proposal
                .hints
                .push(format!("mixed values ({}): kept as JSON", mixed.join(", ")));
        }
        proposal
    }
}

/// The array column for a field whose values were all arrays with these `elements`.
fn array_of(elements: &Observed, name: &str) -> Proposal {
    if elements.present == 0 && elements.nulls == 0 {
        let mut proposal = Proposal::plain("jsonb");
        proposal
            .hints
            .push("every sampled array was empty: the element type is unknown".into());
        return proposal;
    }
    // `ids` holds ids, `created_times` times: the element's name, for its hints and id-ness.
    let element = elements.decide(name.strip_suffix('s').unwrap_or(name));
    let scalar = elements.array_count == 0 && elements.objects == 0;
    if !scalar || !ARRAY_ELEMENTS.contains(&element.column_type.as_str()) {
        let mut proposal = Proposal::plain("jsonb");
        if scalar && ["date", "time", "timestamp"].contains(&element.column_type.as_str()) {
            proposal = Proposal::plain("text[]");
            proposal.hints.push(format!(
                "the elements look like {}, which has no array column type",
                element.column_type
            ));
        }
        proposal.hints.extend(element.hints);
        return proposal;
    }
    Proposal {
        column_type: format!("{}[]", element.column_type),
        convert: element.convert,
        nullable_elements: elements.nulls > 0,
        hints: element.hints,
    }
}

/// A hint when integers look like Unix epoch times: milliseconds from their range alone
/// (2001 to 2286), seconds only when the name says time too (too many counts fall in that
/// range).
fn epoch_hint(numbers: Numbers, name: &str) -> Option<String> {
    let (low, high) = numbers.range.filter(|_| numbers.integers)?;
    let within = |from: i64, to: i64| from <= low && high < to;
    let unit = if within(1_000_000_000_000, 10_000_000_000_000) {
        "milliseconds"
    } else if within(1_000_000_000, 10_000_000_000) && is_time_like(name) {
        "seconds"
    } else {
        return None;
    };
    Some(format!(
        "integers look like epoch {unit}: consider convert = \"epoch_{unit}\" with type timestamptz"
    ))
}

/// Whether a field's name says it holds a time.
fn is_time_like(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "_at", "time", "date", "_ts", "created", "updated", "_ms", "epoch",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// Whether a field's name says it is an identifier: `id`, `*_id`, `*Id`, `*ID`.
pub fn is_id_like(name: &str) -> bool {
    name.eq_ignore_ascii_case("id")
        || name.to_ascii_lowercase().ends_with("_id")
        || name.ends_with("Id")
        || (name.ends_with("ID") && name.len() > 2)
}

/// `text` cut to [`EXAMPLE_CHARS`] characters, with `…` when cut.
fn truncate(text: &str) -> String {
    match text.char_indices().nth(EXAMPLE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The proposal for a field named `name` holding these JSON values (`null` included).
    fn propose(name: &str, values: &[&str]) -> Proposal {
        let mut observed = Observed::new(is_id_like(name));
        for value in values {
            observed.observe(&Json::parse(serde_json::from_str(value).unwrap()).unwrap());
        }
        observed.decide(name)
    }

    /// The type and conversion proposed.
    fn typed(name: &str, values: &[&str]) -> (String, Option<&'static str>) {
        let proposal = propose(name, values);
        (proposal.column_type, proposal.convert)
    }

    fn plain(column_type: &str) -> (String, Option<&'static str>) {
        (column_type.to_owned(), None)
    }

    #[test]
    fn integers_take_the_narrowest_type_and_ids_take_bigint() {
        assert_eq!(
            typed("count", &["1", "-2147483648", "2147483647"]),
            plain("integer")
        );
        assert_eq!(typed("count", &["1", "2147483648"]), plain("bigint"));
        assert_eq!(typed("count", &["-9223372036854775808"]), plain("bigint"));
        assert_eq!(typed("count", &["9223372036854775808"]), plain("numeric"));
        for id in ["id", "user_id", "userId", "ID", "orderID"] {
            assert_eq!(typed(id, &["1", "2"]), plain("bigint"), "{id}");
        }
        assert_eq!(typed("valid", &["1"]), plain("integer"), "not an id");
    }

    #[test]
    fn decimals_are_numeric_and_numbers_in_strings_need_convert() {
        assert_eq!(typed("amount", &["19.99", "1", "1e3"]), plain("numeric"));
        assert_eq!(
            typed("amount", &["3.0"]),
            plain("numeric"),
            "3.0 is written as a decimal"
        );
        assert_eq!(
            typed("amount", &["19.99", "\"123456789012345678.90\"", "5"]),
            ("numeric".into(), Some("string"))
        );
        assert_eq!(
            typed("n", &["1", "\"2\""]),
            ("integer".into(), Some("string"))
        );
        assert_eq!(typed("n", &["1", "\"two\""]), plain("jsonb"), "mixed");
        assert_eq!(
            typed("n", &["1", "\" 2\""]),
            plain("jsonb"),
            "not a number's text"
        );
        let strings = propose("zip", &["\"10115\"", "\"69001\""]);
        assert_eq!(strings.column_type, "text", "strings alone stay text");
        assert_eq!(
            strings.hints,
            ["all strings look like numbers: consider convert = \"string\" with type integer"]
        );
    }

    #[test]
    fn strings_that_all_parse_take_their_type() {
        let uuid = "\"3f2a6c1e-8b7d-4e2f-9a1b-0c5d7e9f1a2b\"";
        assert_eq!(
            typed("key", &[uuid, "\"3F2A6C1E-8B7D-4E2F-9A1B-0C5D7E9F1A2B\""]),
            plain("uuid")
        );
        assert_eq!(
            typed("key", &[uuid, "\"3f2a6c1e8b7d4e2f9a1b0c5d7e9f1a2b\""]),
            plain("text")
        );
        assert_eq!(
            typed(
                "at",
                &[
                    "\"2026-03-01T10:00:00+02:00\"",
                    "\"2026-03-01T10:00:00.123456Z\"",
                    "\"2026-03-01T10:00:00-05:30\""
                ]
            ),
            plain("timestamptz")
        );
        assert_eq!(
            typed("at", &["\"2026-03-01T10:00:00.1234567Z\""]),
            plain("text"),
            "PostgreSQL keeps microseconds"
        );
        assert_eq!(
            typed(
                "at",
                &["\"2026-03-01T10:00:00Z\"", "\"2026-03-01T10:00:00\""]
            ),
            plain("text")
        );
        assert_eq!(
            typed(
                "at",
                &["\"2026-03-01T10:00:00\"", "\"2026-03-01 10:00:00.5\""]
            ),
            plain("timestamp")
        );
        assert_eq!(
            typed("on", &["\"2026-03-01\"", "\"1999-12-31\""]),
            plain("date")
        );
        assert_eq!(typed("on", &["\"2026-3-1\""]), plain("text"));
        assert_eq!(
            typed("slot", &["\"08:15:00\"", "\"23:59:59.5\""]),
            plain("time")
        );
        assert_eq!(
            typed("slot", &["\"23:59:60\""]),
            plain("text"),
            "a leap second"
        );
        assert_eq!(
            typed("at", &["\"2026-12-31T23:59:60Z\""]),
            plain("text"),
            "a leap second"
        );
        assert_eq!(typed("flag", &["true", "false"]), plain("boolean"));
        assert_eq!(typed("name", &["\"x\"", "\"\""]), plain("text"));
    }

    #[test]
    fn arrays_of_one_scalar_type_are_arrays_and_the_rest_jsonb() {
        assert_eq!(
            typed("tags", &["[\"a\"]", "[]", "[\"b\", \"c\"]"]),
            plain("text[]")
        );
        let nulls = propose("quantities", &["[1, 2]", "[3, null]"]);
        assert_eq!(
            (nulls.column_type.as_str(), nulls.nullable_elements),
            ("integer[]", true)
        );
        assert_eq!(
            typed("prices", &["[1.5, \"2.25\"]"]),
            ("numeric[]".into(), Some("string"))
        );
        assert_eq!(typed("ids", &["[1]", "[2]"]), plain("bigint[]"), "ids → id");
        assert_eq!(typed("days", &["[\"2026-01-01\"]"]), plain("text[]"));
        assert_eq!(typed("items", &["[{\"a\": 1}]"]), plain("jsonb"));
        assert_eq!(typed("matrix", &["[[1]]"]), plain("jsonb"));
        assert_eq!(typed("tags", &["[]", "[]"]), plain("jsonb"));
        assert_eq!(typed("mixed", &["[1, \"a\"]"]), plain("jsonb"));
        assert_eq!(typed("customer", &["{\"id\": 1}"]), plain("jsonb"));
        assert_eq!(typed("x", &["{\"id\": 1}", "[1]"]), plain("jsonb"));
        assert_eq!(typed("x", &["null"]), plain("text"));
    }

    #[test]
    fn comments_say_what_was_seen_and_hint_at_conversions() {
        let mut observed = Observed::new(false);
        for value in ["1772000000000", "null", "1772003600123"] {
            observed.observe(&Json::parse(serde_json::from_str(value).unwrap()).unwrap());
        }
        assert_eq!(
            observed.summary(4),
            "2 of 4 records, 1 null, 1 missing; e.g. 1772000000000"
        );
        assert_eq!(
            observed.decide("updated").hints,
            [
                "integers look like epoch milliseconds: consider convert = \"epoch_milliseconds\" with type timestamptz"
            ]
        );
        assert!(propose("count", &["1772000000"]).hints.is_empty());
        assert_eq!(propose("created", &["1772000000"]).hints.len(), 1);
        let long = format!("\"{}\"", "é".repeat(60));
        let mut observed = Observed::new(false);
        observed.observe(&Json::String("é".repeat(60)));
        assert_eq!(
            observed.summary(1),
            format!(
                "1 of 1 records; e.g. {}…",
                &long[..long.char_indices().nth(40).unwrap().0]
            )
        );
    }

    #[test]
    fn only_unique_never_null_id_fields_can_be_keys() {
        let observe = |name: &str, values: &[Json]| {
            let mut observed = Observed::new(is_id_like(name));
            values.iter().for_each(|value| observed.observe(value));
            observed.unique_in(values.len() as u64)
        };
        let number = |n: &str| Json::Number(n.into());
        assert!(observe("id", &[number("1"), number("2")]));
        assert!(!observe("id", &[number("1"), Json::String("1".into())]));
        assert!(!observe(
            "id",
            &[number("1.0"), number("1.00"), number("10e-1")]
        ));
        assert!(observe("id", &[number("1"), number("10"), number("0.1")]));
        assert!(!observe(
            "id",
            &[
                Json::String("67e55044-10b1-426f-9247-bb680e5fe0c8".into()),
                Json::String("67E55044-10B1-426F-9247-BB680E5FE0C8".into())
            ]
        ));
        assert!(!observe("id", &[number("1"), number("1")]));
        assert!(!observe("id", &[number("1"), Json::Null]));
        assert!(
            !observe("number", &[number("1"), number("2")]),
            "not named like an id"
        );
        assert!(!observe("id", &[Json::Object(vec![])]));
    }
}
