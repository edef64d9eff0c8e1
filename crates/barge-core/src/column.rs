//! One typed column of a source's table: its PostgreSQL type, where its value comes from (a JSON
//! field of the record, or the batch itself for lineage) and which opt-in conversion, if any, the
//! value goes through. Every shape a column accepts is declared here, so that a surprising value
//! is a record error rather than a guess.

use std::fmt;

use chrono::format::{Fixed, Item, StrftimeItems};
use serde::{Deserialize, Serialize};

/// One typed column of a source's table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    /// Column name in PostgreSQL.
    pub name: String,
    /// PostgreSQL type the JSON value must fit.
    #[serde(rename = "type")]
    pub column_type: ColumnType,
    /// Top-level JSON field to read, or an RFC 6901 JSON pointer when it starts with `/`
    /// (`/address/city`). Defaults to the column name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Whether a missing field or JSON `null` is allowed (stored as SQL `NULL`).
    #[serde(default)]
    pub nullable: bool,
    /// For an array column, whether a `null` element is allowed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nullable_elements: bool,
    /// An opt-in conversion from a JSON form other than the type's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convert: Option<Convert>,
    /// A strftime-style format for time columns whose API does not send ISO 8601 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Takes the value from the batch instead of the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<Lineage>,
}

/// The PostgreSQL types a column may have. Each accepts one JSON shape of its own (see
/// [`ColumnType::expected_json`]); [`Column::convert`] and [`Column::format`] add others
/// explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum ColumnType {
    /// 64-bit integer from a JSON integer.
    Bigint,
    /// 32-bit integer from a JSON integer.
    Integer,
    /// 16-bit integer from a JSON integer.
    Smallint,
    /// 64-bit float from a JSON number.
    DoublePrecision,
    /// 32-bit float from a JSON number.
    Real,
    /// Exact decimal from a JSON number's own text, optionally limited to a precision and scale.
    Numeric(Option<NumericLimits>),
    /// Text from a JSON string.
    Text,
    /// Boolean from a JSON `true`/`false`.
    Boolean,
    /// Any JSON value but `null` (which, as for every type, counts as missing), as `jsonb`.
    Jsonb,
    /// Timestamp with time zone from an RFC 3339 JSON string.
    Timestamptz,
    /// Timestamp without time zone from an ISO 8601 string without offset.
    Timestamp,
    /// Calendar date from a `YYYY-MM-DD` JSON string.
    Date,
    /// Time of day without time zone from an `HH:MM:SS[.ffffff]` JSON string.
    Time,
    /// UUID from its textual forms.
    Uuid,
    /// Bytes from standard base64 text.
    Bytea,
    /// An array of one scalar type, from a JSON array.
    Array(Element),
}

/// The scalar types an array column may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element {
    /// `text[]`.
    Text,
    /// `bigint[]`.
    Bigint,
    /// `integer[]`.
    Integer,
    /// `double precision[]`.
    DoublePrecision,
    /// `numeric[]`, optionally with limits.
    Numeric(Option<NumericLimits>),
    /// `boolean[]`.
    Boolean,
    /// `uuid[]`.
    Uuid,
    /// `timestamptz[]`.
    Timestamptz,
}

/// `numeric(precision, scale)`: at most `precision` significant digits, `scale` of them after
/// the decimal point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumericLimits {
    /// Total digits, 1 to 1000.
    pub precision: u16,
    /// Digits after the point, 0 to `precision`.
    pub scale: u16,
}

/// Opt-in conversions from a JSON form other than the column type's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Convert {
    /// A number column also takes a JSON string holding a JSON number (`"19.99"`).
    String,
    /// A timestamp column takes a JSON number of seconds since the Unix epoch.
    EpochSeconds,
    /// A timestamp column takes a JSON number of milliseconds since the Unix epoch.
    EpochMilliseconds,
}

/// What a lineage column records about the batch a row came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Lineage {
    /// The source's name (`text`).
    Source,
    /// When the importer fetched the batch (`timestamptz`).
    FetchedAt,
    /// The bucket of the archived object (`text`).
    Bucket,
    /// The key of the archived object (`text`).
    Key,
    /// The record's position in its object, from 0 (`bigint`).
    RecordIndex,
}

