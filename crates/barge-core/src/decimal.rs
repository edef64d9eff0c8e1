//! A JSON number's decimal text taken apart exactly, never through `f64`: what the transformer
//! loads integers and `numeric` from, and what `importer discover` compares values by.

/// A JSON number's text as `digits × 10^shift`, taken apart without any rounding.
pub struct Decimal {
    /// Whether a minus sign was written (also for zero).
    pub negative: bool,
    /// Significant digits, leading zeros dropped (empty for zero).
    pub digits: String,
    /// The power of ten of the last digit.
    pub shift: i64,
}

/// A number whose exponent is beyond ±[`MAX_EXPONENT`]: astronomically large or small.
pub struct ExponentBeyondI64 {
    /// Whether the exponent is negative (the number is tiny, not huge).
    pub negative: bool,
}

/// The largest exponent taken apart: far beyond every type (`numeric` ends near 10^131072),
/// and small enough that no sum of it with a digit count can overflow.
const MAX_EXPONENT: i64 = 1_000_000_000;

impl Decimal {
    /// Takes apart `text`, which must be a JSON number.
    pub fn parse(text: &str) -> Result<Self, ExponentBeyondI64> {
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
            Some((mantissa, exponent)) => {
                let beyond = ExponentBeyondI64 {
                    negative: exponent.starts_with('-'),
                };
                let parsed = exponent.parse::<i64>().map_err(|_| beyond)?;
                if parsed.unsigned_abs() > MAX_EXPONENT.unsigned_abs() {
                    return Err(ExponentBeyondI64 {
                        negative: parsed < 0,
                    });
                }
                (mantissa, parsed)
            }
            None => (unsigned, 0),
        };
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits: String = whole.chars().chain(fraction.chars()).collect();
        Ok(Self {
            negative,
            digits: digits.trim_start_matches('0').to_owned(),
            shift: exponent - fraction.len() as i64,
        })
    }

    /// Digits after the point as written (`1.50` has 2): what PostgreSQL keeps as the display
    /// scale of an unconstrained `numeric`.
    pub fn written_scale(&self) -> i64 {
        (-self.shift).max(0)
    }

    /// Digits before the point and significant digits after it, trailing zeros aside (none for
    /// zero, however it is written).
    pub fn significant_digits(&self) -> (i64, i64) {
        if self.digits.is_empty() {
            return (0, 0);
        }
        let trimmed = self.digits.trim_end_matches('0');
        let shift = self.shift + (self.digits.len() - trimmed.len()) as i64;
        let before = (trimmed.len() as i64 + shift).max(0);
        (before, (-shift).max(0))
    }

    /// The value, written one way for every way of writing it (`1`, `1.0`, `10e-1`): trailing
    /// zeros moved into the exponent, `0` for zero of any sign.
    pub fn canonical(&self) -> String {
        let trimmed = self.digits.trim_end_matches('0');
        if trimmed.is_empty() {
            return "0".to_owned();
        }
        let shift = self.shift + (self.digits.len() - trimmed.len()) as i64;
        let sign = if self.negative { "-" } else { "" };
        format!("{sign}{trimmed}e{shift}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(text: &str) -> String {
        Decimal::parse(text).ok().unwrap().canonical()
    }

    #[test]
    fn equal_values_written_differently_are_one_value() {
        assert_eq!(canonical("1"), canonical("1.000"));
        assert_eq!(canonical("1"), canonical("10e-1"));
        assert_eq!(canonical("-0.0"), "0");
        assert_eq!(canonical("0e5"), "0");
        assert_eq!(canonical("-12.50"), "-125e-1");
        assert_ne!(canonical("1"), canonical("10"));
        assert!(Decimal::parse("1e9223372036854775807").is_err());
        assert!(Decimal::parse("-1e-9223372036854775808").is_err());
    }
}
