//! Standing up barge's AWS and PostgreSQL resources on a *local* LocalStack and PostgreSQL: the
//! bucket, the queue with its dead-letter queue, the database. `cargo xtask demo` uses it for the
//! default names; tests use it for a fresh, uniquely named set each ([`TestEnv`]).
//!
//! In AWS the same resources come from Terraform; nothing here is used by the daemons.

mod daemon;
pub mod postgres;
mod scrape;

pub use daemon::{Daemon, NotifySocket};
pub use scrape::{Metrics, get};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_sqs::types::QueueAttributeName;
use barge_core::aws::AwsClients;
use barge_core::settings::DatabaseSettings;
use barge_core::{BatchMessage, Settings};
use secrecy::{ExposeSecret, SecretString};

/// The attributes of a queue that matter to barge.
#[derive(Debug, Clone, Copy)]
pub struct QueueShape {
    /// Seconds a received message stays invisible to other receivers.
    pub visibility_timeout_seconds: u32,
    /// How often a message is received before SQS moves it to the dead-letter queue.
    pub max_receive_count: u32,
}

impl Default for QueueShape {
    /// The local defaults: a minute of visibility (the transformer's heartbeat extends it), five
    /// receives before the dead-letter queue.
    fn default() -> Self {
        Self {
            visibility_timeout_seconds: 60,
            max_receive_count: 5,
        }
    }
}
/// Environment variable with the URL of a PostgreSQL role allowed to create databases; set by
/// `cargo xtask test` for the integration tests.
pub const TEST_DATABASE_URL: &str = "BARGE_TEST_DATABASE_URL";

/// An SDK error with its whole cause chain (its own message is only "service error").
fn sdk_error(err: impl std::error::Error) -> anyhow::Error {
    anyhow::anyhow!(barge_core::error_chain(&err))
}

/// Creates `bucket` unless it exists already.
pub async fn ensure_bucket(aws: &AwsClients, bucket: &str) -> anyhow::Result<()> {
    match aws.s3.create_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_bucket_already_owned_by_you()) =>
        {
            Ok(())
        }
        Err(err) => Err(sdk_error(err)).with_context(|| format!("creating bucket {bucket}")),
    }
}

/// Creates `queue` and its dead-letter queue `<queue>-dlq` with a redrive policy (both are
/// idempotent with the same attributes) and returns the URLs of the main queue and the
/// dead-letter queue.
pub async fn ensure_queue(
    aws: &AwsClients,
    queue: &str,
    shape: QueueShape,
) -> anyhow::Result<(String, String)> {
    let dlq = format!("{queue}-dlq");
    let dlq_url = create_queue(aws, &dlq, HashMap::new()).await?;
    let dlq_arn = queue_arn(aws, &dlq_url).await?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": shape.max_receive_count,
    });
    let attributes = HashMap::from([
        (QueueAttributeName::RedrivePolicy, redrive.to_string()),
        (
            QueueAttributeName::VisibilityTimeout,
            shape.visibility_timeout_seconds.to_string(),
        ),
    ]);
    Ok((create_queue(aws, queue, attributes).await?, dlq_url))
}

/// The ARN of the queue at `queue_url`.
async fn queue_arn(aws: &AwsClients, queue_url: &str) -> anyhow::Result<String> {
    aws.sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("reading the ARN of {queue_url}"))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .with_context(|| format!("{queue_url} has no QueueArn attribute"))
}

/// Visible plus in-flight messages on the queue at `queue_url` (SQS's approximate counts, which
/// LocalStack reports exactly).
pub async fn queue_depth(aws: &AwsClients, queue_url: &str) -> anyhow::Result<u64> {
    let attributes = aws
        .sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("reading the message counts of {queue_url}"))?
        .attributes
        .unwrap_or_default();
    attributes
        .values()
        .map(|count| {
            count
                .parse::<u64>()
                .with_context(|| format!("message count {count:?}"))
        })
        .sum()
}

async fn create_queue(
    aws: &AwsClients,
    name: &str,
    attributes: HashMap<QueueAttributeName, String>,
) -> anyhow::Result<String> {
    aws.sqs
        .create_queue()
        .queue_name(name)
        .set_attributes(Some(attributes))
        .send()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("creating queue {name}"))?
        .queue_url
        .with_context(|| format!("CreateQueue for {name} returned no URL"))
}