impl Lineage {
    /// The one type a lineage column has.
    pub fn column_type(self) -> ColumnType {
        match self {
            Self::Source | Self::Bucket | Self::Key => ColumnType::Text,
            Self::FetchedAt => ColumnType::Timestamptz,
            Self::RecordIndex => ColumnType::Bigint,
        }
    }
}

impl ColumnType {
    /// The type as written in PostgreSQL DDL, and in settings.
    pub fn sql_name(self) -> String {
        self.to_string()
    }

    /// The type's own JSON form, for error messages.
    pub fn expected_json(self) -> &'static str {
        match self {
            Self::Bigint | Self::Integer | Self::Smallint => "an integer",
            Self::DoublePrecision | Self::Real => "a number",
            Self::Numeric(_) => "a decimal number",
            Self::Text => "a string",
            Self::Boolean => "true or false",
            Self::Jsonb => "any JSON value but null",
            Self::Timestamptz => "an RFC 3339 timestamp string with offset",
            Self::Timestamp => "a YYYY-MM-DDTHH:MM:SS timestamp string without offset",
            Self::Date => "a YYYY-MM-DD date string",
            Self::Time => "an HH:MM:SS time string",
            Self::Uuid => "a UUID string",
            Self::Bytea => "a base64 string",
            Self::Array(_) => "an array",
        }
    }

    /// The element type of an array column, or the column's own type.
    pub fn scalar(self) -> ColumnType {
        match self {
            Self::Array(element) => element.scalar(),
            other => other,
        }
    }

    /// Whether values are numbers (what `convert = "string"` applies to).
    pub fn is_number(self) -> bool {
        matches!(
            self.scalar(),
            Self::Bigint
                | Self::Integer
                | Self::Smallint
                | Self::DoublePrecision
                | Self::Real
                | Self::Numeric(_)
        )
    }

    /// The `numeric` limits of the column or its elements, if any.
    pub fn numeric_limits(self) -> Option<NumericLimits> {
        match self.scalar() {
            Self::Numeric(limits) => limits,
            _ => None,
        }
    }
}

impl Element {
    /// The element as a scalar column type.
    pub fn scalar(self) -> ColumnType {
        match self {
            Self::Text => ColumnType::Text,
            Self::Bigint => ColumnType::Bigint,
            Self::Integer => ColumnType::Integer,
            Self::DoublePrecision => ColumnType::DoublePrecision,
            Self::Numeric(limits) => ColumnType::Numeric(limits),
            Self::Boolean => ColumnType::Boolean,
            Self::Uuid => ColumnType::Uuid,
            Self::Timestamptz => ColumnType::Timestamptz,
        }
    }

    fn of(scalar: ColumnType) -> Option<Self> {
        Some(match scalar {
            ColumnType::Text => Self::Text,
            ColumnType::Bigint => Self::Bigint,
            ColumnType::Integer => Self::Integer,
            ColumnType::DoublePrecision => Self::DoublePrecision,
            ColumnType::Numeric(limits) => Self::Numeric(limits),
            ColumnType::Boolean => Self::Boolean,
            ColumnType::Uuid => Self::Uuid,
            ColumnType::Timestamptz => Self::Timestamptz,
            _ => return None,
        })
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Bigint => "bigint",
            Self::Integer => "integer",
            Self::Smallint => "smallint",
            Self::DoublePrecision => "double precision",
            Self::Real => "real",
            Self::Numeric(None) => "numeric",
            Self::Numeric(Some(NumericLimits { precision, scale })) => {
                return write!(f, "numeric({precision},{scale})");
            }
            Self::Text => "text",
            Self::Boolean => "boolean",
            Self::Jsonb => "jsonb",
            Self::Timestamptz => "timestamptz",
            Self::Timestamp => "timestamp",
            Self::Date => "date",
            Self::Time => "time",
            Self::Uuid => "uuid",
            Self::Bytea => "bytea",
            Self::Array(element) => return write!(f, "{}[]", element.scalar()),
        };
        f.write_str(name)
    }
}

impl From<ColumnType> for String {
    fn from(column_type: ColumnType) -> Self {
        column_type.to_string()
    }
}

impl TryFrom<String> for ColumnType {
    type Error = String;

