//! The sampled fields as a tree, and the `[[sources]]` block written from it: one column per
//! field (or per leaf of a nested object, with `--flatten`), named in snake_case, with its
//! `field` when the name differs, its type, nullability and conversion, a comment saying what
//! was seen, and a suggested primary key.

use super::infer::{Observed, Proposal, is_id_like};
use super::json::Json;

/// The longest PostgreSQL identifier (bytes).
const MAX_IDENTIFIER: usize = 63;

/// One field of the records, and the fields of its object values when flattening.
#[derive(Debug)]
struct Node {
    /// The field's name as sent.
    key: String,
    observed: Observed,
    /// Fields of this field's objects, in the order first seen (only with `--flatten`).
    children: Vec<Node>,
}

/// Everything seen in the sampled records.
#[derive(Debug)]
pub struct Sample {
    /// Records taken in.
    pub records: u64,
    /// Whether nested objects become columns of their own.
    flatten: bool,
    /// Top-level fields, in the order first seen.
    fields: Vec<Node>,
}

/// A column proposed for the block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposed {
    /// Column name: the field's path in snake_case.
    pub name: String,
    /// `field = …`: the name as sent, or a JSON pointer to a nested field; `None` when it is
    /// the column's name.
    pub field: Option<String>,
    /// Type and conversion.
    pub proposal: Proposal,
    /// Whether a record lacked the field or held `null`.
    pub nullable: bool,
    /// What was seen, for the comment.
    pub summary: String,
    /// Whether it may be the primary key: top-level, named like an id, unique, never null.
    pub unique_id: bool,
    /// Whether the field is called `id` itself (preferred as the key).
    pub plain_id: bool,
}

impl Sample {
    /// An empty sample; `flatten` descends into nested objects.
    pub fn new(flatten: bool) -> Self {
        Self {
            records: 0,
            flatten,
            fields: Vec::new(),
        }
    }

    /// Takes in one record's fields.
    pub fn add(&mut self, record: &[(String, Json)]) {
        self.records += 1;
        observe(&mut self.fields, record, self.flatten);
    }

    /// The proposed columns: the primary key's candidate first, then every field in the order
    /// first seen. Names are unique (a clash gets `_2`, `_3`…).
    pub fn columns(&self) -> Vec<Proposed> {
        let mut columns = Vec::new();
        collect(
            &self.fields,
            &mut Vec::new(),
            self.records,
            self.flatten,
            &mut columns,
        );
        let mut taken: Vec<String> = Vec::new();
        for column in &mut columns {
            let base = column.name.clone();
            let mut suffix = 1;
            while taken.contains(&column.name) {
                suffix += 1;
                let tail = format!("_{suffix}");
                column.name = format!("{}{tail}", cut(&base, MAX_IDENTIFIER - tail.len()));
            }
            if column.name != base && column.field.is_none() {
                column.field = Some(base);
            }
            taken.push(column.name.clone());
        }
        let key = columns
            .iter()
            .position(|column| column.unique_id && column.plain_id)
            .or_else(|| columns.iter().position(|column| column.unique_id));
        if let Some(key) = key {
            let key = columns.remove(key);
            columns.insert(0, key);
        }
        columns
    }
}

/// Takes in `fields` (of a record, or of a nested object) into `nodes`.
fn observe(nodes: &mut Vec<Node>, fields: &[(String, Json)], flatten: bool) {
    for (key, value) in fields {
        let index = match nodes.iter().position(|node| &node.key == key) {
            Some(index) => index,
            None => {
                nodes.push(Node {
                    key: key.clone(),
                    observed: Observed::new(is_id_like(key)),
                    children: Vec::new(),
                });
                nodes.len() - 1
            }
        };
        let node = &mut nodes[index];
        node.observed.observe(value);
        if let (true, Json::Object(inner)) = (flatten, value) {
            observe(&mut node.children, inner, flatten);
        }
    }
}

/// The columns of `nodes`, whose path so far is `path`.
fn collect(
    nodes: &[Node],
    path: &mut Vec<String>,
    records: u64,
    flatten: bool,
    columns: &mut Vec<Proposed>,
) {
    for node in nodes {
        path.push(node.key.clone());
        if flatten && node.observed.only_objects() && !node.children.is_empty() {
            collect(&node.children, path, records, flatten, columns);
        } else {
            let name = column_name(path);
            let field = match path.as_slice() {
                [key] if *key == name => None,
                [key] if !key.starts_with('/') => Some(key.clone()),
                _ => Some(pointer(path)),
            };
            let observed = &node.observed;
            let proposal = observed.decide(&node.key);
            let scalar = !proposal.column_type.ends_with("[]") && proposal.column_type != "jsonb";
            columns.push(Proposed {
                name,
                field,
                nullable: observed.present < records,
                summary: observed.summary(records),
                unique_id: path.len() == 1 && scalar && observed.unique_in(records),
                plain_id: node.key.eq_ignore_ascii_case("id"),
                proposal,
            });
        }
        path.pop();
    }
}

