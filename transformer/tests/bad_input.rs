//! The bad-input table: each class of odd object, record or message, fed to a real transformer
//! against LocalStack and PostgreSQL, with its exact outcome — rows loaded, records rejected and
//! the reject object's lines, or the dead-letter queue and the reason attached there.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use barge_core::message::MESSAGE_VERSION;
use barge_core::{BatchMessage, Column, ColumnType, Source};
use barge_localenv::TestEnv;
use common::{ledger, transformer};

/// What a case feeds the transformer.
enum Input {
    /// Bytes archived under the case's key and announced as an `items` batch.
    Object(Vec<u8>),
    /// A message body, sent as is.
    Body(String),
    /// An `items` batch announced, but never written to S3.
    Unwritten,
    /// An `items` batch announced as lying in a bucket the transformer does not read.
    ForeignBucket,
    /// A batch announced for a source the settings do not declare.
    UnknownSource,
    /// Archived and announced, then overwritten with other bytes.
    Tampered,
}

/// What must come of it.
enum Expect {
    /// Rows `(id, qty, label)` in the case's id range, and the reject object's lines.
    Loaded {
        rows: Vec<(i64, i32, String)>,
        rejects: Vec<String>,
    },
    /// On the dead-letter queue, with this class and exactly this reason.
    DeadLetter { class: &'static str, reason: String },
    /// As `DeadLetter`, where the reason ends in the SDK's own words: only its start is fixed.
    DeadLetterStartingWith { class: &'static str, reason: String },
    /// Acknowledged: no rows, no ledger entry, nothing dead-lettered.
    Ignored,
}

struct Case {
    name: &'static str,
    input: Input,
    expect: Expect,
}

/// A valid record.
fn rec(id: i64) -> String {
    format!(r#"{{"id":{id},"qty":{},"label":"item {id}"}}"#, id % 100)
}

fn row(id: i64) -> (i64, i32, String) {
    (id, (id % 100) as i32, format!("item {id}"))
}

fn array(records: &[String]) -> Vec<u8> {
    format!("[{}]", records.join(",")).into_bytes()
}

/// The NDJSON line of a rejected record.
fn reject(index: usize, at: Option<(&str, &str)>, reason: &str, record: &str) -> String {
    let (field, column) = match at {
        Some((field, column)) => (
            serde_json::to_string(field).unwrap(),
            serde_json::to_string(column).unwrap(),
        ),
        None => ("null".into(), "null".into()),
    };
    format!(
        r#"{{"record_index":{index},"field":{field},"column":{column},"reason":{},"record":{record}}}"#,
        serde_json::to_string(reason).unwrap()
    )
}

fn key(name: &str) -> String {
    format!("raw/items/{name}.json")
}

fn items_source() -> Source {
    let column = |name: &str, column_type, nullable| Column {
        nullable,
        ..Column::new(name, column_type)
    };
    Source {
        name: "items".into(),
        url: Some("http://127.0.0.1:1/unused".into()),
        interval: Duration::from_secs(60),
        table: "items".into(),
        primary_key: vec!["id".into()],
        columns: vec![
            column("id", ColumnType::Bigint, false),
            column("qty", ColumnType::Integer, false),
            column("label", ColumnType::Text, false),
            column("meta", ColumnType::Jsonb, true),
            column("flag", ColumnType::Boolean, true),
            column("price", ColumnType::DoublePrecision, true),
            column("ratio", ColumnType::Real, true),
        ],
        max_reject_ratio: 0.5,
        ..Source::jsonplaceholder_posts()
    }
}

/// The cases; case `i` uses ids from `(i + 1) * 1000`.
fn cases(bucket: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |name, input: &dyn Fn(i64) -> Input, expect: &dyn Fn(i64) -> Expect| {
        let base = (cases.len() as i64 + 1) * 1000;
        cases.push(Case {
            name,
            input: input(base),
            expect: expect(base),
        });
    };
    let dead = |class, reason: String| Expect::DeadLetter { class, reason };

    // Whole objects that are not a batch: dead-lettered at once, nothing loaded.
    add("empty-file", &|_| Input::Object(Vec::new()), &|_| {
        dead(
            "unreadable-object",
            format!(
                "{}: empty: expected a JSON array of records",
                key("empty-file")
            ),
        )
    });
    add(
        "whitespace-only",
        &|_| Input::Object(b" \n\t\r ".to_vec()),
        &|_| {
            dead(
                "unreadable-object",
                format!(
                    "{}: empty: expected a JSON array of records",
                    key("whitespace-only")
                ),
            )
        },
    );
    add(
        "truncated",
        &|b| Input::Object(format!(r#"[{},{{"id":{}"#, rec(b + 1), b + 2).into_bytes()),
        &|_| {
            dead(
                "unreadable-object",
                format!(
                    "{}: not valid JSON: ended inside record 1 at offset 51",
                    key("truncated")
                ),
            )
        },
    );
    add(
        "object-not-array",
        &|b| Input::Object(format!(r#"{{"items":[{}]}}"#, rec(b + 1)).into_bytes()),
        &|_| {
            dead(
                "unreadable-object",
                format!(
                    "{}: expected a JSON array of records, found an object (NDJSON objects \
                     need a key ending in .ndjson or .jsonl, or Content-Type \
                     application/x-ndjson)",
                    key("object-not-array")
                ),
            )
        },
    );
    add(
        "trailing-garbage",
        &|b| Input::Object(format!("[{}] and more", rec(b + 1)).into_bytes()),
        &|_| {
            dead(
                "unreadable-object",
                format!(
                    "{}: not valid JSON: trailing characters after the array at offset 42",
                    key("trailing-garbage")
                ),
            )
        },
    );
    add(
        "invalid-utf8",
        &|b| {
            let mut bytes =
                format!(r#"[{},{{"id":{},"qty":1,"label":"a"#, rec(b + 1), b + 2).into_bytes();
            bytes.extend(b"\xff\"}]");
            Input::Object(bytes)
        },
        &|_| {
            dead(
                "unreadable-object",
                format!(
                    "{}: not UTF-8 text: invalid byte at offset 70",
                    key("invalid-utf8")
                ),
            )
        },
    );
    add(
        "too-many-rejects",
        &|b| {
            Input::Object(array(&[
                format!(r#"{{"id":"{}","qty":1,"label":"x"}}"#, b + 1),
                format!(r#"{{"id":{},"qty":"1","label":"x"}}"#, b + 2),
                rec(b + 3),
                format!(r#"{{"id":{},"qty":1}}"#, b + 4),
            ]))
        },
        &|b| {
            dead(
                "too-many-rejects",
                format!(
                    "{}: 3 of 4 records rejected, more than the source's max_reject_ratio 0.5; \
                     first: record 0, field \"id\" (column \"id\"): expected an integer, found a \
                     string \"{}\"",
                    key("too-many-rejects"),
                    b + 1
                ),
            )
        },
    );

    // Messages that cannot be followed: dead-lettered at once with the reason.
    add(
        "garbage-body",
        &|_| Input::Body("this is not a message".into()),
        &|_| {
            dead(
                "malformed-message",
                "message body is unusable: not a barge batch message: expected ident at line 1 \
                 column 2"
                    .into(),
            )
        },
    );
    add(
        "unsupported-version",
        &|_| Input::Body(r#"{"version":2,"source":"items"}"#.into()),
        &|_| {
            dead(
                "unsupported-version",
                "message body is unusable: unsupported batch message version 2 (this build reads \
                 version 1)"
                    .into(),
            )
        },
    );
    add("foreign-bucket", &|_| Input::ForeignBucket, &|_| {
        dead(
            "foreign-object",
            format!(
                "s3://not-{bucket}/{}: not under s3://{bucket}/raw/, which is all this \
                 transformer loads",
                key("foreign-bucket")
            ),
        )
    });
    add("missing-object", &|_| Input::Unwritten, &|_| {
        Expect::DeadLetterStartingWith {
            class: "missing-object",
            reason: format!(
                "s3://{bucket}/{}: object does not exist: ",
                key("missing-object")
            ),
        }
    });
    add("unknown-source", &|_| Input::UnknownSource, &|_| {
        dead(
            "unknown-source",
            format!(
                "{}: source \"comments\" is not declared in the settings",
                key("unknown-source")
            ),
        )
    });
    add("tampered", &|_| Input::Tampered, &|_| {
        dead(
            "checksum-mismatch",
            format!(
                "{}: SHA-256 is {}, the message announced {}",
                key("tampered"),
                barge_core::content_digest(b"[ ]"),
                barge_core::content_digest(b"[]")
            ),
        )
    });
    add(
        "s3-test-event",
        &|_| {
            Input::Body(format!(
                r#"{{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-24T01:02:03.000Z","Bucket":"{bucket}","RequestId":"R","HostId":"H"}}"#
            ))
        },
        &|_| Expect::Ignored,
    );

    // Odd but loadable objects.
    add(
        "byte-order-mark",
        &|b| {
            let mut bytes = b"\xEF\xBB\xBF".to_vec();
            bytes.extend(array(&[rec(b + 1), rec(b + 2)]));
            Input::Object(bytes)
        },
        &|b| Expect::Loaded {
            rows: vec![row(b + 1), row(b + 2)],
            rejects: vec![],
        },
    );
    add("empty-array", &|_| Input::Object(b"[]".to_vec()), &|_| {
        Expect::Loaded {
            rows: vec![],
            rejects: vec![],
        }
    });
    add(
        "duplicate-ids-last-wins",
        &|b| {
            Input::Object(array(&[
                format!(r#"{{"id":{},"qty":1,"label":"first"}}"#, b + 1),
                rec(b + 2),
                format!(r#"{{"id":{},"qty":3,"label":"last"}}"#, b + 1),
            ]))
        },
        &|b| Expect::Loaded {
            rows: vec![(b + 1, 3, "last".into()), row(b + 2)],
            rejects: vec![],
        },
    );
    add(
        "five-mib-string",
        &|b| {
            Input::Object(array(&[format!(
                r#"{{"id":{},"qty":1,"label":"{}"}}"#,
                b + 1,
                big_label()
            )]))
        },
        &|b| Expect::Loaded {
            rows: vec![(b + 1, 1, big_label())],
            rejects: vec![],
        },
    );

    // Bad records inside a good object: rejected one by one, the others load.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_record = format!(r#"{{"id":1,"qty":1,"label":"x","meta":{deep}}}"#);
    add(
        "deep-nesting",
        &|b| {
            Input::Object(array(&[
                rec(b + 1),
                deep_record.clone(),
                deep.clone(),
                rec(b + 2),
            ]))
        },
        &|b| Expect::Loaded {
            rows: vec![row(b + 1), row(b + 2)],
            rejects: vec![
                reject(
                    1,
                    None,
                    "cannot be decoded: recursion limit exceeded at line 1 column 162",
                    &deep_record,
                ),
                reject(2, None, "expected a JSON object, found an array", &deep),
            ],
        },
    );
    let beyond_max = |b: i64| format!(r#"{{"id":9223372036854775808,"qty":1,"label":"{}"}}"#, b);
    let beyond_min = |b: i64| format!(r#"{{"id":-9223372036854775809,"qty":1,"label":"{}"}}"#, b);
    add(
        "integers-beyond-64-bits",
        &|b| {
            Input::Object(array(&[
                rec(b + 1),
                beyond_max(b),
                beyond_min(b),
                rec(b + 2),
                rec(b + 3),
            ]))
        },
        &|b| Expect::Loaded {
            rows: vec![row(b + 1), row(b + 2), row(b + 3)],
            rejects: vec![
                reject(
                    1,
                    Some(("id", "id")),
                    "9223372036854775808 is out of range for bigint",
                    &beyond_max(b),
                ),
                reject(
                    2,
                    Some(("id", "id")),
                    "-9223372036854775809 is out of range for bigint",
                    &beyond_min(b),
                ),
            ],
        },
    );
    let fraction = |b: i64| format!(r#"{{"id":{},"qty":1.5,"label":"x"}}"#, b + 2);
    add(
        "fractions-for-an-integer",
        &|b| {
            Input::Object(array(&[
                format!(r#"{{"id":{},"qty":1.0,"label":"whole"}}"#, b + 1),
                fraction(b),
                rec(b + 3),
            ]))
        },
        &|b| Expect::Loaded {
            rows: vec![(b + 1, 1, "whole".into()), row(b + 3)],
            rejects: vec![reject(
                1,
                Some(("qty", "qty")),
                "expected an integer, found a number 1.5",
                &fraction(b),
            )],
        },
    );
    let qty_range = |b: i64| format!(r#"{{"id":{},"qty":2147483648,"label":"x"}}"#, b + 1);
    add(
        "integer-out-of-range",
        &|b| Input::Object(array(&[qty_range(b), rec(b + 2)])),
        &|b| Expect::Loaded {
            rows: vec![row(b + 2)],
            rejects: vec![reject(
                0,
                Some(("qty", "qty")),
                "2147483648 is out of range for integer",
                &qty_range(b),
            )],
        },
    );
    let nul_text = |b: i64| format!(r#"{{"id":{},"qty":1,"label":"a\u0000b"}}"#, b + 1);
    let nul_json = |b: i64| {
        format!(
            r#"{{"id":{},"qty":1,"label":"x","meta":{{"k":["\u0000"]}}}}"#,
            b + 2
        )
    };
    add(
        "nul-in-text-and-jsonb",
        &|b| Input::Object(array(&[nul_text(b), nul_json(b), rec(b + 3), rec(b + 4)])),
        &|b| Expect::Loaded {
            rows: vec![row(b + 3), row(b + 4)],
            rejects: vec![
                reject(
                    0,
                    Some(("label", "label")),
                    "contains U+0000, which PostgreSQL cannot store",
                    &nul_text(b),
                ),
                reject(
                    1,
                    Some(("meta", "meta")),
                    "contains U+0000, which PostgreSQL cannot store",
                    &nul_json(b),
                ),
            ],
        },
    );
    let big_price = |b: i64| {
        format!(
            r#"{{"id":{},"qty":1,"label":"x","price":9007199254740993}}"#,
            b + 1
        )
    };
    let fine_ratio = |b: i64| format!(r#"{{"id":{},"qty":1,"label":"x","ratio":16777217}}"#, b + 2);
    add(
        "floats-that-would-change",
        &|b| {
            Input::Object(array(&[
                big_price(b),
                fine_ratio(b),
                rec(b + 3),
                rec(b + 4),
            ]))
        },
        &|b| Expect::Loaded {
            rows: vec![row(b + 3), row(b + 4)],
            rejects: vec![
                reject(
                    0,
                    Some(("price", "price")),
                    "9007199254740993 cannot be stored exactly in double precision (integers \
                     beyond 2^53 lose digits); declare the column bigint",
                    &big_price(b),
                ),
                reject(
                    1,
                    Some(("ratio", "ratio")),
                    "16777217 cannot be stored exactly in real; declare the column double precision",
                    &fine_ratio(b),
                ),
            ],
        },
    );
    let surrogate = |b: i64| format!(r#"{{"id":{},"qty":1,"label":"\ud800"}}"#, b + 1);
    add(
        "lone-surrogate",
        &|b| Input::Object(array(&[surrogate(b), rec(b + 2)])),
        &|b| Expect::Loaded {
            rows: vec![row(b + 2)],
            rejects: vec![reject(
                0,
                None,
                "cannot be decoded: unexpected end of hex escape at line 1 column 36",
                &surrogate(b),
            )],
        },
    );
    let twice = |b: i64| format!(r#"{{"id":{},"qty":1,"label":"x","qty":2}}"#, b + 1);
    add(
        "duplicate-key-in-a-record",
        &|b| Input::Object(array(&[twice(b), rec(b + 2)])),
        &|b| Expect::Loaded {
            rows: vec![row(b + 2)],
            rejects: vec![reject(
                0,
                None,
                "cannot be decoded: duplicate key \"qty\" at line 1 column 37",
                &twice(b),
            )],
        },
    );
    add(
        "records-that-are-not-objects",
        &|b| {
            Input::Object(array(&[
                "42".into(),
                rec(b + 1),
                r#""text""#.into(),
                rec(b + 2),
            ]))
        },
        &|b| Expect::Loaded {
            rows: vec![row(b + 1), row(b + 2)],
            rejects: vec![
                reject(0, None, "expected a JSON object, found a number", "42"),
                reject(
                    2,
                    None,
                    "expected a JSON object, found a string",
                    r#""text""#,
                ),
            ],
        },
    );
    let missing = |b: i64| format!(r#"{{"id":{},"label":"x"}}"#, b + 1);
    let null = |b: i64| format!(r#"{{"id":{},"qty":null,"label":"x"}}"#, b + 2);
    add(
        "missing-and-null-required-fields",
        &|b| Input::Object(array(&[missing(b), null(b), rec(b + 3), rec(b + 4)])),
        &|b| Expect::Loaded {
            rows: vec![row(b + 3), row(b + 4)],
            rejects: vec![
                reject(
                    0,
                    Some(("qty", "qty")),
                    "missing, and the column is not nullable",
                    &missing(b),
                ),
                reject(
                    1,
                    Some(("qty", "qty")),
                    "null, and the column is not nullable",
                    &null(b),
                ),
            ],
        },
    );
    let id_text = |b: i64| format!(r#"{{"id":"{}","qty":1,"label":"x"}}"#, b + 1);
    let label_number = |b: i64| format!(r#"{{"id":{},"qty":1,"label":7}}"#, b + 2);
    let flag_text = |b: i64| format!(r#"{{"id":{},"qty":1,"label":"x","flag":"yes"}}"#, b + 3);
    add(
        "wrong-types-at-the-reject-limit",
        &|b| {
            Input::Object(array(&[
                id_text(b),
                label_number(b),
                flag_text(b),
                rec(b + 4),
                rec(b + 5),
                rec(b + 6),
            ]))
        },
        &|b| Expect::Loaded {
            rows: vec![row(b + 4), row(b + 5), row(b + 6)],
            rejects: vec![
                reject(
                    0,
                    Some(("id", "id")),
                    &format!("expected an integer, found a string \"{}\"", b + 1),
                    &id_text(b),
                ),
                reject(
                    1,
                    Some(("label", "label")),
                    "expected a string, found a number 7",
                    &label_number(b),
                ),
                reject(
                    2,
                    Some(("flag", "flag")),
                    "expected true or false, found a string \"yes\"",
                    &flag_text(b),
                ),
            ],
        },
    );
    cases
}

/// A label of a little over 5 MiB of mixed text.
fn big_label() -> String {
    "großes Label → ".repeat(5 * 1024 * 1024 / 17 + 1)
}

/// Sends a case's input; returns the message body sent.
async fn feed(env: &TestEnv, case: &Case) -> String {
    let bucket = &env.settings.storage.bucket;
    let key = key(case.name);
    let message = |source: &str, bucket: &str, body: &[u8]| BatchMessage {
        version: MESSAGE_VERSION,
        source: source.into(),
        bucket: bucket.into(),
        key: key.clone(),
        record_count: 1,
        sha256: barge_core::content_digest(body),
        fetched_at: chrono::Utc::now(),
        replay: None,
    };
    match &case.input {
        Input::Object(bytes) => env.announce("items", &key, bytes).await.to_json(),
        Input::Body(body) => {
            env.send(body).await;
            body.clone()
        }
        Input::Unwritten => {
            let body = message("items", bucket, b"[]").to_json();
            env.send(&body).await;
            body
        }
        Input::ForeignBucket => {
            let body = message("items", &format!("not-{bucket}"), b"[]").to_json();
            env.send(&body).await;
            body
        }
        Input::UnknownSource => env.announce("comments", &key, b"[]").await.to_json(),
        Input::Tampered => {
            let announced = env.announce("items", &key, b"[]").await;
            env.aws
                .s3
                .put_object()
                .bucket(bucket)
                .key(&key)
                .body(b"[ ]".to_vec().into())
                .send()
                .await
                .unwrap();
            announced.to_json()
        }
    }
}

#[tokio::test]
async fn each_class_of_bad_input_has_its_exact_outcome() {
    let mut env = TestEnv::new().await;
    env.settings.sources = vec![items_source()];
    let transformer = transformer(&env).await;
    let cases = cases(&env.settings.storage.bucket);
    assert!(cases.len() >= 20);
    let mut bodies = Vec::new();
    for case in &cases {
        bodies.push(feed(&env, case).await);
    }

    let report = transformer.drain().await.unwrap();
    assert!(report.retry_later.is_empty(), "{:?}", report.retry_later);

    let letters: HashMap<String, HashMap<String, String>> = env
        .dead_letters()
        .await
        .into_iter()
        .map(|letter| (letter.body, letter.attributes))
        .collect();
    let ledger: HashMap<String, common::LedgerRow> = ledger(&env)
        .await
        .into_iter()
        .map(|row| (row.key.clone(), row))
        .collect();
    let db = env.db().await;
    let mut failures = Vec::new();
    for (index, (case, body)) in cases.iter().zip(&bodies).enumerate() {
        let base = (index as i64 + 1) * 1000;
        let rows: Vec<(i64, i32, String)> = db
            .query(
                "SELECT id, qty, label FROM items WHERE id BETWEEN $1 AND $2 ORDER BY id",
                &[&base, &(base + 999)],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let letter = letters.get(body);
        let entry = ledger.get(&key(case.name));
        let mut check = |ok: bool, what: String| {
            if !ok {
                failures.push(format!("{}: {what}", case.name));
            }
        };
        match &case.expect {
            Expect::Loaded {
                rows: expected_rows,
                rejects,
            } => {
                check(letter.is_none(), format!("dead-lettered: {letter:?}"));
                check(
                    rows == *expected_rows,
                    format!("rows {:?}", abbreviated(&rows)),
                );
                let Some(entry) = entry else {
                    check(false, "no ledger entry".into());
                    continue;
                };
                let Input::Object(bytes) = &case.input else {
                    unreachable!("only objects load")
                };
                let read = barge_core::split_records(bytes, barge_core::RecordLayout::Array)
                    .unwrap()
                    .len() as i64;
                let rejected = rejects.len() as i64;
                check(
                    (
                        entry.records_read,
                        entry.records_loaded,
                        entry.records_rejected,
                    ) == (read, read - rejected, rejected),
                    format!("ledger {entry:?}"),
                );
                let lines = match &entry.rejects_url {
                    Some(url) => {
                        let key = url
                            .strip_prefix(&format!("s3://{}/", env.settings.storage.bucket))
                            .expect("rejects in the archive bucket");
                        String::from_utf8(env.object(key).await).unwrap()
                    }
                    None => String::new(),
                };
                let expected_lines: String = rejects.iter().map(|l| format!("{l}\n")).collect();
                check(
                    lines == expected_lines,
                    format!(
                        "reject lines\n{}\nexpected\n{}",
                        abbreviated(&lines),
                        abbreviated(&expected_lines)
                    ),
                );
            }
            Expect::DeadLetter { class, reason }
            | Expect::DeadLetterStartingWith { class, reason } => {
                let exact = matches!(case.expect, Expect::DeadLetter { .. });
                check(
                    rows.is_empty(),
                    format!("rows loaded: {:?}", abbreviated(&rows)),
                );
                check(entry.is_none(), format!("in the ledger: {entry:?}"));
                let Some(attributes) = letter else {
                    check(false, "not on the dead-letter queue".into());
                    continue;
                };
                check(
                    attributes.get("barge-error-class").map(String::as_str) == Some(class),
                    format!("class {:?}", attributes.get("barge-error-class")),
                );
                let actual = attributes.get("barge-error").cloned().unwrap_or_default();
                let matches = if exact {
                    actual == *reason
                } else {
                    actual.starts_with(reason.as_str())
                };
                check(matches, format!("reason {actual:?}\n  expected {reason:?}"));
                check(
                    attributes
                        .get("barge-transformer-version")
                        .map(String::as_str)
                        == Some(env!("CARGO_PKG_VERSION"))
                        && attributes.contains_key("barge-failed-at")
                        && attributes.contains_key("barge-message-id"),
                    format!("attributes {attributes:?}"),
                );
            }
            Expect::Ignored => {
                check(letter.is_none(), "dead-lettered".into());
                check(
                    entry.is_none() && rows.is_empty(),
                    "loaded something".into(),
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let dead = cases
        .iter()
        .filter(|c| {
            matches!(
                c.expect,
                Expect::DeadLetter { .. } | Expect::DeadLetterStartingWith { .. }
            )
        })
        .count();
    assert_eq!(letters.len(), dead, "nothing else is dead-lettered");
    assert_eq!(env.queued_messages().await, 0, "every message is settled");
}

/// Debug text cut to a readable length (one case holds a 5 MiB label).
fn abbreviated(value: &impl std::fmt::Debug) -> String {
    let text = format!("{value:?}");
    if text.len() > 2000 {
        let start: String = text.chars().take(2000).collect();
        format!("{start}… ({} bytes)", text.len())
    } else {
        text
    }
}
