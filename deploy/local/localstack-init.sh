#!/bin/sh
# LocalStack ready hook (see compose.yaml): the resources of barge's default settings, with the
# same redrive policy `cargo xtask demo` sets up (5 receives, then the dead-letter queue).
set -eu
awslocal s3 mb s3://barge-raw
dlq_url=$(awslocal sqs create-queue --queue-name barge-batches-dlq --query QueueUrl --output text)
dlq_arn=$(awslocal sqs get-queue-attributes --queue-url "$dlq_url" --attribute-names QueueArn \
  --query Attributes.QueueArn --output text)
awslocal sqs create-queue --queue-name barge-batches --attributes \
  "{\"VisibilityTimeout\":\"60\",\"RedrivePolicy\":\"{\\\"deadLetterTargetArn\\\":\\\"$dlq_arn\\\",\\\"maxReceiveCount\\\":5}\"}"
# The landing zone of deploy/local/barge.toml's posts source: S3 announces files created there.
queue_arn=$(awslocal sqs get-queue-attributes --queue-url "$(awslocal sqs get-queue-url \
  --queue-name barge-batches --query QueueUrl --output text)" --attribute-names QueueArn \
  --query Attributes.QueueArn --output text)
awslocal s3api put-bucket-notification-configuration --bucket barge-raw \
  --notification-configuration "{\"QueueConfigurations\":[{\"QueueArn\":\"$queue_arn\",\"Events\":[\"s3:ObjectCreated:*\"],\"Filter\":{\"Key\":{\"FilterRules\":[{\"Name\":\"prefix\",\"Value\":\"landing/posts/\"}]}}}]}"
