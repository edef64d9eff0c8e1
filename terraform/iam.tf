# Least privilege: every statement names its actions (no wildcard action) and the ARNs it acts
# on. The only "*" characters in resources below are key patterns under a fixed prefix
# (raw/*, errors/*, <landing prefix>/*), the log streams of one log group, and this account's log groups for
# logs:DescribeLogGroups (flow logs), which cannot be narrowed further.

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    sid     = "Ec2AssumeRole"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "host" {
  for_each = toset(local.roles)

  name               = "${var.name}-${each.key}"
  description        = "barge ${each.key} host"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json

  tags = { Name = "${var.name}-${each.key}" }
}

resource "aws_iam_instance_profile" "host" {
  for_each = toset(local.roles)

  name = "${var.name}-${each.key}"
  role = aws_iam_role.host[each.key].name

  tags = { Name = "${var.name}-${each.key}" }
}

resource "aws_iam_role_policy" "host" {
  for_each = toset(local.roles)

  name   = "${var.name}-${each.key}"
  role   = aws_iam_role.host[each.key].id
  policy = each.key == "importer" ? data.aws_iam_policy_document.importer.json : data.aws_iam_policy_document.transformer.json
}

# Opt-in shell access through Session Manager (var.ssm_session_manager); AWS's managed policy.
resource "aws_iam_role_policy_attachment" "ssm" {
  for_each = var.ssm_session_manager ? toset(local.roles) : toset([])

  role       = aws_iam_role.host[each.key].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

# ---------------------------------------------------------------------------------------------
# importer
# ---------------------------------------------------------------------------------------------

# What both hosts need: their release, and their own log group for the CloudWatch agent.
data "aws_iam_policy_document" "host_common" {
  for_each = toset(local.roles)

  statement {
    sid       = "DownloadRelease"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = [local.tarball_arn]
  }

  statement {
    sid    = "ShipLogs"
    effect = "Allow"
    actions = [
      "logs:CreateLogStream",
      "logs:PutLogEvents",
      "logs:DescribeLogStreams",
    ]
    resources = [
      aws_cloudwatch_log_group.barge[each.key].arn,
      "${aws_cloudwatch_log_group.barge[each.key].arn}:log-stream:*",
    ]
  }
}

data "aws_iam_policy_document" "importer" {
  source_policy_documents = [data.aws_iam_policy_document.host_common["importer"].json]

  statement {
    sid    = "ArchiveRawBatches"
    effect = "Allow"
    # HeadObject (s3:GetObject) tells a run whether an earlier run's object became visible;
    # AbortMultipartUpload cleans up after a page that turned out not to be a batch.
    actions = [
      "s3:PutObject",
      "s3:GetObject",
      "s3:AbortMultipartUpload",
    ]
    resources = ["${aws_s3_bucket.data.arn}/${local.raw_prefix}/*"]
  }

  statement {
    sid    = "KeepImporterState"
    effect = "Allow"
    actions = [
      "s3:PutObject",
      "s3:GetObject",
      "s3:DeleteObject",
    ]
    resources = ["${aws_s3_bucket.data.arn}/${local.state_prefix}/*"]
  }

  # Listing the markers, and telling a missing object (a source's first state, an object that
  # never became visible) from a refused one: without s3:ListBucket S3 answers 403 instead of
  # 404, and a prefix condition would not apply to that check.
  statement {
    sid       = "ListImporterState"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.data.arn]
  }

  statement {
    sid    = "AnnounceBatches"
    effect = "Allow"
    actions = [
      "sqs:SendMessage",
      "sqs:GetQueueUrl",
      "sqs:GetQueueAttributes",
    ]
    resources = [aws_sqs_queue.main.arn]
  }

  dynamic "statement" {
    for_each = length(var.importer_secret_arns) > 0 ? [var.importer_secret_arns] : []
    content {
      sid       = "ReadApiSecrets"
      effect    = "Allow"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = statement.value
    }
  }

  dynamic "statement" {
    for_each = length(var.importer_parameter_arns) > 0 ? [var.importer_parameter_arns] : []
    content {
      sid       = "ReadApiParameters"
      effect    = "Allow"
      actions   = ["ssm:GetParameter"]
      resources = statement.value
    }
  }

}