    /// Reads a type as PostgreSQL spells it, case and spacing aside (`Numeric (12, 2)`,
    /// `int8`, `timestamp with time zone`, `text[]`).
    fn try_from(written: String) -> Result<Self, String> {
        let words: Vec<String> = written
            .split_whitespace()
            .map(str::to_ascii_lowercase)
            .collect();
        let normal = words
            .join(" ")
            .replace(" (", "(")
            .replace("( ", "(")
            .replace(" ,", ",")
            .replace(", ", ",")
            .replace(" )", ")")
            .replace(" [", "[")
            .replace("[ ", "[");
        if let Some(element) = normal.strip_suffix("[]") {
            let scalar = scalar_type(element).ok_or_else(|| unknown(&written))?;
            return Element::of(scalar).map(Self::Array).ok_or_else(|| {
                format!(
                    "type {written:?}: arrays of {scalar} are not supported (arrays of text, \
                     bigint, integer, double precision, numeric, boolean, uuid and timestamptz are)"
                )
            });
        }
        scalar_type(&normal).ok_or_else(|| unknown(&written))
    }
}

fn unknown(written: &str) -> String {
    format!(
        "unknown column type {written:?} (expected one of bigint, integer, smallint, double \
         precision, real, numeric, numeric(p,s), text, boolean, jsonb, timestamptz, timestamp, \
         date, time, uuid, bytea, or an array such as text[])"
    )
}

/// A scalar type from its lower-case, single-spaced name.
fn scalar_type(name: &str) -> Option<ColumnType> {
    Some(match name {
        "bigint" | "int8" => ColumnType::Bigint,
        "integer" | "int4" | "int" => ColumnType::Integer,
        "smallint" | "int2" => ColumnType::Smallint,
        "double precision" | "float8" => ColumnType::DoublePrecision,
        "real" | "float4" => ColumnType::Real,
        "numeric" | "decimal" => ColumnType::Numeric(None),
        "text" => ColumnType::Text,
        "boolean" | "bool" => ColumnType::Boolean,
        "jsonb" => ColumnType::Jsonb,
        "timestamptz" | "timestamp with time zone" => ColumnType::Timestamptz,
        "timestamp" | "timestamp without time zone" => ColumnType::Timestamp,
        "date" => ColumnType::Date,
        "time" | "time without time zone" => ColumnType::Time,
        "uuid" => ColumnType::Uuid,
        "bytea" => ColumnType::Bytea,
        _ => {
            let arguments = name
                .strip_prefix("numeric(")
                .or_else(|| name.strip_prefix("decimal("))?
                .strip_suffix(')')?;
            let (precision, scale) = arguments.split_once(',').unwrap_or((arguments, "0"));
            ColumnType::Numeric(Some(NumericLimits {
                precision: precision.parse().ok()?,
                scale: scale.parse().ok()?,
            }))
        }
    })
}

/// Whether a chrono format has an item parsing a UTC offset.
fn has_offset(format: &str) -> bool {
    StrftimeItems::new(format).any(|item| {
        matches!(
            item,
            Item::Fixed(
                Fixed::TimezoneOffset
                    | Fixed::TimezoneOffsetColon
                    | Fixed::TimezoneOffsetDoubleColon
                    | Fixed::TimezoneOffsetTripleColon
                    | Fixed::TimezoneOffsetColonZ
                    | Fixed::TimezoneOffsetZ
                    | Fixed::RFC2822
                    | Fixed::RFC3339
            )
        )
    })
}

impl Column {
    /// A column read from the JSON field of the same name, in the type's own form.
    pub fn new(name: &str, column_type: ColumnType) -> Self {
        Self {
            name: name.into(),
            column_type,
            field: None,
            nullable: false,
            nullable_elements: false,
            convert: None,
            format: None,
            lineage: None,
        }
    }

    /// The JSON field (or pointer) this column is read from.
    pub fn json_field(&self) -> &str {
        self.field.as_deref().unwrap_or(&self.name)
    }

    /// The JSON form a value of this column must have, for error messages.
    pub fn expected_form(&self) -> String {
        let scalar = self.column_type.scalar();
        let form = match (self.convert, &self.format) {
            (Some(Convert::String), _) => {
                format!("{}, or a string holding one", scalar.expected_json())
            }
            (Some(Convert::EpochSeconds), _) => "a number of seconds since 1970-01-01".into(),
            (Some(Convert::EpochMilliseconds), _) => {
                "a number of milliseconds since 1970-01-01".into()
            }
            (None, Some(format)) => format!("a string in the format {format:?}"),
            (None, None) => scalar.expected_json().into(),
        };
        match self.column_type {
            ColumnType::Array(_) => format!("an array of elements each {form}"),
            _ => form,
        }
    }

