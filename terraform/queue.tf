# Messages that cannot be loaded: moved here by SQS after queue_max_receive_count receives, or
# sent here by the transformer with the reason of a permanent failure.
resource "aws_sqs_queue" "dlq" {
  name                       = "${var.name}-batches-dlq"
  message_retention_seconds  = 1209600 # 14 days, the SQS maximum: time to look and redrive
  visibility_timeout_seconds = var.queue_visibility_timeout_seconds
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true

  tags = { Name = "${var.name}-batches-dlq" }
}

# One message per raw object (from the importer) or per object created under a landing prefix
# (an S3 event notification, sent by S3 itself).
resource "aws_sqs_queue" "main" {
  name                       = "${var.name}-batches"
  message_retention_seconds  = 345600 # 4 days
  visibility_timeout_seconds = var.queue_visibility_timeout_seconds
  receive_wait_time_seconds  = 20
  # SSE-SQS (SQS-owned keys): S3 event notifications can publish to it, unlike the AWS-managed
  # KMS key alias/aws/sqs whose key policy cannot grant s3.amazonaws.com.
  sqs_managed_sse_enabled = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.queue_max_receive_count
  })

  tags = { Name = "${var.name}-batches" }
}

# Only the main queue may use the DLQ as its dead-letter queue.
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.main.arn]
  })
}

# S3 may send event notifications for this bucket (and only this bucket of this account): the
# landing zones' announcements. S3 checks this when the notification is put.
data "aws_iam_policy_document" "main_queue" {
  statement {
    sid       = "AllowS3EventNotifications"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.main.arn]

    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_s3_bucket.data.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_sqs_queue_policy" "main" {
  queue_url = aws_sqs_queue.main.id
  policy    = data.aws_iam_policy_document.main_queue.json
}