# ---------------------------------------------------------------------------------------------
# transformer
# ---------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "transformer" {
  source_policy_documents = [data.aws_iam_policy_document.host_common["transformer"].json]

  statement {
    sid       = "ReadBatches"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.data.arn}/${local.raw_prefix}/*"]
  }

  # The data bucket is versioned, so S3's events name the version they announce, and the
  # transformer reads that version: a GET naming a version is authorised by s3:GetObjectVersion
  # (s3:GetObject alone answers 403, an outage that would stop every load). s3:GetObject reads
  # the current version, for an event without a version.
  dynamic "statement" {
    for_each = length(var.landing_prefixes) > 0 ? [var.landing_prefixes] : []
    content {
      sid       = "ReadLandingFiles"
      effect    = "Allow"
      actions   = ["s3:GetObject", "s3:GetObjectVersion"]
      resources = [for prefix in statement.value : "${aws_s3_bucket.data.arn}/${prefix}/*"]
    }
  }

  statement {
    sid       = "WriteRejects"
    effect    = "Allow"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.data.arn}/${local.errors_prefix}/*"]
  }

  # With s3:ListBucket, GetObject on a missing key answers 404 NoSuchKey (a missing version,
  # 404 NoSuchVersion), which the transformer dead-letters as a missing object; without it S3
  # answers 403, which reads as access trouble (an outage) and would hold the message for good.
  # Unconditioned: a prefix condition would not apply to that check.
  statement {
    sid       = "KnowMissingObjects"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.data.arn]
  }

  # ChangeMessageVisibilityBatch, DeleteMessageBatch and SendMessageBatch are authorised by the
  # single-message actions; GetQueueAttributes reads VisibilityTimeout and RedrivePolicy at
  # start, and the queue's depth every metrics.queue_poll_interval. SendMessage is for the
  # operator's tools, run on this host with this role: `transformer replay` announces archived
  # batches again and `transformer dlq redrive` moves dead letters back to this queue.
  statement {
    sid    = "ConsumeBatches"
    effect = "Allow"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueUrl",
      "sqs:GetQueueAttributes",
      "sqs:SendMessage",
    ]
    resources = [aws_sqs_queue.main.arn]
  }

  # SendMessage dead-letters what can never load; GetQueueAttributes reads the dead-letter
  # queue's depth (the daemon's poller and `transformer status`); ReceiveMessage,
  # ChangeMessageVisibility and DeleteMessage are `transformer dlq peek` (which receives and
  # releases) and `transformer dlq redrive` (which deletes what it moved back).
  statement {
    sid    = "DeadLetter"
    effect = "Allow"
    actions = [
      "sqs:SendMessage",
      "sqs:GetQueueUrl",
      "sqs:GetQueueAttributes",
      "sqs:ReceiveMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:DeleteMessage",
    ]
    resources = [aws_sqs_queue.dlq.arn]
  }

  # The RDS-managed master secret (encrypted with the AWS-managed aws/secretsmanager key, which
  # needs no KMS grant here).
  statement {
    sid       = "ReadDatabasePassword"
    effect    = "Allow"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.db_secret_arn]
  }

}

# ---------------------------------------------------------------------------------------------
# VPC flow logs
# ---------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "flow_logs_assume" {
  statement {
    sid     = "FlowLogsAssumeRole"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "flow_logs" {
  name               = "${var.name}-flow-logs"
  description        = "VPC flow logs of ${var.name} to CloudWatch Logs"
  assume_role_policy = data.aws_iam_policy_document.flow_logs_assume.json

  tags = { Name = "${var.name}-flow-logs" }
}

data "aws_iam_policy_document" "flow_logs" {
  statement {
    sid    = "WriteFlowLogs"
    effect = "Allow"
    actions = [
      "logs:CreateLogStream",
      "logs:PutLogEvents",
      "logs:DescribeLogStreams",
    ]
    resources = [
      aws_cloudwatch_log_group.flow_logs.arn,
      "${aws_cloudwatch_log_group.flow_logs.arn}:log-stream:*",
    ]
  }

  # DescribeLogGroups lists groups and cannot be narrowed to one group: scoped to this
  # account's and region's log groups.
  statement {
    sid       = "FindLogGroup"
    effect    = "Allow"
    actions   = ["logs:DescribeLogGroups"]
    resources = ["arn:${data.aws_partition.current.partition}:logs:${var.region}:${data.aws_caller_identity.current.account_id}:log-group:*"]
  }
}

resource "aws_iam_role_policy" "flow_logs" {
  name   = "${var.name}-flow-logs"
  role   = aws_iam_role.flow_logs.id
  policy = data.aws_iam_policy_document.flow_logs.json
}
