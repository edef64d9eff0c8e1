//! `cargo xtask bench`: how fast barge loads, measured against what PostgreSQL does with the same
//! rows on its own. A benchmark, not a test: it takes long and reports numbers. The one verdict
//! it gives is on correctness: a load that leaves anything but exactly the expected rows fails
//! the bench, because its time would mean nothing.
//!
//! Release builds of both daemons run as child processes, a fresh one per timed load, against
//! the LocalStack and PostgreSQL started for the bench. The workloads (the README's Performance
//! section says more):
//!
//! - W1: posts in objects of [`OBJECT_POSTS`] into an empty keyed table;
//! - W1a: the same objects into an empty append-only table;
//! - W2: the same bytes under new keys, fetched an hour later, so that every row is updated;
//! - W3: one object of `--w3-mib` MiB into the empty keyed table, plain and gzip-compressed;
//! - W4: the importer pulling the posts from the sample API into S3 and SQS.
//!
//! The baselines are PostgreSQL alone, driven by psql: `\copy` of the very rows barge loaded from
//! a binary file (L), and barge's own staging table, COPY and merge statement (L-merge); for W4
//! curl streaming the API's body into S3. Each figure is the median of `--runs` runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::ops::{RangeInclusive, Sub};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use barge_core::aws::AwsClients;
use barge_core::message::{MESSAGE_VERSION, archive_key};
use barge_core::{BatchMessage, Settings, Source, content_digest, error_chain};
use barge_localenv::postgres::last_lines;
use barge_localenv::{Daemon, NotifySocket, TestEnv};
use barge_sample_api::Post;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use md5::Md5;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use transformer::database::{
    FETCHED_AT, KeysInBatch, copy_sql, create_stage_sql, create_table_sql, merge_sql, qualified,
};

use crate::services::{
    LOCALSTACK_VERSION, Layout, Services, free_port, is_alive, proc_stat, workspace_root,
};

/// The release binaries the bench runs.
const BINARIES: [&str; 3] = ["transformer", "importer", "barge-sample-api"];
/// Posts per object of W1, W1a and W2: a large page of an API, and what the cost section of the
/// README assumes.
const OBJECT_POSTS: u64 = 10_000;
/// Seed of every generated post: fixed, so that every bench on every machine loads the same
/// bytes.
const SEED: u64 = 0x6261_7267_655f_6265;
/// The database the bench loads into.
const DATABASE: &str = "barge";
/// The ledger, emptied with the tables so that the same objects load again in the next run.
const LEDGER: &str = "barge.loads";
/// A load that adds no object to the ledger for this long is stuck (W3's one object included).
const STALL_LIMIT: Duration = Duration::from_secs(20 * 60);
/// How long a daemon may take to say READY.
const READY_LIMIT: Duration = Duration::from_secs(120);
/// How long a daemon may take to exit after SIGTERM: above the transformer's 60 s shutdown grace.
const STOP_LIMIT: Duration = Duration::from_secs(90);
/// How often the ledger is looked at while barge loads: the resolution of T.
const POLL: Duration = Duration::from_millis(100);
/// Every tenth poll also looks at the dead-letter queue and whether the daemon still runs.
const CHECK_EVERY: u32 = 10;

/// Sizes and repetitions of a bench.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Posts of W1, W1a, W2 and W4.
    pub posts: u64,
    /// Runs of every measurement; each figure is their median.
    pub runs: u64,
    /// Size of W3's object, in MiB.
    pub w3_mib: u64,
}

/// Builds the release binaries (the daemons, and the sample API so that W4 measures the importer
/// rather than a debug build serving it), starts the services, runs every workload and baseline
/// `options.runs` times, prints the table (and writes it to `target/bench/results.md`), stops the
/// services. Fails when a workload failed, after the table.
pub async fn run(options: Options) -> anyhow::Result<ExitCode> {
    let built = crate::cargo()
        .args(["build", "--release", "--locked"])
        .args(BINARIES.iter().flat_map(|package| ["-p", package]))
        .status()
        .await
        .context("running cargo build --release")?;
    if !built.success() {
        return Ok(ExitCode::FAILURE);
    }
    let services = Services::start(Layout::ephemeral()?, false).await?;
    let outcome = async { Bench::new(&services, options).await?.run().await }.await;
    services.stop();
    outcome
}

/// W1's, W2's and W3's source: JSONPlaceholder's posts, keyed by id.
fn keyed_source() -> Source {
    Source::jsonplaceholder_posts()
}

/// W1a's source: the same columns without a primary key, into a table of its own.
fn append_source() -> Source {
    let mut source = keyed_source();
    source.name = "posts_append".into();
    source.table = "posts_append".into();
    source.primary_key.clear();
    source
}

/// The table psql loads for a baseline: `source`'s shape under another name.
fn baseline_source(source: &Source) -> Source {
    let mut baseline = source.clone();
    baseline.table = format!("baseline_{}", source.table);
    baseline
}

/// When W1's, W1a's and W3's batches were fetched (2026-01-01); W2's are an hour later.
fn first_fetch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).expect("a valid timestamp")
}

/// What is measured (the README's Performance section says why each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Workload {
    /// Posts in objects of [`OBJECT_POSTS`] into an empty keyed table.
    W1,
    /// W1's objects into an empty append-only table.
    W1a,
    /// W1's bytes under new keys, fetched later, into W1's full table: every row updated.
    W2,
    /// One big object into the empty keyed table.
    W3,
    /// The same object gzip-compressed (`Content-Encoding: gzip`, `.json.gz`).
    W3Gzip,
    /// The importer pulling the posts from the sample API into S3 and SQS.
    W4,
}

impl Workload {
    /// In the table's order.
    const ALL: [Self; 6] = [
        Self::W1,
        Self::W1a,
        Self::W2,
        Self::W3,
        Self::W3Gzip,
        Self::W4,
    ];

    /// The baseline its throughput is compared with.
    fn baseline(self) -> Baseline {
        match self {
            Self::W1 => Baseline::MergeEmpty,
            Self::W1a => Baseline::CopyAppend,
            Self::W2 => Baseline::MergeFull,
            Self::W3 | Self::W3Gzip => Baseline::MergeW3,
            Self::W4 => Baseline::GetPut,
        }
    }
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::W1 => "W1",
            Self::W1a => "W1a",
            Self::W2 => "W2",
            Self::W3 => "W3",
            Self::W3Gzip => "W3 gzip",
            Self::W4 => "W4",
        })
    }
}

/// What PostgreSQL (or S3) does alone with the same rows (or bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Baseline {
    /// psql `\copy` of W1's rows into an empty keyed table.
    Copy,
    /// The same into an empty append-only table.
    CopyAppend,
    /// psql: barge's staging table, `\copy` into it, barge's merge into an empty keyed table.
    MergeEmpty,
    /// The same with W2's rows into the table `MergeEmpty` filled: every row updated.
    MergeFull,
    /// `MergeEmpty` with W3's rows.
    MergeW3,
    /// curl GETting the sample API piped into curl PUTting the body to S3.
    GetPut,
}

impl Baseline {
    /// Those psql runs, in this order (`MergeFull` needs the table `MergeEmpty` filled).
    const PSQL: [Self; 5] = [
        Self::Copy,
        Self::CopyAppend,
        Self::MergeEmpty,
        Self::MergeFull,
        Self::MergeW3,
    ];

