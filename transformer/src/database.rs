//! PostgreSQL side: creating each source's table and loading a batch as one transaction.
//!
//! A batch is binary-COPied into a temporary staging table, then merged into the target with one
//! `INSERT … SELECT DISTINCT ON (key) … ON CONFLICT (key) DO UPDATE`. The whole batch commits or
//! none of it does, and loading the same batch again changes nothing.

use std::pin::pin;

use barge_core::Source;
use barge_core::settings::DatabaseSettings;
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use crate::record::{Cell, pg_type};

/// Name of the per-transaction staging table.
const STAGE: &str = "barge_stage";
/// Staging column that keeps each record's position, so the last of duplicate keys wins.
const ORDINAL: &str = "barge_ordinal";
/// Advisory lock taken around DDL so that transformers starting together do not race on
/// `CREATE TABLE IF NOT EXISTS` (which is not atomic against itself).
const DDL_LOCK: i64 = 0x6261_7267_6501;

/// A lazily (re)connected PostgreSQL session: if the server restarts, the next batch reconnects
/// instead of the daemon dying.
#[derive(Debug)]
pub struct Database {
    settings: DatabaseSettings,
    client: Option<Client>,
}

impl Database {
    /// A session for `settings`; nothing connects until first use.
    pub fn new(settings: DatabaseSettings) -> Self {
        Self {
            settings,
            client: None,
        }
    }

    /// The live client, connecting first if there is none or the last one closed.
    pub async fn client(&mut self) -> Result<&mut Client, tokio_postgres::Error> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(self.settings.connect().await?);
        }
        Ok(self.client.as_mut().expect("connected just above"))
    }

    /// Creates the tables of `sources` that do not exist yet.
    pub async fn ensure_tables(&mut self, sources: &[Source]) -> Result<(), tokio_postgres::Error> {
        let client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&DDL_LOCK])
            .await?;
        for source in sources {
            tx.batch_execute(&create_table_sql(source)).await?;
        }
        tx.commit().await
    }

    /// Loads `rows` (cells in column order) into `source`'s table in one transaction and returns
    /// how many rows were inserted or changed.
    pub async fn load(
        &mut self,
        source: &Source,
        rows: &[Vec<Cell>],
    ) -> Result<u64, tokio_postgres::Error> {
        let client = self.client().await?;
        let tx = client.transaction().await?;
        tx.batch_execute(&create_stage_sql(source)).await?;
        let sink = tx.copy_in(&copy_stage_sql(source)).await?;
        let types: Vec<Type> = std::iter::once(Type::INT8)
            .chain(source.columns.iter().map(|c| pg_type(c.column_type)))
            .collect();
        let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
        for (ordinal, row) in (0_i64..).zip(rows) {
            let values: Vec<&(dyn ToSql + Sync)> = std::iter::once(&ordinal as &(dyn ToSql + Sync))
                .chain(row.iter().map(|cell| cell as &(dyn ToSql + Sync)))
                .collect();
            writer.as_mut().write(&values).await?;
        }
        writer.finish().await?;
        let changed = tx.execute(&merge_sql(source), &[]).await?;
        tx.commit().await?;
        Ok(changed)
    }
}

fn quote(identifier: &str) -> String {
    // Identifiers are validated as [a-z_][a-z0-9_]* at settings load; quoting keeps keywords
    // such as "user" or "order" usable as names.
    format!("\"{identifier}\"")
}

fn column_list(source: &Source) -> String {
    source
        .columns
        .iter()
        .map(|c| quote(&c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn key_list(source: &Source) -> String {
    source
        .primary_key
        .iter()
        .map(|k| quote(k))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `CREATE TABLE IF NOT EXISTS` with the declared types, nullability and primary key.
pub fn create_table_sql(source: &Source) -> String {
    let columns: Vec<String> = source
        .columns
        .iter()
        .map(|c| {
            let null = if c.nullable { "" } else { " NOT NULL" };
            format!("{} {}{null}", quote(&c.name), c.column_type.sql_name())
        })
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))",
        quote(&source.table),
        columns.join(", "),
        key_list(source)
    )
}

fn create_stage_sql(source: &Source) -> String {
    let columns: Vec<String> = source
        .columns
        .iter()
        .map(|c| format!("{} {}", quote(&c.name), c.column_type.sql_name()))
        .collect();
    format!(
        "CREATE TEMP TABLE {STAGE} ({ORDINAL} bigint, {}) ON COMMIT DROP",
        columns.join(", ")
    )
}

fn copy_stage_sql(source: &Source) -> String {
    format!(
        "COPY {STAGE} ({ORDINAL}, {}) FROM STDIN (FORMAT binary)",
        column_list(source)
    )
}

/// The merge: the last record of each key wins, existing rows are updated only when something
/// differs (so a redelivered batch writes nothing), and key-only tables just insert.
pub fn merge_sql(source: &Source) -> String {
    let columns = column_list(source);
    let keys = key_list(source);
    let values: Vec<&str> = source
        .columns
        .iter()
        .filter(|c| !source.is_key(c))
        .map(|c| c.name.as_str())
        .collect();
    let on_conflict = if values.is_empty() {
        "DO NOTHING".to_owned()
    } else {
        let set: Vec<String> = values
            .iter()
            .map(|c| format!("{0} = EXCLUDED.{0}", quote(c)))
            .collect();
        let target: Vec<String> = values
            .iter()
            .map(|c| format!("{}.{}", quote(&source.table), quote(c)))
            .collect();
        let excluded: Vec<String> = values
            .iter()
            .map(|c| format!("EXCLUDED.{}", quote(c)))
            .collect();
        format!(
            "DO UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({})",
            set.join(", "),
            target.join(", "),
            excluded.join(", ")
        )
    };
    format!(
        "INSERT INTO {table} ({columns}) SELECT DISTINCT ON ({keys}) {columns} FROM {STAGE} \
         ORDER BY {keys}, {ORDINAL} DESC ON CONFLICT ({keys}) {on_conflict}",
        table = quote(&source.table)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posts_table_matches_the_documented_shape() {
        assert_eq!(
            create_table_sql(&Source::jsonplaceholder_posts()),
            "CREATE TABLE IF NOT EXISTS \"posts\" (\"id\" bigint NOT NULL, \"user_id\" bigint NOT NULL, \
             \"title\" text NOT NULL, \"body\" text NOT NULL, PRIMARY KEY (\"id\"))"
        );
    }

    #[test]
    fn merge_updates_only_changed_rows_and_keeps_the_last_duplicate() {
        let sql = merge_sql(&Source::jsonplaceholder_posts());
        assert!(sql.contains("SELECT DISTINCT ON (\"id\")"), "{sql}");
        assert!(sql.contains("ORDER BY \"id\", barge_ordinal DESC"), "{sql}");
        assert!(
            sql.contains("ON CONFLICT (\"id\") DO UPDATE SET \"user_id\" = EXCLUDED.\"user_id\""),
            "{sql}"
        );
        assert!(sql.contains("WHERE (\"posts\".\"user_id\", \"posts\".\"title\", \"posts\".\"body\") IS DISTINCT FROM"), "{sql}");
    }

    #[test]
    fn key_only_tables_do_nothing_on_conflict() {
        let mut source = Source::jsonplaceholder_posts();
        source.columns.truncate(1);
        assert!(merge_sql(&source).ends_with("ON CONFLICT (\"id\") DO NOTHING"));
    }
}
