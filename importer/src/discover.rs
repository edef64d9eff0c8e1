//! `importer discover`: fetches a sample of a source (or of a bare URL) and writes the
//! `[[sources]]` block that would load it, for the user to check and paste into the settings.
//!
//! Fetching is the importer's own: the source's URL, paging, envelope, auth, headers and query
//! through [`crate::http::Requester`], [`crate::pages::Pager`] and [`crate::fetch::envelope`],
//! so a block proposed here reads the pages `importer once` reads. Nothing is written anywhere
//! and S3, SQS and PostgreSQL are never called: AWS clients are made only to read a credential
//! the source keeps in Secrets Manager or SSM.
//!
//! The map: [`json`] reads records keeping field order and number text; [`infer`] decides each
//! field's type; [`block`] names the columns and writes the TOML.

use barge_core::aws::AwsClients;
use barge_core::fetch::SecretRef;
use barge_core::settings::HttpSettings;
use barge_core::{Settings, Source};
use secrecy::SecretString;
use serde_json::value::RawValue;
use tracing::Instrument;
use url::Url;

use crate::ImportError;
use crate::http::Requester;
use crate::pages::{Next, PageInfo, Pager};

mod block;
mod infer;
mod json;

use block::{Sample, quoted};
use json::Json;

/// What to sample and how to write it.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The most pages fetched.
    pub pages: u64,
    /// The most records taken in (the page that reaches it is the last).
    pub records: u64,
    /// Nested objects become a column per field (`field = "/a/b"`) instead of one `jsonb`.
    pub flatten: bool,
}

/// What to sample.
#[derive(Debug, Clone)]
pub enum Target {
    /// The declared source of this name: its URL, paging, records pointer, auth, headers and
    /// query.
    Source(String),
    /// A bare URL, fetched once with a plain GET: its page is the array of records, or an object
    /// holding one (found by looking).
    Url(String),
}

/// Why no block could be proposed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// Fetching failed, as it would for `importer once`.
    #[error(transparent)]
    Fetch(#[from] ImportError),
    /// `--source` names no declared source.
    #[error("no source {name:?} is declared in the settings (declared: {})", declared.join(", "))]
    UnknownSource {
        /// The name asked for.
        name: String,
        /// The names declared.
        declared: Vec<String>,
    },
    /// The URL given is not an http(s) URL.
    #[error("{url:?} is not an http(s) URL: {reason}")]
    Url {
        /// The URL, redacted.
        url: String,
        /// Why.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
    /// The first page of a bare URL is an object without an array of records in it.
    #[error(
        "GET {url}: the page is an object with keys [{}] and none holds an array of records: \
         declare the source with `records` set to their JSON pointer and use --source",
        keys.join(", ")
    )]
    NoRecordsArray {
        /// The URL, redacted.
        url: String,
        /// The page's keys.
        keys: Vec<String>,
    },
    /// A record is not a JSON object, so it has no fields to map onto columns.
    #[error("GET {url}: page {page}, record {index} is {kind}, not an object with fields")]
    NotAnObject {
        /// The page's URL, redacted.
        url: String,
        /// The page, from 1.
        page: u64,
        /// The record's index in its page, from 0.
        index: usize,
        /// What it is instead.
        kind: &'static str,
    },
    /// The pages held no record to learn from.
    #[error("GET {url}: no records in the sample, so there is nothing to propose columns from")]
    NoRecords {
        /// The first page's URL, redacted.
        url: String,
    },
}

