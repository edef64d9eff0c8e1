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