    /// Short name, for the main table.
    fn name(self) -> &'static str {
        match self {
            Self::Copy | Self::CopyAppend => "L",
            Self::MergeEmpty | Self::MergeW3 => "L-merge, empty",
            Self::MergeFull => "L-merge, full",
            Self::GetPut => "curl GET+PUT",
        }
    }

    /// What it does, for the baselines table.
    fn description(self) -> &'static str {
        match self {
            Self::Copy => "L: psql `\\copy` (binary) of W1's rows into an empty keyed table",
            Self::CopyAppend => "L: the same into an empty append-only table (W1a)",
            Self::MergeEmpty => {
                "L-merge: psql BEGIN, barge's stage, `\\copy`, barge's merge into an empty table, COMMIT (W1)"
            }
            Self::MergeFull => "L-merge: the same with W2's rows into the full table (W2)",
            Self::MergeW3 => "L-merge of W3's rows into an empty table (W3)",
            Self::GetPut => "curl GET of the sample API piped into curl PUT to S3 (W4)",
        }
    }

    /// The workload whose rows (dump, expected digest) it loads.
    fn rows_of(self) -> Workload {
        match self {
            Self::Copy | Self::CopyAppend | Self::MergeEmpty => Workload::W1,
            Self::MergeFull => Workload::W2,
            Self::MergeW3 => Workload::W3,
            Self::GetPut => Workload::W4,
        }
    }

    /// The table it fills.
    fn source(self) -> Source {
        match self {
            Self::CopyAppend => baseline_source(&append_source()),
            _ => baseline_source(&keyed_source()),
        }
    }
}

/// One workload's objects as barge sees them: the messages announcing them, the source they
/// name, and what the table must hold once they are loaded.
struct Load {
    workload: Workload,
    /// The source the messages name, whose table they fill.
    source: Source,
    messages: Vec<BatchMessage>,
    expected: Expected,
}

impl Load {
    /// The load of `messages`, naming `source`, that must leave `expected` in its table.
    fn new(
        workload: Workload,
        source: &Source,
        messages: Vec<BatchMessage>,
        expected: &Expected,
    ) -> Self {
        Self {
            workload,
            source: source.clone(),
            messages,
            expected: expected.clone(),
        }
    }

    /// The batch time every row must carry afterwards (one per workload).
    fn fetched_at(&self) -> DateTime<Utc> {
        self.messages[0].fetched_at
    }
}

/// Everything generated and archived before the first run.
struct Data {
    w1: Load,
    w1a: Load,
    w2: Load,
    w3: Load,
    w3_gzip: Load,
    /// Sizes of W3's two objects, for the table.
    w3_bytes: u64,
    w3_gzip_bytes: u64,
    /// SHA-256 of the sample API's body, which the importer must announce.
    w4_sha256: String,
    /// How many posts the sample API serves.
    w4_posts: u64,
}

impl Data {
    /// The objects of `workload`; W4's come from the importer.
    fn load(&self, workload: Workload) -> Option<&Load> {
        match workload {
            Workload::W1 => Some(&self.w1),
            Workload::W1a => Some(&self.w1a),
            Workload::W2 => Some(&self.w2),
            Workload::W3 => Some(&self.w3),
            Workload::W3Gzip => Some(&self.w3_gzip),
            Workload::W4 => None,
        }
    }

    /// How many rows (posts) `workload` moves.
    fn rows(&self, workload: Workload) -> u64 {
        self.load(workload)
            .map_or(self.w4_posts, |load| load.expected.rows)
    }
}

/// What a table loaded with some of the generated posts must hold: its row count and the digest
/// [`digest_sql`] computes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    rows: u64,
    md5: String,
}

/// Builds an [`Expected`] from posts added in id order, the way [`digest_sql`] digests a table.
#[derive(Default)]
struct ExpectedDigest {
    rows: u64,
    md5: Md5,
}

impl ExpectedDigest {
    /// Adds the next post; ids must come in ascending order.
    fn add(&mut self, post: &Post) {
        let line = format!("{}|{}|{}|{}", post.id, post.user_id, post.title, post.body);
        self.md5
            .update(format!("{:x}", Md5::digest(line.as_bytes())));
        self.rows += 1;
    }

    /// The count and digest of the posts added.
    fn finish(self) -> Expected {
        Expected {
            rows: self.rows,
            md5: format!("{:x}", self.md5.finalize()),
        }
    }
}

/// Rows of `table`, the digest of their data columns in id order, and how many rows a batch
/// fetched at another time than `$1` wrote. The digest is the MD5 of the rows' MD5s (of
/// `id|user_id|title|body`): one string of all rows would pass PostgreSQL's 1 GB limit in W3.
fn digest_sql(table: &str) -> String {
    format!(
        "SELECT count(*), md5(coalesce(string_agg(md5(format('%s|%s|%s|%s', id, user_id, title, \
         body)), '' ORDER BY id), '')), count(*) FILTER (WHERE {FETCHED_AT} <> $1) FROM {table}"
    )
}

/// Words posts are written with: Latin filler; accented Latin, Greek, Cyrillic, Hebrew, Arabic,
/// Devanagari and CJK (two and three bytes in UTF-8); emoji (four bytes, one with a skin tone,
/// one a ZWJ sequence of five code points); typographic punctuation, U+2028; and what JSON
/// escapes or producers like to: quotes, backslashes, slashes.
const WORDS: &[&str] = &[
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "eiusmod",
    "tempor",
    "incididunt",
    "labore",
    "dolore",
    "magna",
    "aliqua",
    "quia",
    "suscipit",
    "recusandae",
    "consequuntur",
    "expedita",
    "reprehenderit",
    "molestiae",
    "nostrum",
    "rerum",
    "et",
    "ut",
    "café",
    "naïve",
    "Grüße",
    "façade",
    "smørrebrød",
    "ñandú",
    "Straße",
    "œuvre",
    "déjà",
    "Ελληνικά",
    "русский",
    "עברית",
    "العربية",
    "हिन्दी",
    "日本語",
    "中文",
    "한국어",
    "🚀",
    "🎉",
    "👍🏽",
    "👨‍👩‍👧",
    "€100",
    "—",
    "…",
    "“curly”",
    "‘single’",
    "\u{2028}",
    "\"quoted\"",
    "back\\slash",
    "C:\\Temp\\new",
    "it's",
    "a/b",
    "</script>",
    "50%",
    "{json}",
    "[x]",
];

/// How a string is written into the JSON text; every way decodes to the same value, as
/// producers differ in what they escape.
#[derive(Debug, Clone, Copy)]
enum Escapes {
    /// As most serializers write it: UTF-8 as is; `"`, `\` and control characters escaped.
    Minimal,
    /// ASCII only: every other character as `\uXXXX` (astral ones as surrogate pairs, hex digits
    /// upper-case or not), control characters as `\u00XX`, `/` as `\/`.
    Ascii { upper: bool },
}

impl Escapes {
    /// Mostly minimal; a third of the strings ASCII-only.
    fn pick(rng: &mut fastrand::Rng) -> Self {
        match rng.u8(..6) {
            0 => Self::Ascii { upper: false },
            1 => Self::Ascii { upper: true },
            _ => Self::Minimal,
        }
    }
}