/// Fetches a sample of `target` within `options`' limits and returns the proposed
/// `[[sources]]` block (TOML, with comments). `settings` declare the sources and the `http`
/// timeouts, retries and size limits of every request (defaults for a bare URL).
pub async fn discover(
    target: Target,
    settings: &Settings,
    options: &Options,
) -> Result<String, DiscoverError> {
    let http = &settings.http;
    let (source, declared) = match target {
        Target::Source(name) => match settings.source(&name) {
            Some(source) => (source.clone(), true),
            None => {
                return Err(DiscoverError::UnknownSource {
                    name,
                    declared: settings.sources.iter().map(|s| s.name.clone()).collect(),
                });
            }
        },
        Target::Url(url) => (source_for_url(&url)?, false),
    };
    let url = crate::source_url(&source)?;
    let client = crate::http::client(http, source.auth.is_some())
        .map_err(|err| DiscoverError::HttpClient(barge_core::error_chain(&err)))?;
    let secret = credential(&source).await?;
    let mut requester = Requester::with_secret(&source, http, &client, secret)?;
    let mut sample = Sample::new(options.flatten);
    let shown = barge_core::redact_url(url.as_str());
    let span = tracing::info_span!("discover", source = %source.name, url = %shown);
    let (pages, notes, head) = if declared {
        let (pages, cut_short) =
            sample_pages(&source, &mut requester, url, http, options, &mut sample)
                .instrument(span)
                .await?;
        let notes = cut_short
            .then(|| cut_short_note(options))
            .into_iter()
            .collect();
        (pages, notes, declared_head(&source))
    } else {
        let (records, mut notes) =
            sample_url(&source, &mut requester, &url, http, options, &mut sample)
                .instrument(span)
                .await?;
        // A credential in the URL must not be pasted into a settings file: such a URL is written
        // with its user, password and query values hidden, for the user to move them.
        let hides_secrets =
            !url.username().is_empty() || url.password().is_some() || url.query().is_some();
        let written = if hides_secrets { &shown } else { url.as_str() };
        let mut head = format!(
            "name = {}\nurl = {}\n",
            quoted(&source.name),
            quoted(written)
        );
        if hides_secrets {
            notes.push(
                "The URL's user, password and query values are hidden (***): put a credential in \
                 auth, other parameters in query = { … }."
                    .to_owned(),
            );
        }
        if !records.is_empty() {
            head.push_str(&format!("records = {}\n", quoted(&records)));
        }
        (1, notes, (head, String::new()))
    };
    if sample.records == 0 {
        return Err(DiscoverError::NoRecords { url: shown });
    }
    let (keys, sub_tables) = head;
    let mut text = format!(
        "# Proposed by `importer discover` from {} record(s) on {pages} page(s) of {shown}.\n\
         # Each column is the narrowest type that took every sampled value; check them, then\n\
         # paste the block into the settings file.\n",
        sample.records
    );
    for note in notes {
        text.push_str(&format!("# {}\n", block::commented(&note)));
    }
    text.push_str("[[sources]]\n");
    text.push_str(&keys);
    text.push_str(&format!("table = {}\n", quoted(&source.table)));
    text.push_str(&block::key_and_columns(&sample.columns()));
    text.push_str(&sub_tables);
    Ok(text)
}

/// The credential of `source`'s auth, if any: AWS clients are made only when it is kept in
/// Secrets Manager or SSM.
async fn credential(source: &Source) -> Result<Option<SecretString>, ImportError> {
    let Some(auth) = &source.auth else {
        return Ok(None);
    };
    let secret = match auth.secret() {
        SecretRef::Env(variable) => barge_core::secrets::from_env(variable),
        in_aws => barge_core::secrets::resolve(in_aws, &AwsClients::from_env().await).await,
    };
    secret.map(Some).map_err(|error| ImportError::Secret {
        source_name: source.name.clone(),
        error,
    })
}

/// Walks a declared source's pages from `url` as `importer once` would, taking their records
/// into `sample` until `options`' limits; returns the pages fetched and whether more were left.
async fn sample_pages(
    source: &Source,
    requester: &mut Requester<'_>,
    url: Url,
    http: &HttpSettings,
    options: &Options,
    sample: &mut Sample,
) -> Result<(u64, bool), DiscoverError> {
    let mut pager = Pager::new(source, url, None);
    let mut next = pager.first().clone();
    loop {
        let number = pager.pages() + 1;
        let mut answer = requester.get(&next, number).await?;
        let body = answer.body_within(http.max_page_bytes, number).await?;
        let shown = answer.redacted_url().to_owned();
        let envelope = crate::fetch::envelope(source, &shown, number, &body)?;
        let taken = take(&envelope.records, &shown, number, options, sample)?;
        tracing::info!(page = number, records = taken, "page sampled");
        if taken < envelope.records.len() {
            return Ok((pager.pages() + 1, true));
        }
        let info = PageInfo {
            records: envelope.records.len() as u64,
            link_next: answer.link_next(),
            fields: envelope.fields,
        };
        let after = pager
            .advance(&answer.url, &info)
            .map_err(|error| ImportError::Paging {
                source_name: source.name.clone(),
                url: shown,
                error,
            })?;
        let Next::Fetch(url) = after else {
            return Ok((pager.pages(), after == Next::Capped));
        };
        if pager.pages() >= options.pages || sample.records >= options.records {
            return Ok((pager.pages(), true));
        }
        next = url;
    }
}

