//! The load ledger, `barge.loads`: one row per loaded object, written in the same transaction as
//! the object's rows. It is what makes a load happen once: a redelivered message, a duplicate
//! message or a second transformer racing on the same object finds the object's row (or waits on
//! it, through the primary key) and loads nothing.
//!
//! An object is identified by bucket, key and SHA-256 (of the bytes read, claimed once the whole
//! object is read), so new bytes under an old key are a new object while the same bytes are
//! always the same one: a landing object put again unchanged is a duplicate.
//!
//! A load is identified by its object and `replay_id`: empty for the object's own load, the
//! replay run's id for a load `transformer replay` asked for. So a replay loads an object once
//! more, and its message, however often SQS delivers it, loads it once.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

/// Creates the `barge` schema and the ledger, if missing, and brings a ledger of an earlier
/// version up to date (the `replay_id` column, part of the primary key). Run under the DDL
/// advisory lock.
pub const CREATE_SQL: &str = "
    CREATE SCHEMA IF NOT EXISTS barge;
    CREATE TABLE IF NOT EXISTS barge.loads (
        bucket text NOT NULL,
        key text NOT NULL,
        sha256 text NOT NULL,
        source text NOT NULL,
        fetched_at timestamptz NOT NULL,
        records_read bigint NOT NULL,
        records_loaded bigint NOT NULL,
        records_rejected bigint NOT NULL,
        rows_changed bigint NOT NULL,
        rejects_url text,
        message_id text NOT NULL,
        transformer_version text NOT NULL,
        received_at timestamptz NOT NULL,
        started_at timestamptz NOT NULL DEFAULT now(),
        committed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        replay_id text NOT NULL DEFAULT '',
        PRIMARY KEY (bucket, key, sha256, replay_id)
    );
    CREATE INDEX IF NOT EXISTS loads_by_source ON barge.loads (source, committed_at);
    DO $$ BEGIN
        -- Checked first: ALTER TABLE locks the ledger exclusively even when it changes nothing,
        -- and every start would wait for the longest load in flight.
        IF NOT EXISTS (
            SELECT 1 FROM pg_attribute
            WHERE attrelid = 'barge.loads'::regclass AND attname = 'replay_id'
              AND NOT attisdropped
        ) THEN
            ALTER TABLE barge.loads ADD COLUMN replay_id text NOT NULL DEFAULT '';
        END IF;
        IF NOT EXISTS (
            SELECT 1 FROM pg_index i
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
            WHERE i.indrelid = 'barge.loads'::regclass AND i.indisprimary
              AND a.attname = 'replay_id'
        ) THEN
            ALTER TABLE barge.loads DROP CONSTRAINT loads_pkey,
                ADD PRIMARY KEY (bucket, key, sha256, replay_id);
        END IF;
    END $$;
";

/// The `replay_id` of an object's own load (an importer's message or an S3 event).
pub const NOT_A_REPLAY: &str = "";

/// What the ledger records of one object's load.
#[derive(Debug, Clone)]
pub struct LedgerEntry {
    /// Bucket of the raw object.
    pub bucket: String,
    /// Key of the raw object.
    pub key: String,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
    /// Source it belongs to.
    pub source: String,
    /// When the importer fetched it, or (a landing object) when S3 reported it created.
    pub fetched_at: DateTime<Utc>,
    /// The SQS message that announced it (a batch message or an S3 event).
    pub message_id: String,
    /// When this transformer received that message.
    pub received_at: DateTime<Utc>,
    /// [`NOT_A_REPLAY`], or the id of the replay run that asked for this load.
    pub replay_id: String,
}

/// What a load did, known once the object has been read to its end.
#[derive(Debug, Clone, Default)]
pub struct LoadCounts {
    /// Records in the object.
    pub records_read: u64,
    /// Records mapped onto rows.
    pub records_loaded: u64,
    /// Records rejected.
    pub records_rejected: u64,
    /// Rows inserted or changed.
    pub rows_changed: u64,
    /// `s3://bucket/key` of the rejected records, when there are any.
    pub rejects_url: Option<String>,
}

/// Whether the object is already loaded (by the replay `replay_id`, or by its own load when that
/// is [`NOT_A_REPLAY`]).
pub async fn contains(
    client: &impl GenericClient,
    bucket: &str,
    key: &str,
    sha256: &str,
    replay_id: &str,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT 1 FROM barge.loads \
             WHERE bucket = $1 AND key = $2 AND sha256 = $3 AND replay_id = $4",
            &[&bucket, &key, &sha256, &replay_id],
        )
        .await?;
    Ok(row.is_some())
}

/// Claims the object for the caller's transaction; `false` when it is loaded already. A
/// concurrent claim of the same object blocks here until the other transaction ends: if it
/// commits, this one sees `false`; if it rolls back, this one takes over.
pub async fn claim(
    client: &impl GenericClient,
    entry: &LedgerEntry,
) -> Result<bool, tokio_postgres::Error> {
    let inserted = client
        .execute(
            "INSERT INTO barge.loads (bucket, key, sha256, source, fetched_at, records_read, \
             records_loaded, records_rejected, rows_changed, rejects_url, message_id, \
             transformer_version, received_at, replay_id) \
             VALUES ($1, $2, $3, $4, $5, 0, 0, 0, 0, NULL, $6, $7, $8, $9) \
             ON CONFLICT (bucket, key, sha256, replay_id) DO NOTHING",
            &[
                &entry.bucket,
                &entry.key,
                &entry.sha256,
                &entry.source,
                &entry.fetched_at,
                &entry.message_id,
                &env!("CARGO_PKG_VERSION"),
                &entry.received_at,
                &entry.replay_id,
            ],
        )
        .await?;
    Ok(inserted == 1)
}

/// Completes a claimed entry with what the load did and when it ended.
pub async fn finish(
    client: &impl GenericClient,
    entry: &LedgerEntry,
    counts: &LoadCounts,
) -> Result<(), tokio_postgres::Error> {
    let wide = |count: u64| i64::try_from(count).unwrap_or(i64::MAX);
    client
        .execute(
            "UPDATE barge.loads SET records_read = $4, records_loaded = $5, \
             records_rejected = $6, rows_changed = $7, rejects_url = $8, \
             committed_at = clock_timestamp() \
             WHERE bucket = $1 AND key = $2 AND sha256 = $3 AND replay_id = $9",
            &[
                &entry.bucket,
                &entry.key,
                &entry.sha256,
                &wide(counts.records_read),
                &wide(counts.records_loaded),
                &wide(counts.records_rejected),
                &wide(counts.rows_changed),
                &counts.rejects_url,
                &entry.replay_id,
            ],
        )
        .await?;
    Ok(())
}

/// The time of the last committed load of each of `sources` that has one.
pub async fn last_commits(
    client: &impl GenericClient,
    sources: &[String],
) -> Result<Vec<(String, DateTime<Utc>)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT source, max(committed_at) FROM barge.loads \
             WHERE source = ANY($1) GROUP BY source",
            &[&sources],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}
