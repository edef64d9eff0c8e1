//! How the importer fetches a source: pagination, where the records are in each page,
//! incremental loading, authentication and how pages become archive objects. Declared per
//! `[[sources]]` beside the columns; the importer is the only reader.

use std::collections::BTreeMap;

use serde::de;
use serde::{Deserialize, Serialize};

/// How a source is paged, and when to stop. One flat table whatever the style, so that the
/// settings read like the API's documentation; [`Pagination::validate`] says which fields each
/// style needs.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pagination {
    /// How the next page is asked for.
    pub style: PageStyle,
    /// Query parameter carrying the page number (`page`), the offset (`offset`) or the cursor
    /// (`cursor`). Defaults to the style's name: `page`, `offset`, `cursor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// Query parameter carrying the page size, sent with [`Pagination::size`] when both are set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_param: Option<String>,
    /// Records asked for per page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// `page` style: the number of the first page (1 unless the API counts from 0).
    pub first_page: u64,
    /// `cursor` style: JSON pointer of the next cursor in the page (`/next_cursor`,
    /// `/meta/next`); missing, `null` or `""` ends the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor_field: Option<String>,
    /// `next_url` style: JSON pointer of the next page's URL in the page (`/next`,
    /// `/links/next`); missing, `null` or `""` ends the run. A relative URL is resolved against
    /// the page's own URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_url_field: Option<String>,
    /// Any style: JSON pointer of a boolean that says whether more pages follow (`/has_more`);
    /// `false` ends the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_more_field: Option<String>,
    /// Any style: JSON pointer of the total number of records (`/total`); the run ends once
    /// that many have been fetched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_field: Option<String>,
    /// The most pages one run fetches. Reaching it ends the run as a success with a warning;
    /// an incremental source carries on from its mark the next run.
    pub max_pages: u64,
}

impl Default for Pagination {
    fn default() -> Self {
        Self {
            style: PageStyle::None,
            param: None,
            size_param: None,
            size: None,
            first_page: 1,
            cursor_field: None,
            next_url_field: None,
            has_more_field: None,
            total_field: None,
            max_pages: 10_000,
        }
    }
}

/// How the next page of a source is asked for. Every style also stops at an empty page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PageStyle {
    /// One request: the answer is the whole batch.
    #[default]
    None,
    /// `?page=1`, `?page=2`, …
    Page,
    /// `?offset=0`, then the offset plus the records received so far.
    Offset,
    /// `?cursor=<the previous page's cursor_field>`.
    Cursor,
    /// GET the URL found at `next_url_field`.
    NextUrl,
    /// GET the URL of the RFC 8288 `Link: <…>; rel="next"` header.
    LinkHeader,
}

impl Pagination {
    /// The query parameter of the page number, offset or cursor.
    pub fn param(&self) -> &str {
        self.param.as_deref().unwrap_or(match self.style {
            PageStyle::Offset => "offset",
            PageStyle::Cursor => "cursor",
            _ => "page",
        })
    }

    /// Checks that the style has what it needs; says what is missing.
    pub fn validate(&self) -> Result<(), String> {
        let needs = |field: &Option<String>, name: &str| match field {
            Some(pointer) => {
                check_pointer(pointer).map_err(|why| format!("pagination.{name} {why}"))
            }
            None => Err(format!(
                "pagination style {:?} needs pagination.{name}",
                self.style
            )),
        };
        match self.style {
            PageStyle::Cursor => needs(&self.cursor_field, "cursor_field")?,
            PageStyle::NextUrl => needs(&self.next_url_field, "next_url_field")?,
            PageStyle::None | PageStyle::Page | PageStyle::Offset | PageStyle::LinkHeader => {}
        }
        for (name, field) in [
            ("has_more_field", &self.has_more_field),
            ("total_field", &self.total_field),
        ] {
            if field.is_some() {
                needs(field, name)?;
            }
        }
        if self.size_param.is_some() != self.size.is_some() {
            return Err("pagination.size_param and pagination.size go together".into());
        }
        if self.size == Some(0) || self.max_pages == 0 {
            return Err("pagination.size and pagination.max_pages must be at least 1".into());
        }
        Ok(())
    }
}

/// Incremental loading: each run asks only for records newer than the highest value of `field`
/// seen so far (the *mark*), kept in S3 and advanced once every page of a run is archived and
/// announced.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Incremental {
    /// Record field (or JSON pointer) whose highest value is the mark: `updated_at`, `id`.
    /// Numbers compare as numbers, RFC 3339 timestamps as instants, other strings as text.
    pub field: String,
    /// Query parameter the mark is sent in: `updated_since`, `since_id`.
    pub param: String,
    /// The mark of the first run, as the API expects it; unset, the first run fetches
    /// everything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
}

/// How requests to a source authenticate. The secret itself is never in the settings: it is
/// read, when a run starts, from where [`SecretRef`] says.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// `Authorization: Bearer <secret>`.
    Bearer {
        /// Where the token is kept.
        secret: SecretRef,
    },
    /// `<name>: <secret>`, for APIs that want a key header (`X-Api-Key`).
    Header {
        /// The header's name.
        name: String,
        /// Where the key is kept.
        secret: SecretRef,
    },
    /// `?<name>=<secret>` (the query string is redacted in every log and error).
    Query {
        /// The query parameter's name.
        name: String,
        /// Where the key is kept.
        secret: SecretRef,
    },
    /// HTTP basic authentication.
    Basic {
        /// The user name (not secret).
        username: String,
        /// Where the password is kept.
        secret: SecretRef,
    },
}

