//! Any object's bytes: split into records (or refused as a whole), each record mapped onto a
//! source that has every column type (or rejected naming its index), and every rejected record
//! written as one NDJSON line that is valid JSON. Never a panic.
#![no_main]

use std::sync::LazyLock;

use barge_core::{Column, ColumnType, Source};
use libfuzzer_sys::fuzz_target;
use transformer::record::map_record;
use transformer::rejects::{Reject, to_ndjson};

static SOURCE: LazyLock<Source> = LazyLock::new(|| {
    let mut source = Source::jsonplaceholder_posts();
    let types = [
        ColumnType::Integer,
        ColumnType::Smallint,
        ColumnType::DoublePrecision,
        ColumnType::Real,
        ColumnType::Boolean,
        ColumnType::Jsonb,
        ColumnType::Timestamptz,
        ColumnType::Date,
    ];
    for (index, column_type) in types.into_iter().enumerate() {
        source.columns.push(Column {
            name: format!("c{index}"),
            column_type,
            field: Some(format!("/c/{index}")),
            nullable: index % 2 == 0,
        });
    }
    source
});

fuzz_target!(|bytes: &[u8]| {
    let Ok(records) = barge_core::split_records(bytes) else {
        return;
    };
    let mut rejects = Vec::new();
    for (index, record) in records.iter().enumerate() {
        match map_record(&SOURCE, index, record) {
            Ok(cells) => assert_eq!(cells.len(), SOURCE.columns.len()),
            Err(error) => {
                assert_eq!(error.index, index);
                rejects.push(Reject { error, record });
            }
        }
    }
    let ndjson = to_ndjson(&rejects);
    let lines: Vec<&[u8]> = ndjson.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), rejects.len());
    for line in lines {
        // Lone surrogates stay as written, so check the syntax rather than decode strings.
        serde_json::from_slice::<&serde_json::value::RawValue>(line).expect("one JSON value per line");
    }
});