/// Has S3 announce every object created in `bucket` under any of `prefixes` on the queue at
/// `queue_url` (`s3:ObjectCreated:*`, one filter per prefix), as the transformer's landing zone
/// needs. First the queue's policy lets S3 send to it, for this bucket of this account only (AWS
/// checks that when the notification is put; LocalStack does not); then the bucket's
/// notification configuration is replaced by these prefixes. S3 then sends an `s3:TestEvent`.
pub async fn notify_landings(
    aws: &AwsClients,
    bucket: &str,
    queue_url: &str,
    prefixes: &[&str],
) -> anyhow::Result<()> {
    use aws_sdk_s3::types::{
        Event, FilterRule, FilterRuleName, NotificationConfiguration,
        NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
    };
    let queue_arn = queue_arn(aws, queue_url).await?;
    // arn:aws:sqs:<region>:<account>:<name>
    let account = queue_arn
        .split(':')
        .nth(4)
        .with_context(|| format!("queue ARN {queue_arn} names no account"))?;
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "AllowS3EventNotifications",
            "Effect": "Allow",
            "Principal": { "Service": "s3.amazonaws.com" },
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {
                "ArnEquals": { "aws:SourceArn": format!("arn:aws:s3:::{bucket}") },
                "StringEquals": { "aws:SourceAccount": account },
            },
        }],
    });
    aws.sqs
        .set_queue_attributes()
        .queue_url(queue_url)
        .attributes(QueueAttributeName::Policy, policy.to_string())
        .send()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("letting S3 send to {queue_url}"))?;
    let mut notifications = NotificationConfiguration::builder();
    for prefix in prefixes {
        let prefix = format!("{}/", prefix.trim_end_matches('/'));
        let filter = NotificationConfigurationFilter::builder()
            .key(
                S3KeyFilter::builder()
                    .filter_rules(
                        FilterRule::builder()
                            .name(FilterRuleName::Prefix)
                            .value(&prefix)
                            .build(),
                    )
                    .build(),
            )
            .build();
        notifications = notifications.queue_configurations(
            QueueConfiguration::builder()
                .id(format!("landing {prefix}"))
                .queue_arn(&queue_arn)
                .events(Event::S3ObjectCreated)
                .filter(filter)
                .build()
                .context("a queue configuration names its queue and events")?,
        );
    }
    aws.s3
        .put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(notifications.build())
        .send()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("configuring the notifications of bucket {bucket}"))?;
    Ok(())
}

/// Creates database `name` unless it exists, connecting as `admin` to its maintenance database.
pub async fn ensure_database(admin: &DatabaseSettings, name: &str) -> anyhow::Result<()> {
    let client = admin
        .connect()
        .await
        .with_context(|| format!("connecting to PostgreSQL at {}:{}", admin.host, admin.port))?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        // The name is ours (a fixed name or a UUID-derived one), so quoting is enough.
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .with_context(|| format!("creating database {name}"))?;
    }
    Ok(())
}

/// Database settings parsed from a `postgres://user:password@host:port/dbname` URL.
pub fn database_settings_from_url(url: &str) -> anyhow::Result<DatabaseSettings> {
    let config: tokio_postgres::Config = url.parse().context("not a PostgreSQL URL")?;
    let host = match config.get_hosts() {
        [tokio_postgres::config::Host::Tcp(host)] => host.clone(),
        _ => bail!("the PostgreSQL URL must name exactly one TCP host"),
    };
    let password = config
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    Ok(DatabaseSettings {
        host,
        port: config.get_ports().first().copied().unwrap_or(5432),
        user: config.get_user().unwrap_or("postgres").to_owned(),
        password: Some(SecretString::from(password)),
        // Only local, throwaway servers are named by URL here.
        tls: barge_core::settings::TlsMode::Disable,
        dbname: config.get_dbname().unwrap_or("postgres").to_owned(),
        ..DatabaseSettings::default()
    })
}

/// A private bucket, queue (with dead-letter queue) and database for one test, on the LocalStack
/// and PostgreSQL that `cargo xtask test` started, so tests can run in parallel without seeing
/// each other's objects, messages or rows.
#[derive(Debug)]
pub struct TestEnv {
    /// Settings pointing at this test's resources, with the built-in `posts` source.
    pub settings: Settings,
    /// Clients for LocalStack.
    pub aws: AwsClients,
    /// URL of this test's queue.
    pub queue_url: String,
    /// URL of its dead-letter queue.
    pub dead_letter_url: String,
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.config_file());
    }
}