impl Auth {
    /// Where this scheme's secret is kept.
    pub fn secret(&self) -> &SecretRef {
        match self {
            Self::Bearer { secret }
            | Self::Header { secret, .. }
            | Self::Query { secret, .. }
            | Self::Basic { secret, .. } => secret,
        }
    }
}

/// Where a source's secret is kept: exactly one of an environment variable, an AWS Secrets
/// Manager secret or an SSM Parameter Store parameter. Written as a table
/// (`secret = { env = "ORDERS_TOKEN" }`); a plain string is refused without being quoted, since
/// it is most likely the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields, remote = "Self")]
pub enum SecretRef {
    /// The value of this environment variable (for systemd, `EnvironmentFile=` or
    /// `LoadCredential=`).
    Env(String),
    /// This Secrets Manager secret (name or ARN): its string value, or the named field of a JSON
    /// value.
    SecretsManager {
        /// Name or ARN.
        id: String,
        /// Field of a JSON secret to take (`{"token": "…"}`); unset, the whole value.
        #[serde(skip_serializing_if = "Option::is_none")]
        field: Option<String>,
    },
    /// This SSM parameter (a `SecureString` is decrypted).
    Ssm(String),
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretRefVisitor)
    }
}

impl Serialize for SecretRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Self::serialize(self, serializer)
    }
}

struct SecretRefVisitor;

impl<'de> de::Visitor<'de> for SecretRefVisitor {
    type Value = SecretRef;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(
            "a table naming where the secret is kept: { env = \"NAME\" }, \
             { secrets_manager = { id = \"…\" } } or { ssm = \"/name\" } (a value given \
             directly is not shown)",
        )
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<SecretRef, A::Error> {
        SecretRef::deserialize(de::value::MapAccessDeserializer::new(map))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<SecretRef, E> {
        Err(E::invalid_type(de::Unexpected::Other("a string"), &self))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<SecretRef, E> {
        Err(E::invalid_type(de::Unexpected::Other("a number"), &self))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<SecretRef, E> {
        Err(E::invalid_type(de::Unexpected::Other("a number"), &self))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretRef, E> {
        Err(E::invalid_type(de::Unexpected::Other("a number"), &self))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<SecretRef, E> {
        Err(E::invalid_type(de::Unexpected::Other("a boolean"), &self))
    }
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Env(variable) => write!(f, "environment variable {variable}"),
            Self::SecretsManager { id, field: None } => write!(f, "Secrets Manager secret {id:?}"),
            Self::SecretsManager {
                id,
                field: Some(field),
            } => write!(f, "field {field:?} of Secrets Manager secret {id:?}"),
            Self::Ssm(name) => write!(f, "SSM parameter {name:?}"),
        }
    }
}

/// How an archive object is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// gzip (`Content-Encoding: gzip`, `.json.gz`): JSON compresses about tenfold.
    #[default]
    Gzip,
    /// The bytes as they are (`.json`).
    None,
}

/// Extra request parts a source always sends: headers and query parameters, in addition to the
/// URL's own query.
pub type RequestParts = BTreeMap<String, String>;

/// Whether `pointer` is an RFC 6901 JSON pointer (empty, or starting with `/`).
pub fn check_pointer(pointer: &str) -> Result<(), String> {
    if pointer.is_empty() || pointer.starts_with('/') {
        Ok(())
    } else {
        Err(format!(
            "{pointer:?} is not a JSON pointer (it starts with \"/\", like \"/data\")"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Wrapper {
        pagination: Pagination,
        auth: Auth,
    }

    #[test]
    fn a_cursor_source_reads_like_its_documentation() {
        let parsed: Wrapper = toml::from_str(
            r#"
            [pagination]
            style = "cursor"
            cursor_field = "/meta/next"
            has_more_field = "/has_more"
            size_param = "limit"
            size = 100

            [auth]
            type = "header"
            name = "X-Api-Key"
            secret = { secrets_manager = { id = "orders/api", field = "key" } }
            "#,
        )
        .unwrap();
        parsed.pagination.validate().unwrap();
        assert_eq!(parsed.pagination.param(), "cursor");
        assert_eq!(parsed.pagination.max_pages, 10_000);
        assert_eq!(
            parsed.auth.secret().to_string(),
            "field \"key\" of Secrets Manager secret \"orders/api\""
        );
    }

    #[test]
    fn styles_say_what_they_miss() {
        let cursor = Pagination {
            style: PageStyle::Cursor,
            ..Pagination::default()
        };
        assert_eq!(
            cursor.validate().unwrap_err(),
            "pagination style Cursor needs pagination.cursor_field"
        );
        let relative = Pagination {
            style: PageStyle::NextUrl,
            next_url_field: Some("next".into()),
            ..Pagination::default()
        };
        assert!(
            relative
                .validate()
                .unwrap_err()
                .contains("not a JSON pointer")
        );
        let half = Pagination {
            size: Some(10),
            ..Pagination::default()
        };
        assert!(half.validate().unwrap_err().contains("go together"));
    }

    #[test]
    fn unknown_keys_and_plain_secrets_are_refused() {
        let typo = toml::from_str::<Pagination>("stlye = \"page\"");
        assert!(typo.unwrap_err().to_string().contains("stlye"));
        let plain = serde_json::from_str::<Auth>(r#"{"type": "bearer", "secret": "hunter2"}"#);
        let err = plain.unwrap_err().to_string();
        assert!(
            err.contains("a table naming where the secret is kept"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }
}
