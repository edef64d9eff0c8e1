//! `importer discover` as a user runs it (the binary), against the sample API: the block it
//! proposes for the posts is the built-in posts source, and the blocks it proposes for the
//! orders load every order exactly through the real pipeline (importer → S3 → SQS →
//! transformer → PostgreSQL). Every run points AWS at a closed port: discover must never call
//! it.

use barge_core::Source;
use barge_localenv::{TestEnv, spawn_sample_api_handle};
use importer::Importer;
use serde_json::Value;
use transformer::Transformer;

/// An AWS endpoint nothing listens on: a call to S3 or SQS would fail the run.
const NO_AWS: &str = "http://127.0.0.1:9";

/// Runs `importer discover` with `args`, the settings file `config` (if any) and `env`;
/// returns its stdout, failing with its stderr if it fails.
async fn discover(args: &[&str], config: Option<&str>, env: &[(&str, &str)]) -> String {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_importer"));
    command
        .env_remove("BARGE_CONFIG")
        .env("AWS_ENDPOINT_URL", NO_AWS)
        .envs(env.iter().copied());
    if let Some(config) = config {
        let path = std::env::temp_dir().join(format!(
            "barge-discover-{}.toml",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::write(&path, config).unwrap();
        command.arg("--config").arg(path);
    }
    let output = command.arg("discover").args(args).output().await.unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "importer discover {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The one source of a proposed block, as the settings would read it, and the block as TOML.
fn parse(block: &str) -> (Source, toml::Table) {
    #[derive(serde::Deserialize)]
    struct File {
        sources: Vec<Source>,
    }
    let file: File = toml::from_str(block).unwrap_or_else(|err| panic!("{err}\n{block}"));
    let [source] = <[Source; 1]>::try_from(file.sources).unwrap();
    source
        .validate()
        .unwrap_or_else(|err| panic!("{err}\n{block}"));
    let table: toml::Table = toml::from_str(block).unwrap();
    let declared = table["sources"].as_array().unwrap()[0]
        .as_table()
        .unwrap()
        .clone();
    (source, declared)
}

/// A source's columns as TOML, to compare declarations whatever their Rust types.
fn columns(source: &Source) -> toml::Value {
    toml::Value::try_from(&source.columns).unwrap()
}

#[tokio::test]
async fn discover_on_the_posts_proposes_the_built_in_posts_source() {
    let (_, base) = spawn_sample_api_handle(30).await;
    let url = format!("{base}/posts");
    let block = discover(&[&url], None, &[]).await;
    let (source, _) = parse(&block);

    let posts = Source::jsonplaceholder_posts();
    assert_eq!(columns(&source), columns(&posts), "{block}");
    assert_eq!(source.primary_key, posts.primary_key);
    assert_eq!(
        (source.name.as_str(), source.table.as_str()),
        ("posts", "posts")
    );
    assert_eq!(source.url.as_deref(), Some(url.as_str()));
    assert!(
        block.contains(
            "    # 30 of 30 records; e.g. 1\n    { name = \"id\", type = \"bigint\" },\n"
        ),
        "each column says what was seen:\n{block}"
    );

    // The same through the source's credential, from the environment (no AWS client needed).
    let config = format!(
        "[[sources]]\nname = \"private\"\nurl = \"{base}/private/posts\"\ntable = \"private\"\n\
         columns = [{{ name = \"id\", type = \"bigint\" }}]\n\
         auth = {{ type = \"bearer\", secret = {{ env = \"DISCOVER_TOKEN\" }} }}\n"
    );
    let token = [("DISCOVER_TOKEN", barge_sample_api::SAMPLE_TOKEN)];
    let block = discover(&["--source", "private"], Some(&config), &token).await;
    let (private, _) = parse(&block);
    assert_eq!(columns(&private), columns(&posts), "{block}");
    assert!(block.contains("DISCOVER_TOKEN") && !block.contains(barge_sample_api::SAMPLE_TOKEN));
}

/// The settings file declaring the sample API's orders at `base`: cursor pages of 25.
fn orders_settings(base: &str) -> String {
    format!(
        "[[sources]]\nname = \"orders\"\nurl = \"{base}/orders\"\nrecords = \"/data\"\n\
         table = \"orders\"\ncolumns = [{{ name = \"id\", type = \"text\" }}]\n\n\
         [sources.pagination]\nstyle = \"cursor\"\ncursor_field = \"/next_cursor\"\n\
         has_more_field = \"/has_more\"\nsize_param = \"limit\"\nsize = 25\n"
    )
}

#[tokio::test]
async fn discover_on_the_orders_proposes_blocks_that_load_every_order_exactly() {
    let (_, base) = spawn_sample_api_handle(0).await;
    let settings = orders_settings(&base);
    let plain = discover(&["--source", "orders"], Some(&settings), &[]).await;
    let flat = discover(&["--source", "orders", "--flatten"], Some(&settings), &[]).await;
    assert!(plain.contains("from 60 record(s) on 3 page(s)"), "{plain}");
    let (orders, plain_toml) = parse(&plain);
    let (mut flat_orders, flat_toml) = parse(&flat);
    flat_orders.name = "orders-flat".into();
    flat_orders.table = "orders_flat".into();
    assert_eq!(orders.primary_key, ["id"], "{plain}");
    assert_eq!(flat_orders.primary_key, ["id"], "{flat}");

    let mut env = TestEnv::new().await;
    env.settings.sources = vec![orders.clone(), flat_orders.clone()];
    let importer = Importer::new(env.settings.clone(), env.aws.clone())
        .await
        .unwrap();
    for source in &env.settings.sources {
        let report = importer.import(source).await.unwrap();
        assert_eq!((report.pages, report.records), (3, 60), "{}", source.name);
    }
    let transformer = Transformer::new(env.settings.clone(), env.aws.clone())
        .await
        .unwrap();
    let report = transformer.drain().await.unwrap();
    assert!(
        report.dead_lettered.is_empty(),
        "{:?}",
        report.dead_lettered
    );
    assert_eq!(report.loaded.len(), 6, "{report:?}");
    assert!(
        report
            .loaded
            .iter()
            .all(|loaded| loaded.records_rejected == 0),
        "{report:?}"
    );

    let served = barge_sample_api::orders();
    for (table, declared, block) in [
        ("orders", &plain_toml, &plain),
        ("orders_flat", &flat_toml, &flat),
    ] {
        let columns = declared["columns"].as_array().unwrap();
        let covered = covered_fields(columns);
        for order in &served {
            for key in order.as_object().unwrap().keys() {
                assert!(
                    covered
                        .iter()
                        .any(|field| field == key || field.starts_with(&format!("/{key}/"))),
                    "{table}: field {key:?} has no column:\n{block}"
                );
            }
        }
        let loaded = rows_as_text(&env, table, columns).await;
        let expected: Vec<Vec<Option<String>>> = served
            .iter()
            .map(|order| {
                columns
                    .iter()
                    .map(|column| expected_text(order, column))
                    .collect()
            })
            .collect();
        assert_eq!(loaded.len(), expected.len(), "{table}");
        for ((row, want), order) in loaded.iter().zip(&expected).zip(&served) {
            assert_eq!(row, want, "{table}: order {}\n{block}", order["number"]);
        }
    }
}

/// The JSON field (or pointer) each column is read from.
fn covered_fields(columns: &[toml::Value]) -> Vec<String> {
    columns
        .iter()
        .map(|column| {
            let field = column.get("field").or_else(|| column.get("name")).unwrap();
            field.as_str().unwrap().to_owned()
        })
        .collect()
}

/// Every row of `table` by order number, each declared column read back as PostgreSQL's text
/// (`jsonb` normalised through serde_json, since PostgreSQL reorders keys), in UTC.
async fn rows_as_text(
    env: &TestEnv,
    table: &str,
    columns: &[toml::Value],
) -> Vec<Vec<Option<String>>> {
    let db = env.db().await;
    db.batch_execute("SET TimeZone = 'UTC'").await.unwrap();
    let selected: Vec<String> = columns
        .iter()
        .map(|column| format!("{}::text", column["name"].as_str().unwrap()))
        .collect();
    let query = format!(
        "SELECT {} FROM {table} ORDER BY number",
        selected.join(", ")
    );
    db.query(&query, &[])
        .await
        .unwrap()
        .iter()
        .map(|row| {
            columns
                .iter()
                .enumerate()
                .map(|(index, column)| {
                    let text: Option<String> = row.get(index);
                    match column["type"].as_str() {
                        Some("jsonb") => text.map(|text| normalised_json(&text)),
                        _ => text,
                    }
                })
                .collect()
        })
        .collect()
}

/// JSON text as serde_json writes it (keys sorted, no spaces, numbers as sent).
fn normalised_json(text: &str) -> String {
    serde_json::from_str::<Value>(text).unwrap().to_string()
}

/// What PostgreSQL's text of `column` must be for `order`: the served value in the canonical
/// text of the column's type, `None` when missing or `null`.
fn expected_text(order: &Value, column: &toml::Value) -> Option<String> {
    let field = column.get("field").or_else(|| column.get("name")).unwrap();
    let field = field.as_str().unwrap();
    let value = if field.starts_with('/') {
        order.pointer(field)
    } else {
        order.get(field)
    }?;
    let column_type = column["type"].as_str().unwrap();
    if value.is_null() {
        return None;
    }
    Some(match (column_type, value) {
        ("jsonb", value) => value.to_string(),
        (array, Value::Array(items)) if array.ends_with("[]") => {
            let items: Vec<String> = items.iter().map(array_element).collect();
            format!("{{{}}}", items.join(","))
        }
        ("timestamptz", Value::String(text)) => utc_text(text),
        ("timestamp", Value::String(text)) => text.replacen('T', " ", 1),
        (_, Value::String(text)) => text.clone(),
        (_, value) => value.to_string(),
    })
}

/// An element of a PostgreSQL array's text: `NULL`, or the value, quoted when it must be.
fn array_element(item: &Value) -> String {
    match item {
        Value::Null => "NULL".into(),
        Value::String(text) => {
            let plain = !text.is_empty()
                && !text.eq_ignore_ascii_case("null")
                && !text.contains(|c: char| "{},\"\\".contains(c) || c.is_whitespace());
            if plain {
                text.clone()
            } else {
                format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
            }
        }
        other => other.to_string(),
    }
}

/// An RFC 3339 time as PostgreSQL writes a `timestamptz` in UTC: `2026-03-06 11:05:05.25+00`.
fn utc_text(text: &str) -> String {
    let time = chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&chrono::Utc);
    let micros = time.timestamp_subsec_micros();
    let fraction = if micros == 0 {
        String::new()
    } else {
        format!(".{micros:06}").trim_end_matches('0').to_owned()
    };
    format!("{}{fraction}+00", time.format("%Y-%m-%d %H:%M:%S"))
}