/// Fetches a bare URL's one page into `sample`, finding where its records are; returns their
/// JSON pointer (empty when the page is the array) and notes for the block.
async fn sample_url(
    source: &Source,
    requester: &mut Requester<'_>,
    url: &Url,
    http: &HttpSettings,
    options: &Options,
    sample: &mut Sample,
) -> Result<(String, Vec<String>), DiscoverError> {
    let mut answer = requester.get(url, 1).await?;
    let body = answer.body_within(http.max_page_bytes, 1).await?;
    let shown = answer.redacted_url().to_owned();
    let (records, others) = find_records(&body, &shown)?;
    let mut found = source.clone();
    found.records = records.clone();
    let envelope = crate::fetch::envelope(&found, &shown, 1, &body)?;
    let taken = take(&envelope.records, &shown, 1, options, sample)?;
    let mut notes = vec![
        "Fetched one page: paging is not guessed. If the API pages, declare [sources.pagination]"
            .to_owned(),
        "(see the README's Fetching section) and run `importer discover --source` again."
            .to_owned(),
    ];
    if !others.is_empty() {
        notes.push(format!(
            "Besides the records the page holds: {} (paging fields?).",
            others
                .iter()
                .map(|key| block::quoted(key))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if answer.link_next().is_some() {
        notes.push(
            "The answer has a Link header with rel=\"next\": style = \"link_header\"?".into(),
        );
    }
    if taken < envelope.records.len() {
        notes.push(cut_short_note(options));
    }
    Ok((records, notes))
}

/// Takes page `page`'s `records` into `sample`, up to `options.records` in all; returns how
/// many it took.
fn take(
    records: &[&RawValue],
    url: &str,
    page: u64,
    options: &Options,
    sample: &mut Sample,
) -> Result<usize, DiscoverError> {
    for (index, raw) in records.iter().enumerate() {
        if sample.records >= options.records {
            return Ok(index);
        }
        let not_object = |kind| DiscoverError::NotAnObject {
            url: url.to_owned(),
            page,
            index,
            kind,
        };
        // The page parsed as JSON already, so only an impossible record fails here.
        let record = Json::parse(raw).map_err(|_| not_object("not JSON"))?;
        let Json::Object(fields) = record else {
            let kind = serde_json::from_str::<serde_json::Value>(raw.get())
                .map_or("not JSON", |value| barge_core::json_kind(&value));
            return Err(not_object(kind));
        };
        sample.add(&fields);
    }
    Ok(records.len())
}

/// Where a bare URL's page keeps its records: `""` when it is an array, else the pointer of
/// the member that is a non-empty array of objects (the longest, if several); and the page's
/// other keys.
fn find_records(body: &[u8], url: &str) -> Result<(String, Vec<String>), DiscoverError> {
    let page: serde_json::Value = match serde_json::from_slice(body) {
        Ok(page) => page,
        // Let the envelope reader name what is wrong with the page.
        Err(_) => return Ok((String::new(), Vec::new())),
    };
    let Some(object) = page.as_object() else {
        return Ok((String::new(), Vec::new()));
    };
    let records = object
        .iter()
        .filter_map(|(key, value)| Some((key, value.as_array()?)))
        .filter(|(_, items)| items.first().is_some_and(serde_json::Value::is_object))
        .max_by_key(|(_, items)| items.len())
        .map(|(key, _)| key.clone());
    let Some(records) = records else {
        return Err(DiscoverError::NoRecordsArray {
            url: url.to_owned(),
            keys: object.keys().cloned().collect(),
        });
    };
    let others = object
        .keys()
        .filter(|key| **key != records)
        .cloned()
        .collect();
    let pointer = format!("/{}", records.replace('~', "~0").replace('/', "~1"));
    Ok((pointer, others))
}

/// The note of a sample cut short by a limit.
fn cut_short_note(options: &Options) -> String {
    format!(
        "The sample stopped at --pages {} / --records {}: later records may hold fields or \
         values not seen here.",
        options.pages, options.records
    )
}

/// A declared source's own keys (everything but `table`, `primary_key` and `columns`, which
/// the block proposes) and its sub-tables (`[sources.pagination]`, …), as TOML.
fn declared_head(source: &Source) -> (String, String) {
    #[derive(serde::Serialize)]
    struct File<'a> {
        sources: [&'a Source; 1],
    }
    let mut bare = source.clone();
    bare.columns.clear();
    bare.primary_key.clear();
    let text = toml::to_string(&File { sources: [&bare] }).expect("a source serializes to TOML");
    let body = text.strip_prefix("[[sources]]\n").unwrap_or(&text);
    let (keys, sub_tables) = match body.find("\n[sources.") {
        Some(at) => body.split_at(at + 1),
        None => (body, ""),
    };
    let keys: String = keys
        .lines()
        .filter(|line| {
            !line.is_empty()
                && !["table = ", "primary_key = ", "columns = "]
                    .iter()
                    .any(|proposed| line.starts_with(proposed))
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let sub_tables = match sub_tables.trim_end() {
        "" => String::new(),
        tables => format!("\n{tables}\n"),
    };
    (keys, sub_tables)
}

/// The source a bare URL stands for: named after the last segment of its path (`/v2/orders`
/// → `orders`), its table the same, everything else the defaults.
fn source_for_url(url: &str) -> Result<Source, DiscoverError> {
    let invalid = |reason: String| DiscoverError::Url {
        url: barge_core::redact_url(url),
        reason,
    };
    let parsed = Url::parse(url).map_err(|err| invalid(err.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(format!("the scheme is {}", parsed.scheme())));
    }
    let segment = parsed
        .path_segments()
        .and_then(|mut segments| segments.rfind(|segment| !segment.is_empty()))
        .unwrap_or_default();
    let name = block::column_name(&[segment.to_ascii_lowercase()]);
    let name = if segment.is_empty() {
        "source".into()
    } else {
        name
    };
    let mut declaration = toml::Table::new();
    declaration.insert("name".into(), name.clone().into());
    declaration.insert("url".into(), url.into());
    declaration.insert("table".into(), name.into());
    declaration.insert("columns".into(), toml::Value::Array(Vec::new()));
    toml::Value::Table(declaration)
        .try_into()
        .map_err(|err: toml::de::Error| invalid(err.to_string()))
}
