//! Walking a source's pages: the URL of each request, the records and paging fields of each
//! answer, and when to stop. Pure logic, no I/O: [`Pager`] is told what each page held and
//! says what to ask for next.

use std::borrow::Cow;
use std::collections::HashMap;

use barge_core::Source;
use barge_core::fetch::{PageStyle, Pagination};
use serde_json::Value;
use serde_json::value::RawValue;
use url::Url;

/// What a page held that decides what comes next.
#[derive(Debug, Default)]
pub struct PageInfo {
    /// Records in the page.
    pub records: u64,
    /// The `rel="next"` target of the `Link` header, if any.
    pub link_next: Option<String>,
    /// The page's paging fields (`cursor_field`, `next_url_field`, …), when its records sit
    /// inside an object.
    pub fields: PageFields,
}

/// The paging fields read from a page's body.
#[derive(Debug, Default, PartialEq)]
pub struct PageFields {
    /// The next cursor (`cursor_field`); `None` when missing, `null` or empty.
    pub cursor: Option<String>,
    /// The next page's URL (`next_url_field`); `None` when missing, `null` or empty.
    pub next_url: Option<String>,
    /// Whether more pages follow (`has_more_field`).
    pub has_more: Option<bool>,
    /// The total number of records (`total_field`).
    pub total: Option<u64>,
}

/// What to do after a page.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Ask for this URL.
    Fetch(Url),
    /// The run is complete.
    Done,
    /// `max_pages` pages were fetched: the run ends there.
    Capped,
}

/// A page that cannot be followed: a loop, or a paging field of the wrong kind.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PageError {
    /// The API sent the same cursor or URL twice: following it would never end.
    #[error("page {page} points back to {what} already followed: stopping instead of looping")]
    Loop {
        /// The page (from 1) that repeated itself.
        page: u64,
        /// The repeated cursor or URL (redacted).
        what: String,
    },
    /// A paging field or the records are missing or of the wrong kind.
    #[error("page {page}: {problem}")]
    Shape {
        /// The page (from 1).
        page: u64,
        /// What is wrong.
        problem: String,
    },
}

/// The pages of one run of a source.
#[derive(Debug)]
pub struct Pager<'a> {
    pagination: &'a Pagination,
    /// The first page's URL, with every fixed parameter set; page, offset and cursor URLs are
    /// made from it.
    first: Url,
    /// Pages fetched so far.
    pages: u64,
    /// Records fetched so far.
    records: u64,
    /// Cursors and URLs followed, for the loop guard.
    followed: Vec<String>,
    /// Whether next-page URLs must stay on the first URL's origin: the source's credential is
    /// sent with every request, and must not go to whatever host a page names.
    same_origin: bool,
}

impl<'a> Pager<'a> {
    /// The pager of `source`, asking for records newer than `mark` (sent in the incremental
    /// parameter) when there is one. `url` is the source's URL, parsed. The source's fixed
    /// `query` parameters and credential are set on every request by [`crate::http`].
    pub fn new(source: &'a Source, url: Url, mark: Option<&str>) -> Self {
        let pagination = &source.pagination;
        let mut first = url;
        if let (Some(incremental), Some(mark)) = (&source.incremental, mark) {
            set_param(&mut first, &incremental.param, mark);
        }
        if let (Some(size_param), Some(size)) = (&pagination.size_param, pagination.size) {
            set_param(&mut first, size_param, &size.to_string());
        }
        match pagination.style {
            PageStyle::Page => {
                set_param(
                    &mut first,
                    pagination.param(),
                    &pagination.first_page.to_string(),
                );
            }
            PageStyle::Offset => set_param(&mut first, pagination.param(), "0"),
            PageStyle::None | PageStyle::Cursor | PageStyle::NextUrl | PageStyle::LinkHeader => {}
        }
        Self {
            pagination,
            first,
            pages: 0,
            records: 0,
            followed: Vec::new(),
            same_origin: source.auth.is_some(),
        }
    }

    /// The first page's URL.
    pub fn first(&self) -> &Url {
        &self.first
    }