/// Post `id` of the bench and how its title and body are escaped: a pure function of the id, so
/// that any object can be made again and W3's first posts are W1's.
fn bench_post(id: i64) -> (Post, [Escapes; 2]) {
    let mut rng = fastrand::Rng::with_seed(SEED ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let user_id = rng.i64(1..=10_000);
    let title = text(&mut rng, 20..=80, false);
    let body = text(&mut rng, 100..=400, true);
    let escapes = [Escapes::pick(&mut rng), Escapes::pick(&mut rng)];
    (
        Post {
            user_id,
            id,
            title,
            body,
        },
        escapes,
    )
}

/// Words and separators (a tab now and then, line breaks in bodies) cut at a length in
/// characters drawn from `lengths`.
fn text(rng: &mut fastrand::Rng, lengths: RangeInclusive<usize>, line_breaks: bool) -> String {
    let length = rng.usize(lengths);
    let mut text = String::new();
    let mut chars = 0;
    while chars < length {
        if chars > 0 {
            let separator = match rng.u8(..100) {
                0..=2 => "\t",
                3..=12 if line_breaks => "\n",
                13..=14 if line_breaks => "\r\n",
                _ => " ",
            };
            text.push_str(separator);
            chars += separator.chars().count();
        }
        let word = WORDS[rng.usize(..WORDS.len())];
        text.push_str(word);
        chars += word.chars().count();
    }
    if let Some((cut, _)) = text.char_indices().nth(length) {
        text.truncate(cut);
    }
    text
}

/// Appends `text` as a JSON string.
fn write_string(out: &mut Vec<u8>, text: &str, escapes: Escapes) {
    let ascii = matches!(escapes, Escapes::Ascii { .. });
    out.push(b'"');
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '/' if ascii => out.extend_from_slice(b"\\/"),
            '\n' if !ascii => out.extend_from_slice(b"\\n"),
            '\r' if !ascii => out.extend_from_slice(b"\\r"),
            '\t' if !ascii => out.extend_from_slice(b"\\t"),
            c if c < ' ' || (ascii && !c.is_ascii()) => {
                let mut units = [0; 2];
                for unit in c.encode_utf16(&mut units) {
                    let escaped = match escapes {
                        Escapes::Ascii { upper: true } => write!(out, "\\u{unit:04X}"),
                        _ => write!(out, "\\u{unit:04x}"),
                    };
                    escaped.expect("writing to a Vec cannot fail");
                }
            }
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out.push(b'"');
}

/// Appends post `id` as a JSONPlaceholder record and adds it to `expected`.
fn write_record(out: &mut Vec<u8>, id: i64, expected: &mut ExpectedDigest) {
    let (post, [title, body]) = bench_post(id);
    write!(
        out,
        "{{\"userId\":{},\"id\":{},\"title\":",
        post.user_id, post.id
    )
    .expect("writing to a Vec cannot fail");
    write_string(out, &post.title, title);
    out.extend_from_slice(b",\"body\":");
    write_string(out, &post.body, body);
    out.push(b'}');
    expected.add(&post);
}

/// How much one JSON array holds.
#[derive(Debug, Clone, Copy)]
enum Size {
    /// This many posts.
    Posts(u64),
    /// Posts until the array is at least this many bytes.
    Bytes(u64),
}

/// Writes posts `first`, `first + 1`, … as one JSON array, a record a line, into `out` and adds
/// them to `expected`; returns how many.
fn write_array(
    out: &mut impl Write,
    first: i64,
    size: Size,
    expected: &mut ExpectedDigest,
) -> io::Result<u64> {
    let mut record = Vec::new();
    let (mut count, mut written) = (0, 1);
    out.write_all(b"[")?;
    loop {
        let full = match size {
            Size::Posts(posts) => count >= posts,
            Size::Bytes(bytes) => written >= bytes,
        };
        if full {
            break;
        }
        record.clear();
        if count > 0 {
            record.extend_from_slice(b",\n");
        }
        write_record(&mut record, first + count as i64, expected);
        out.write_all(&record)?;
        written += record.len() as u64;
        count += 1;
    }
    out.write_all(b"]")?;
    Ok(count)
}

/// Hex SHA-256 of a file, as [`content_digest`] computes it of bytes.
fn file_digest(path: &Path) -> anyhow::Result<String> {
    let mut hasher = Sha256::new();
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    io::copy(&mut file, &mut hasher).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// The column list of barge's COPY statement for `source` ([`copy_sql`]), so that a dump holds
/// exactly the columns, in the order, that psql's `\copy` names.
fn copy_columns(source: &Source) -> anyhow::Result<String> {
    let sql = copy_sql("t", source);
    sql.strip_prefix("COPY t (")
        .and_then(|rest| rest.split_once(") FROM STDIN"))
        .map(|(columns, _)| columns.to_owned())
        .with_context(|| format!("the transformer's COPY statement has a new form: {sql}"))
}

/// barge's COPY statement into `table` ([`copy_sql`]) as a psql `\copy` reading psql's standard
/// input: psql sends the file over the connection, as barge sends its rows.
fn psql_copy(table: &str, source: &Source) -> anyhow::Result<String> {
    let sql = copy_sql(table, source);
    let copy = sql
        .strip_prefix("COPY ")
        .filter(|rest| rest.contains(" FROM STDIN "))
        .with_context(|| format!("the transformer's COPY statement has a new form: {sql}"))?;
    Ok(format!(
        "\\copy {}",
        copy.replacen(" FROM STDIN ", " FROM pstdin ", 1)
    ))
}

/// The table [`create_stage_sql`] creates: its name is the transformer's, and its merge reads it.
fn stage_table(create_stage: &str) -> anyhow::Result<&str> {
    create_stage
        .strip_prefix("CREATE TEMP TABLE ")
        .and_then(|rest| rest.split_whitespace().next())
        .with_context(|| format!("the transformer's staging DDL has a new form: {create_stage}"))
}

/// CPU seconds used so far by barge's process (the daemon under test), PostgreSQL (every server
/// process) and LocalStack (its process tree).
#[derive(Debug, Clone, Copy)]
struct Cpu {
    barge: f64,
    postgres: f64,
    localstack: f64,
}

impl Sub for Cpu {
    type Output = Self;

    fn sub(self, before: Self) -> Self {
        Self {
            barge: self.barge - before.barge,
            postgres: self.postgres - before.postgres,
            localstack: self.localstack - before.localstack,
        }
    }
}

/// One timed load (or import).
#[derive(Debug, Clone, Copy)]
struct Sample {
    seconds: f64,
    /// CPU used during it.
    cpu: Cpu,
    /// The daemon's peak resident memory (`VmHWM`), in MiB.
    peak_rss_mib: f64,
}

/// What one run measured.
#[derive(Debug, Default)]
struct Run {
    loads: BTreeMap<Workload, Sample>,
    /// Seconds of each baseline.
    baselines: BTreeMap<Baseline, f64>,
}

/// A value of `/proc/<pid>/status` or `/proc/meminfo` given in kB, e.g. `VmHWM:  1234 kB`.
fn kib_field(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The peak resident memory of process `pid` so far (`VmHWM`), in MiB.
fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let kib = kib_field(&status, "VmHWM").with_context(|| format!("no VmHWM in {path}"))?;
    Ok(kib / 1024.0)
}

/// Clock ticks per second, the unit of the CPU times in `/proc/<pid>/stat` (from `getconf`: the
/// workspace forbids the unsafe libc call).
fn clock_ticks() -> anyhow::Result<f64> {
    let output = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("running getconf CLK_TCK")?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .context("getconf CLK_TCK printed no number")
}

/// The first line `program` prints, or why there is none.
fn first_line(program: &str, args: &[&str]) -> String {
    match std::process::Command::new(program)
        .args(args)
        .current_dir(workspace_root())
        .output()
    {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        Ok(output) => format!("{program} failed: {}", output.status),
        Err(err) => format!("{program}: {err}"),
    }
}

/// The median, or `None` for no values.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[middle]),
        _ => Some((values[middle - 1] + values[middle]) / 2.0),
    }
}

/// An integer with thousands separators: `1,000,000`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// A daemon of the release build running against the bench's resources, with the socket its
/// READY came on (kept, so that its STOPPING has somewhere to go).
struct Running {
    program: &'static str,
    daemon: Daemon,
    notify: NotifySocket,
}

impl Running {
    fn id(&self) -> u32 {
        self.daemon.id()
    }

    /// Why it is gone, if it is.
    fn exited(&self) -> Option<String> {
        (!is_alive(self.id())).then(|| {
            format!(
                "{} exited; its log ends:\n{}",
                self.program,
                last_lines(&self.daemon.log())
            )
        })
    }

