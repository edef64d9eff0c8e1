//! A sampled record as a tree that keeps what `serde_json::Value` loses: the order of an
//! object's fields as the API sent them (so the proposed columns come in the API's order) and
//! each number's own text (so `19.90` stays `19.90` and 40-digit integers keep every digit).

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A JSON value, objects in their sent order, numbers as their text.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, exactly as sent.
    Number(String),
    /// A string, unescaped.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object's fields, in the order sent.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Parses JSON text already known to be valid (a record the page held).
    pub fn parse(raw: &RawValue) -> Result<Self, serde_json::Error> {
        let text = raw.get();
        Ok(match text.as_bytes().first() {
            Some(b'{') => {
                let Fields(fields) = serde_json::from_str(text)?;
                Self::Object(
                    fields
                        .into_iter()
                        .map(|(key, value)| Ok((key, Self::parse(value)?)))
                        .collect::<Result<_, serde_json::Error>>()?,
                )
            }
            Some(b'[') => {
                let items: Vec<&RawValue> = serde_json::from_str(text)?;
                Self::Array(
                    items
                        .into_iter()
                        .map(Self::parse)
                        .collect::<Result<_, _>>()?,
                )
            }
            Some(b'"') => Self::String(serde_json::from_str(text)?),
            Some(b't') => Self::Bool(true),
            Some(b'f') => Self::Bool(false),
            Some(b'n') => Self::Null,
            _ => Self::Number(text.to_owned()),
        })
    }

    /// The value as compact JSON text: an example in a comment.
    pub fn text(&self) -> String {
        match self {
            Self::Null => "null".into(),
            Self::Bool(value) => value.to_string(),
            Self::Number(text) => text.clone(),
            Self::String(text) => serde_json::to_string(text).expect("a string serializes"),
            Self::Array(items) => {
                let items: Vec<String> = items.iter().map(Self::text).collect();
                format!("[{}]", items.join(","))
            }
            Self::Object(fields) => {
                let fields: Vec<String> = fields
                    .iter()
                    .map(|(key, value)| {
                        format!("{}:{}", Self::String(key.clone()).text(), value.text())
                    })
                    .collect();
                format!("{{{}}}", fields.join(","))
            }
        }
    }
}

/// An object's fields in the order sent, each value still raw.
struct Fields<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Collects the entries as they come.
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Fields<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    fields.push(entry);
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Json {
        Json::parse(serde_json::from_str(text).unwrap()).unwrap()
    }

    #[test]
    fn keeps_field_order_and_number_text() {
        let json = parse(
            r#"{"userId": 1, "id": 19.90, "big": 123456789012345678901234567890, "a": [null, true, "x\n"], "o": {"z": {}, "b": []}}"#,
        );
        let Json::Object(fields) = &json else {
            panic!("{json:?}")
        };
        let keys: Vec<&str> = fields.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, ["userId", "id", "big", "a", "o"]);
        assert_eq!(fields[1].1, Json::Number("19.90".into()));
        assert_eq!(
            json.text(),
            r#"{"userId":1,"id":19.90,"big":123456789012345678901234567890,"a":[null,true,"x\n"],"o":{"z":{},"b":[]}}"#
        );
    }
}
