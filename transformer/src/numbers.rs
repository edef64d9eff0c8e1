//! Numbers taken from their JSON text, never through `f64` unless the column is a float: exact
//! integers, exact `numeric` values encoded in PostgreSQL's binary form, and floats only where
//! the float type holds the value as written.

use std::error::Error;

use barge_core::NumericLimits;
use barge_core::decimal::{Decimal, ExponentBeyondI64};
use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::record::shorten;

/// What a JSON value is as an integer.
pub enum Integer {
    /// An integer, also when written with a zero fraction or an exponent (`3.0`, `-2e3`).
    Exact(i64),
    /// Not an integer at all (`3.5`, `1e-400`, a string, …).
    NotOne,
    /// Beyond what `bigint` holds.
    OutOfRange,
}

/// Decided from the number's decimal text, never through `f64`, which would round
/// `1.0000000000000001` to `1`.
pub fn integer(text: &str) -> Integer {
    let decimal = match Decimal::parse(text) {
        Ok(decimal) => decimal,
        Err(ExponentBeyondI64 { negative: true }) => return Integer::NotOne,
        Err(ExponentBeyondI64 { negative: false }) => return Integer::OutOfRange,
    };
    match scaled_integer(&decimal, 0) {
        Scaled::Exact(value) => i64::try_from(value).map_or(Integer::OutOfRange, Integer::Exact),
        Scaled::Fraction => Integer::NotOne,
        Scaled::OutOfRange => Integer::OutOfRange,
    }
}

/// A decimal multiplied by `10^power`, as an integer.
pub enum Scaled {
    /// The product, exactly.
    Exact(i128),
    /// The product has a non-zero fraction.
    Fraction,
    /// Beyond 19 digits (more than any `i64`, micro-seconds since any year PostgreSQL holds).
    OutOfRange,
}

/// `decimal × 10^power` when it is an integer of at most 19 digits.
pub fn scaled_integer(decimal: &Decimal, power: i64) -> Scaled {
    if decimal.digits.is_empty() {
        return Scaled::Exact(0);
    }
    let digits = &decimal.digits;
    let shift = decimal.shift + power;
    let integer_digits = if shift >= 0 {
        // i64 has 19 digits; more is out of range before any arithmetic.
        if digits.len() as i64 + shift > 19 {
            return Scaled::OutOfRange;
        }
        format!("{digits}{}", "0".repeat(shift as usize))
    } else {
        let cut = shift.unsigned_abs() as usize;
        if cut >= digits.len() {
            return Scaled::Fraction;
        }
        let (integral, fractional) = digits.split_at(digits.len() - cut);
        if fractional.chars().any(|c| c != '0') {
            return Scaled::Fraction;
        }
        if integral.len() > 19 {
            return Scaled::OutOfRange;
        }
        integral.to_owned()
    };
    let magnitude: i128 = integer_digits.parse().expect("at most 19 decimal digits");
    Scaled::Exact(if decimal.negative {
        -magnitude
    } else {
        magnitude
    })
}

/// Whether PostgreSQL's `numeric` holds `decimal` as written: at most 131072 digits before the
/// point and 16383 after it (`0e-99999` overflows too; checked against PostgreSQL 15).
fn fits_unconstrained(decimal: &Decimal) -> bool {
    let before_point = decimal.digits.len() as i64 + decimal.shift;
    decimal.written_scale() <= MAX_DISPLAY_SCALE
        && (decimal.digits.is_empty() || before_point <= 131_072)
}

/// The most digits after the point an unconstrained `numeric` keeps.
const MAX_DISPLAY_SCALE: i64 = 16_383;

/// Whether `text`, a JSON number, fits PostgreSQL's unconstrained `numeric` (what `jsonb` stores
/// numbers as).
pub fn numeric_fits(text: &str) -> bool {
    Decimal::parse(text).is_ok_and(|decimal| fits_unconstrained(&decimal))
}

