//! A *source*: one HTTP API endpoint, the table its records land in, and how each JSON field maps
//! onto a typed PostgreSQL column.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::column::{Column, ColumnType};
use crate::fetch::{Auth, Compression, Incremental, Pagination, RequestParts, check_pointer};

/// One HTTP API to import and the table it loads into. Serializes to the TOML it is read from.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Short name used in S3 keys, SQS messages and logs (`[a-z0-9][a-z0-9_-]*`).
    pub name: String,
    /// URL of the API's first page. Unset for a source that only receives files dropped under
    /// its `landing_prefix`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// How often `importer run` fetches this source.
    #[serde(with = "humantime_serde", default = "Source::default_interval")]
    pub interval: Duration,
    /// JSON pointer of the records array in each page (`/data`); empty (the default) when the
    /// page itself is the array.
    #[serde(default)]
    pub records: String,
    /// How the API is paged and when a run stops.
    #[serde(default)]
    pub pagination: Pagination,
    /// Fetch only records newer than the last run's (unset: every run fetches everything).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<Incremental>,
    /// How requests authenticate (unset: they do not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// Headers sent with every request (`Accept`, an API version…). Not for secrets: use `auth`.
    #[serde(default, skip_serializing_if = "RequestParts::is_empty")]
    pub headers: RequestParts,
    /// Query parameters added to every request, besides the URL's own.
    #[serde(default, skip_serializing_if = "RequestParts::is_empty")]
    pub query: RequestParts,
    /// Most requests per second sent to this API (unset: no limit beyond one at a time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<f64>,
    /// Records per archive object, gathered across pages; unset, each page is one object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_per_object: Option<u64>,
    /// How archive objects are stored (`gzip`, the default, or `none`).
    #[serde(default)]
    pub compression: Compression,
    /// Key prefix of `storage.bucket` where other systems drop files of this source: the
    /// transformer loads the objects S3's event notifications announce there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landing_prefix: Option<String>,
    /// Target table, created by the transformer if it does not exist.
    pub table: String,
    /// Columns that identify a record; loads merge on them, newer batches winning. Empty: an
    /// append-only feed whose rows are inserted once per object.
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// Typed columns of the table and the JSON field each one is read from.
    pub columns: Vec<Column>,
    /// Share of an object's records that may be rejected (0 to 1) while its valid records still
    /// load; above it the whole object is dead-lettered, since so much bad data usually means
    /// the API or the declaration changed.
    #[serde(default = "Source::default_max_reject_ratio")]
    pub max_reject_ratio: f64,
}

