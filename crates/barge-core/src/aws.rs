//! AWS clients built from the standard chain: region, credentials and endpoint come from the
//! environment, profile or instance metadata, never from barge's own settings.
//!
//! Every call has deadlines ([`Timeouts`]): the SDK's default is a connect timeout only, so a
//! half-open connection could stall a receive or a delete for good.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// The S3, SQS and secret-store clients both daemons use.
#[derive(Debug, Clone)]
pub struct AwsClients {
    /// Client for the raw archive.
    pub s3: aws_sdk_s3::Client,
    /// Client for the batch queue.
    pub sqs: aws_sdk_sqs::Client,
    /// Client for secrets kept in AWS Secrets Manager.
    pub secrets: aws_sdk_secretsmanager::Client,
    /// Client for secrets kept in SSM Parameter Store.
    pub ssm: aws_sdk_ssm::Client,
    /// The deadlines the clients were built with (streamed bodies are read with `stall`).
    pub timeouts: Timeouts,
}

/// A queue that could not be found or reached.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve SQS queue {queue:?}: {reason}")]
pub struct QueueUrlError {
    /// The queue name as configured.
    pub queue: String,
    /// The SDK's full error chain.
    pub reason: String,
}

/// The archive bucket did not answer a `HeadBucket`.
#[derive(Debug, thiserror::Error)]
#[error("bucket {bucket} (storage.bucket) does not answer: {reason}")]
pub struct BucketError {
    /// The bucket.
    pub bucket: String,
    /// The SDK's full error chain.
    pub reason: String,
}

/// Deadlines of every AWS call.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// To open a connection.
    pub connect: Duration,
    /// From sending a request to the first byte of its answer. Longer than SQS's longest long
    /// poll (20 s).
    pub first_byte: Duration,
    /// For one attempt, answer headers included (not a streamed body: see
    /// [`Timeouts::stall`]).
    pub attempt: Duration,
    /// For a whole call, retries included.
    pub operation: Duration,
    /// Longest pause while a streamed body (an S3 object) is being read.
    pub stall: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(30),
            attempt: Duration::from_secs(60),
            operation: Duration::from_secs(3 * 60),
            stall: Duration::from_secs(30),
        }
    }
}

impl AwsClients {
    /// Loads the default AWS chain (`AWS_ENDPOINT_URL` points it at LocalStack).
    pub async fn from_env() -> Self {
        Self::from_sdk_config(
            &aws_config::defaults(BehaviorVersion::latest()).load().await,
            Timeouts::default(),
        )
    }

    /// Builds the clients with `timeouts` on every call; S3 uses path-style addressing when the
    /// endpoint is overridden, because LocalStack and most S3 look-alikes do not serve
    /// virtual-hosted buckets on `127.0.0.1`.
    pub fn from_sdk_config(config: &SdkConfig, timeouts: Timeouts) -> Self {
        let timeout_config = TimeoutConfig::builder()
            .connect_timeout(timeouts.connect)
            .read_timeout(timeouts.first_byte)
            .operation_attempt_timeout(timeouts.attempt)
            .operation_timeout(timeouts.operation)
            .build();
        let config = config.to_builder().timeout_config(timeout_config).build();
        let s3_config = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(config.endpoint_url().is_some())
            .build();
        Self {
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            sqs: aws_sdk_sqs::Client::new(&config),
            secrets: aws_sdk_secretsmanager::Client::new(&config),
            ssm: aws_sdk_ssm::Client::new(&config),
            timeouts,
        }
    }

    /// Checks that `bucket` answers (`HeadBucket`, allowed by `s3:ListBucket`), so that a
    /// daemon is ready only once S3 is.
    pub async fn check_bucket(&self, bucket: &str) -> Result<(), BucketError> {
        self.s3
            .head_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|err| BucketError {
                bucket: bucket.to_owned(),
                reason: crate::error_chain(&err),
            })?;
        Ok(())
    }

    /// The URL of `queue`, which may already be a URL (used as is) or a name (looked up).
    pub async fn queue_url(&self, queue: &str) -> Result<String, QueueUrlError> {
        if queue.starts_with("https://") || queue.starts_with("http://") {
            return Ok(queue.to_owned());
        }
        let output = self
            .sqs
            .get_queue_url()
            .queue_name(queue)
            .send()
            .await
            .map_err(|err| QueueUrlError {
                queue: queue.to_owned(),
                reason: crate::error_chain(&err),
            })?;
        output.queue_url.ok_or_else(|| QueueUrlError {
            queue: queue.to_owned(),
            reason: "GetQueueUrl returned no URL".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_config::Region;
    use aws_sdk_s3::config::Credentials;

    /// A peer that accepts connections and never answers: a half-open connection.
    async fn black_hole() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        format!("http://{address}")
    }

    #[tokio::test]
    async fn a_peer_that_never_answers_fails_the_call_instead_of_stalling_it() {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(black_hole().await)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .load()
            .await;
        let second = Duration::from_secs(1);
        let clients = AwsClients::from_sdk_config(
            &config,
            Timeouts {
                connect: second,
                first_byte: second,
                attempt: second,
                operation: 3 * second,
                stall: second,
            },
        );
        let calls = async {
            let sqs = clients.sqs.list_queues().send().await;
            let s3 = clients.s3.list_buckets().send().await;
            (sqs.is_err(), s3.is_err())
        };
        // Without deadlines both calls would wait for ever; the outer bound only turns that
        // hang into a failure.
        let failed = tokio::time::timeout(Duration::from_secs(60), calls)
            .await
            .expect("calls to a silent peer end with an error");
        assert_eq!(failed, (true, true));
    }
}