/// A number as `double precision`: any finite number (a decimal fraction is approximated, as
/// `double precision` always does), but an integer only when `f64` holds it exactly, and
/// nothing that would overflow to infinity or underflow to zero.
pub fn double(text: &str) -> Result<f64, String> {
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
pub fn real(text: &str) -> Result<f32, String> {
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

/// An exact decimal in PostgreSQL's binary `numeric` form: base-10000 digit groups, the weight
/// of the first group, the sign and the display scale.
#[derive(Debug, Clone, PartialEq)]
pub struct Numeric {
    groups: Vec<i16>,
    weight: i16,
    negative: bool,
    scale: u16,
}

impl Numeric {
    /// `text`, a JSON number, as a `numeric` within `limits` (if any). A value with more
    /// significant fractional digits than the scale, or more integer digits than the precision
    /// leaves, is an error: PostgreSQL would round the first and refuse the second. Trailing
    /// zeros beyond the scale change nothing and are accepted (`19.990` in `numeric(10,2)`).
    /// Negative zero is zero, as in PostgreSQL.
    pub fn parse(text: &str, limits: Option<NumericLimits>) -> Result<Self, String> {
        let beyond = || {
            format!(
                "{} is beyond what PostgreSQL's numeric holds",
                shorten(text)
            )
        };
        let decimal = Decimal::parse(text).map_err(|_| beyond())?;
        let scale = match limits {
            None if !fits_unconstrained(&decimal) => return Err(beyond()),
            None => decimal.written_scale(),
            Some(NumericLimits { precision, scale }) => {
                let (before, after) = decimal.significant_digits();
                let (precision, scale) = (i64::from(precision), i64::from(scale));
                if after > scale {
                    return Err(format!(
                        "{} has {after} digits after the point, numeric({precision},{scale}) \
                         keeps {scale}: it would be rounded",
                        shorten(text)
                    ));
                }
                if before > precision - scale {
                    return Err(format!(
                        "{} has {before} digits before the point, numeric({precision},{scale}) \
                         holds {}",
                        shorten(text),
                        precision - scale
                    ));
                }
                // Zeros written beyond the scale are not sent: PostgreSQL would round them away,
                // and refuses a display scale beyond 16383.
                decimal.written_scale().min(scale)
            }
        };
        Ok(Self::from_decimal(
            &decimal,
            u16::try_from(scale).expect("at most 16383 or the declared scale"),
        ))
    }

    /// Groups the digits by four around the decimal point. Each digit at power of ten `p` goes
    /// to group `floor(p / 4)` (group 0 holds 10^0 to 10^3) as `digit × 10^(p mod 4)`.
    fn from_decimal(decimal: &Decimal, scale: u16) -> Self {
        let digits = decimal.digits.as_bytes();
        if digits.is_empty() {
            return Self {
                groups: Vec::new(),
                weight: 0,
                negative: false,
                scale,
            };
        }
        let lowest_power = decimal.shift;
        let highest_power = lowest_power + digits.len() as i64 - 1;
        let top = highest_power.div_euclid(4);
        let bottom = lowest_power.div_euclid(4);
        let mut groups = vec![0i16; (top - bottom + 1) as usize];
        for (index, digit) in digits.iter().enumerate() {
            let power = highest_power - index as i64;
            let group = (top - power.div_euclid(4)) as usize;
            groups[group] += i16::from(digit - b'0') * 10i16.pow(power.rem_euclid(4) as u32);
        }
        while groups.last() == Some(&0) {
            groups.pop();
        }
        Self {
            groups,
            weight: i16::try_from(top).expect("at most 131072 digits before the point"),
            negative: decimal.negative,
            scale,
        }
    }
}

impl ToSql for Numeric {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        const POSITIVE: u16 = 0x0000;
        const NEGATIVE: u16 = 0x4000;
        // PostgreSQL reads the count unsigned: 131072 digits make 32768 groups.
        out.put_u16(u16::try_from(self.groups.len())?);
        out.put_i16(self.weight);
        out.put_u16(if self.negative { NEGATIVE } else { POSITIVE });
        out.put_u16(self.scale);
        for group in &self.groups {
            out.put_i16(*group);
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(text: &str) -> Numeric {
        Numeric::parse(text, None).unwrap()
    }

    fn limited(text: &str, precision: u16, scale: u16) -> Result<Numeric, String> {
        Numeric::parse(text, Some(NumericLimits { precision, scale }))
    }

    #[test]
    fn digits_group_by_four_around_the_point() {
        let groups = |text: &str| {
            let n = numeric(text);
            (n.groups, n.weight, n.negative, n.scale)
        };
        assert_eq!(groups("0"), (vec![], 0, false, 0));
        assert_eq!(groups("-0.00"), (vec![], 0, false, 2));
        assert_eq!(groups("19.99"), (vec![19, 9900], 0, false, 2));
        assert_eq!(groups("12345.6"), (vec![1, 2345, 6000], 1, false, 1));
        assert_eq!(groups("-1e-30"), (vec![100], -8, true, 30));
        assert_eq!(groups("1e8"), (vec![1], 2, false, 0));
        assert_eq!(groups("10000"), (vec![1], 1, false, 0));
        assert_eq!(groups("0.0001"), (vec![1], -1, false, 4));
        assert_eq!(groups("1.50"), (vec![1, 5000], 0, false, 2));
    }

    #[test]
    fn limits_refuse_what_postgres_would_round_or_overflow() {
        assert!(limited("19.99", 4, 2).is_ok());
        assert!(limited("-99.99", 4, 2).is_ok());
        assert!(limited("19.990", 4, 2).is_ok());
        assert!(limited("1999e-2", 4, 2).is_ok());
        assert!(limited("0.001", 4, 3).is_ok());
        assert!(
            limited("19.999", 4, 2)
                .unwrap_err()
                .contains("19.999 has 3 digits after the point, numeric(4,2) keeps 2")
        );
        assert!(
            limited("100", 4, 2)
                .unwrap_err()
                .contains("100 has 3 digits before the point, numeric(4,2) holds 2")
        );
        assert!(limited("1e2", 3, 0).is_ok());
        assert!(limited("1e3", 3, 0).is_err());
        assert!(limited("0.5", 1, 1).is_ok());
        assert!(limited("1", 1, 1).is_err());
        for zero in ["0.000", "-0.000", "0e5", "0e-99999"] {
            assert_eq!(
                limited(zero, 4, 2).unwrap().groups,
                Vec::<i16>::new(),
                "{zero}"
            );
        }
        let many_zeros = format!("1.{}", "0".repeat(70_000));
        assert_eq!(limited(&many_zeros, 4, 2).unwrap().scale, 2);
    }

    #[test]
    fn unconstrained_numeric_has_postgres_limits() {
        assert!(Numeric::parse("1e131071", None).is_ok());
        assert!(Numeric::parse("1e131072", None).is_err());
        assert!(Numeric::parse("1e-16383", None).is_ok());
        assert!(Numeric::parse("0e-16384", None).is_err());
        assert!(Numeric::parse("1e99999999999999999999", None).is_err());
        for huge in [
            "1e9223372036854775807",
            "-1e-9223372036854775808",
            "1e1000000001",
        ] {
            assert!(Numeric::parse(huge, None).is_err(), "{huge}");
            assert!(limited(huge, 10, 2).is_err(), "{huge}");
            assert!(!numeric_fits(huge), "{huge}");
            assert!(
                matches!(integer(huge), Integer::NotOne | Integer::OutOfRange),
                "{huge}"
            );
        }
    }
}