/// A source declaration that cannot work, naming the source and the offending part.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Two sources share a name, so messages could not say which one they belong to.
    #[error("source {0:?} is declared twice")]
    Duplicate(String),
    /// Anything else wrong with one source.
    #[error("source {name:?}: {problem}")]
    Invalid {
        /// Name of the source.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl Source {
    fn default_interval() -> Duration {
        Duration::from_secs(15 * 60)
    }

    fn default_max_reject_ratio() -> f64 {
        0.5
    }

    /// JSONPlaceholder's `/posts` into `posts(id, user_id, title, body)`: the built-in example.
    pub fn jsonplaceholder_posts() -> Self {
        let column = |name: &str, column_type, field: &str| Column {
            field: (name != field).then(|| field.into()),
            ..Column::new(name, column_type)
        };
        Self {
            name: "posts".into(),
            url: Some("https://jsonplaceholder.typicode.com/posts".into()),
            interval: Self::default_interval(),
            records: String::new(),
            pagination: Pagination::default(),
            incremental: None,
            auth: None,
            headers: RequestParts::new(),
            query: RequestParts::new(),
            rate_limit: None,
            records_per_object: None,
            compression: Compression::default(),
            landing_prefix: None,
            table: "posts".into(),
            primary_key: vec!["id".into()],
            columns: vec![
                column("id", ColumnType::Bigint, "id"),
                column("user_id", ColumnType::Bigint, "userId"),
                column("title", ColumnType::Text, "title"),
                column("body", ColumnType::Text, "body"),
            ],
            max_reject_ratio: Self::default_max_reject_ratio(),
        }
    }

    /// Checks that the declaration can be archived, announced and loaded.
    pub fn validate(&self) -> Result<(), SourceError> {
        let invalid = |problem: String| SourceError::Invalid {
            name: self.name.clone(),
            problem,
        };
        let name_ok = self.name.len() <= 64
            && self
                .name
                .starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !name_ok {
            return Err(invalid(
                "name must be 1 to 64 of [a-z0-9_-], starting with a letter or digit".into(),
            ));
        }
        match (&self.url, &self.landing_prefix) {
            (None, None) => {
                return Err(invalid(
                    "needs a url to fetch, a landing_prefix to watch, or both".into(),
                ));
            }
            (Some(url), _) if !is_http_url(url) => {
                return Err(invalid(format!(
                    "url {:?} is not an http(s) URL",
                    crate::redact_url(url)
                )));
            }
            _ => {}
        }
        if let Some(prefix) = &self.landing_prefix {
            if prefix.trim_matches('/').is_empty() {
                return Err(invalid("landing_prefix is empty".into()));
            }
            // S3 keys have no leading slash: such a prefix would never match an event's key.
            if prefix.starts_with('/') {
                return Err(invalid(format!(
                    "landing_prefix {prefix:?} starts with \"/\": S3 keys do not, so it would \
                     match no file (write {:?})",
                    prefix.trim_start_matches('/')
                )));
            }
        }
        if self.interval.is_zero() {
            return Err(invalid("interval must be greater than zero".into()));
        }
        check_pointer(&self.records).map_err(|why| invalid(format!("records {why}")))?;
        self.pagination.validate().map_err(invalid)?;
        let pagination = &self.pagination;
        let body_fields = [
            ("cursor_field", &pagination.cursor_field),
            ("next_url_field", &pagination.next_url_field),
            ("has_more_field", &pagination.has_more_field),
            ("total_field", &pagination.total_field),
        ];
        if self.records.is_empty()
            && let Some((name, _)) = body_fields.iter().find(|(_, field)| field.is_some())
        {
            return Err(invalid(format!(
                "pagination.{name} is read from the page, but records is empty (the page is \
                 the array of records): set records to the records' JSON pointer, e.g. \"/data\""
            )));
        }
        if let Some(incremental) = &self.incremental {
            if incremental.param.is_empty() {
                return Err(invalid("incremental.param is empty".into()));
            }
            if incremental.field.is_empty() {
                return Err(invalid("incremental.field is empty".into()));
            }
        }
        if let Some(rate) = self.rate_limit
            && !(rate > 0.0 && rate.is_finite())
        {
            return Err(invalid(format!(
                "rate_limit is {rate}, it must be a positive number of requests per second"
            )));
        }
        if self.records_per_object == Some(0) {
            return Err(invalid("records_per_object must be at least 1".into()));
        }
        for name in self.headers.keys() {
            if !is_header_name(name) {
                return Err(invalid(format!("headers: {name:?} is not a header name")));
            }
        }
        check_identifier(&self.table).map_err(|why| invalid(format!("table {why}")))?;
        if self.table.starts_with("barge_") {
            return Err(invalid(format!(
                "table {:?}: the barge_ prefix is reserved for barge's own tables",
                self.table
            )));
        }
        if self.columns.is_empty() {
            return Err(invalid("declares no columns".into()));
        }
        for (index, column) in self.columns.iter().enumerate() {
            check_identifier(&column.name).map_err(|why| invalid(format!("column {why}")))?;
            if column.name.starts_with("barge_") {
                return Err(invalid(format!(
                    "column {:?}: the barge_ prefix is reserved for barge's own columns",
                    column.name
                )));
            }
            column.validate().map_err(invalid)?;
            if self.columns[..index].iter().any(|c| c.name == column.name) {
                return Err(invalid(format!(
                    "column {:?} is declared twice",
                    column.name
                )));
            }
        }
        if !(0.0..=1.0).contains(&self.max_reject_ratio) {
            return Err(invalid(format!(
                "max_reject_ratio is {}, it must be between 0 and 1",
                self.max_reject_ratio
            )));
        }
        for (index, key) in self.primary_key.iter().enumerate() {
            if self.primary_key[..index].contains(key) {
                return Err(invalid(format!(
                    "primary key column {key:?} is listed twice"
                )));
            }
            match self.columns.iter().find(|c| &c.name == key) {
                None => {
                    return Err(invalid(format!(
                        "primary key column {key:?} is not among the columns"
                    )));
                }
                Some(column) if column.nullable => {
                    return Err(invalid(format!(
                        "primary key column {key:?} cannot be nullable"
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Whether `column` is part of the primary key.
    pub fn is_key(&self, column: &Column) -> bool {
        self.primary_key.iter().any(|k| k == &column.name)
    }

    /// What the table must look like for this source: its columns (name, type, nullability) in
    /// name order, and its key. Sources sharing a table must agree on it.
    pub fn table_shape(&self) -> (Vec<(&str, ColumnType, bool)>, &[String]) {
        let mut columns: Vec<_> = self
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.column_type, c.nullable))
            .collect();
        columns.sort_by_key(|(name, _, _)| *name);
        (columns, &self.primary_key)
    }

    /// Whether rows are merged on a primary key (rather than appended).
    pub fn is_keyed(&self) -> bool {
        !self.primary_key.is_empty()
    }
}

/// Whether `url` is an absolute http(s) URL with a host.
fn is_http_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
}

/// Whether `name` is a valid HTTP header name (RFC 9110 token).
fn is_header_name(name: &str) -> bool {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    !name.is_empty() && name.chars().all(token)
}

/// Table and column names are restricted to plain lower-case identifiers so that the generated SQL
/// means exactly what the settings say, with no case-folding surprises.
pub(crate) fn check_identifier(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a lower-case identifier ([a-z_][a-z0-9_]*, at most 63 bytes)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(edit: impl FnOnce(&mut Source)) -> String {
        let mut source = Source::jsonplaceholder_posts();
        edit(&mut source);
        source.validate().unwrap_err().to_string()
    }

    #[test]
    fn the_builtin_source_is_valid() {
        Source::jsonplaceholder_posts().validate().unwrap();
    }

    #[test]
    fn url_schemes_are_case_insensitive() {
        let mut source = Source::jsonplaceholder_posts();
        source.url = Some("HTTPS://api.example.com/posts".into());
        source.validate().unwrap();
    }

    #[test]
    fn a_source_without_primary_key_is_an_append_only_feed() {
        let mut source = Source::jsonplaceholder_posts();
        source.primary_key.clear();
        source.validate().unwrap();
        assert!(!source.is_keyed());
    }

    #[test]
    fn invalid_declarations_name_the_source_and_the_part() {
        assert_eq!(
            problem(|s| s.table = "Posts; drop".into()),
            "source \"posts\": table \"Posts; drop\" is not a lower-case identifier ([a-z_][a-z0-9_]*, at most 63 bytes)"
        );
        assert!(problem(|s| s.name = "Posts/x".into()).contains("name must be"));
        assert!(problem(|s| s.url = Some("ftp://x".into())).contains("not an http(s) URL"));
        let quoted = problem(|s| s.url = Some("ftp://me:pw@host/x?api_key=K".into()));
        assert!(!quoted.contains("pw") && !quoted.contains("=K"), "{quoted}");
        assert!(problem(|s| s.primary_key = vec!["nope".into()]).contains("\"nope\" is not among"));
        assert!(
            problem(|s| s.primary_key = vec!["id".into(), "id".into()]).contains("listed twice")
        );
        assert!(problem(|s| s.max_reject_ratio = 1.5).contains("between 0 and 1"));
        assert!(problem(|s| s.columns[0].nullable = true).contains("cannot be nullable"));
        assert!(problem(|s| s.columns[1].name = "id".into()).contains("declared twice"));
        assert!(problem(|s| s.interval = Duration::ZERO).contains("interval"));
        assert!(problem(|s| s.columns[3].name = "barge_x".into()).contains("reserved"));
        assert!(problem(|s| s.table = "barge_stage".into()).contains("reserved"));
    }

    #[test]
    fn fetching_declarations_are_checked() {
        assert!(
            problem(|s| {
                s.pagination.style = crate::fetch::PageStyle::Cursor;
                s.pagination.cursor_field = Some("/next".into());
            })
            .contains("records is empty (the page is the array of records)")
        );
        assert!(problem(|s| s.records = "data".into()).contains("not a JSON pointer"));
        assert!(problem(|s| s.rate_limit = Some(0.0)).contains("rate_limit is 0"));
        assert!(problem(|s| s.records_per_object = Some(0)).contains("at least 1"));
        assert!(
            problem(|s| {
                s.headers.insert("Bad Header".into(), "x".into());
            })
            .contains("not a header name")
        );
        assert!(problem(|s| s.url = None).contains("needs a url to fetch, a landing_prefix"));
        let mut landing_only = Source::jsonplaceholder_posts();
        (landing_only.url, landing_only.landing_prefix) = (None, Some("landing/posts".into()));
        landing_only.validate().unwrap();
        assert!(
            problem(|s| s.landing_prefix = Some("/landing/posts".into())).contains(
                "landing_prefix \"/landing/posts\" starts with \"/\": S3 keys do not, so it \
                 would match no file (write \"landing/posts\")"
            )
        );
        assert!(problem(|s| s.landing_prefix = Some("/".into())).contains("is empty"));
    }
}