    /// SIGTERM, and a clean exit within [`STOP_LIMIT`]; one that is gone already is left to be
    /// reaped.
    async fn stop(self) -> anyhow::Result<()> {
        // The socket lives until the daemon is gone.
        let Self {
            program,
            daemon,
            notify: _notify,
        } = self;
        if !is_alive(daemon.id()) {
            return Ok(());
        }
        daemon.terminate();
        let (code, log) = daemon.wait(STOP_LIMIT).await;
        ensure!(
            code == Some(0),
            "{program} exited with {code:?} after SIGTERM; its log ends:\n{}",
            last_lines(&log)
        );
        Ok(())
    }
}

/// Starts the release build of the sample API serving `posts` posts on a free port, logging into
/// `dir`, and waits until it listens; returns it and its `/posts` URL.
async fn serve_posts(
    release: &Path,
    posts: u64,
    dir: &Path,
) -> anyhow::Result<(tokio::process::Child, String)> {
    let address = format!("127.0.0.1:{}", free_port()?);
    let log = File::create(dir.join("sample-api.log"))?;
    let child = tokio::process::Command::new(release.join("barge-sample-api"))
        .args(["--listen", &address, "--posts", &posts.to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("starting the sample API")?;
    let started = Instant::now();
    while tokio::net::TcpStream::connect(&address).await.is_err() {
        ensure!(
            started.elapsed() < READY_LIMIT,
            "the sample API does not listen on {address}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((child, format!("http://{address}/posts")))
}

/// Queue `number` of the bench and its dead-letter queue, created: `(name, url, dead-letter url)`.
async fn bench_queue(aws: &AwsClients, number: u32) -> anyhow::Result<(String, String, String)> {
    let name = format!("barge-bench-{number}");
    let (url, dead_letter_url) =
        barge_localenv::ensure_queue(aws, &name, Default::default()).await?;
    Ok((name, url, dead_letter_url))
}

/// The bench's resources, measurements so far, and what failed.
struct Bench<'a> {
    /// LocalStack and PostgreSQL.
    services: &'a Services,
    options: Options,
    /// The bucket, queue and database, and the settings the daemons get.
    env: TestEnv,
    /// The number of `env`'s queue: each daemon gets a fresh one ([`Bench::retire`]).
    queue: u32,
    /// The bench's own session: truncating, polling the ledger, verifying, dumping.
    db: tokio_postgres::Client,
    /// `target/bench`: dumps and results.
    dir: PathBuf,
    /// `target/release`: the daemons.
    release: PathBuf,
    /// Clock ticks per second of `/proc`'s CPU times.
    ticks: f64,
    /// The roots of the process trees whose CPU time is measured.
    postgres_pid: u32,
    localstack_pid: u32,
    /// The sample API W4 imports from (the release build; killed when dropped).
    _sample_api: tokio::process::Child,
    /// Its `/posts`.
    posts_url: String,
    /// Binary dumps of the tables barge loaded, by workload, for the baselines.
    dumps: BTreeMap<Workload, PathBuf>,
    /// Workloads that failed, and why: they are not tried again.
    failures: BTreeMap<Workload, String>,
}

impl<'a> Bench<'a> {
    /// Creates the bucket, queue, database and baseline tables, and serves the sample API.
    async fn new(services: &'a Services, options: Options) -> anyhow::Result<Self> {
        let dir = workspace_root().join("target/bench");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let aws = services.aws().await;
        let mut settings = Settings {
            sources: vec![keyed_source(), append_source()],
            ..Settings::default()
        };
        settings.database = services.database(DATABASE);
        barge_localenv::ensure_bucket(&aws, &settings.storage.bucket).await?;
        let (queue, queue_url, dead_letter_url) = bench_queue(&aws, 0).await?;
        settings.queue.queue = queue;
        barge_localenv::ensure_database(&services.database("postgres"), DATABASE).await?;
        let db = settings
            .database
            .connect()
            .await
            .context("connecting to the bench's database")?;
        for source in [keyed_source(), append_source()] {
            db.batch_execute(&create_table_sql(
                &settings.database.schema,
                &baseline_source(&source),
            ))
            .await
            .context("creating the baseline tables")?;
        }
        let release = workspace_root().join("target/release");
        let (sample_api, posts_url) = serve_posts(&release, options.posts, &dir).await?;
        Ok(Self {
            services,
            options,
            env: TestEnv {
                settings,
                aws,
                queue_url,
                dead_letter_url,
            },
            queue: 0,
            db,
            dir,
            release,
            ticks: clock_ticks()?,
            postgres_pid: services.postgres_pid()?,
            localstack_pid: services.localstack_pid()?,
            _sample_api: sample_api,
            posts_url,
            dumps: BTreeMap::new(),
            failures: BTreeMap::new(),
        })
    }

    /// Prepares the data, runs everything `runs` times, reports.
    async fn run(&mut self) -> anyhow::Result<ExitCode> {
        let data = self.prepare().await?;
        let mut runs = Vec::new();
        for run in 1..=self.options.runs {
            eprintln!("xtask: run {run} of {}", self.options.runs);
            runs.push(self.run_once(&data).await?);
        }
        let report = self.report(&data, &runs).await?;
        println!("{report}");
        let results = self.dir.join("results.md");
        fs::write(&results, &report).with_context(|| format!("writing {}", results.display()))?;
        eprintln!("xtask: written to {}", results.display());
        Ok(if self.failures.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }

    /// `source`'s table, with its schema.
    fn table(&self, source: &Source) -> String {
        qualified(&self.env.settings.database.schema, &source.table)
    }

    /// A batch message for an object of the bench's bucket.
    fn message(
        &self,
        source: &Source,
        key: String,
        fetched_at: DateTime<Utc>,
        record_count: u64,
        sha256: String,
    ) -> BatchMessage {
        BatchMessage {
            version: MESSAGE_VERSION,
            source: source.name.clone(),
            bucket: self.env.settings.storage.bucket.clone(),
            key,
            record_count,
            sha256,
            fetched_at,
            replay: None,
        }
    }

    /// The archive key of object `name` of a batch of `source` fetched at `fetched_at`.
    fn key(&self, source: &Source, fetched_at: DateTime<Utc>, name: &str) -> String {
        archive_key(
            &self.env.settings.storage.prefix,
            &source.name,
            fetched_at,
            &format!("{name}.json"),
        )
    }

    /// Writes object `key` to the archive as the importer would, with `Content-Encoding` when
    /// given.
    async fn archive(
        &self,
        key: &str,
        body: ByteStream,
        encoding: Option<&str>,
    ) -> anyhow::Result<()> {
        self.env
            .aws
            .s3
            .put_object()
            .bucket(&self.env.settings.storage.bucket)
            .key(key)
            .content_type("application/json")
            .set_content_encoding(encoding.map(str::to_owned))
            .body(body)
            .send()
            .await
            .map_err(|err| anyhow!(error_chain(&err)))
            .with_context(|| format!("archiving {key}"))?;
        Ok(())
    }

    /// Generates and archives every object, and reads the sample API's body once for W4.
    async fn prepare(&self) -> anyhow::Result<Data> {
        let [w1, w1a, w2] = self.archive_pages().await?;
        let ([w3, w3_gzip], [w3_bytes, w3_gzip_bytes]) = self.archive_big_object().await?;
        let api_body = reqwest::get(&self.posts_url)
            .await
            .and_then(reqwest::Response::error_for_status)
            .context("GET the sample API")?
            .bytes()
            .await
            .context("reading the sample API's body")?;
        Ok(Data {
            w1,
            w1a,
            w2,
            w3,
            w3_gzip,
            w3_bytes,
            w3_gzip_bytes,
            w4_sha256: content_digest(&api_body),
            w4_posts: self.options.posts,
        })
    }

    /// Archives `--posts` posts in objects of [`OBJECT_POSTS`], each under a W1 key and again
    /// under a W2 key (same bytes, so a new ledger entry); returns the loads of W1, W1a (W1's
    /// objects for the append-only source) and W2.
    async fn archive_pages(&self) -> anyhow::Result<[Load; 3]> {
        let posts = self.options.posts;
        eprintln!(
            "xtask: generating {posts} posts in objects of {OBJECT_POSTS} and archiving them \
             twice (W1 and W2 keys)"
        );
        let (keyed, append) = (keyed_source(), append_source());
        let (w1_at, w2_at) = (first_fetch(), first_fetch() + chrono::Duration::hours(1));
        let mut expected = ExpectedDigest::default();
        let (mut w1, mut w2) = (Vec::new(), Vec::new());
        for (index, first) in (1..=posts).step_by(OBJECT_POSTS as usize).enumerate() {
            let count = OBJECT_POSTS.min(posts + 1 - first);
            let mut body = Vec::new();
            write_array(&mut body, first as i64, Size::Posts(count), &mut expected)?;
            let sha256 = content_digest(&body);
            for (messages, fetched_at, name) in [(&mut w1, w1_at, "w1"), (&mut w2, w2_at, "w2")] {
                let key = self.key(&keyed, fetched_at, &format!("bench-{name}-{index:05}"));
                let message = self.message(&keyed, key, fetched_at, count, sha256.clone());
                self.archive(&message.key, ByteStream::from(body.clone()), None)
                    .await?;
                messages.push(message);
            }
        }
        let expected = expected.finish();
        let w1a = w1
            .iter()
            .map(|message| BatchMessage {
                source: append.name.clone(),
                ..message.clone()
            })
            .collect();
        Ok([
            Load::new(Workload::W1, &keyed, w1, &expected),
            Load::new(Workload::W1a, &append, w1a, &expected),
            Load::new(Workload::W2, &keyed, w2, &expected),
        ])
    }

    /// Archives W3's object of `--w3-mib` MiB, and the same gzip-compressed (`.json.gz`,
    /// `Content-Encoding: gzip`); returns their loads and sizes.
    async fn archive_big_object(&self) -> anyhow::Result<([Load; 2], [u64; 2])> {
        let mib = self.options.w3_mib;
        eprintln!("xtask: generating W3's {mib} MiB object and compressing it with gzip");
        let keyed = keyed_source();
        let plain = self.dir.join("w3.json");
        let mut expected = ExpectedDigest::default();
        let mut file = BufWriter::new(
            File::create(&plain).with_context(|| format!("creating {}", plain.display()))?,
        );
        let posts = write_array(&mut file, 1, Size::Bytes(mib << 20), &mut expected)?;
        file.flush()?;
        drop(file);
        let gzipped = self.dir.join("w3.json.gz");
        let zipped = tokio::process::Command::new("gzip")
            .args(["-n", "-c"])
            .arg(&plain)
            .stdout(File::create(&gzipped)?)
            .status()
            .await
            .context("running gzip")?;
        ensure!(zipped.success(), "gzip {} failed", plain.display());
        let key = self.key(&keyed, first_fetch(), "bench-w3");
        let expected = expected.finish();
        let w3 = (Workload::W3, key.clone(), &plain, None);
        let w3_gzip = (
            Workload::W3Gzip,
            format!("{key}.gz"),
            &gzipped,
            Some("gzip"),
        );
        let (w3, plain_bytes) = self.archive_file(w3, posts, &expected).await?;
        let (w3_gzip, gzip_bytes) = self.archive_file(w3_gzip, posts, &expected).await?;
        Ok(([w3, w3_gzip], [plain_bytes, gzip_bytes]))
    }

    /// Archives the file of `(workload, key, path, Content-Encoding)`, an array of `posts` posts
    /// fetched at [`first_fetch`], and removes the file; returns its load and size.
    async fn archive_file(
        &self,
        (workload, key, path, encoding): (Workload, String, &PathBuf, Option<&str>),
        posts: u64,
        expected: &Expected,
    ) -> anyhow::Result<(Load, u64)> {
        let keyed = keyed_source();
        // The SHA-256 of the object's bytes as stored: compressed, for the gzip object.
        let sha256 = file_digest(path)?;
        let message = self.message(&keyed, key, first_fetch(), posts, sha256);
        let body = ByteStream::from_path(path)
            .await
            .with_context(|| format!("reading {}", path.display()))?;
        self.archive(&message.key, body, encoding).await?;
        let size = fs::metadata(path)?.len();
        fs::remove_file(path)?;
        Ok((Load::new(workload, &keyed, vec![message], expected), size))
    }

    /// One run: every workload, then every baseline.
    async fn run_once(&mut self, data: &Data) -> anyhow::Result<Run> {
        let mut results = Run::default();
        if self.load(&data.w1, true, &mut results).await? {
            self.dump(&data.w1).await?;
            if self.load(&data.w2, false, &mut results).await? {
                self.dump(&data.w2).await?;
            }
        } else if !self.failures.contains_key(&Workload::W2) {
            self.fail(Workload::W2, "not run: it updates what W1 loads".into());
        }
        self.load(&data.w1a, true, &mut results).await?;
        if self.load(&data.w3, true, &mut results).await? {
            self.dump(&data.w3).await?;
        }
        self.load(&data.w3_gzip, true, &mut results).await?;
        self.import(&data.w4_sha256, &mut results).await?;
        self.baselines(data, &mut results).await?;
        Ok(results)
    }

    /// Records that `workload` failed; it is not tried again.
    fn fail(&mut self, workload: Workload, reason: String) {
        eprintln!("xtask: {workload} failed: {reason}");
        self.failures.insert(workload, reason);
    }

    /// Stops a daemon and moves on to a fresh queue for the next one. A daemon stopped during an
    /// idle long poll abandons its ReceiveMessage, but LocalStack keeps it open for the poll's
    /// 20 s and hands it the next message sent: invisible for the visibility timeout, that
    /// message would add a minute to the next load.
    async fn retire(&mut self, daemon: Running) -> anyhow::Result<()> {
        daemon.stop().await?;
        self.queue += 1;
        let (queue, queue_url, dead_letter_url) = bench_queue(&self.env.aws, self.queue).await?;
        self.env.settings.queue.queue = queue;
        self.env.queue_url = queue_url;
        self.env.dead_letter_url = dead_letter_url;
        Ok(())
    }

    /// CPU seconds so far of process `barge`, PostgreSQL and LocalStack.
    fn cpu(&self, barge: u32) -> anyhow::Result<Cpu> {
        Ok(Cpu {
            barge: self.tree_cpu(barge)?,
            postgres: self.tree_cpu(self.postgres_pid)?,
            localstack: self.tree_cpu(self.localstack_pid)?,
        })
    }

    /// CPU seconds of process `root` and its live descendants, each with what its reaped
    /// children used (`utime + stime + cutime + cstime`): a PostgreSQL backend that exits still
    /// counts, in the postmaster's `cutime` and `cstime`.
    fn tree_cpu(&self, root: u32) -> anyhow::Result<f64> {
        // (pid, parent, ticks) of every process.
        let mut processes = Vec::new();
        for entry in fs::read_dir("/proc").context("listing /proc")?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            // Gone since the listing: its time is in its parent's cutime now.
            let Some(fields) = proc_stat(pid) else {
                continue;
            };
            let number = |index: usize| -> u64 {
                fields
                    .get(index)
                    .and_then(|field| field.parse().ok())
                    .unwrap_or(0)
            };
            let parent = u32::try_from(number(1)).unwrap_or(0);
            processes.push((
                pid,
                parent,
                number(11) + number(12) + number(13) + number(14),
            ));
        }
        ensure!(
            processes.iter().any(|&(pid, _, _)| pid == root),
            "process {root} is gone"
        );
        let (mut tree, mut ticks, mut next) = (vec![root], 0, 0);
        while let Some(&parent) = tree.get(next) {
            for &(pid, ppid, used) in &processes {
                if pid == parent {
                    ticks += used;
                }
                if ppid == parent {
                    tree.push(pid);
                }
            }
            next += 1;
        }
        Ok(ticks as f64 / self.ticks)
    }

    /// Starts `program` (`transformer` or `importer`) of the release build with `run`, pointed at
    /// the bench's resources with the sources of `env.settings`, and waits for its READY.
    async fn start(&self, program: &'static str, what: &str) -> anyhow::Result<Running> {
        let notify = NotifySocket::bind();
        let socket = notify.path().display().to_string();
        let mut extra = self.services.child_env();
        extra.push(("NOTIFY_SOCKET", socket));
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let daemon = Daemon::start(self.release.join(program), &["run"], &self.env, &extra);
        let running = Running {
            program,
            daemon,
            notify,
        };
        let started = Instant::now();
        let ready = |lines: &[String]| lines.iter().any(|line| line == "READY=1");
        loop {
            let lines = tokio::task::block_in_place(|| {
                running
                    .notify
                    .collect_until(Duration::from_millis(500), ready)
            });
            if ready(&lines) {
                break;
            }
            if let Some(exited) = running.exited() {
                bail!("{what}: {exited}");
            }
            ensure!(
                started.elapsed() < READY_LIMIT,
                "{what}: {program} did not say READY within {READY_LIMIT:?}; its log ends:\n{}",
                last_lines(&running.daemon.log())
            );
        }
        let pid = running.id();
        eprintln!(
            "xtask: {what}: {program} runs as pid {pid} (profile: perf record -g --call-graph \
             dwarf -p {pid})"
        );
        Ok(running)
    }

    /// Puts the messages on the queue, ten to a SendMessageBatch.
    async fn send(&self, messages: &[BatchMessage]) -> anyhow::Result<()> {
        for batch in messages.chunks(10) {
            let entries = batch
                .iter()
                .enumerate()
                .map(|(index, message)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .message_body(message.to_json())
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .context("building SendMessageBatch entries")?;
            let sent = self
                .env
                .aws
                .sqs
                .send_message_batch()
                .queue_url(&self.env.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|err| anyhow!(error_chain(&err)))
                .context("sending the batch messages")?;
            ensure!(
                sent.failed().is_empty(),
                "SendMessageBatch refused {:?}",
                sent.failed()
            );
        }
        Ok(())
    }

    /// Times barge loading `load` end to end in a fresh transformer: from the first message sent
    /// until every object is in the ledger and the queue is empty. `fresh` empties the tables and
    /// the ledger first. Returns whether it loaded; a failure is recorded, and rows that are not
    /// exactly the expected ones fail the bench.
    async fn load(&mut self, load: &Load, fresh: bool, results: &mut Run) -> anyhow::Result<bool> {
        let workload = load.workload;
        if self.failures.contains_key(&workload) {
            return Ok(false);
        }
        let transformer = self.start("transformer", &workload.to_string()).await?;
        if fresh {
            let tables = [keyed_source(), append_source()].map(|source| self.table(&source));
            self.db
                .batch_execute(&format!("TRUNCATE {}, {LEDGER}", tables.join(", ")))
                .await
                .context("emptying the tables and the ledger")?;
        }
        let before = self.cpu(transformer.id())?;
        let started = Instant::now();
        self.send(&load.messages).await?;
        if let Err(reason) = self.wait_loaded(&transformer, &load.messages).await? {
            self.retire(transformer).await?;
            self.fail(workload, reason);
            return Ok(false);
        }
        let seconds = started.elapsed().as_secs_f64();
        let cpu = self.cpu(transformer.id())? - before;
        let peak_rss_mib = peak_rss_mib(transformer.id())?;
        self.retire(transformer).await?;
        self.verify(&load.source, load, &workload.to_string())
            .await?;
        eprintln!(
            "xtask: {workload}: {seconds:.1} s, {} rows/s",
            thousands(load.expected.rows as f64 / seconds)
        );
        results.loads.insert(
            workload,
            Sample {
                seconds,
                cpu,
                peak_rss_mib,
            },
        );
        Ok(true)
    }

    /// Waits until every object of `messages` is in the ledger and the queue is empty; `Err`
    /// says why that will not happen: a message dead-lettered, the transformer gone, or no
    /// object loaded for [`STALL_LIMIT`].
    async fn wait_loaded(
        &self,
        transformer: &Running,
        messages: &[BatchMessage],
    ) -> anyhow::Result<Result<(), String>> {
        let keys: Vec<&str> = messages.iter().map(|m| m.key.as_str()).collect();
        let (mut loaded, mut progress, mut polls) = (0, Instant::now(), 0_u32);
        loop {
            let now: i64 = self
                .db
                .query_one(
                    &format!("SELECT count(*) FROM {LEDGER} WHERE bucket = $1 AND key = ANY($2)"),
                    &[&self.env.settings.storage.bucket, &keys],
                )
                .await
                .context("reading the ledger")?
                .get(0);
            if now == keys.len() as i64 && self.env.queued_messages().await == 0 {
                return Ok(Ok(()));
            }
            if now > loaded {
                (loaded, progress) = (now, Instant::now());
            }
            polls += 1;
            if polls % CHECK_EVERY == 0 {
                if self.env.dead_lettered_messages().await > 0 {
                    return Ok(Err(self.dead_letter_reason().await));
                }
                if let Some(exited) = transformer.exited() {
                    return Ok(Err(exited));
                }
                if progress.elapsed() > STALL_LIMIT {
                    return Ok(Err(format!("no object loaded for {STALL_LIMIT:?}")));
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The reason the transformer gave for dead-lettering a message of the load (the
    /// dead-letter queue is the load's own).
    async fn dead_letter_reason(&self) -> String {
        self.env.dead_letters().await.first().map_or_else(
            || "a message was dead-lettered".to_owned(),
            |letter| {
                let attribute =
                    |name: &str| letter.attributes.get(name).cloned().unwrap_or_default();
                format!(
                    "dead-lettered ({}): {}",
                    attribute("barge-error-class"),
                    attribute("barge-error")
                )
            },
        )
    }

    /// Fails the bench unless `source`'s table holds exactly `load`'s expected rows, every one
    /// written by `load`'s batches.
    async fn verify(&self, source: &Source, load: &Load, what: &str) -> anyhow::Result<()> {
        let table = self.table(source);
        let row = self
            .db
            .query_one(&digest_sql(&table), &[&load.fetched_at()])
            .await
            .with_context(|| format!("digesting {table}"))?;
        let (rows, md5, others): (i64, String, i64) = (row.get(0), row.get(1), row.get(2));
        let expected = &load.expected;
        ensure!(
            u64::try_from(rows) == Ok(expected.rows) && md5 == expected.md5 && others == 0,
            "{what} left {table} with {rows} rows (digest {md5}, {others} of them from another \
             batch), expected {} rows (digest {}) all from the batch fetched at {}: the load is \
             wrong, so its time means nothing",
            expected.rows,
            expected.md5,
            load.fetched_at()
        );
        Ok(())
    }

    /// Writes the table `load` filled, in key order, to `target/bench/<workload>.bin` in COPY's
    /// binary format, with the columns of barge's COPY: the same rows for psql to load. Once per
    /// bench.
    async fn dump(&mut self, load: &Load) -> anyhow::Result<()> {
        if self.dumps.contains_key(&load.workload) {
            return Ok(());
        }
        let file = self
            .dir
            .join(format!("{}.bin", load.workload.to_string().to_lowercase()));
        let sql = format!(
            "COPY (SELECT {} FROM {} ORDER BY {}) TO STDOUT (FORMAT binary)",
            copy_columns(&load.source)?,
            self.table(&load.source),
            load.source.primary_key.join(", ")
        );
        let rows = self
            .db
            .copy_out(sql.as_str())
            .await
            .with_context(|| format!("running {sql}"))?;
        let mut rows = pin!(rows);
        let mut out = tokio::io::BufWriter::new(
            tokio::fs::File::create(&file)
                .await
                .with_context(|| format!("creating {}", file.display()))?,
        );
        while let Some(chunk) = rows.try_next().await.context("reading COPY TO")? {
            out.write_all(&chunk).await?;
        }
        out.flush().await?;
        self.dumps.insert(load.workload, file);
        Ok(())
    }

    /// Times every psql baseline whose rows were dumped, each verified like barge's loads.
    async fn baselines(&self, data: &Data, results: &mut Run) -> anyhow::Result<()> {
        let schema = &self.env.settings.database.schema;
        for baseline in Baseline::PSQL {
            let workload = baseline.rows_of();
            let (Some(file), Some(load)) = (self.dumps.get(&workload), data.load(workload)) else {
                continue;
            };
            let source = baseline.source();
            let table = self.table(&source);
            let commands = match baseline {
                Baseline::Copy | Baseline::CopyAppend => vec![psql_copy(&table, &source)?],
                _ => {
                    let stage = create_stage_sql(&source);
                    let copy = psql_copy(stage_table(&stage)?, &source)?;
                    vec![
                        "BEGIN".into(),
                        stage,
                        copy,
                        // What barge runs first, and all it runs on these unique keys.
                        merge_sql(schema, &source, KeysInBatch::Unique),
                        "COMMIT".into(),
                    ]
                }
            };
            if baseline != Baseline::MergeFull {
                self.db
                    .batch_execute(&format!("TRUNCATE {table}"))
                    .await
                    .with_context(|| format!("emptying {table}"))?;
            }
            let mut psql = tokio::process::Command::from(self.services.psql(DATABASE));
            for command in &commands {
                psql.arg("-c").arg(command);
            }
            psql.stdin(File::open(file).with_context(|| format!("opening {}", file.display()))?)
                .kill_on_drop(true);
            let started = Instant::now();
            let output = psql.output().await.context("running psql")?;
            let seconds = started.elapsed().as_secs_f64();
            ensure!(
                output.status.success(),
                "psql {commands:?} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
            self.verify(&source, load, baseline.description()).await?;
            eprintln!(
                "xtask: {}: {seconds:.1} s, {} rows/s",
                baseline.description(),
                thousands(load.expected.rows as f64 / seconds)
            );
            results.baselines.insert(baseline, seconds);
        }
        Ok(())
    }

    /// W4: times a fresh importer (`run`, its next fetch an hour away) from READY until its
    /// message is on the queue, which must announce the API's body (`sha256`); and the baseline,
    /// [`Bench::get_put`].
    async fn import(&mut self, sha256: &str, results: &mut Run) -> anyhow::Result<()> {
        if self.failures.contains_key(&Workload::W4) {
            return Ok(());
        }
        let posts = self.options.posts;
        let seconds = self.get_put().await?;
        eprintln!(
            "xtask: {}: {seconds:.1} s, {} rows/s",
            Baseline::GetPut.description(),
            thousands(posts as f64 / seconds)
        );
        results.baselines.insert(Baseline::GetPut, seconds);

        let mut source = keyed_source();
        source.url = Some(self.posts_url.clone());
        source.interval = Duration::from_secs(3600);
        // Archived as sent, as curl's copy is (gzip, the default, is CPU the baseline does not
        // spend), so that the digest is the API body's.
        source.compression = barge_core::fetch::Compression::None;
        let sources = std::mem::replace(&mut self.env.settings.sources, vec![source]);
        let importer = self.start("importer", "W4").await;
        self.env.settings.sources = sources;
        let importer = importer?;
        let before = self.cpu(importer.id())?;
        let started = Instant::now();
        let received = loop {
            let queue_url = &self.env.queue_url;
            if let Some(message) = self.env.receive(queue_url, 1).await.into_iter().next() {
                break message;
            }
            let log = importer.daemon.log();
            let failed = if log.contains("import failed") {
                Some(format!("the importer failed:\n{}", last_lines(&log)))
            } else if started.elapsed() > STALL_LIMIT {
                Some(format!("no message within {STALL_LIMIT:?}"))
            } else {
                importer.exited()
            };
            if let Some(reason) = failed {
                self.retire(importer).await?;
                self.fail(Workload::W4, reason);
                return Ok(());
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        let cpu = self.cpu(importer.id())? - before;
        let peak_rss_mib = peak_rss_mib(importer.id())?;
        self.retire(importer).await?;
        let announced = BatchMessage::parse(received.body.as_deref().unwrap_or_default())
            .context("the importer's message")?;
        ensure!(
            announced.record_count == posts && announced.sha256 == sha256,
            "the importer announced {} records with SHA-256 {}, expected {posts} with {sha256} \
             (the API's body)",
            announced.record_count,
            announced.sha256
        );
        eprintln!(
            "xtask: W4: {seconds:.1} s, {} rows/s",
            thousands(posts as f64 / seconds)
        );
        results.loads.insert(
            Workload::W4,
            Sample {
                seconds,
                cpu,
                peak_rss_mib,
            },
        );
        Ok(())
    }

    /// Times the floor of W4: curl GETting the API piped into curl PUTting the body to S3
    /// (LocalStack takes unsigned requests): the bytes moved, streamed, by native code, and
    /// nothing else.
    async fn get_put(&self) -> anyhow::Result<f64> {
        let keyed = keyed_source();
        let put_url = format!(
            "{}/{}/{}",
            self.services.endpoint(),
            self.env.settings.storage.bucket,
            self.key(&keyed, Utc::now(), "bench-w4-curl")
        );
        let started = Instant::now();
        let mut get = tokio::process::Command::new("curl")
            .args(["-sSf", &self.posts_url])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("running curl")?;
        let body: Stdio = get
            .stdout
            .take()
            .context("curl's standard output")?
            .try_into()
            .context("piping curl into curl")?;
        let put = tokio::process::Command::new("curl")
            .args(["-sSf", "-o", "/dev/null", "-T", "-", &put_url])
            .stdin(body)
            .kill_on_drop(true)
            .output()
            .await
            .context("running curl")?;
        let got = get.wait().await.context("waiting for curl")?;
        let seconds = started.elapsed().as_secs_f64();
        ensure!(
            got.success() && put.status.success(),
            "curl {} | curl -T - {put_url} failed: {}",
            self.posts_url,
            String::from_utf8_lossy(&put.stderr)
        );
        Ok(seconds)
    }

    /// The machine, PostgreSQL, LocalStack, compiler and commit the figures were taken with.
    async fn environment(&self) -> anyhow::Result<String> {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").context("reading /proc/cpuinfo")?;
        let model = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
            .map_or("unknown CPU", |(_, model)| model.trim());
        let cores = std::thread::available_parallelism().map_or(0, usize::from);
        let meminfo = fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
        let ram_gib = kib_field(&meminfo, "MemTotal").unwrap_or(0.0) / (1024.0 * 1024.0);
        let postgres: String = self.db.query_one("SHOW server_version", &[]).await?.get(0);
        let commit = first_line("git", &["rev-parse", "--short=12", "HEAD"]);
        let dirty =
            !first_line("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
        Ok(format!(
            "{model}, {cores} cores, {ram_gib:.1} GiB RAM; PostgreSQL {postgres}; LocalStack \
             {LOCALSTACK_VERSION}; {}; commit {commit}{}",
            first_line("rustc", &["--version"]),
            if dirty {
                " with uncommitted changes"
            } else {
                ""
            }
        ))
    }

    /// The results as markdown: the workloads, the baselines, what failed.
    async fn report(&self, data: &Data, runs: &[Run]) -> anyhow::Result<String> {
        let options = self.options;
        let mut text = String::new();
        writeln!(
            text,
            "## barge bench, {}\n\n{}\n\n`--posts {} --runs {} --w3-mib {}`: {}.\n",
            Utc::now().format("%Y-%m-%d %H:%M UTC"),
            self.environment().await?,
            options.posts,
            options.runs,
            options.w3_mib,
            match options.runs {
                1 => "one run".to_owned(),
                runs => format!("each figure the median of {runs} runs"),
            }
        )?;
        writeln!(
            text,
            "| workload | rows | T rows/s | baseline | baseline rows/s | T/baseline | CPU s per \
             M rows: barge | PostgreSQL | LocalStack | barge peak RSS MiB |\n\
             | --- | --: | --: | --- | --: | --: | --: | --: | --: | --: |"
        )?;
        let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
        for workload in Workload::ALL {
            let label = match workload {
                Workload::W1 => format!(
                    "W1: {} objects into an empty keyed table",
                    data.w1.messages.len()
                ),
                Workload::W1a => "W1a: the same into an empty append-only table".into(),
                Workload::W2 => "W2: the same bytes, later: every row updated".into(),
                Workload::W3 => format!(
                    "W3: one {:.0} MiB object, empty keyed table",
                    mib(data.w3_bytes)
                ),
                Workload::W3Gzip => format!(
                    "W3 gzip: the same, {:.0} MiB gzip-compressed",
                    mib(data.w3_gzip_bytes)
                ),
                Workload::W4 => "W4: importer, sample API → S3 + SQS".into(),
            };
            let rows = data.rows(workload) as f64;
            let baseline = workload.baseline();
            if self.failures.contains_key(&workload) {
                writeln!(
                    text,
                    "| {label} | {} | failed (below) | {} | | | | | | |",
                    thousands(rows),
                    baseline.name()
                )?;
                continue;
            }
            let samples: Vec<&Sample> =
                runs.iter().filter_map(|r| r.loads.get(&workload)).collect();
            let of_samples = |figure: &dyn Fn(&Sample) -> f64| {
                median(samples.iter().map(|&sample| figure(sample)).collect())
            };
            let baseline_rate = median(
                runs.iter()
                    .filter_map(|r| r.baselines.get(&baseline))
                    .map(|seconds| rows / seconds)
                    .collect(),
            );
            let ratio = median(
                runs.iter()
                    .filter_map(|r| {
                        Some(r.baselines.get(&baseline)? / r.loads.get(&workload)?.seconds)
                    })
                    .collect(),
            );
            let show = |value: Option<f64>, format: fn(f64) -> String| {
                value.map_or_else(|| "–".to_owned(), format)
            };
            let per_million = |cpu: fn(&Cpu) -> f64| {
                show(of_samples(&|sample| cpu(&sample.cpu) / rows * 1e6), |v| {
                    format!("{v:.1}")
                })
            };
            writeln!(
                text,
                "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                thousands(rows),
                show(of_samples(&|sample| rows / sample.seconds), thousands),
                baseline.name(),
                show(baseline_rate, thousands),
                show(ratio, |v| format!("{v:.2}")),
                per_million(|cpu| cpu.barge),
                per_million(|cpu| cpu.postgres),
                per_million(|cpu| cpu.localstack),
                show(of_samples(&|sample| sample.peak_rss_mib), |v| format!(
                    "{v:.0}"
                )),
            )?;
        }
        writeln!(
            text,
            "\n| baseline | rows | seconds | rows/s |\n| --- | --: | --: | --: |"
        )?;
        for baseline in Baseline::PSQL.into_iter().chain([Baseline::GetPut]) {
            let rows = data.rows(baseline.rows_of()) as f64;
            if let Some(seconds) = median(
                runs.iter()
                    .filter_map(|r| r.baselines.get(&baseline).copied())
                    .collect(),
            ) {
                writeln!(
                    text,
                    "| {} | {} | {seconds:.2} | {} |",
                    baseline.description(),
                    thousands(rows),
                    thousands(rows / seconds)
                )?;
            }
        }
        writeln!(
            text,
            "\nT: barge end to end, a fresh release daemon per load: from the first message sent \
             until every object is in the ledger and the queue is empty (W4: from the importer's \
             READY until its message is on the queue). T/baseline: T rows/s ÷ baseline rows/s, \
             per run (1: as fast as PostgreSQL, or curl, alone). CPU: seconds per million rows \
             over T, of the daemon (transformer; W4: importer), of every PostgreSQL process, of \
             LocalStack's process tree. Peak RSS: the daemon's VmHWM. W4's posts are the sample \
             API's, shorter than the others."
        )?;
        for (workload, reason) in &self.failures {
            writeln!(text, "\n**{workload} failed**:\n\n```\n{reason}\n```")?;
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_arrays_decode_to_the_posts_they_digest() {
        let mut expected = ExpectedDigest::default();
        let mut body = Vec::new();
        let count = write_array(&mut body, 1, Size::Posts(500), &mut expected).unwrap();
        assert_eq!(count, 500);
        let records: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
        let mut decoded = ExpectedDigest::default();
        for (record, id) in records.iter().zip(1..) {
            let post = Post {
                user_id: record["userId"].as_i64().unwrap(),
                id: record["id"].as_i64().unwrap(),
                title: record["title"].as_str().unwrap().to_owned(),
                body: record["body"].as_str().unwrap().to_owned(),
            };
            assert_eq!(post, bench_post(id).0);
            decoded.add(&post);
        }
        assert_eq!(decoded.finish(), expected.finish());
        let text = String::from_utf8(body).unwrap();
        for written in [
            "é",
            "🚀",
            "\\u00e9",
            "\\u00E9",
            "\\ud83d\\ude80",
            "\\uD83D\\uDE80",
            "\\/",
            "\\n",
            "\\u000a",
            "\\t",
            "\\\"",
            "\\\\",
        ] {
            assert!(text.contains(written), "no {written} in the generated JSON");
        }
    }

    #[test]
    fn titles_and_bodies_have_their_lengths_in_characters() {
        for id in 1..2_000 {
            let (post, _) = bench_post(id);
            assert!((20..=80).contains(&post.title.chars().count()), "{post:?}");
            assert!((100..=400).contains(&post.body.chars().count()), "{post:?}");
        }
    }

    #[test]
    fn an_array_of_a_size_in_bytes_just_reaches_it() {
        let mut body = Vec::new();
        let mut expected = ExpectedDigest::default();
        let count = write_array(&mut body, 1, Size::Bytes(100_000), &mut expected).unwrap();
        assert!(
            body.len() >= 100_000 && body.len() < 102_000,
            "{}",
            body.len()
        );
        assert_eq!(expected.rows, count);
    }

    /// The bench runs the transformer's own statements with psql; a new form of them must be
    /// noticed here rather than in a long bench.
    #[test]
    fn the_transformers_statements_become_psql_commands() {
        let source = baseline_source(&keyed_source());
        assert_eq!(
            psql_copy("barge_stage", &source).unwrap(),
            "\\copy barge_stage (\"id\", \"user_id\", \"title\", \"body\", barge_fetched_at) \
             FROM pstdin (FORMAT binary)"
        );
        assert_eq!(
            copy_columns(&source).unwrap(),
            "\"id\", \"user_id\", \"title\", \"body\", barge_fetched_at"
        );
        let stage = create_stage_sql(&source);
        assert!(
            merge_sql("public", &source, KeysInBatch::Unique)
                .contains(&format!("FROM {} ", stage_table(&stage).unwrap()))
        );
        assert!(
            merge_sql("public", &source, KeysInBatch::Unique)
                .contains("\"public\".\"baseline_posts\"")
        );
    }

    #[test]
    fn medians_and_thousands() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_000.0), "1,000");
    }

    #[test]
    fn kib_fields_are_read_from_proc() {
        let status = "Name:\ttransformer\nVmPeak:\t  900 kB\nVmHWM:\t   2048 kB\n";
        assert_eq!(kib_field(status, "VmHWM"), Some(2048.0));
        assert_eq!(kib_field(status, "VmRSS"), None);
        assert!(peak_rss_mib(std::process::id()).unwrap() > 0.0);
    }
}
