//! Decoding one record's JSON text strictly: unlike `serde_json::Value`'s own decoder, a key that
//! appears twice in one object is an error (which of the two values the API meant is a guess), at
//! any depth. Lone UTF-16 surrogates and nesting deeper than serde_json's limit of 128 are errors
//! too, from serde_json itself. Numbers keep their text exactly (serde_json's
//! `arbitrary_precision`), so `123456789012345678901234567890` is never rounded through `f64`.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

/// With `arbitrary_precision`, serde_json hands a number to a visitor as a one-entry map under
/// this key, the number's text as the value (its own `Value` decoder does the same check).
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// The record's value, or why its text cannot be taken as one (with serde_json's position in
/// the record's own text).
pub fn decode_record(raw: &RawValue) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    let value = Strict.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// Builds a [`Value`], refusing duplicate object keys.
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("number {value} is not finite")))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut values = Vec::new();
        while let Some(value) = seq.next_element_seed(Strict)? {
            values.push(value);
        }
        Ok(Value::Array(values))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == NUMBER_TOKEN && object.is_empty() {
                let text: String = map.next_value()?;
                let number = text.parse::<Number>().map_err(de::Error::custom)?;
                return Ok(Value::Number(number));
            }
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let value = map.next_value_seed(Strict)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(text: &str) -> Result<Value, String> {
        let raw = RawValue::from_string(text.to_owned()).expect("valid JSON syntax");
        decode_record(&raw).map_err(|err| err.to_string())
    }

    #[test]
    fn decodes_what_serde_json_decodes() {
        let text =
            r#"{"a": [1, -2, 3.5, "x\n", true, null], "b": {"c": {}}, "d": 18446744073709551615}"#;
        assert_eq!(
            decode(text).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
        assert_eq!(decode("[]").unwrap(), json!([]));
    }

    #[test]
    fn numbers_keep_their_digits() {
        let text = r#"[123456789012345678901234567890, 1.50e3, -0, 0.1, 18446744073709551616]"#;
        // serde_json spells an exponent with its sign; every digit stays.
        assert_eq!(
            decode(text).unwrap().to_string(),
            "[123456789012345678901234567890,1.50e+3,-0,0.1,18446744073709551616]"
        );
    }

    #[test]
    fn duplicate_keys_are_errors_at_any_depth() {
        assert_eq!(
            decode(r#"{"id": 1, "id": 2}"#).unwrap_err(),
            "duplicate key \"id\" at line 1 column 14"
        );
        assert!(
            decode(r#"{"a": {"b": 1, "b": 1}}"#)
                .unwrap_err()
                .starts_with("duplicate key \"b\"")
        );
        decode(r#"{"a": {"b": 1}, "c": {"b": 1}}"#).unwrap();
    }

    #[test]
    fn lone_surrogates_and_deep_nesting_are_errors() {
        assert!(decode(r#"{"a": "\ud800"}"#).is_err());
        assert!(decode(r#"{"a": "\udc00x"}"#).is_err());
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(
            decode(&deep)
                .unwrap_err()
                .starts_with("recursion limit exceeded")
        );
        decode(r#"{"a": "\ud83d\ude80"}"#).unwrap();
    }
}
