# ---------------------------------------------------------------------------------------------
# CloudWatch log groups
# ---------------------------------------------------------------------------------------------

# /barge/importer and /barge/transformer (with the default name): one stream per instance
# (<instance id>) with the daemon's output, and <instance id>-cloud-init with the bootstrap.
resource "aws_cloudwatch_log_group" "barge" {
  for_each = toset(local.roles)
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts at rest with service keys; a KMS CMK costs $1/month plus a key policy for logs.<region>.amazonaws.com, and barge never logs secrets (they are redacted in the code).
  #checkov:skip=CKV_AWS_338:Operational logs, not an audit trail: var.log_retention_days (default 30) keeps ingestion-side storage cost flat; raise it for compliance needs.

  name              = "/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days

  tags = { Name = "/${var.name}/${each.key}" }
}

resource "aws_cloudwatch_log_group" "rds_postgresql" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts at rest with service keys; the postgresql log holds slow statements and DDL, no passwords (TLS-only, managed master secret).
  #checkov:skip=CKV_AWS_338:Operational logs, not an audit trail: var.log_retention_days (default 30); raise it for compliance needs.
  name              = local.db_log_group
  retention_in_days = var.log_retention_days

  tags = { Name = local.db_log_group }
}

resource "aws_cloudwatch_log_group" "flow_logs" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts at rest with service keys; flow records carry addresses and ports only.
  #checkov:skip=CKV_AWS_338:Troubleshooting data, not an audit trail: var.log_retention_days (default 30) keeps the cost flat.
  name              = "/${var.name}/vpc-flow-logs"
  retention_in_days = var.log_retention_days

  tags = { Name = "/${var.name}/vpc-flow-logs" }
}

# ---------------------------------------------------------------------------------------------
# Alarm topic
# ---------------------------------------------------------------------------------------------

resource "aws_sns_topic" "alarms" {
  #checkov:skip=CKV_AWS_26:Deliberately unencrypted: CloudWatch alarms cannot publish to a topic encrypted with the AWS-managed key alias/aws/sns (its key policy cannot grant cloudwatch.amazonaws.com), so notifications would be dropped silently; a customer-managed key needs a key policy with kms:* / Resource "*" for the account. Alarm messages carry only alarm, queue and instance names.
  name = "${var.name}-alarms"

  tags = { Name = "${var.name}-alarms" }
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count = var.alarm_email == "" ? 0 : 1

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

# ---------------------------------------------------------------------------------------------
# Alarms
# ---------------------------------------------------------------------------------------------

# Something could not be loaded: a message was dead-lettered by SQS (received too often) or by
# the transformer (permanent failure, with the reason in its message attributes).
resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  alarm_name          = "${var.name}-dlq-not-empty"
  alarm_description   = "Messages on ${aws_sqs_queue.dlq.name}: batches that could not be loaded. Read the reason attributes, fix, then redrive."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# The transformer is behind or stuck: the oldest message has waited too long.
resource "aws_cloudwatch_metric_alarm" "queue_oldest_message" {
  alarm_name          = "${var.name}-queue-oldest-message-age"
  alarm_description   = "The oldest message on ${aws_sqs_queue.main.name} is older than ${var.queue_age_alarm_seconds} s: the transformer is down, failing or too slow."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.main.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.queue_age_alarm_seconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# Nothing loaded for a whole period. The transformer deletes a message only after the object's
# rows and ledger entry are committed, or after recognising it as a duplicate (or after
# dead-lettering it, which the DLQ alarm reports), so deletes are the heartbeat of the
# pipeline: none means the importer produced nothing or the transformer loaded nothing. Missing
# data (SQS stops publishing for an idle queue) counts as breaching.
resource "aws_cloudwatch_metric_alarm" "no_object_loaded" {
  alarm_name          = "${var.name}-no-object-loaded"
  alarm_description   = "No message deleted from ${aws_sqs_queue.main.name} for ${var.no_load_alarm_period_seconds} s: no object was loaded. Check both daemons' logs."
  namespace           = "AWS/SQS"
  metric_name         = "NumberOfMessagesDeleted"
  dimensions          = { QueueName = aws_sqs_queue.main.name }
  statistic           = "Sum"
  period              = var.no_load_alarm_period_seconds
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "LessThanOrEqualToThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

locals {
  # Keys known at plan time (they come from counts, not from instance IDs).
  status_alarm_instances = {
    for role, id in merge(
      { for role, instance in aws_instance.host : role => instance.id },
      { for instance in aws_instance.nat : "nat" => instance.id },
    ) : role => id if var.instance_status_alarms
  }
}

# An instance (or its host) fails its EC2 status checks. The Auto Scaling group replaces its
# own unhealthy transformers, so it has no such alarm.
resource "aws_cloudwatch_metric_alarm" "status_check" {
  for_each = local.status_alarm_instances

  alarm_name          = "${var.name}-${each.key}-status-check"
  alarm_description   = "EC2 status checks of the ${each.key} instance ${each.value} fail."
  namespace           = "AWS/EC2"
  metric_name         = "StatusCheckFailed"
  dimensions          = { InstanceId = each.value }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "missing"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# Scaling triggers of the transformer Auto Scaling group (transformer_autoscaling); they drive
# the step scaling policies in compute.tf, not the topic.
resource "aws_cloudwatch_metric_alarm" "transformer_backlog_high" {
  count = var.transformer_autoscaling ? 1 : 0

  alarm_name          = "${var.name}-transformer-backlog-high"
  alarm_description   = "At least ${var.transformer_scale_out_backlog} visible messages on ${aws_sqs_queue.main.name}: add a transformer."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.main.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.transformer_scale_out_backlog
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_autoscaling_policy.transformer_scale_out[0].arn]
}

resource "aws_cloudwatch_metric_alarm" "transformer_backlog_empty" {
  count = var.transformer_autoscaling ? 1 : 0

  alarm_name          = "${var.name}-transformer-backlog-empty"
  alarm_description   = "No visible message on ${aws_sqs_queue.main.name} for 15 minutes: remove a transformer (down to transformer_min_size)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.main.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 3
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  # An idle queue may stop publishing metrics: missing data means empty here.
  treat_missing_data = "breaching"
  alarm_actions      = [aws_autoscaling_policy.transformer_scale_in[0].arn]
}