    /// Checks that the column's type, conversion and lineage fit together.
    pub fn validate(&self) -> Result<(), String> {
        let name = &self.name;
        let column_type = self.column_type;
        if let Some(NumericLimits { precision, scale }) = column_type.numeric_limits()
            && (!(1..=1000).contains(&precision) || scale > precision)
        {
            return Err(format!(
                "column {name:?}: type {column_type}: numeric precision must be 1 to 1000 and \
                 the scale 0 to the precision"
            ));
        }
        if self.nullable_elements && !matches!(column_type, ColumnType::Array(_)) {
            return Err(format!(
                "column {name:?}: nullable_elements applies to array types only, not {column_type}"
            ));
        }
        if let Some(lineage) = self.lineage {
            let lineage_name = serde_json::to_string(&lineage).expect("lineage serializes");
            if self.field.is_some() || self.convert.is_some() || self.format.is_some() {
                return Err(format!(
                    "column {name:?}: lineage = {lineage_name} takes its value from the batch, \
                     so field, convert and format do not apply"
                ));
            }
            if self.nullable {
                return Err(format!(
                    "column {name:?}: lineage = {lineage_name} is never null, so it cannot be \
                     nullable"
                ));
            }
            if column_type != lineage.column_type() {
                return Err(format!(
                    "column {name:?}: lineage = {lineage_name} needs type = \"{}\", not \
                     \"{column_type}\"",
                    lineage.column_type()
                ));
            }
        }
        let scalar = column_type.scalar();
        let is_time = matches!(
            scalar,
            ColumnType::Timestamptz | ColumnType::Timestamp | ColumnType::Date | ColumnType::Time
        );
        match (self.convert, &self.format) {
            (Some(_), Some(_)) => Err(format!(
                "column {name:?}: convert and format cannot both be set"
            )),
            (Some(Convert::String), None) if !column_type.is_number() => Err(format!(
                "column {name:?}: convert = \"string\" applies to number types, not {column_type}"
            )),
            (Some(Convert::EpochSeconds | Convert::EpochMilliseconds), None)
                if !matches!(scalar, ColumnType::Timestamptz | ColumnType::Timestamp) =>
            {
                Err(format!(
                    "column {name:?}: epoch conversions apply to timestamptz and timestamp, not \
                     {column_type}"
                ))
            }
            (None, Some(format)) if !is_time => Err(format!(
                "column {name:?}: format {format:?} applies to timestamptz, timestamp, date and \
                 time, not {column_type}"
            )),
            (None, Some(format))
                if StrftimeItems::new(format).any(|item| matches!(item, Item::Error)) =>
            {
                Err(format!(
                    "column {name:?}: format {format:?} is not a valid strftime format"
                ))
            }
            (None, Some(format)) if scalar != ColumnType::Timestamptz && has_offset(format) => {
                Err(format!(
                    "column {name:?}: format {format:?} reads a UTC offset, which a \
                     {column_type} would drop: declare the column timestamptz"
                ))
            }
            (None, Some(format)) if scalar == ColumnType::Timestamptz && !has_offset(format) => {
                Err(format!(
                    "column {name:?}: format {format:?} has no UTC offset (%z or %:z), so a \
                     timestamptz would have to guess one: add it, or declare the column \
                     timestamp"
                ))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(written: &str) -> Result<ColumnType, String> {
        ColumnType::try_from(written.to_owned())
    }

    #[test]
    fn types_parse_from_their_sql_names_and_print_canonically() {
        let cases = [
            ("bigint", "bigint"),
            ("int4", "integer"),
            ("INT", "integer"),
            ("double  precision", "double precision"),
            ("float4", "real"),
            ("bool", "boolean"),
            ("Numeric", "numeric"),
            ("numeric (12, 2)", "numeric(12,2)"),
            ("decimal(5)", "numeric(5,0)"),
            ("timestamp with time zone", "timestamptz"),
            ("timestamp", "timestamp"),
            ("time without time zone", "time"),
            ("uuid", "uuid"),
            ("bytea", "bytea"),
            ("text[]", "text[]"),
            ("numeric(10,2) []", "numeric(10,2)[]"),
            ("timestamptz[]", "timestamptz[]"),
        ];
        for (written, canonical) in cases {
            let parsed = parse(written).unwrap_or_else(|err| panic!("{written}: {err}"));
            assert_eq!(parsed.to_string(), canonical, "{written}");
            assert_eq!(parse(canonical).unwrap(), parsed, "{canonical} reads back");
        }
    }

    #[test]
    fn unknown_types_and_unsupported_arrays_are_named() {
        assert!(
            parse("varchar")
                .unwrap_err()
                .contains("unknown column type \"varchar\"")
        );
        assert!(
            parse("numeric(a,b)")
                .unwrap_err()
                .contains("unknown column type")
        );
        assert!(
            parse("jsonb[]")
                .unwrap_err()
                .contains("arrays of jsonb are not supported")
        );
        assert!(
            parse("text[][]")
                .unwrap_err()
                .contains("unknown column type")
        );
    }

    fn problem(column_type: &str, edit: impl FnOnce(&mut Column)) -> String {
        let mut column = Column::new("c", parse(column_type).unwrap());
        edit(&mut column);
        column.validate().unwrap_err()
    }

    #[test]
    fn conversions_lineage_and_limits_that_do_not_fit_are_refused() {
        assert!(problem("numeric(0,0)", |_| {}).contains("precision must be 1 to 1000"));
        assert!(problem("numeric(1001,0)", |_| {}).contains("precision must be 1 to 1000"));
        assert!(problem("numeric(2,3)", |_| {}).contains("scale 0 to the precision"));
        assert!(problem("text", |c| c.nullable_elements = true).contains("array types only"));
        assert!(
            problem("text", |c| c.convert = Some(Convert::String))
                .contains("applies to number types")
        );
        assert!(
            problem("date", |c| c.convert = Some(Convert::EpochSeconds))
                .contains("apply to timestamptz and timestamp")
        );
        assert!(problem("text", |c| c.format = Some("%Y".into())).contains("applies to"));
        assert!(
            problem("timestamp", |c| c.format = Some("%Q".into()))
                .contains("not a valid strftime format")
        );
        assert!(
            problem("timestamptz", |c| c.format = Some("%d/%m/%Y %H:%M".into()))
                .contains("has no UTC offset")
        );
        assert!(
            problem("timestamp", |c| c.format =
                Some("%Y-%m-%d %H:%M:%S %z".into()))
            .contains("reads a UTC offset, which a timestamp would drop")
        );
        assert!(
            problem("timestamptz", |c| {
                c.format = Some("%d/%m/%Y %H:%M %z".into());
                c.convert = Some(Convert::EpochSeconds);
            })
            .contains("cannot both be set")
        );
        assert!(
            problem("bigint", |c| c.lineage = Some(Lineage::Key))
                .contains("lineage = \"key\" needs type = \"text\", not \"bigint\"")
        );
        assert!(
            problem("text", |c| {
                c.lineage = Some(Lineage::Key);
                c.field = Some("k".into());
            })
            .contains("field, convert and format do not apply")
        );
        assert!(
            problem("bigint", |c| {
                c.lineage = Some(Lineage::RecordIndex);
                c.nullable = true;
            })
            .contains("cannot be nullable")
        );
    }

    #[test]
    fn fitting_declarations_are_accepted() {
        let fits = |column_type: &str, edit: fn(&mut Column)| {
            let mut column = Column::new("c", parse(column_type).unwrap());
            edit(&mut column);
            column.validate().unwrap();
        };
        fits("numeric(1000,1000)", |_| {});
        fits("numeric[]", |c| c.convert = Some(Convert::String));
        fits("timestamp", |c| {
            c.convert = Some(Convert::EpochMilliseconds)
        });
        fits("timestamptz", |c| {
            c.format = Some("%d/%m/%Y %H:%M:%S%.f %:z".into())
        });
        fits("time", |c| c.format = Some("%I:%M %p".into()));
        fits("text[]", |c| c.nullable_elements = true);
        fits("timestamptz", |c| c.lineage = Some(Lineage::FetchedAt));
        fits("bigint", |c| c.lineage = Some(Lineage::RecordIndex));
    }
}
