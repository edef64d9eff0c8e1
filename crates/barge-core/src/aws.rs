//! AWS clients built from the standard chain: region, credentials and endpoint come from the
//! environment, profile or instance metadata, never from barge's own settings.

use aws_config::{BehaviorVersion, SdkConfig};

/// The S3 and SQS clients both daemons use.
#[derive(Debug, Clone)]
pub struct AwsClients {
    /// Client for the raw archive.
    pub s3: aws_sdk_s3::Client,
    /// Client for the batch queue.
    pub sqs: aws_sdk_sqs::Client,
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

impl AwsClients {
    /// Loads the default AWS chain (`AWS_ENDPOINT_URL` points it at LocalStack).
    pub async fn from_env() -> Self {
        Self::from_sdk_config(&aws_config::defaults(BehaviorVersion::latest()).load().await)
    }

    /// Builds the clients; S3 uses path-style addressing when the endpoint is overridden, because
    /// LocalStack and most S3 look-alikes do not serve virtual-hosted buckets on `127.0.0.1`.
    pub fn from_sdk_config(config: &SdkConfig) -> Self {
        let s3_config = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(config.endpoint_url().is_some())
            .build();
        Self {
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            sqs: aws_sdk_sqs::Client::new(config),
        }
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
