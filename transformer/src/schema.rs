//! Schema drift: the live table of each source compared with its declaration at start-up, so
//! that a table someone altered (or a declaration someone edited) stops the transformer with a
//! clear list of differences instead of dead-lettering every later batch.

use barge_core::{ColumnType, Source};
use tokio_postgres::GenericClient;
use tokio_postgres::types::Oid;

use crate::database::{FETCHED_AT, qualified};
use crate::record::pg_type;

/// One column of a live table.
#[derive(Debug)]
struct LiveColumn {
    name: String,
    type_oid: Oid,
    type_name: String,
    type_modifier: i32,
    nullable: bool,
    has_default: bool,
}

/// The differences between `source`'s declaration and its live table, each a sentence; empty
/// when they agree. Extra nullable (or defaulted) columns are fine: loads never name them.
pub async fn differences(
    client: &impl GenericClient,
    schema: &str,
    source: &Source,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let table = qualified(schema, &source.table);
    let live: Vec<LiveColumn> = client
        .query(
            "SELECT attname::text, atttypid, format_type(atttypid, atttypmod), atttypmod, \
                    NOT attnotnull, atthasdef \
             FROM pg_attribute \
             WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped \
             ORDER BY attnum",
            &[&table],
        )
        .await?
        .iter()
        .map(|row| LiveColumn {
            name: row.get(0),
            type_oid: row.get(1),
            type_name: row.get(2),
            type_modifier: row.get(3),
            nullable: row.get(4),
            has_default: row.get(5),
        })
        .collect();
    let live_key: Vec<String> = client
        .query(
            "SELECT a.attname::text \
             FROM pg_index i JOIN pg_attribute a \
               ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
             WHERE i.indrelid = to_regclass($1) AND i.indisprimary \
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[&table],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();

    let mut differences = Vec::new();
    let declared = source
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.column_type, c.nullable))
        .chain(std::iter::once((
            FETCHED_AT,
            ColumnType::Timestamptz,
            false,
        )));
    for (name, declared_type, nullable) in declared {
        let Some(column) = live.iter().find(|c| c.name == name) else {
            differences.push(format!("column {name:?} is missing"));
            continue;
        };
        if column.type_oid != pg_type(declared_type).oid()
            || column.type_modifier != type_modifier(declared_type)
        {
            differences.push(format!(
                "column {name:?} is {}, declared {}",
                column.type_name,
                declared_type.sql_name()
            ));
        }
        if column.nullable != nullable {
            let (live, declared) = if column.nullable {
                ("allows NULL", "not nullable")
            } else {
                ("is NOT NULL", "nullable")
            };
            differences.push(format!("column {name:?} {live}, declared {declared}"));
        }
    }
    for column in &live {
        let declared =
            column.name == FETCHED_AT || source.columns.iter().any(|c| c.name == column.name);
        if !declared && !column.nullable && !column.has_default {
            differences.push(format!(
                "column {:?} is NOT NULL without a default, and the source does not fill it",
                column.name
            ));
        }
    }
    if live_key != source.primary_key {
        differences.push(format!(
            "primary key is ({}), declared ({})",
            live_key.join(", "),
            source.primary_key.join(", ")
        ));
    }
    Ok(differences)
}

/// The `atttypmod` PostgreSQL keeps for a declared type: `numeric(p,s)` (or an array of it) packs
/// its limits as `(p << 16 | s) + 4`; every other declared type has none (-1).
fn type_modifier(column_type: ColumnType) -> i32 {
    match column_type.numeric_limits() {
        Some(limits) => ((i32::from(limits.precision) << 16) | i32::from(limits.scale)) + 4,
        None => -1,
    }
}
