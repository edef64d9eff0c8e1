//! Dates and times from their JSON forms: ISO 8601 text by default, Unix epoch numbers or a
//! declared strftime format when the column opts in. A value PostgreSQL would change (digits
//! beyond microseconds, a leap second) or refuse (before 4713 BC) is an error, and a timestamp
//! without time zone never takes a value carrying an offset: shifting it would be a guess.

use barge_core::Convert;
use barge_core::decimal::Decimal;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};

use crate::numbers::{Scaled, scaled_integer};

/// 4713 BC in chrono's astronomical years: PostgreSQL's dates and timestamps start there.
const EARLIEST_YEAR: i32 = -4712;

/// Why a value is no time of its column.
#[derive(Debug, PartialEq)]
pub enum TimeError {
    /// Not in the column's form at all; chrono's reason, when there is one worth reading.
    Form(Option<String>),
    /// In the form, but a value PostgreSQL would change or refuse.
    Value(&'static str),
}

impl From<chrono::ParseError> for TimeError {
    fn from(err: chrono::ParseError) -> Self {
        Self::Form(Some(err.to_string()))
    }
}

/// How a time column reads its value.
#[derive(Debug, Clone, Copy)]
pub enum TimeForm<'c> {
    /// The type's ISO 8601 form.
    Iso,
    /// A number of seconds or milliseconds since the Unix epoch.
    Epoch(Convert),
    /// A declared strftime format.
    Format(&'c str),
}

/// A `timestamptz` from a string (ISO or formatted) or an epoch number (`text` is its JSON
/// text, already known to be a number).
pub fn timestamptz(text: &str, form: TimeForm<'_>) -> Result<DateTime<Utc>, TimeError> {
    let instant = match form {
        TimeForm::Iso => DateTime::parse_from_rfc3339(text)
            .map_err(|_| TimeError::Form(None))?
            .with_timezone(&Utc),
        TimeForm::Epoch(unit) => epoch(text, unit)?,
        TimeForm::Format(format) => DateTime::parse_from_str(text, format)?.with_timezone(&Utc),
    };
    check_timestamp(&instant.naive_utc())?;
    Ok(instant)
}

/// A `timestamp` (without time zone) from a string without offset (ISO or formatted) or an
/// epoch number.
pub fn timestamp(text: &str, form: TimeForm<'_>) -> Result<NaiveDateTime, TimeError> {
    let naive = match form {
        TimeForm::Iso => {
            if DateTime::parse_from_rfc3339(text).is_ok() {
                return Err(TimeError::Value(
                    "carries a UTC offset, which a timestamp without time zone would drop: \
                     declare the column timestamptz",
                ));
            }
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))
                .map_err(|_| TimeError::Form(None))?
        }
        TimeForm::Epoch(unit) => epoch(text, unit)?.naive_utc(),
        TimeForm::Format(format) => NaiveDateTime::parse_from_str(text, format)?,
    };
    check_timestamp(&naive)?;
    Ok(naive)
}

/// A `date` from `YYYY-MM-DD` or a declared format.
pub fn date(text: &str, form: TimeForm<'_>) -> Result<NaiveDate, TimeError> {
    let format = match form {
        TimeForm::Format(format) => format,
        _ => "%Y-%m-%d",
    };
    let date = NaiveDate::parse_from_str(text, format)?;
    if date.year() < EARLIEST_YEAR {
        return Err(BEFORE_POSTGRES);
    }
    Ok(date)
}

/// A `time` from `HH:MM:SS[.ffffff]` or a declared format.
pub fn time(text: &str, form: TimeForm<'_>) -> Result<NaiveTime, TimeError> {
    let format = match form {
        TimeForm::Format(format) => format,
        _ => "%H:%M:%S%.f",
    };
    let time = NaiveTime::parse_from_str(text, format)?;
    check_fraction(time.nanosecond())?;
    Ok(time)
}

/// An instant from a number of epoch seconds or milliseconds, exact to the microsecond.
fn epoch(text: &str, unit: Convert) -> Result<DateTime<Utc>, TimeError> {
    let power = match unit {
        Convert::EpochMilliseconds => 3,
        _ => 6,
    };
    let decimal = Decimal::parse(text).map_err(|_| OUT_OF_RANGE)?;
    match scaled_integer(&decimal, power) {
        Scaled::Exact(micros) => i64::try_from(micros)
            .ok()
            .and_then(DateTime::from_timestamp_micros)
            .ok_or(OUT_OF_RANGE),
        Scaled::Fraction => Err(BEYOND_MICROSECONDS),
        Scaled::OutOfRange => Err(OUT_OF_RANGE),
    }
}

