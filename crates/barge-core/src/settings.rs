//! The one settings tree: built-in defaults, then an optional TOML file, then `BARGE__…`
//! environment variables, each layer overriding the one before.
//!
//! Defaults are names and limits (bucket `barge-raw`, queue `barge-batches`, PostgreSQL on
//! localhost, timeouts), never anything that would act on its own: there is no default source
//! and no default password, so a daemon started without settings refuses to start instead of
//! importing something somewhere. AWS region, credentials and endpoint are deliberately *not*
//! here: they come from the standard AWS chain (`AWS_REGION`, `AWS_ENDPOINT_URL`, instance
//! profile, …).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::secrets::{self, SecretError};
use crate::source::{Source, SourceError};

/// Prefix of environment overrides; `__` separates levels: `BARGE__DATABASE__PASSWORD`.
pub const ENV_PREFIX: &str = "BARGE__";
/// The database password's variable, read verbatim (figment would parse `123` as a number,
/// `true` as a boolean, and quote the value in its error).
const PASSWORD_VARIABLE: &str = "BARGE__DATABASE__PASSWORD";

/// Everything the importer and transformer can be told. Both read the same tree so that one file
/// can configure a host running either daemon.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where raw batches are archived.
    pub storage: StorageSettings,
    /// The queue that announces archived batches.
    pub queue: QueueSettings,
    /// The PostgreSQL database rows are loaded into.
    pub database: DatabaseSettings,
    /// How the importer talks to HTTP APIs.
    pub http: HttpSettings,
    /// How the transformer behaves as a daemon.
    pub transformer: TransformerSettings,
    /// Where each daemon serves its metrics and health endpoints.
    pub metrics: MetricsSettings,
    /// How the daemons write their logs.
    pub log: LogSettings,
    /// The APIs to import, each with the table it lands in.
    pub sources: Vec<Source>,
}

/// The S3 archive of raw batches.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// Bucket that holds the immutable raw archive.
    pub bucket: String,
    /// Key prefix under which raw batches are written (`<prefix>/<source>/<yyyy>/<mm>/<dd>/…`).
    /// The transformer loads only objects of `bucket` under this prefix.
    pub prefix: String,
    /// Key prefix (in `bucket`) under which the transformer writes rejected records.
    pub errors_prefix: String,
    /// Key prefix (in `bucket`) of the importer's state: each source's incremental mark and
    /// recent page digests, and the markers of objects not yet announced.
    pub state_prefix: String,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            bucket: "barge-raw".into(),
            prefix: "raw".into(),
            errors_prefix: "errors".into(),
            state_prefix: "state".into(),
        }
    }
}

impl StorageSettings {
    /// Whether `key` of `bucket` is part of the raw archive, the only objects the transformer
    /// loads: a message naming anything else is refused rather than obeyed.
    pub fn is_archived(&self, bucket: &str, key: &str) -> bool {
        bucket == self.bucket && key_is_under(key, &self.prefix)
    }
}

/// Whether `key` lies under the key prefix `prefix` (a whole path segment: `raw` covers `raw/x`,
/// not `rawer/x`; an empty prefix covers everything). A trailing `/` on `prefix` changes nothing.
pub fn key_is_under(key: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || key
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The SQS queue between importer and transformer.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// Queue name (resolved with `GetQueueUrl`) or full queue URL (used as is).
    pub queue: String,
    /// Long-poll wait of each receive, in seconds (SQS allows 0 to 20).
    pub wait_seconds: i32,
    /// Dead-letter queue (name or URL) that receives messages that can never load, with their
    /// reason. Unset: the main queue's redrive policy target.
    pub dead_letter_queue: Option<String>,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            queue: "barge-batches".into(),
            wait_seconds: 20,
            dead_letter_queue: None,
        }
    }
}