    /// Pages fetched so far.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Takes in what page `url` held and says what comes next. Every style stops at a page
    /// without records, at `has_more = false` and once `total` records have come.
    pub fn advance(&mut self, url: &Url, page: &PageInfo) -> Result<Next, PageError> {
        self.pages += 1;
        self.records += page.records;
        let fields = &page.fields;
        let ended = page.records == 0
            || fields.has_more == Some(false)
            || fields.total.is_some_and(|total| self.records >= total);
        if ended || self.pagination.style == PageStyle::None {
            return Ok(Next::Done);
        }
        let next = match self.pagination.style {
            PageStyle::None => return Ok(Next::Done),
            PageStyle::Page => {
                let number = self.pagination.first_page + self.pages;
                self.with_param(&number.to_string())
            }
            PageStyle::Offset => self.with_param(&self.records.to_string()),
            PageStyle::Cursor => match &fields.cursor {
                None if fields.has_more == Some(true) => {
                    return Err(self.no_next("cursor", &self.pagination.cursor_field));
                }
                None => return Ok(Next::Done),
                Some(cursor) => {
                    self.guard(cursor, || format!("cursor {cursor:?}"))?;
                    self.with_param(cursor)
                }
            },
            PageStyle::NextUrl | PageStyle::LinkHeader => {
                let target = match self.pagination.style {
                    PageStyle::NextUrl => &fields.next_url,
                    _ => &page.link_next,
                };
                let Some(target) = target else {
                    if fields.has_more == Some(true) {
                        let field = match self.pagination.style {
                            PageStyle::NextUrl => &self.pagination.next_url_field,
                            _ => &None,
                        };
                        return Err(self.no_next("next page URL", field));
                    }
                    return Ok(Next::Done);
                };
                let next = url.join(target).map_err(|err| PageError::Shape {
                    page: self.pages,
                    problem: format!(
                        "the next page's URL {:?} does not parse: {err}",
                        barge_core::redact_url(target)
                    ),
                })?;
                if self.same_origin && next.origin() != self.first.origin() {
                    return Err(PageError::Shape {
                        page: self.pages,
                        problem: format!(
                            "the next page is on another host ({}): the source's credential is \
                             sent only to {}",
                            barge_core::redact_url(next.as_str()),
                            self.first.origin().ascii_serialization()
                        ),
                    });
                }
                self.guard(next.as_str(), || barge_core::redact_url(next.as_str()))?;
                next
            }
        };
        if self.pages >= self.pagination.max_pages {
            return Ok(Next::Capped);
        }
        Ok(Next::Fetch(next))
    }

    /// A page that says more pages follow but not where: most likely a mistyped field.
    fn no_next(&self, what: &str, field: &Option<String>) -> PageError {
        let place = match field {
            Some(pointer) => format!(" at {pointer:?}"),
            None => " in a Link header".into(),
        };
        PageError::Shape {
            page: self.pages,
            problem: format!("has_more is true but the page has no {what}{place}"),
        }
    }

    /// The first URL with the page parameter set to `value`.
    fn with_param(&self, value: &str) -> Url {
        let mut url = self.first.clone();
        set_param(&mut url, self.pagination.param(), value);
        url
    }

    /// Fails if `followed` was followed before in this run.
    fn guard(
        &mut self,
        followed: &str,
        describe: impl FnOnce() -> String,
    ) -> Result<(), PageError> {
        if self.followed.iter().any(|seen| seen == followed) {
            return Err(PageError::Loop {
                page: self.pages,
                what: describe(),
            });
        }
        self.followed.push(followed.to_owned());
        Ok(())
    }
}

/// Sets query parameter `name` of `url` to `value`, replacing any value it had.
pub fn set_param(url: &mut Url, name: &str, value: &str) {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| key != name)
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(name, value);
}

/// The target of the `rel="next"` link of an RFC 8288 `Link` header value, if any.
pub fn link_next(header: &str) -> Option<String> {
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let close = open + rest[open..].find('>')?;
        let target = &rest[open + 1..close];
        let params_end = rest[close..].find('<').map_or(rest.len(), |at| close + at);
        let params = &rest[close + 1..params_end];
        let is_next = params.split(';').any(|param| {
            let Some((name, value)) = param.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.to_owned());
        }
        rest = &rest[params_end..];
    }
    None
}