/// The RFC 6901 pointer of `path`.
fn pointer(path: &[String]) -> String {
    path.iter()
        .map(|key| format!("/{}", key.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// A column name for the field at `path`: each name in snake_case (`userId` → `user_id`,
/// `HTTPStatus` → `http_status`, anything but ASCII letters and digits → `_`), joined with `_`,
/// and made a valid, unreserved identifier (`barge_` is barge's own prefix).
pub fn column_name(path: &[String]) -> String {
    let parts: Vec<String> = path.iter().map(|key| snake_case(key)).collect();
    let mut name = parts
        .iter()
        .filter(|part| !part.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join("_");
    if name.is_empty() {
        name = "field".into();
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) || name.starts_with("barge_") {
        name = format!("f_{name}");
    }
    cut(&name, MAX_IDENTIFIER).to_owned()
}

/// `key` in snake_case, without leading, trailing or doubled `_`.
fn snake_case(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let mut out = String::new();
    for (index, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let previous = index.checked_sub(1).map(|at| chars[at]);
            let next = chars.get(index + 1);
            let boundary = previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit())
                || (previous.is_some_and(|p| p.is_ascii_uppercase())
                    && next.is_some_and(char::is_ascii_lowercase));
            if boundary {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    out.split('_')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

/// `text` (ASCII) cut to `bytes`.
fn cut(text: &str, bytes: usize) -> &str {
    &text[..text.len().min(bytes)]
}

/// A TOML basic string.
pub fn quoted(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// `text` made safe for a `#` comment: TOML forbids control characters there (U+007F
/// included), and a line break would end the comment and let sampled text become settings.
pub fn commented(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' => " ".to_owned(),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// The block's `primary_key` line and its comment, then `columns = [ … ]` with a comment per
/// column.
pub fn key_and_columns(columns: &[Proposed]) -> String {
    let mut text = String::new();
    match columns.first().filter(|column| column.unique_id) {
        Some(key) => {
            text.push_str(&format!(
                "# {} is named like an id and unique in every sampled record: confirm that it\n\
                 # identifies a record (loads merge on it), or drop primary_key to append them all.\n\
                 primary_key = [{}]\n",
                commented(&quoted(key.field.as_deref().unwrap_or(&key.name))),
                quoted(&key.name)
            ));
        }
        None => text.push_str(
            "# No field named like an id was present and unique in every sampled record: without\n\
             # primary_key the table is append-only. Add one if a field identifies a record.\n",
        ),
    }
    text.push_str("columns = [\n");
    for column in columns {
        let mut comment = column.summary.clone();
        for hint in &column.proposal.hints {
            comment.push_str(&format!("; {hint}"));
        }
        text.push_str(&format!(
            "    # {}\n    {{ name = {}",
            commented(&comment),
            quoted(&column.name)
        ));
        text.push_str(&format!(
            ", type = {}",
            quoted(&column.proposal.column_type)
        ));
        if let Some(field) = &column.field {
            text.push_str(&format!(", field = {}", quoted(field)));
        }
        if column.nullable {
            text.push_str(", nullable = true");
        }
        if column.proposal.nullable_elements {
            text.push_str(", nullable_elements = true");
        }
        if let Some(convert) = column.proposal.convert {
            text.push_str(&format!(", convert = {}", quoted(convert)));
        }
        text.push_str(" },\n");
    }
    text.push_str("]\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(text: &str) -> Vec<(String, Json)> {
        match Json::parse(serde_json::from_str(text).unwrap()).unwrap() {
            Json::Object(fields) => fields,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_are_snake_case_identifiers() {
        let name = |path: &[&str]| {
            column_name(&path.iter().map(|key| key.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(name(&["userId"]), "user_id");
        assert_eq!(name(&["HTTPStatus"]), "http_status");
        assert_eq!(name(&["created-at"]), "created_at");
        assert_eq!(name(&["Already_Snake"]), "already_snake");
        assert_eq!(
            name(&["customer", "address", "postCode"]),
            "customer_address_post_code"
        );
        assert_eq!(name(&["2fa"]), "f_2fa");
        assert_eq!(name(&["barge_x"]), "f_barge_x");
        assert_eq!(name(&["ünï"]), "n");
        assert_eq!(name(&["€"]), "field");
        assert_eq!(name(&["a".repeat(70).as_str()]).len(), 63);
    }

    #[test]
    fn columns_put_the_key_first_and_flatten_into_pointers() {
        let mut sample = Sample::new(true);
        sample.add(&record(
            r#"{"userId": 1, "id": 1, "a/b": {"c~d": "x", "n": null}, "o": {"k": 1}}"#,
        ));
        sample.add(&record(
            r#"{"userId": 1, "id": 2, "a/b": {"c~d": "y"}, "o": 5, "user_id": 3}"#,
        ));
        let columns = sample.columns();
        let described: Vec<_> = columns
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.field.as_deref(),
                    c.proposal.column_type.as_str(),
                    c.nullable,
                )
            })
            .collect();
        assert_eq!(
            described,
            [
                ("id", None, "bigint", false),
                ("user_id", Some("userId"), "bigint", false),
                ("a_b_c_d", Some("/a~1b/c~0d"), "text", false),
                ("a_b_n", Some("/a~1b/n"), "text", true),
                ("o", None, "jsonb", false),
                ("user_id_2", Some("user_id"), "bigint", true),
            ]
        );
        assert!(
            columns[0].unique_id && !columns[1].unique_id,
            "userId repeats"
        );
        let text = key_and_columns(&columns);
        assert!(text.contains("primary_key = [\"id\"]\n"), "{text}");
        assert!(
            text.contains(
                "    # 2 of 2 records; e.g. 1\n    { name = \"id\", type = \"bigint\" },\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "{ name = \"a_b_n\", type = \"text\", field = \"/a~1b/n\", nullable = true },"
            ),
            "{text}"
        );
    }

    #[test]
    fn sampled_text_cannot_leave_its_comment() {
        let text = "a\u{7f}b\nprimary_key = [\"x\"]\r\tc";
        let comment = format!("# {}\n", commented(text));
        assert_eq!(comment.lines().count(), 1, "{comment}");
        assert!(
            !comment.chars().any(|c| c.is_control() && c != '\n'),
            "{comment}"
        );
        let parsed: toml::Table = comment.parse().expect("a comment parses as TOML");
        assert!(parsed.is_empty());
    }
}
