//! Decoding one record's JSON text strictly and straight into the fields its columns read: no
//! `serde_json::Value` is built for the record, only for the values that are objects or arrays
//! themselves (a `jsonb` column, a pointer's root).
//!
//! Strict means: a key that appears twice in one object is an error (which of the two values the
//! API meant is a guess), at any depth, in fields no column reads too. Lone UTF-16 surrogates and
//! nesting deeper than serde_json's limit of 128 are errors as well, from serde_json itself.
//! Numbers keep their text exactly (serde_json's `arbitrary_precision`), so
//! `123456789012345678901234567890` is never rounded through `f64`; strings without escapes are
//! borrowed from the record's text, not copied.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;

use barge_core::Source;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// With `arbitrary_precision`, serde_json hands a number to a visitor as a one-entry map under
/// this key, the number's text as the value (its own `Value` decoder does the same check).
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// One field's value as decoded from a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Field<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as its exact text.
    Number(Cow<'a, str>),
    /// A string, unescaped.
    String(Cow<'a, str>),
    /// An object or array.
    Compound(Value),
}

impl Field<'_> {
    /// The field a decoded value holds (copying, as it outlives the value).
    pub fn from_value(value: &Value) -> Field<'static> {
        match value {
            Value::Null => Field::Null,
            Value::Bool(b) => Field::Bool(*b),
            Value::Number(n) => Field::Number(Cow::Owned(n.to_string())),
            Value::String(s) => Field::String(Cow::Owned(s.clone())),
            Value::Array(_) | Value::Object(_) => Field::Compound(value.clone()),
        }
    }

    /// The field as a JSON value (for `jsonb`).
    pub fn into_value(self) -> Result<Value, String> {
        Ok(match self {
            Field::Null => Value::Null,
            Field::Bool(b) => Value::Bool(b),
            Field::Number(text) => Value::Number(
                text.parse::<Number>()
                    .map_err(|err| format!("number {text}: {err}"))?,
            ),
            Field::String(text) => Value::String(text.into_owned()),
            Field::Compound(value) => value,
        })
    }
}

/// Where a record's top-level keys go, built once per source.
#[derive(Debug)]
pub struct Plan {
    keys: HashMap<String, Target>,
    /// For each column, where its value is found after decoding.
    columns: Vec<Slot>,
    roots: usize,
}

/// What becomes of one top-level key's value.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// Decoded as the field of this column, the only one reading the key.
    Column(usize),
    /// Decoded into a value that pointers (or several columns) read from.
    Root(usize),
}

/// Where a column's field is after decoding.
#[derive(Debug, Clone)]
enum Slot {
    Direct,
    /// In root `root`, at the RFC 6901 pointer `rest` (empty for the root itself).
    Pointer {
        root: usize,
        rest: String,
    },
}

/// A decoded record: each column's field, found or not.
#[derive(Debug)]
pub struct Decoded<'a> {
    direct: Vec<Option<Field<'a>>>,
    roots: Vec<Option<Value>>,
}

impl<'a> Decoded<'a> {
    /// Column `index`'s field, taken out (`None` when the record lacks it).
    pub fn take(&mut self, plan: &Plan, index: usize) -> Option<Field<'a>> {
        match &plan.columns[index] {
            Slot::Direct => self.direct[index].take(),
            Slot::Pointer { root, rest } => {
                let value = self.roots[*root].as_ref()?;
                let found = if rest.is_empty() {
                    value
                } else {
                    value.pointer(rest)?
                };
                Some(Field::from_value(found))
            }
        }
    }
}

impl Plan {
    /// The plan for `source`'s columns: a plain field name is a top-level key; a field starting
    /// with `/` is a pointer, whose first segment is the top-level key it starts from.
    pub fn new(source: &Source) -> Self {
        let mut readers: HashMap<String, Vec<(usize, Option<String>)>> = HashMap::new();
        // Lineage columns read nothing from the record.
        let reading = source.columns.iter().enumerate();
        for (index, column) in reading.filter(|(_, column)| column.lineage.is_none()) {
            let field = column.json_field();
            let (key, rest) = match field.strip_prefix('/') {
                Some(pointer) => {
                    let (first, rest) = match pointer.find('/') {
                        Some(cut) => (&pointer[..cut], pointer[cut..].to_owned()),
                        None => (pointer, String::new()),
                    };
                    (first.replace("~1", "/").replace("~0", "~"), Some(rest))
                }
                None => (field.to_owned(), None),
            };
            readers.entry(key).or_default().push((index, rest));
        }
        let mut keys = HashMap::new();
        let mut columns = vec![Slot::Direct; source.columns.len()];
        let mut roots = 0;
        for (key, readers) in readers {
            if let [(index, None)] = readers[..] {
                keys.insert(key, Target::Column(index));
                continue;
            }
            for (index, rest) in readers {
                columns[index] = Slot::Pointer {
                    root: roots,
                    rest: rest.unwrap_or_default(),
                };
            }
            keys.insert(key, Target::Root(roots));
            roots += 1;
        }
        Self {
            keys,
            columns,
            roots,
        }
    }