/// A page whose records sit at a JSON pointer: the records' raw text, untouched, and the paging
/// fields.
#[derive(Debug)]
pub struct Envelope<'a> {
    /// Each record's JSON text exactly as the API sent it.
    pub records: Vec<&'a RawValue>,
    /// The paging fields the source declares.
    pub fields: PageFields,
}

/// Reads page number `page`'s `body`: the records at `records` (a JSON pointer; empty when the
/// body is the array) and the paging fields `pagination` names.
pub fn read_envelope<'a>(
    body: &'a str,
    records: &str,
    pagination: &Pagination,
    page: u64,
) -> Result<Envelope<'a>, PageError> {
    let shape = |problem: String| PageError::Shape { page, problem };
    let root: &RawValue =
        serde_json::from_str(body).map_err(|err| shape(format!("not valid JSON: {err}")))?;
    let at = lookup(root, records).map_err(shape)?;
    let records = match at {
        Some(array) if array.get().starts_with('[') => serde_json::from_str(array.get())
            .map_err(|err| shape(format!("records at {records:?}: {err}")))?,
        Some(null) if null.get() == "null" => Vec::new(),
        Some(other) => {
            return Err(shape(format!(
                "expected an array of records at {records:?}, found {}",
                barge_core::batch::raw_kind(other.get())
            )));
        }
        None => {
            return Err(shape(format!(
                "no records at {records:?} (the page is {})",
                describe_keys(root)
            )));
        }
    };
    let field = |pointer: &Option<String>| -> Result<Option<Value>, PageError> {
        let Some(pointer) = pointer else {
            return Ok(None);
        };
        let raw = lookup(root, pointer).map_err(shape)?;
        let value = raw
            .map(|raw| serde_json::from_str::<Value>(raw.get()))
            .transpose()
            .map_err(|err| shape(format!("{pointer}: {err}")))?;
        Ok(value.filter(|value| !value.is_null()))
    };
    let text = |pointer: &Option<String>| -> Result<Option<String>, PageError> {
        match field(pointer)? {
            None => Ok(None),
            Some(Value::String(text)) if text.is_empty() => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            // Some APIs' cursors are numbers.
            Some(Value::Number(number)) => Ok(Some(number.to_string())),
            Some(other) => Err(shape(format!(
                "{} is {}, expected a string",
                pointer.as_deref().unwrap_or_default(),
                barge_core::json_kind(&other)
            ))),
        }
    };
    let has_more = match field(&pagination.has_more_field)? {
        None => None,
        Some(Value::Bool(more)) => Some(more),
        Some(other) => {
            return Err(shape(format!(
                "{} is {}, expected true or false",
                pagination.has_more_field.as_deref().unwrap_or_default(),
                barge_core::json_kind(&other)
            )));
        }
    };
    let total = match field(&pagination.total_field)? {
        None => None,
        Some(Value::Number(total)) if total.as_u64().is_some() => total.as_u64(),
        Some(other) => {
            return Err(shape(format!(
                "{} is {other}, expected a count",
                pagination.total_field.as_deref().unwrap_or_default()
            )));
        }
    };
    Ok(Envelope {
        records,
        fields: PageFields {
            cursor: text(&pagination.cursor_field)?,
            next_url: text(&pagination.next_url_field)?,
            has_more,
            total,
        },
    })
}

/// The value at RFC 6901 `pointer` in `root`, reading only the objects and arrays on the way.
fn lookup<'a>(root: &'a RawValue, pointer: &str) -> Result<Option<&'a RawValue>, String> {
    let mut current = root;
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        let text = current.get();
        let next = if text.starts_with('{') {
            let object: HashMap<Cow<'a, str>, &'a RawValue> =
                serde_json::from_str(text).map_err(|err| err.to_string())?;
            object.get(token.as_str()).copied()
        } else if text.starts_with('[') {
            let array: Vec<&'a RawValue> =
                serde_json::from_str(text).map_err(|err| err.to_string())?;
            token
                .parse::<usize>()
                .ok()
                .and_then(|i| array.get(i).copied())
        } else {
            None
        };
        match next {
            Some(next) => current = next,
            None => return Ok(None),
        }
    }
    Ok(Some(current))
}