const OUT_OF_RANGE: TimeError = TimeError::Value("is out of range for a timestamp");
const BEFORE_POSTGRES: TimeError = TimeError::Value("is before 4713 BC, PostgreSQL's earliest");
const BEYOND_MICROSECONDS: TimeError =
    TimeError::Value("has digits beyond microseconds, which PostgreSQL would drop");

fn check_timestamp(naive: &NaiveDateTime) -> Result<(), TimeError> {
    check_fraction(naive.nanosecond())?;
    if naive.year() < EARLIEST_YEAR {
        return Err(BEFORE_POSTGRES);
    }
    Ok(())
}

/// chrono keeps nanoseconds and represents a leap second as more than 10^9 of them.
fn check_fraction(nanosecond: u32) -> Result<(), TimeError> {
    if nanosecond >= 1_000_000_000 {
        return Err(TimeError::Value(
            "is a leap second, which PostgreSQL would move to the next minute",
        ));
    }
    if !nanosecond.is_multiple_of(1_000) {
        return Err(BEYOND_MICROSECONDS);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_numbers_are_exact_to_the_microsecond() {
        let seconds = |text| timestamptz(text, TimeForm::Epoch(Convert::EpochSeconds));
        let millis = |text| timestamptz(text, TimeForm::Epoch(Convert::EpochMilliseconds));
        assert_eq!(
            seconds("1700000000").unwrap().to_rfc3339(),
            "2023-11-14T22:13:20+00:00"
        );
        assert_eq!(
            seconds("1700000000.123456").unwrap().timestamp_micros(),
            1_700_000_000_123_456
        );
        assert_eq!(
            millis("1700000000123.5").unwrap().timestamp_micros(),
            1_700_000_000_123_500
        );
        assert_eq!(
            seconds("-1").unwrap().to_rfc3339(),
            "1969-12-31T23:59:59+00:00"
        );
        assert_eq!(seconds("1.0000001").unwrap_err(), BEYOND_MICROSECONDS);
        assert_eq!(millis("1e30").unwrap_err(), OUT_OF_RANGE);
        assert_eq!(seconds("-1e12").unwrap_err(), BEFORE_POSTGRES);
    }

    #[test]
    fn a_timestamp_without_time_zone_refuses_an_offset() {
        let iso = |text| timestamp(text, TimeForm::Iso);
        assert_eq!(
            iso("2024-02-29T23:59:59.5").unwrap().to_string(),
            "2024-02-29 23:59:59.500"
        );
        assert!(iso("2024-02-29 08:00:00").is_ok());
        for offset in ["2024-02-29T08:00:00Z", "2024-02-29T08:00:00+02:00"] {
            assert!(matches!(iso(offset), Err(TimeError::Value(p)) if p.contains("UTC offset")));
        }
        assert_eq!(iso("2024-02-30T08:00:00"), Err(TimeError::Form(None)));
    }

    #[test]
    fn formats_leap_seconds_and_fractions() {
        let formatted = timestamptz(
            "25/12/2024 10:30 +0100",
            TimeForm::Format("%d/%m/%Y %H:%M %z"),
        );
        assert_eq!(formatted.unwrap().to_rfc3339(), "2024-12-25T09:30:00+00:00");
        assert!(matches!(
            timestamp("12/25/2024", TimeForm::Format("%d/%m/%Y")),
            Err(TimeError::Form(Some(_)))
        ));
        assert!(
            matches!(time("23:59:60", TimeForm::Iso), Err(TimeError::Value(p)) if p.contains("leap second"))
        );
        assert_eq!(
            time("12:00:00.0000001", TimeForm::Iso),
            Err(BEYOND_MICROSECONDS)
        );
        assert_eq!(
            time("07:05:00.25", TimeForm::Iso).unwrap().to_string(),
            "07:05:00.250"
        );
        assert_eq!(
            date("31.12.1999", TimeForm::Format("%d.%m.%Y"))
                .unwrap()
                .to_string(),
            "1999-12-31"
        );
        assert_eq!(date("-5000-01-01", TimeForm::Iso), Err(BEFORE_POSTGRES));
    }
}