    /// Decodes `text`, an object, into its columns' fields; any other field is checked just as
    /// strictly but not kept.
    pub fn decode<'a>(&self, text: &'a str) -> Result<Decoded<'a>, serde_json::Error> {
        let mut decoded = Decoded {
            direct: vec![None; self.columns.len()],
            roots: vec![None; self.roots],
        };
        let mut deserializer = serde_json::Deserializer::from_str(text);
        deserializer.deserialize_map(RecordVisitor {
            plan: self,
            out: &mut decoded,
        })?;
        deserializer.end()?;
        Ok(decoded)
    }
}

/// Keys seen in one object, to refuse duplicates: a short list for the usual handful of keys, a
/// set once there are many (so a huge object is not quadratic).
#[derive(Default)]
struct SeenKeys<'a> {
    few: Vec<Cow<'a, str>>,
    many: HashSet<Cow<'a, str>>,
}

/// Objects with up to this many keys are checked by scanning a list.
const FEW_KEYS: usize = 16;

impl<'a> SeenKeys<'a> {
    /// Notes `key`; an error when it was seen before.
    fn note<E: de::Error>(&mut self, key: Cow<'a, str>) -> Result<(), E> {
        let duplicate = if self.many.is_empty() && self.few.len() < FEW_KEYS {
            let seen = self.few.contains(&key);
            self.few.push(key.clone());
            seen
        } else {
            self.many.extend(self.few.drain(..));
            !self.many.insert(key.clone())
        };
        if duplicate {
            return Err(E::custom(format!("duplicate key {key:?}")));
        }
        Ok(())
    }
}

struct RecordVisitor<'p, 'o, 'a> {
    plan: &'p Plan,
    out: &'o mut Decoded<'a>,
}

impl<'de> Visitor<'de> for RecordVisitor<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = SeenKeys::default();
        while let Some(key) = map.next_key_seed(Text)? {
            let target = self.plan.keys.get(key.as_ref()).copied();
            seen.note(key)?;
            match target {
                Some(Target::Column(index)) => {
                    self.out.direct[index] = Some(map.next_value_seed(FieldSeed)?);
                }
                Some(Target::Root(index)) => {
                    self.out.roots[index] = Some(map.next_value_seed(Strict)?);
                }
                None => map.next_value_seed(Check)?,
            }
        }
        Ok(())
    }
}

/// A string, borrowed from the record's text when it has no escapes.
struct Text;

impl<'de> DeserializeSeed<'de> for Text {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Text {
    type Value = Cow<'de, str>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(value))
    }
}

/// One field's value: scalars as they are, objects and arrays decoded strictly.
struct FieldSeed;

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Field<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed {
    type Value = Field<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Self::Value, E> {
        Ok(Field::Bool(value))
    }

    // serde_json hands integers that fit 64 bits over as such, even with `arbitrary_precision`;
    // their decimal text is exact.
    fn visit_i64<E>(self, value: i64) -> Result<Self::Value, E> {
        Ok(Field::Number(Cow::Owned(value.to_string())))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Self::Value, E> {
        Ok(Field::Number(Cow::Owned(value.to_string())))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        Strict
            .visit_f64(value)
            .map(|number| Field::Number(Cow::Owned(number.to_string())))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }

    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Field::String(Cow::Borrowed(value)))
    }

    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Field::String(Cow::Owned(value.to_owned())))
    }

    fn visit_string<E>(self, value: String) -> Result<Self::Value, E> {
        Ok(Field::String(Cow::Owned(value)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Strict.visit_seq(seq).map(Field::Compound)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let Some(key) = map.next_key_seed(Text)? else {
            return Ok(Field::Compound(Value::Object(Map::new())));
        };
        if key == NUMBER_TOKEN {
            return number_text(map).map(Field::Number);
        }
        Strict
            .object_from(key, map)
            .map(|object| Field::Compound(Value::Object(object)))
    }
}

/// The text of a number handed over as a one-entry map, checked to be a JSON number: an object
/// that merely has the token as its first key (`{"$serde_json::private::Number": "x"}`) must
/// not pass as one.
fn number_text<'de, A: MapAccess<'de>>(mut map: A) -> Result<Cow<'de, str>, A::Error> {
    let text = map.next_value_seed(Text)?;
    text.parse::<Number>().map_err(de::Error::custom)?;
    Ok(text)
}

