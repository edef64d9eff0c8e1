//! Every column type, conversion and lineage column through the real pipeline: JSON archived in
//! S3, announced on SQS, loaded into PostgreSQL and read back as text, which must be exactly the
//! canonical value PostgreSQL itself makes of the value as sent. Values a type cannot hold
//! unchanged are rejected, naming their record and field.

mod common;

use barge_core::{Column, ColumnType, Convert, Lineage, Source};
use barge_localenv::TestEnv;
use common::transformer;
use serde_json::Value;

/// A column of `name` read from the field of the same name.
fn column(name: &str, column_type: &str) -> Column {
    Column::new(
        name,
        ColumnType::try_from(column_type.to_owned()).expect("a known type"),
    )
}

/// The record index, from the batch: each row's key, and the order rows are read back in.
fn index_column() -> Column {
    Column {
        lineage: Some(Lineage::RecordIndex),
        ..column("idx", "bigint")
    }
}

/// Declares source `typed` with `columns` (keyed on the record index), loads `batch` and
/// returns every column of every row as PostgreSQL's text, in record order, and the rejects.
async fn load(columns: Vec<Column>, batch: &str) -> (Vec<Vec<Option<String>>>, Vec<Value>) {
    let mut env = TestEnv::new().await;
    let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
    let mut declared = vec![index_column()];
    declared.extend(columns);
    env.settings.sources = vec![Source {
        name: "typed".into(),
        table: "typed".into(),
        primary_key: vec!["idx".into()],
        columns: declared,
        max_reject_ratio: 1.0,
        ..Source::jsonplaceholder_posts()
    }];
    env.settings.sources[0]
        .validate()
        .expect("a valid declaration");
    let transformer = transformer(&env).await;
    env.announce("typed", "raw/typed/batch.json", batch.as_bytes())
        .await;
    let report = transformer.drain().await.unwrap();
    assert!(
        report.dead_lettered.is_empty(),
        "{:?}",
        report.dead_lettered
    );
    let rejects = match &report.loaded[0].rejects_url {
        Some(url) => {
            let key = url
                .split_once("/errors/")
                .map(|(_, k)| format!("errors/{k}"));
            let body = env.object(&key.expect("an errors/ key")).await;
            body.split(|b| *b == b'\n')
                .filter(|line| !line.is_empty())
                .map(|line| serde_json::from_slice(line).unwrap())
                .collect()
        }
        None => Vec::new(),
    };
    let select = names
        .iter()
        .map(|name| format!("{name}::text"))
        .collect::<Vec<_>>()
        .join(", ");
    let db = env.db().await;
    db.batch_execute("SET TimeZone = 'UTC'").await.unwrap();
    let rows = db
        .query(&format!("SELECT {select} FROM typed ORDER BY idx"), &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (0..names.len()).map(|i| row.get(i)).collect())
        .collect();
    (rows, rejects)
}

/// PostgreSQL's own text for `literal` read as `sql_type`: the oracle loaded values must equal.
async fn canonical(literals: &[&str], sql_type: &str) -> Vec<String> {
    let env = TestEnv::new().await;
    let db = env.db().await;
    let mut out = Vec::new();
    for literal in literals {
        let row = db
            .query_one(&format!("SELECT $1::text::{sql_type}::text"), &[literal])
            .await
            .unwrap();
        out.push(row.get(0));
    }
    out
}