/// What a test may change about its environment.
#[derive(Debug, Clone, Default)]
pub struct TestEnvOptions {
    /// The queue's visibility timeout and redrive policy.
    pub queue: QueueShape,
    /// A PostgreSQL role allowed to create databases, when the test brings its own server
    /// (default: the one `cargo xtask test` started).
    pub database_admin: Option<DatabaseSettings>,
}

/// A message read from a dead-letter queue.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The body, as sent to the main queue.
    pub body: String,
    /// Its string message attributes.
    pub attributes: HashMap<String, String>,
}

impl TestEnv {
    /// Provisions a fresh set of resources. Panics with instructions when the services are not
    /// there, and refuses to run against anything but a loopback endpoint.
    pub async fn new() -> Self {
        Self::with(TestEnvOptions::default()).await
    }

    /// [`TestEnv::new`] with options.
    pub async fn with(options: TestEnvOptions) -> Self {
        Self::try_new(options).await.expect(
            "integration tests need the LocalStack and PostgreSQL that `cargo xtask test` starts",
        )
    }

    async fn try_new(options: TestEnvOptions) -> anyhow::Result<Self> {
        let endpoint = std::env::var("AWS_ENDPOINT_URL").context("AWS_ENDPOINT_URL is not set")?;
        if !(endpoint.starts_with("http://127.0.0.1:") || endpoint.starts_with("http://localhost:"))
        {
            bail!(
                "AWS_ENDPOINT_URL={endpoint} is not a loopback LocalStack; refusing to test against it"
            );
        }
        let admin = match options.database_admin {
            Some(admin) => admin,
            None => database_settings_from_url(
                &std::env::var(TEST_DATABASE_URL)
                    .with_context(|| format!("{TEST_DATABASE_URL} is not set"))?,
            )?,
        };
        let aws = AwsClients::from_env().await;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("test-{}", &id[..16]);
        let dbname = format!("test_{}", &id[..16]);
        ensure_bucket(&aws, &name).await?;
        let (queue_url, dead_letter_url) = ensure_queue(&aws, &name, options.queue).await?;
        ensure_database(&admin, &dbname).await?;
        let mut settings = Settings {
            sources: vec![barge_core::Source::jsonplaceholder_posts()],
            ..Settings::default()
        };
        settings.storage.bucket = name.clone();
        settings.queue.queue = name;
        settings.queue.wait_seconds = 1;
        settings.database = DatabaseSettings { dbname, ..admin };
        Ok(Self {
            settings,
            aws,
            queue_url,
            dead_letter_url,
        })
    }

    /// Points the built-in `posts` source at `url`.
    pub fn with_posts_url(mut self, url: &str) -> Self {
        self.settings.sources[0].url = Some(url.to_owned());
        self
    }

