//! Any object's bytes: split into records (or refused as a whole), each record mapped onto a
//! source that has every column type (or rejected naming its index), and every rejected record
//! written as one NDJSON line that is valid JSON. Never a panic.
#![no_main]

use std::sync::LazyLock;

use barge_core::{Column, ColumnType, Convert, Source};
use libfuzzer_sys::fuzz_target;
use transformer::record::{Origin, RecordMapper};
use transformer::rejects::write_line;

static SOURCE: LazyLock<Source> = LazyLock::new(|| {
    let mut source = Source::jsonplaceholder_posts();
    let types = [
        ("integer", None),
        ("smallint", None),
        ("double precision", None),
        ("real", None),
        ("boolean", None),
        ("jsonb", None),
        ("timestamptz", None),
        ("date", None),
        ("numeric", Some(Convert::String)),
        ("numeric(12,2)", None),
        ("uuid", None),
        ("timestamp", Some(Convert::EpochMilliseconds)),
        ("time", None),
        ("bytea", None),
        ("numeric[]", None),
        ("text[]", None),
    ];
    for (index, (column_type, convert)) in types.into_iter().enumerate() {
        let column_type = ColumnType::try_from(column_type.to_owned()).expect("a known type");
        source.columns.push(Column {
            field: Some(format!("/c/{index}")),
            nullable: index % 2 == 0,
            nullable_elements: index % 3 == 0 && matches!(column_type, ColumnType::Array(_)),
            convert,
            ..Column::new(&format!("c{index}"), column_type)
        });
    }
    source
});

fuzz_target!(|bytes: &[u8]| {
    let Ok(records) = barge_core::split_records(bytes, barge_core::RecordLayout::Array) else {
        return;
    };
    let origin = Origin {
        bucket: "bucket".into(),
        key: "raw/fuzz.json".into(),
        fetched_at: "1970-01-01T00:00:00Z".parse().expect("an RFC 3339 instant"),
    };
    let mapper = RecordMapper::new(&SOURCE, origin);
    let mut ndjson = Vec::new();
    let mut rejected = 0;
    for (index, record) in records.iter().enumerate() {
        match mapper.map(index as u64, record) {
            Ok(cells) => assert_eq!(cells.len(), SOURCE.columns.len()),
            Err(error) => {
                assert_eq!(error.index, index as u64);
                write_line(&mut ndjson, &error, record);
                rejected += 1;
            }
        }
    }
    let lines: Vec<&[u8]> = ndjson.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), rejected);
    for line in lines {
        // Lone surrogates stay as written, so check the syntax rather than decode strings.
        serde_json::from_slice::<&serde_json::value::RawValue>(line).expect("one JSON value per line");
    }
});