/// Connection to the PostgreSQL database that receives the rows.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Role to log in as.
    pub user: String,
    /// Password of `user`. Prefer `BARGE__DATABASE__PASSWORD` (read verbatim),
    /// `password_file` or `password_secret` to writing it into a file. Never logged (its
    /// `Debug` prints `[REDACTED]`).
    #[serde(deserialize_with = "secrets::deserialize_optional")]
    pub password: Option<SecretString>,
    /// A file holding the password (one trailing line break ignored), read at start-up.
    pub password_file: Option<PathBuf>,
    /// An AWS Secrets Manager secret (name or ARN) holding the password, plain or as the JSON
    /// RDS writes for a managed master password; read at start-up.
    pub password_secret: Option<String>,
    /// Database name.
    pub dbname: String,
    /// Schema of the source tables (the ledger lives in schema `barge`).
    pub schema: String,
    /// TLS to PostgreSQL: `verify-full` (the default: encrypted, and the server's certificate
    /// must be valid for `host`) or `disable` (plain TCP, for local throwaway servers only).
    pub tls: TlsMode,
    /// PEM file of the certificate authorities to trust for `verify-full` (for RDS: its CA
    /// bundle). Unset: the system's trusted roots.
    pub ca_file: Option<PathBuf>,
    /// How long to wait for a connection before giving up.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest any one statement may run (PostgreSQL's `statement_timeout`); a load that hits
    /// it is retried.
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// Longest a statement waits for a lock (`lock_timeout`), so that an `ALTER TABLE` or a
    /// long transaction elsewhere delays a load instead of blocking it for good.
    #[serde(with = "humantime_serde")]
    pub lock_timeout: Duration,
    /// Longest a session may sit idle inside a transaction before PostgreSQL ends it
    /// (`idle_in_transaction_session_timeout`), releasing its locks.
    #[serde(with = "humantime_serde")]
    pub idle_in_transaction_timeout: Duration,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            host: "localhost".into(),
            port: 5432,
            user: "barge".into(),
            password: None,
            password_file: None,
            password_secret: None,
            dbname: "barge".into(),
            schema: "public".into(),
            tls: TlsMode::VerifyFull,
            ca_file: None,
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(5 * 60),
            lock_timeout: Duration::from_secs(30),
            idle_in_transaction_timeout: Duration::from_secs(5 * 60),
        }
    }
}

/// How the transformer's connections to PostgreSQL are protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// TLS, with the server's certificate verified against the trusted roots and `host`.
    VerifyFull,
    /// No TLS.
    Disable,
}

/// Why a PostgreSQL connection or statement failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The TLS trust roots could not be read.
    #[error(
        "cannot read the certificate authorities for TLS to PostgreSQL from {source_name}: {reason}"
    )]
    TlsRoots {
        /// The CA file, or "the system's trust store".
        source_name: String,
        /// What went wrong.
        reason: String,
    },
    /// The password could not be read again from its file or secret.
    #[error(transparent)]
    Password(#[from] SecretError),
    /// The driver or the server failed.
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
}

/// TCP keepalive probes start after this much silence on a PostgreSQL connection, so that a
/// peer gone without a reset (a failover, a NAT dropping idle flows) is noticed in about a
/// minute rather than the kernel's two hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// Interval between keepalive probes, and how many may go unanswered.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;
/// Longest sent data may stay unacknowledged before the connection is dropped
/// (`TCP_USER_TIMEOUT`): the same failure while a query is being sent.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

impl DatabaseSettings {
    /// These settings with the password read from `password_file` or `password_secret`, if one
    /// is set; the daemon that connects calls this once at start-up.
    pub async fn resolve_password(
        &self,
        secrets: &aws_sdk_secretsmanager::Client,
    ) -> Result<Self, SecretError> {
        let mut resolved = self.clone();
        if let Some(path) = resolved.password_file.take() {
            resolved.password = Some(secrets::read_file(&path)?);
        }
        if let Some(id) = resolved.password_secret.take() {
            resolved.password = Some(secrets::fetch_password(secrets, &id).await?);
        }
        Ok(resolved)
    }