/// What a page is, for an error: an object's first keys, or its kind.
fn describe_keys(root: &RawValue) -> String {
    match serde_json::from_str::<HashMap<Cow<'_, str>, &RawValue>>(root.get()) {
        Ok(object) => {
            let mut keys: Vec<&str> = object.keys().map(|key| key.as_ref()).collect();
            keys.sort_unstable();
            keys.truncate(8);
            format!("an object with keys {keys:?}")
        }
        Err(_) => barge_core::batch::raw_kind(root.get()).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(pagination: Pagination) -> Source {
        Source {
            url: Some("https://api.example.com/items?fixed=1".into()),
            pagination,
            ..Source::jsonplaceholder_posts()
        }
    }

    fn page(records: u64) -> PageInfo {
        PageInfo {
            records,
            ..PageInfo::default()
        }
    }

    fn walk(source: &Source, pages: &[PageInfo]) -> Vec<String> {
        let url = Url::parse(source.url.as_deref().unwrap()).unwrap();
        let mut pager = Pager::new(source, url, Some("41"));
        let mut urls = vec![pager.first().to_string()];
        let mut current = pager.first().clone();
        for info in pages {
            match pager.advance(&current, info).unwrap() {
                Next::Fetch(next) => {
                    urls.push(next.to_string());
                    current = next;
                }
                other => {
                    urls.push(format!("{other:?}"));
                    break;
                }
            }
        }
        urls
    }

    #[test]
    fn page_numbers_count_from_the_first_page_and_stop_at_an_empty_one() {
        let mut source = source(Pagination {
            style: PageStyle::Page,
            size_param: Some("per_page".into()),
            size: Some(2),
            ..Pagination::default()
        });
        source.incremental = Some(barge_core::fetch::Incremental {
            field: "id".into(),
            param: "since_id".into(),
            start: None,
        });
        assert_eq!(
            walk(&source, &[page(2), page(2), page(0)]),
            [
                "https://api.example.com/items?fixed=1&since_id=41&per_page=2&page=1",
                "https://api.example.com/items?fixed=1&since_id=41&per_page=2&page=2",
                "https://api.example.com/items?fixed=1&since_id=41&per_page=2&page=3",
                "Done"
            ]
        );
    }

    #[test]
    fn offsets_advance_by_the_records_received_and_stop_at_the_total() {
        let source = source(Pagination {
            style: PageStyle::Offset,
            total_field: Some("/total".into()),
            ..Pagination::default()
        });
        let with_total = |records| PageInfo {
            records,
            fields: PageFields {
                total: Some(7),
                ..PageFields::default()
            },
            ..PageInfo::default()
        };
        assert_eq!(
            walk(&source, &[with_total(3), with_total(3), with_total(1)]),
            [
                "https://api.example.com/items?fixed=1&offset=0",
                "https://api.example.com/items?fixed=1&offset=3",
                "https://api.example.com/items?fixed=1&offset=6",
                "Done"
            ]
        );
    }

    #[test]
    fn cursors_are_followed_until_missing_and_a_repeated_one_is_a_loop() {
        let source = source(Pagination {
            style: PageStyle::Cursor,
            cursor_field: Some("/next".into()),
            ..Pagination::default()
        });
        let cursor = |cursor: Option<&str>| PageInfo {
            records: 1,
            fields: PageFields {
                cursor: cursor.map(Into::into),
                ..PageFields::default()
            },
            ..PageInfo::default()
        };
        assert_eq!(
            walk(&source, &[cursor(Some("a b")), cursor(None)]),
            [
                "https://api.example.com/items?fixed=1",
                "https://api.example.com/items?fixed=1&cursor=a+b",
                "Done"
            ]
        );
        let url = Url::parse("https://api.example.com/items").unwrap();
        let mut pager = Pager::new(&source, url.clone(), None);
        pager.advance(&url, &cursor(Some("same"))).unwrap();
        assert_eq!(
            pager.advance(&url, &cursor(Some("same"))).unwrap_err(),
            PageError::Loop {
                page: 2,
                what: "cursor \"same\"".into()
            }
        );
    }

    #[test]
    fn more_pages_without_a_way_to_them_and_credentials_to_other_hosts_are_refused() {
        let mut source = source(Pagination {
            style: PageStyle::Cursor,
            cursor_field: Some("/next".into()),
            has_more_field: Some("/more".into()),
            ..Pagination::default()
        });
        let url = Url::parse("https://api.example.com/items").unwrap();
        let more = PageInfo {
            records: 1,
            fields: PageFields {
                has_more: Some(true),
                ..PageFields::default()
            },
            ..PageInfo::default()
        };
        let error = Pager::new(&source, url.clone(), None)
            .advance(&url, &more)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "page 1: has_more is true but the page has no cursor at \"/next\""
        );
        source.pagination.style = PageStyle::LinkHeader;
        source.auth = Some(barge_core::fetch::Auth::Bearer {
            secret: barge_core::fetch::SecretRef::Env("TOKEN".into()),
        });
        let elsewhere = PageInfo {
            records: 1,
            link_next: Some("https://evil.example.net/items?page=2".into()),
            ..PageInfo::default()
        };
        let error = Pager::new(&source, url.clone(), None)
            .advance(&url, &elsewhere)
            .unwrap_err();
        assert!(error.to_string().contains("is on another host"), "{error}");
    }

    #[test]
    fn next_urls_resolve_against_the_page_and_link_headers_pick_rel_next() {
        let source = source(Pagination {
            style: PageStyle::LinkHeader,
            max_pages: 2,
            ..Pagination::default()
        });
        let linked = |target: &str| PageInfo {
            records: 1,
            link_next: Some(target.into()),
            ..PageInfo::default()
        };
        assert_eq!(
            walk(&source, &[linked("/items?page=2"), linked("/items?page=3")]),
            [
                "https://api.example.com/items?fixed=1",
                "https://api.example.com/items?page=2",
                "Capped"
            ]
        );
        assert_eq!(
            link_next(r#"<https://x/?page=1>; rel="first", <https://x/?page=2&a=b,c>; rel="next""#),
            Some("https://x/?page=2&a=b,c".into())
        );
        assert_eq!(
            link_next("<https://x/2>; rel=next"),
            Some("https://x/2".into())
        );
        assert_eq!(
            link_next(r#"<https://x/3>; rel="last next"; title="x""#),
            Some("https://x/3".into())
        );
        assert_eq!(link_next(r#"<https://x/1>; rel="prev""#), None);
        assert_eq!(link_next("garbage"), None);
    }

    #[test]
    fn envelopes_give_raw_records_and_typed_fields() {
        let pagination = Pagination {
            style: PageStyle::Cursor,
            cursor_field: Some("/meta/next".into()),
            has_more_field: Some("/has_more".into()),
            total_field: Some("/total".into()),
            ..Pagination::default()
        };
        let body = r#"{"data": [ {"id": 1,  "x": "a\u00e9"} ,{"id":2}], "has_more": true,
            "total": 10, "meta": {"next": "c2"}}"#;
        let envelope = read_envelope(body, "/data", &pagination, 1).unwrap();
        let records: Vec<&str> = envelope.records.iter().map(|r| r.get()).collect();
        assert_eq!(records, [r#"{"id": 1,  "x": "a\u00e9"}"#, r#"{"id":2}"#]);
        assert_eq!(
            envelope.fields,
            PageFields {
                cursor: Some("c2".into()),
                next_url: None,
                has_more: Some(true),
                total: Some(10),
            }
        );
        let end = read_envelope(
            r#"{"data": null, "meta": {"next": null}}"#,
            "/data",
            &pagination,
            3,
        )
        .unwrap();
        assert!(end.records.is_empty() && end.fields.cursor.is_none());
        let error = |body: &str| {
            read_envelope(body, "/data", &pagination, 2)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error(r#"{"error": "rate limited", "code": 7}"#),
            "page 2: no records at \"/data\" (the page is an object with keys [\"code\", \"error\"])"
        );
        assert_eq!(
            error(r#"{"data": {"id": 1}}"#),
            "page 2: expected an array of records at \"/data\", found an object"
        );
        assert!(error(r#"{"data": [], "has_more": "yes"}"#).contains("expected true or false"));
        assert!(error("<html>").starts_with("page 2: not valid JSON"));
        let array = read_envelope("[1, 2]", "", &Pagination::default(), 1).unwrap();
        assert_eq!(array.records.len(), 2);
    }
}