    /// The environment that points a spawned `importer` or `transformer` at this test's
    /// bucket, queue and database, with its sources in a settings file (`BARGE_CONFIG`).
    pub fn barge_env(&self) -> Vec<(String, String)> {
        #[derive(serde::Serialize)]
        struct SourcesFile<'a> {
            sources: &'a [barge_core::Source],
        }
        let config = self.config_file();
        let text = toml::to_string(&SourcesFile {
            sources: &self.settings.sources,
        })
        .expect("sources serialize to TOML");
        std::fs::write(&config, text).expect("write the test's settings file");
        let database = &self.settings.database;
        let variables = [
            ("STORAGE__BUCKET", self.settings.storage.bucket.clone()),
            ("QUEUE__QUEUE", self.settings.queue.queue.clone()),
            ("DATABASE__HOST", database.host.clone()),
            ("DATABASE__PORT", database.port.to_string()),
            ("DATABASE__USER", database.user.clone()),
            (
                "DATABASE__PASSWORD",
                database
                    .password
                    .as_ref()
                    .map(|p| p.expose_secret().to_owned())
                    .unwrap_or_default(),
            ),
            ("DATABASE__DBNAME", database.dbname.clone()),
            ("DATABASE__TLS", "disable".to_owned()),
            // Any free port: tests run many daemons at once. Each logs the address it bound.
            ("METRICS__IMPORTER_LISTEN", "127.0.0.1:0".to_owned()),
            ("METRICS__TRANSFORMER_LISTEN", "127.0.0.1:0".to_owned()),
        ]
        .into_iter()
        .map(|(key, value)| (format!("{}{key}", barge_core::settings::ENV_PREFIX), value));
        variables
            .chain([("BARGE_CONFIG".to_owned(), config.display().to_string())])
            .collect()
    }

    /// Where [`TestEnv::barge_env`] writes the settings file.
    fn config_file(&self) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("{}.toml", self.settings.storage.bucket))
    }

    /// Archives `body` under `key` and announces it as a batch of `source` fetched now, as the
    /// importer would, so tests can hand the transformer batches the importer would never
    /// produce.
    pub async fn announce(&self, source: &str, key: &str, body: &[u8]) -> BatchMessage {
        self.announce_at(source, key, body, chrono::Utc::now())
            .await
    }

    /// [`TestEnv::announce`] for a batch fetched at `fetched_at`.
    pub async fn announce_at(
        &self,
        source: &str,
        key: &str,
        body: &[u8],
        fetched_at: chrono::DateTime<chrono::Utc>,
    ) -> BatchMessage {
        let message = BatchMessage {
            version: barge_core::message::MESSAGE_VERSION,
            source: source.to_owned(),
            bucket: self.settings.storage.bucket.clone(),
            key: key.to_owned(),
            record_count: barge_core::split_records(body, barge_core::RecordLayout::of(key, None))
                .map_or(0, |r| r.len() as u64),
            sha256: barge_core::content_digest(body),
            fetched_at,
            replay: None,
        };
        self.aws
            .s3
            .put_object()
            .bucket(&message.bucket)
            .key(key)
            .body(body.to_vec().into())
            .send()
            .await
            .expect("put test object");
        self.send(&message.to_json()).await;
        message
    }

    /// Has S3 announce objects created under `prefix` of this test's bucket on this test's queue
    /// ([`notify_landings`]), and waits for the `s3:TestEvent` that S3 sends first, so that it
    /// does not count among what the test sees (it is deleted).
    pub async fn watch_landing(&self, prefix: &str) {
        notify_landings(
            &self.aws,
            &self.settings.storage.bucket,
            &self.queue_url,
            &[prefix],
        )
        .await
        .expect("configure the bucket notification");
        let started = Instant::now();
        loop {
            let mut seen = false;
            for message in self.receive(&self.queue_url, 1).await {
                let is_test_event = message.body().is_some_and(|b| b.contains("s3:TestEvent"));
                seen |= is_test_event;
                let handle = message.receipt_handle;
                if is_test_event {
                    self.aws
                        .sqs
                        .delete_message()
                        .queue_url(&self.queue_url)
                        .set_receipt_handle(handle)
                        .send()
                        .await
                        .expect("delete the test event");
                } else {
                    // Anything else stays for the test: visible again at once.
                    self.aws
                        .sqs
                        .change_message_visibility()
                        .queue_url(&self.queue_url)
                        .set_receipt_handle(handle)
                        .visibility_timeout(0)
                        .send()
                        .await
                        .expect("hand a message back");
                }
            }
            if seen {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no s3:TestEvent within 30 s of configuring the notification"
            );
        }
    }

    /// Sends a raw message body to this test's queue.
    pub async fn send(&self, body: &str) {
        self.aws
            .sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .expect("send test message");
    }

    /// A client of this test's database.
    pub async fn db(&self) -> tokio_postgres::Client {
        self.settings
            .database
            .connect()
            .await
            .expect("connect to the test database")
    }

    /// Keys of the objects in this test's bucket, except the importer's own state (under
    /// `storage.state_prefix`): the archive, rejected records, landing files.
    pub async fn object_keys(&self) -> Vec<String> {
        let state = format!(
            "{}/",
            self.settings.storage.state_prefix.trim_end_matches('/')
        );
        let mut keys = self.all_object_keys().await;
        keys.retain(|key| !key.starts_with(&state));
        keys
    }

    /// Keys of every object in this test's bucket, the importer's state included.
    pub async fn all_object_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        let mut pages = self
            .aws
            .s3
            .list_objects_v2()
            .bucket(&self.settings.storage.bucket)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.expect("list objects");
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|object| object.key.clone()),
            );
        }
        keys
    }

    /// The content of object `key` of this test's bucket: its bytes, decompressed when it is
    /// stored with `Content-Encoding: gzip` (as the importer archives by default).
    pub async fn object(&self, key: &str) -> Vec<u8> {
        let (bytes, encoding) = self.stored_object(key).await;
        if encoding.as_deref() != Some("gzip") {
            return bytes;
        }
        let mut content = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::MultiGzDecoder::new(&bytes[..]),
            &mut content,
        )
        .unwrap_or_else(|err| panic!("{key} is not gzip: {err}"));
        content
    }

    /// The bytes of object `key` as stored, and its `Content-Encoding`.
    pub async fn stored_object(&self, key: &str) -> (Vec<u8>, Option<String>) {
        let object = self
            .aws
            .s3
            .get_object()
            .bucket(&self.settings.storage.bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|err| panic!("get {key}: {}", barge_core::error_chain(&err)));
        let encoding = object.content_encoding.clone();
        let bytes = object.body.collect().await.expect("read object").to_vec();
        (bytes, encoding)
    }

    /// Multipart uploads still open in this test's bucket (an aborted one must leave none).
    pub async fn open_uploads(&self) -> usize {
        self.aws
            .s3
            .list_multipart_uploads()
            .bucket(&self.settings.storage.bucket)
            .send()
            .await
            .expect("list multipart uploads")
            .uploads
            .unwrap_or_default()
            .len()
    }

    /// Every message on this test's queue, parsed as batch messages (receiving them: they are
    /// invisible afterwards for the visibility timeout).
    pub async fn batch_messages(&self) -> Vec<barge_core::BatchMessage> {
        let mut messages = Vec::new();
        loop {
            let received = self.receive(&self.queue_url, 1).await;
            if received.is_empty() {
                return messages;
            }
            for message in received {
                let body = message.body().unwrap_or_default();
                messages.push(barge_core::BatchMessage::parse(body).expect("a batch message"));
            }
        }
    }

    /// One receive of up to ten messages from `queue_url`, waiting at most `wait_seconds`, with
    /// their attributes (the messages are invisible afterwards for their visibility timeout).
    pub async fn receive(
        &self,
        queue_url: &str,
        wait_seconds: i32,
    ) -> Vec<aws_sdk_sqs::types::Message> {
        self.aws
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_seconds)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap_or_else(|err| {
                panic!(
                    "receive from {queue_url}: {}",
                    barge_core::error_chain(&err)
                )
            })
            .messages
            .unwrap_or_default()
    }

    /// Every message on the dead-letter queue (received, so invisible afterwards for its
    /// visibility timeout).
    pub async fn dead_letters(&self) -> Vec<DeadLetter> {
        let mut letters = Vec::new();
        loop {
            let received = self.receive(&self.dead_letter_url, 1).await;
            if received.is_empty() {
                return letters;
            }
            letters.extend(received.into_iter().map(|message| {
                DeadLetter {
                    body: message.body.unwrap_or_default(),
                    attributes: message
                        .message_attributes
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|(name, value)| Some((name, value.string_value?)))
                        .collect(),
                }
            }));
        }
    }

    /// Visible plus in-flight messages on this test's queue (SQS's approximate counts, which
    /// LocalStack reports exactly).
    pub async fn queued_messages(&self) -> u64 {
        self.messages_on(&self.queue_url).await
    }

    /// Visible plus in-flight messages on this test's dead-letter queue.
    pub async fn dead_lettered_messages(&self) -> u64 {
        self.messages_on(&self.dead_letter_url).await
    }

    async fn messages_on(&self, queue_url: &str) -> u64 {
        queue_depth(&self.aws, queue_url)
            .await
            .expect("queue attributes")
    }
}

/// Serves `count` sample posts on a free loopback port for as long as the test runs; returns the
/// `/posts` URL.
pub async fn spawn_sample_api(count: i64) -> String {
    let (_, base_url) = spawn_sample_api_handle(count).await;
    format!("{base_url}/posts")
}

/// Serves `count` sample posts on a free loopback port for as long as the test runs; returns the
/// handle that changes the count or reads the flaky route's counters, and the base URL
/// (`http://127.0.0.1:PORT`) to which a test appends the route it exercises.
pub async fn spawn_sample_api_handle(count: i64) -> (barge_sample_api::SampleApi, String) {
    barge_sample_api::spawn(count).await.expect("bind loopback")
}

/// Polls `check` every 100 ms until it holds, panicking with `what` after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