    /// A connected client, over TLS unless `tls = "disable"`, with the session's timeouts set.
    /// The one place barge opens PostgreSQL connections, so the password leaves its
    /// `SecretString` only here, straight into the driver.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, DbError> {
        let config = self.pg_config();
        let client = match self.tls {
            TlsMode::Disable => spawn_connection(config.connect(tokio_postgres::NoTls).await?),
            TlsMode::VerifyFull => {
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.tls_config()?);
                spawn_connection(config.connect(tls).await?)
            }
        };
        // SET rather than startup options, which poolers such as RDS Proxy refuse.
        let millis = |d: Duration| d.as_millis();
        client
            .batch_execute(&format!(
                "SET statement_timeout = {}; SET lock_timeout = {}; \
                 SET idle_in_transaction_session_timeout = {}",
                millis(self.statement_timeout),
                millis(self.lock_timeout),
                millis(self.idle_in_transaction_timeout)
            ))
            .await?;
        Ok(client)
    }

    /// rustls' client configuration: the CA file's certificates, or the system's roots.
    fn tls_config(&self) -> Result<rustls::ClientConfig, DbError> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                use rustls::pki_types::CertificateDer;
                use rustls::pki_types::pem::PemObject;
                let failed = |reason: String| DbError::TlsRoots {
                    source_name: path.display().to_string(),
                    reason,
                };
                let certificates = CertificateDer::pem_file_iter(path)
                    .map_err(|err| failed(err.to_string()))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|err| failed(err.to_string()))?;
                let (added, _) = roots.add_parsable_certificates(certificates);
                if added == 0 {
                    return Err(failed("no certificate in it".into()));
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
                if roots.is_empty() {
                    return Err(DbError::TlsRoots {
                        source_name: "the system's trust store".into(),
                        reason: format!("no usable certificate ({:?})", native.errors),
                    });
                }
            }
        }
        Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|err| DbError::TlsRoots {
            source_name: "rustls".into(),
            reason: err.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth())
    }

    fn pg_config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        if let Some(password) = &self.password {
            config.password(password.expose_secret());
        }
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .connect_timeout(self.connect_timeout)
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .keepalives_interval(KEEPALIVE_INTERVAL)
            .keepalives_retries(KEEPALIVE_RETRIES)
            .tcp_user_timeout(TCP_USER_TIMEOUT)
            .ssl_mode(match self.tls {
                TlsMode::VerifyFull => tokio_postgres::config::SslMode::Require,
                TlsMode::Disable => tokio_postgres::config::SslMode::Disable,
            })
            .application_name("barge");
        config
    }
}

/// A parser's error without the lines it quotes from the file (`2 | password = hunter2`), which
/// may hold a secret; the line and column it names remain.
fn without_snippets(text: &str) -> String {
    text.lines()
        .filter(|line| {
            let gutter = line
                .trim_start()
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            !gutter.starts_with('|')
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs a new connection on a task of its own; when it ends with an error the client reports
/// closed and the error is logged.
fn spawn_connection<S, T>(
    (client, connection): (tokio_postgres::Client, tokio_postgres::Connection<S, T>),
) -> tokio_postgres::Client
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::warn!(error = %crate::error_chain(&err), "database connection closed");
        }
    });
    client
}

/// The importer's HTTP client.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Longest wait on a source API: to connect, and between two reads of its answer. A large
    /// response may stream for longer, as long as it keeps arriving (it is uploaded to S3 as it
    /// comes, so a bound on the whole request would bound the size of what can be imported).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Tries of one request, the first included, when it fails to connect, times out or is
    /// answered 429 or 5xx; after them the source's run fails.
    pub max_attempts: u32,
    /// Longest pause between two tries (exponential backoff with jitter, from one second).
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Longest `Retry-After` honoured: an API asking for a longer wait fails the run instead
    /// of holding it.
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
    /// Largest response body accepted, in bytes: a larger one fails the run. A page that is
    /// the array of its records streams into S3, so this bounds time and storage, not memory.
    pub max_response_bytes: u64,
    /// Largest page held whole in memory, in bytes: a page whose records sit inside an object
    /// (`records = "/data"`), or whose records are gathered across pages
    /// (`records_per_object`), is read whole before it is taken apart. A larger one fails the
    /// run, never the host's memory.
    pub max_page_bytes: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            max_attempts: 5,
            max_backoff: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(5 * 60),
            max_response_bytes: 1 << 30,
            max_page_bytes: 32 << 20,
        }
    }
}