/// Builds a [`Value`], refusing duplicate object keys.
pub struct Strict;

impl Strict {
    /// The rest of an object whose first key is already read.
    fn object_from<'de, A: MapAccess<'de>>(
        self,
        first: Cow<'de, str>,
        mut map: A,
    ) -> Result<Map<String, Value>, A::Error> {
        let mut object = Map::new();
        let mut seen = SeenKeys::default();
        let mut key = Some(first);
        while let Some(name) = key {
            seen.note(name.clone())?;
            object.insert(name.into_owned(), map.next_value_seed(Strict)?);
            key = map.next_key_seed(Text)?;
        }
        Ok(object)
    }
}

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
        let Some(key) = map.next_key_seed(Text)? else {
            return Ok(Value::Object(Map::new()));
        };
        if key == NUMBER_TOKEN {
            let text = number_text(map)?;
            return Ok(Value::Number(
                text.parse().expect("number_text checked it is a number"),
            ));
        }
        self.object_from(key, map).map(Value::Object)
    }
}

/// Checks a value as strictly as [`Strict`] without keeping it: for fields no column reads.
struct Check;

impl<'de> DeserializeSeed<'de> for Check {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Check)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some(first) = map.next_key_seed(Text)? else {
            return Ok(());
        };
        if first == NUMBER_TOKEN {
            return number_text(map).map(drop);
        }
        let mut seen = SeenKeys::default();
        let mut key = Some(first);
        while let Some(name) = key {
            seen.note(name)?;
            map.next_value_seed(Check)?;
            key = map.next_key_seed(Text)?;
        }
        Ok(())
    }
}

/// A whole JSON text decoded strictly into a [`Value`].
#[cfg(test)]
pub fn decode_value(text: &str) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = Strict.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(text: &str) -> Result<Value, String> {
        decode_value(text).map_err(|err| err.to_string())
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
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\": {i}")).collect();
        decode(&format!("{{{}}}", many.join(","))).unwrap();
        assert!(
            decode(&format!("{{{}, \"k3\": 0}}", many.join(",")))
                .unwrap_err()
                .starts_with("duplicate key \"k3\"")
        );
    }

    #[test]
    fn fields_no_column_reads_are_checked_as_strictly() {
        let source = barge_core::Source::jsonplaceholder_posts();
        let plan = Plan::new(&source);
        for bad in [
            r#"{"id": 1, "x": {"b": 1, "b": 2}}"#,
            r#"{"id": 1, "x": ["\ud800"]}"#,
            r#"{"id": 1, "x": 1, "x": 2}"#,
        ] {
            assert!(plan.decode(bad).is_err(), "{bad}");
        }
        let mut decoded = plan
            .decode(r#"{"x": [1e999, {"n": -0}], "id": 5}"#)
            .unwrap();
        assert_eq!(decoded.take(&plan, 0), Some(Field::Number("5".into())));
    }

    #[test]
    fn an_object_posing_as_a_number_is_refused() {
        let plan = Plan::new(&barge_core::Source::jsonplaceholder_posts());
        for posing in ["\"x\"", "\"\"", "\"-\"", "\"+5\"", "\".\"", "1"] {
            let text = format!(r#"{{"id": {{"$serde_json::private::Number": {posing}}}}}"#);
            assert!(plan.decode(&text).is_err(), "{text}");
            let unread = format!(r#"{{"x": {{"$serde_json::private::Number": {posing}}}}}"#);
            assert!(plan.decode(&unread).is_err(), "{unread}");
            assert!(decode_value(&text).is_err(), "{text}");
        }
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