/// Rejects as (record index, field, reason).
fn rejected(rejects: &[Value]) -> Vec<(u64, String, String)> {
    rejects
        .iter()
        .map(|line| {
            (
                line["record_index"].as_u64().unwrap(),
                line["field"].as_str().unwrap_or_default().to_owned(),
                line["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn numeric_loads_the_json_number_exactly_at_its_boundaries() {
    let forty_digits = "1234567890123456789012345678901234567890";
    let most_digits_before = format!("9{}", "0".repeat(131_071));
    let numbers = [
        "0".to_owned(),
        "-0".to_owned(),
        "-0.000".to_owned(),
        "1e-30".to_owned(),
        "-1E-30".to_owned(),
        forty_digits.to_owned(),
        format!("-{forty_digits}"),
        format!("{forty_digits}.{forty_digits}"),
        "123456789012345678.90".to_owned(),
        "0.1".to_owned(),
        "1.50".to_owned(),
        "1.5e3".to_owned(),
        "1.50e1".to_owned(),
        "9999.9999".to_owned(),
        "10000".to_owned(),
        "0.0001".to_owned(),
        "1e-16383".to_owned(),
        most_digits_before.clone(),
        "9223372036854775808".to_owned(),
        // 131072 significant digits: 32768 base-10000 groups, a count only unsigned 16 bits hold.
        "9".repeat(131_072),
    ];
    let batch = format!(
        "[{}]",
        numbers
            .iter()
            .map(|n| format!(r#"{{"n":{n}}}"#))
            .collect::<Vec<_>>()
            .join(",")
    );

    let (rows, rejects) = load(vec![column("n", "numeric")], &batch).await;

    assert_eq!(rejects, Vec::<Value>::new());
    let literals: Vec<&str> = numbers.iter().map(String::as_str).collect();
    let expected = canonical(&literals, "numeric").await;
    let loaded: Vec<String> = rows
        .into_iter()
        .map(|row| row[0].clone().unwrap())
        .collect();
    for ((number, loaded), expected) in numbers.iter().zip(&loaded).zip(&expected) {
        assert_eq!(loaded, expected, "{:.60}", number);
    }
    // The oracle agrees with what a reader expects, not only with itself.
    assert_eq!(
        &loaded[..4],
        ["0", "0", "0.000", "0.000000000000000000000000000001"]
    );
    assert_eq!(loaded[8], "123456789012345678.90");
    assert_eq!(loaded[10], "1.50");
    assert_eq!(loaded[11], "1500");
    assert_eq!(loaded[12], "15.0");
}

#[tokio::test]
async fn numeric_with_limits_loads_up_to_them_and_rejects_beyond() {
    let batch = r#"[
        {"m": 9999999999.99}, {"m": -9999999999.99}, {"m": 0.01}, {"m": 19.9},
        {"m": 19.990}, {"m": 1e9}, {"m": 0}, {"m": 0.000}, {"m": -0e5},
        {"m": 19.999}, {"m": 10000000000}, {"m": 1e-3}, {"m": "19.99"}
    ]"#;

    let (rows, rejects) = load(vec![column("m", "numeric(12, 2)")], batch).await;

    let loaded: Vec<String> = rows
        .into_iter()
        .map(|row| row[0].clone().unwrap())
        .collect();
    assert_eq!(
        loaded,
        [
            "9999999999.99",
            "-9999999999.99",
            "0.01",
            "19.90",
            "19.99",
            "1000000000.00",
            "0.00",
            "0.00",
            "0.00"
        ]
    );
    assert_eq!(
        rejected(&rejects),
        [
            (
                9,
                "m".to_owned(),
                "19.999 has 3 digits after the point, numeric(12,2) keeps 2: it would be rounded"
                    .to_owned()
            ),
            (
                10,
                "m".to_owned(),
                "10000000000 has 11 digits before the point, numeric(12,2) holds 10".to_owned()
            ),
            (
                11,
                "m".to_owned(),
                "1e-3 has 3 digits after the point, numeric(12,2) keeps 2: it would be rounded"
                    .to_owned()
            ),
            (
                12,
                "m".to_owned(),
                "expected a decimal number, found a string \"19.99\"".to_owned()
            ),
        ]
    );
}

#[tokio::test]
async fn each_type_and_conversion_round_trips_to_its_canonical_text() {
    let columns = vec![
        column("id", "uuid"),
        column("at", "timestamp"),
        column("clock", "time"),
        column("blob", "bytea"),
        Column {
            convert: Some(Convert::String),
            ..column("price", "numeric(10,2)")
        },
        Column {
            convert: Some(Convert::String),
            ..column("qty", "integer")
        },
        Column {
            convert: Some(Convert::EpochMilliseconds),
            ..column("updated", "timestamptz")
        },
        Column {
            convert: Some(Convert::EpochSeconds),
            ..column("seen", "timestamp")
        },
        Column {
            format: Some("%d/%m/%Y %H:%M %z".into()),
            ..column("shipped", "timestamptz")
        },
        Column {
            format: Some("%d.%m.%Y".into()),
            ..column("born", "date")
        },
        Column {
            format: Some("%I:%M %p".into()),
            ..column("opens", "time")
        },
        column("tags", "text[]"),
        column("counts", "bigint[]"),
        column("small", "integer[]"),
        column("ratios", "double precision[]"),
        Column {
            convert: Some(Convert::String),
            ..column("amounts", "numeric(6,2)[]")
        },
        column("flags", "boolean[]"),
        column("ids", "uuid[]"),
        Column {
            nullable_elements: true,
            ..column("times", "timestamptz[]")
        },
    ];
    let batch = r#"[{
        "id": "{67E55044-10B1-426F-9247-BB680E5FE0C8}",
        "at": "2024-02-29T23:59:59.123456",
        "clock": "07:05:00.5",
        "blob": "AAH/",
        "price": "19.90",
        "qty": "-12",
        "updated": 1700000000123,
        "seen": 1700000000.5,
        "shipped": "25/12/2024 10:30 +0100",
        "born": "31.12.1999",
        "opens": "09:15 PM",
        "tags": ["a", "with space", "quote\"d", "", "NULL", "é🚀"],
        "counts": [9223372036854775807, -9223372036854775808],
        "small": [],
        "ratios": [0.1, -1e300],
        "amounts": [1.5, "-0.25", 9999.99],
        "flags": [true, false],
        "ids": ["urn:uuid:67e55044-10b1-426f-9247-bb680e5fe0c8"],
        "times": ["2024-01-01T00:00:00+02:00", null]
    }]"#;

    let (rows, rejects) = load(columns, batch).await;

    assert_eq!(rejects, Vec::<Value>::new());
    let expected = [
        "67e55044-10b1-426f-9247-bb680e5fe0c8",
        "2024-02-29 23:59:59.123456",
        "07:05:00.5",
        "\\x0001ff",
        "19.90",
        "-12",
        "2023-11-14 22:13:20.123+00",
        "2023-11-14 22:13:20.5",
        "2024-12-25 09:30:00+00",
        "1999-12-31",
        "21:15:00",
        r#"{a,"with space","quote\"d","","NULL",é🚀}"#,
        "{9223372036854775807,-9223372036854775808}",
        "{}",
        "{0.1,-1e+300}",
        "{1.50,-0.25,9999.99}",
        "{t,f}",
        "{67e55044-10b1-426f-9247-bb680e5fe0c8}",
        "{\"2023-12-31 22:00:00+00\",NULL}",
    ];
    let loaded: Vec<String> = rows[0].iter().map(|cell| cell.clone().unwrap()).collect();
    assert_eq!(loaded, expected);
}

#[tokio::test]
async fn values_a_type_would_change_are_rejected_naming_record_and_field() {
    let columns = vec![
        Column {
            nullable: true,
            ..column("id", "uuid")
        },
        Column {
            nullable: true,
            ..column("at", "timestamp")
        },
        Column {
            nullable: true,
            convert: Some(Convert::EpochMilliseconds),
            ..column("updated", "timestamptz")
        },
        Column {
            nullable: true,
            ..column("tags", "text[]")
        },
        Column {
            nullable: true,
            ..column("blob", "bytea")
        },
        Column {
            nullable: true,
            ..column("qty", "integer")
        },
    ];
    let batch = r#"[
        {"id": "67e55044-10b1-426f-9247-bb680e5fe0c"},
        {"at": "2024-01-01T00:00:00Z"},
        {"updated": 1700000000123.0001},
        {"tags": ["a", null]},
        {"blob": "not base64!"},
        {"qty": "12"},
        {"tags": [["nested"]]},
        {}
    ]"#;

    let (rows, rejects) = load(columns, batch).await;

    assert_eq!(rows.len(), 1, "only the empty record loads");
    let reasons = rejected(&rejects);
    let fields: Vec<(u64, &str)> = reasons.iter().map(|(i, f, _)| (*i, f.as_str())).collect();
    assert_eq!(
        fields,
        [
            (0, "id"),
            (1, "at"),
            (2, "updated"),
            (3, "tags"),
            (4, "blob"),
            (5, "qty"),
            (6, "tags")
        ]
    );
    let expected_parts = [
        "a string \"67e55044-10b1-426f-9247-bb680e5fe0c\" is not a UUID",
        "carries a UTC offset, which a timestamp without time zone would drop",
        "has digits beyond microseconds",
        "element 1 is null, and the column does not declare nullable_elements",
        "is not base64",
        "expected an integer, found a string \"12\"",
        "element 0: expected an array of elements each a string, found an array [\"nested\"]",
    ];
    for ((_, _, reason), part) in reasons.iter().zip(expected_parts) {
        assert!(reason.contains(part), "{reason:?} should say {part:?}");
    }
}

#[tokio::test]
async fn lineage_columns_trace_each_row_to_its_archived_object() {
    let mut env = TestEnv::new().await;
    let lineage = |name: &str, lineage: Lineage| Column {
        lineage: Some(lineage),
        ..Column::new(name, lineage.column_type())
    };
    env.settings.sources = vec![Source {
        name: "orders".into(),
        table: "orders".into(),
        primary_key: vec!["object_key".into(), "record".into()],
        columns: vec![
            column("total", "numeric"),
            lineage("source", Lineage::Source),
            lineage("fetched_at", Lineage::FetchedAt),
            lineage("bucket", Lineage::Bucket),
            lineage("object_key", Lineage::Key),
            lineage("record", Lineage::RecordIndex),
        ],
        ..Source::jsonplaceholder_posts()
    }];
    let transformer = transformer(&env).await;
    let key = "raw/orders/2026/11/25/page 1.json";
    let fetched_at: chrono::DateTime<chrono::Utc> = "2026-11-25T08:00:00.123456Z".parse().unwrap();
    env.announce_at(
        "orders",
        key,
        br#"[{"total": 1.10}, {"total": 2}]"#,
        fetched_at,
    )
    .await;

    let report = transformer.drain().await.unwrap();

    assert_eq!(report.loaded.len(), 1, "{report:?}");
    let rows = env
        .db()
        .await
        .query(
            "SELECT total::text, source, fetched_at, bucket, object_key, record FROM orders \
             ORDER BY record",
            &[],
        )
        .await
        .unwrap();
    let seen: Vec<(
        String,
        String,
        chrono::DateTime<chrono::Utc>,
        String,
        String,
        i64,
    )> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    let row = |total: &str, record| {
        (
            total.to_owned(),
            "orders".to_owned(),
            fetched_at,
            env.settings.storage.bucket.clone(),
            key.to_owned(),
            record,
        )
    };
    assert_eq!(seen, [row("1.10", 0), row("2", 1)]);
}

#[tokio::test]
async fn a_live_numeric_with_other_limits_stops_the_start() {
    let mut env = TestEnv::new().await;
    env.settings.sources[0]
        .columns
        .push(column("price", "numeric(12,2)"));
    drop(transformer(&env).await);
    env.settings.sources[0].columns[4] = column("price", "numeric(12,3)");

    let Err(err) = transformer::Transformer::new(env.settings.clone(), env.aws.clone()).await
    else {
        panic!("the transformer started on a table that differs from its declaration");
    };

    assert!(
        err.to_string()
            .contains("column \"price\" is numeric(12,2), declared numeric(12,3)"),
        "{err}"
    );
}