/// The transformer daemon's own behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransformerSettings {
    /// After SIGTERM/SIGINT, how long the batch being loaded may take to finish before it is
    /// abandoned (rolled back and handed back to the queue). Keep systemd's `TimeoutStopSec`
    /// above it.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Objects loaded at the same time, each on its own PostgreSQL connection: while one commits,
    /// the next downloads and decodes. Two suit one vCPU; more pay off with more cores or a
    /// database on another host.
    pub concurrency: usize,
    /// The largest record, in bytes of JSON text, the transformer holds: what bounds its memory
    /// whatever the object's size. A larger record makes its object unreadable.
    pub max_record_bytes: usize,
    /// The most bytes an object may decompress to: a gzip bomb is an error, not hours of work.
    pub max_object_bytes: u64,
}

impl Default for TransformerSettings {
    fn default() -> Self {
        Self {
            shutdown_grace: Duration::from_secs(60),
            concurrency: 2,
            max_record_bytes: 16 << 20,
            max_object_bytes: 16 << 30,
        }
    }
}

/// The daemons' operations endpoints (`/metrics`, `/health/live`, `/health/ready`). Each daemon
/// has its own address, so that both can run on one host from one file; both are on loopback
/// by default, so that nothing is reachable from the network unless an operator says so.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// Where `importer run` listens (`address:port`; port 0 picks a free one, logged).
    pub importer_listen: SocketAddr,
    /// Where `transformer run` listens.
    pub transformer_listen: SocketAddr,
    /// How often the transformer reads the depth of the queue and of its dead-letter queue
    /// (`GetQueueAttributes`, one request per queue).
    #[serde(with = "humantime_serde")]
    pub queue_poll_interval: Duration,
    /// How long the transformer's loop may go without progress (a receive answered, a message
    /// settled) before `/health/ready` says not ready; longer than `queue.wait_seconds`, since
    /// an idle long poll answers only when it ends.
    #[serde(with = "humantime_serde")]
    pub transformer_progress_window: Duration,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            importer_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            transformer_listen: SocketAddr::from(([127, 0, 0, 1], 9465)),
            queue_poll_interval: Duration::from_secs(30),
            transformer_progress_window: Duration::from_secs(120),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` (the default: one human-readable line per event) or `json` (one JSON object per
    /// line, with the fields of every enclosing span, for journald or CloudWatch Logs queries).
    pub format: LogFormat,
}

/// The shape of a log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable, coloured at a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The `--config` option of both daemons, so they read settings the same way.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// TOML settings file; `BARGE__…` environment variables override it.
    #[arg(long, global = true, env = "BARGE_CONFIG")]
    pub config: Option<PathBuf>,
}

impl ConfigArgs {
    /// Loads the settings this option names.
    pub fn load(&self) -> Result<Settings, SettingsError> {
        Settings::load(self.config.as_deref())
    }
}

/// Why settings could not be loaded; each message names the file, variable or source at fault.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// `--config` named a file that does not exist (figment would silently skip it).
    #[error("settings file {0} does not exist")]
    MissingFile(String),
    /// A value could not be parsed or has the wrong type.
    #[error("invalid settings: {}", without_snippets(&.0.to_string()))]
    Invalid(#[from] Box<figment::Error>),
    /// Values parsed but do not make sense together.
    #[error("invalid settings: {0}")]
    Source(#[from] SourceError),
    /// A value outside what the services accept.
    #[error("invalid settings: {0}")]
    OutOfRange(String),
    /// Nothing to import or load: a daemon without sources would only pretend to work.
    #[error(
        "no sources are declared: pass a settings file with [[sources]] (--config or \
         BARGE_CONFIG; see deploy/barge.example.toml)"
    )]
    NoSources,
}

impl Settings {
    /// Loads defaults, then `file` (if given), then `BARGE__…` environment variables, and checks
    /// that the result is usable.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.is_file() {
                return Err(SettingsError::MissingFile(path.display().to_string()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(
            Env::prefixed(ENV_PREFIX)
                .split("__")
                .ignore(&["database.password"]),
        );
        if let Some(password) = std::env::var_os(PASSWORD_VARIABLE) {
            let password = password.into_string().map_err(|_| {
                SettingsError::OutOfRange(format!("{PASSWORD_VARIABLE} is not valid UTF-8"))
            })?;
            figment = figment.merge(Serialized::default("database.password", password));
        }
        let settings: Settings = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks invariants serde cannot express: sane ranges, valid identifiers, unique sources.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if !(0..=20).contains(&self.queue.wait_seconds) {
            return Err(SettingsError::OutOfRange(format!(
                "queue.wait_seconds is {}, SQS allows 0 to 20",
                self.queue.wait_seconds
            )));
        }
        let transformer = &self.transformer;
        if !(1..=64).contains(&transformer.concurrency) {
            return Err(SettingsError::OutOfRange(format!(
                "transformer.concurrency is {}, expected 1 to 64",
                transformer.concurrency
            )));
        }
        if transformer.max_record_bytes < 1024 || transformer.max_object_bytes < 1024 {
            return Err(SettingsError::OutOfRange(
                "transformer.max_record_bytes and transformer.max_object_bytes must be at least 1024"
                    .into(),
            ));
        }
        if self.metrics.queue_poll_interval < Duration::from_secs(1) {
            return Err(SettingsError::OutOfRange(
                "metrics.queue_poll_interval must be at least 1s".into(),
            ));
        }
        let wait = Duration::from_secs(self.queue.wait_seconds.unsigned_abs().into());
        if self.metrics.transformer_progress_window <= wait {
            return Err(SettingsError::OutOfRange(format!(
                "metrics.transformer_progress_window must be longer than queue.wait_seconds \
                 ({}s): an idle receive answers only after that long",
                self.queue.wait_seconds
            )));
        }
        if self.storage.bucket.is_empty() {
            return Err(SettingsError::OutOfRange("storage.bucket is empty".into()));
        }
        self.check_prefixes()?;
        let http = &self.http;
        if http.max_attempts == 0 || http.max_response_bytes < 1024 || http.max_page_bytes < 1024 {
            return Err(SettingsError::OutOfRange(
                "http.max_attempts must be at least 1, http.max_response_bytes and \
                 http.max_page_bytes at least 1024"
                    .into(),
            ));
        }
        let database = &self.database;
        let password_sources = [
            database.password.is_some(),
            database.password_file.is_some(),
            database.password_secret.is_some(),
        ];
        if password_sources.iter().filter(|set| **set).count() > 1 {
            return Err(SettingsError::OutOfRange(
                "set only one of database.password, database.password_file and \
                 database.password_secret"
                    .into(),
            ));
        }
        crate::source::check_identifier(&database.schema)
            .map_err(|why| SettingsError::OutOfRange(format!("database.schema {why}")))?;
        if database.schema == "barge" || database.schema.starts_with("pg_") {
            return Err(SettingsError::OutOfRange(format!(
                "database.schema {:?} is reserved (barge keeps its ledger in \"barge\")",
                database.schema
            )));
        }
        if self.sources.is_empty() {
            return Err(SettingsError::NoSources);
        }
        for (index, source) in self.sources.iter().enumerate() {
            source.validate()?;
            let earlier = &self.sources[..index];
            if earlier.iter().any(|s| s.name == source.name) {
                return Err(SourceError::Duplicate(source.name.clone()).into());
            }
            if let Some(other) = earlier
                .iter()
                .find(|s| s.table == source.table && s.table_shape() != source.table_shape())
            {
                return Err(SourceError::Invalid {
                    name: source.name.clone(),
                    problem: format!(
                        "table {:?} is also loaded by source {:?}, with other columns or key",
                        source.table, other.name
                    ),
                }
                .into());
            }
        }
        Ok(())
    }

    /// The key prefixes of the bucket must not overlap: the raw archive, rejected records, the
    /// importer's state and each landing zone are different things, and the transformer tells
    /// them apart by prefix alone.
    fn check_prefixes(&self) -> Result<(), SettingsError> {
        let storage = &self.storage;
        let mut prefixes = vec![
            ("storage.prefix".to_owned(), storage.prefix.as_str()),
            ("storage.errors_prefix".to_owned(), &storage.errors_prefix),
            ("storage.state_prefix".to_owned(), &storage.state_prefix),
        ];
        for source in &self.sources {
            if let Some(landing) = &source.landing_prefix {
                prefixes.push((
                    format!("landing_prefix of source {:?}", source.name),
                    landing,
                ));
            }
        }
        let prefixes: Vec<(String, &str)> = prefixes
            .into_iter()
            .map(|(name, prefix)| (name, prefix.trim_end_matches('/')))
            .collect();
        for (index, (name, prefix)) in prefixes.iter().enumerate() {
            if prefix.is_empty() {
                return Err(SettingsError::OutOfRange(format!("{name} is empty")));
            }
            for (other_name, other) in &prefixes[..index] {
                let overlap =
                    prefix == other || key_is_under(prefix, other) || key_is_under(other, prefix);
                if overlap {
                    return Err(SettingsError::OutOfRange(format!(
                        "{name} {prefix:?} overlaps {other_name} {other:?}: the raw archive, \
                         rejected records, the importer's state and each landing zone need \
                         prefixes of their own"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The declared source called `name`, if any.
    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
// figment's `Jail` closures return its large error type; that is its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    const FILE: &str = r#"
        [storage]
        bucket = "from-file"

        [database]
        host = "db.internal"
        port = 6543
        password = "file-secret"

        [[sources]]
        name = "users"
        url = "https://api.example.com/users"
        interval = "5m"
        table = "users"
        primary_key = ["id"]
        columns = [
            { name = "id", type = "bigint" },
            { name = "email", type = "text", field = "contact_email", nullable = true },
        ]
    "#;

    /// A file declaring one source and `extra` TOML before it.
    fn file_with(jail: &mut Jail, extra: &str) -> figment::error::Result<()> {
        let source = &FILE[FILE.find("[[sources]]").unwrap()..];
        jail.create_file("barge.toml", &format!("{extra}\n{source}"))?;
        Ok(())
    }

    fn load() -> Result<Settings, SettingsError> {
        Settings::load(Some(Path::new("barge.toml")))
    }

    #[test]
    fn defaults_name_things_but_import_nothing_and_hold_no_password() {
        let defaults = Settings::default();
        assert_eq!(defaults.storage.bucket, "barge-raw");
        assert_eq!(defaults.queue.queue, "barge-batches");
        assert_eq!(defaults.queue.wait_seconds, 20);
        assert_eq!(defaults.database.host, "localhost");
        assert!(defaults.sources.is_empty());
        assert!(defaults.database.password.is_none());
        Jail::expect_with(|_| {
            let err = Settings::load(None).unwrap_err();
            assert!(matches!(err, SettingsError::NoSources), "{err}");
            assert!(
                err.to_string().contains("--config or BARGE_CONFIG"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn file_overrides_defaults_and_environment_overrides_file() {
        Jail::expect_with(|jail| {
            jail.create_file("barge.toml", FILE)?;
            jail.set_env("BARGE__DATABASE__PORT", "7777");
            jail.set_env("BARGE__STORAGE__PREFIX", "archive");
            let settings = load().expect("loads");
            // file over default
            assert_eq!(settings.storage.bucket, "from-file");
            assert_eq!(settings.database.host, "db.internal");
            // environment over file
            assert_eq!(settings.database.port, 7777);
            // environment over default
            assert_eq!(settings.storage.prefix, "archive");
            // untouched default
            assert_eq!(settings.queue.queue, "barge-batches");
            let password = settings.database.password.as_ref().unwrap();
            assert_eq!(password.expose_secret(), "file-secret");
            let users = settings.source("users").expect("declared source");
            assert_eq!(users.interval, Duration::from_secs(300));
            assert_eq!(users.columns[1].json_field(), "contact_email");
            assert_eq!(users.columns[0].json_field(), "id");
            Ok(())
        });
    }

    #[test]
    fn the_password_variable_is_taken_verbatim_whatever_it_looks_like() {
        for password in [
            "83920174",
            "true",
            "\"quoted\"",
            "[not a list",
            " spaced out ",
            "a=b#c",
            "{x}",
        ] {
            Jail::expect_with(|jail| {
                file_with(jail, "")?;
                jail.set_env("BARGE__DATABASE__PASSWORD", password);
                let settings = load().expect("loads");
                let loaded = settings.database.password.as_ref().unwrap();
                assert_eq!(loaded.expose_secret(), password);
                let debug = format!("{settings:?}");
                assert!(
                    debug.contains("password: Some(SecretBox<str>([REDACTED]))"),
                    "{debug}"
                );
                Ok(())
            });
        }
    }

    #[test]
    fn a_password_of_the_wrong_type_is_refused_without_being_shown() {
        for (value, found) in [
            ("83920174", "a number"),
            ("true", "a boolean"),
            ("[1, 2]", "a list"),
        ] {
            Jail::expect_with(|jail| {
                file_with(jail, &format!("[database]\npassword = {value}"))?;
                let err = load().unwrap_err().to_string();
                assert!(err.contains(&format!("found {found}")), "{err}");
                assert!(err.contains("password"), "{err}");
                assert!(!err.contains(value.trim_matches(['[', ']'])), "{err}");
                Ok(())
            });
        }
    }

    #[test]
    fn a_syntax_error_names_the_place_without_quoting_the_line() {
        Jail::expect_with(|jail| {
            file_with(jail, "[database]\npassword = hunter2")?;
            let err = load().unwrap_err().to_string();
            assert!(err.contains("at line 2, column 12"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
            Ok(())
        });
    }

    #[tokio::test]
    async fn a_password_file_is_read_at_resolution_without_its_line_break() {
        let dir = std::env::temp_dir().join(format!("barge-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "s3cr3t 123\n").unwrap();
        let database = DatabaseSettings {
            password_file: Some(file.clone()),
            ..DatabaseSettings::default()
        };
        let aws = aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::Config::builder()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .build(),
        );
        let resolved = database.resolve_password(&aws).await.unwrap();
        assert_eq!(resolved.password.unwrap().expose_secret(), "s3cr3t 123");
        std::fs::remove_file(&file).unwrap();
        let missing = database
            .resolve_password(&aws)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            missing.starts_with("cannot read the secret file"),
            "{missing}"
        );
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn only_one_password_source_may_be_set() {
        Jail::expect_with(|jail| {
            file_with(jail, "[database]\npassword_secret = \"barge/db\"")?;
            jail.set_env("BARGE__DATABASE__PASSWORD", "x");
            let err = load().unwrap_err().to_string();
            assert!(err.contains("set only one of"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn the_example_file_spells_out_the_defaults() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/barge.example.toml");
        Jail::expect_with(|_| {
            let from_file = Settings::load(Some(&example)).expect("example loads");
            // Every default, and the example's one source: the built-in posts source.
            let expected = Settings {
                sources: vec![Source::jsonplaceholder_posts()],
                ..Settings::default()
            };
            assert_eq!(format!("{from_file:?}"), format!("{expected:?}"));
            assert!(from_file.database.password.is_none());
            Ok(())
        });
    }

    #[test]
    fn the_local_settings_file_loads() {
        let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/barge.toml");
        Jail::expect_with(|_| {
            let settings = Settings::load(Some(&local)).expect("deploy/local/barge.toml loads");
            assert_eq!(
                settings.sources[0].url.as_deref(),
                Some("http://127.0.0.1:18089/posts")
            );
            assert_eq!(settings.database.port, 15432);
            Ok(())
        });
    }

    #[test]
    fn missing_file_is_named() {
        Jail::expect_with(|_| {
            let err = Settings::load(Some(Path::new("nope.toml"))).unwrap_err();
            assert_eq!(err.to_string(), "settings file nope.toml does not exist");
            Ok(())
        });
    }

    #[test]
    fn a_silent_peer_is_noticed_within_about_a_minute() {
        let config = DatabaseSettings::default().pg_config();
        assert!(config.get_keepalives());
        let dead_after = config.get_keepalives_idle() + KEEPALIVE_INTERVAL * KEEPALIVE_RETRIES;
        assert!(dead_after <= Duration::from_secs(60), "{dead_after:?}");
        assert_eq!(config.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
    }

    #[test]
    fn bad_values_name_the_key() {
        Jail::expect_with(|jail| {
            file_with(jail, "")?;
            jail.set_env("BARGE__DATABASE__PORT", "not-a-port");
            let err = load().unwrap_err().to_string();
            assert!(err.contains("\"DATABASE.PORT\" in `BARGE__`"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            file_with(jail, "[queue]\nwait_seconds = 30")?;
            let err = load().unwrap_err().to_string();
            assert!(err.contains("queue.wait_seconds is 30"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            file_with(jail, "[storage]\nbukket = \"x\"")?;
            let err = load().unwrap_err().to_string();
            assert!(err.contains("bukket"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn sources_may_share_a_table_only_with_one_shape() {
        let mut settings = Settings::default();
        let mut second = Source::jsonplaceholder_posts();
        second.name = "more-posts".into();
        second.columns.reverse(); // order and fields may differ
        second.columns[0].field = Some("/other".into());
        settings.sources = vec![Source::jsonplaceholder_posts(), second.clone()];
        settings.validate().unwrap();
        settings.sources[1].columns[0].nullable = true;
        let err = settings.validate().unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid settings: source \"more-posts\": table \"posts\" is also loaded by source \
             \"posts\", with other columns or key"
        );
    }

    #[test]
    fn bucket_prefixes_must_not_overlap() {
        let mut settings = Settings {
            sources: vec![Source::jsonplaceholder_posts()],
            ..Settings::default()
        };
        settings.validate().unwrap();
        settings.storage.state_prefix = "raw/state".into();
        let err = settings.validate().unwrap_err().to_string();
        assert!(
            err.contains("storage.state_prefix \"raw/state\" overlaps storage.prefix \"raw\""),
            "{err}"
        );
        settings.storage.state_prefix = "state".into();
        settings.sources[0].landing_prefix = Some("errors/".into());
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("landing_prefix of source \"posts\""), "{err}");
        settings.sources[0].landing_prefix = Some("rawer".into());
        settings
            .validate()
            .expect("whole path segments: rawer is not under raw");
        settings.storage.errors_prefix = String::new();
        assert!(
            settings
                .validate()
                .unwrap_err()
                .to_string()
                .contains("storage.errors_prefix is empty")
        );
    }

    #[test]
    fn duplicate_source_names_are_rejected() {
        let mut settings = Settings::default();
        settings.sources.push(Source::jsonplaceholder_posts());
        settings.sources.push(Source::jsonplaceholder_posts());
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("source \"posts\" is declared twice"), "{err}");
    }
}
