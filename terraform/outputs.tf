output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.main.id
}

output "private_subnet_ids" {
  description = "Private subnets (hosts and database)."
  value       = aws_subnet.private[*].id
}

output "public_subnet_ids" {
  description = "Public subnets (NAT only)."
  value       = aws_subnet.public[*].id
}

output "egress" {
  description = "Egress option in use, and the NAT instance or NAT gateway ID."
  value = {
    mode           = var.egress
    nat_instance   = try(aws_instance.nat[0].id, null)
    nat_gateway    = try(aws_nat_gateway.main[0].id, null)
    nat_public_ip  = local.use_nat_instance ? try(aws_instance.nat[0].public_ip, null) : try(aws_eip.nat[0].public_ip, null)
    sqs_endpoint   = try(aws_vpc_endpoint.sqs[0].id, null)
    s3_endpoint_id = aws_vpc_endpoint.s3.id
  }
}

output "bucket_name" {
  description = "Data bucket (raw/, landing/, errors/)."
  value       = aws_s3_bucket.data.bucket
}

output "bucket_arn" {
  description = "ARN of the data bucket."
  value       = aws_s3_bucket.data.arn
}

output "queue_url" {
  description = "URL of the main queue."
  value       = aws_sqs_queue.main.url
}

output "queue_arn" {
  description = "ARN of the main queue."
  value       = aws_sqs_queue.main.arn
}

output "dead_letter_queue_url" {
  description = "URL of the dead-letter queue."
  value       = aws_sqs_queue.dlq.url
}

output "dead_letter_queue_arn" {
  description = "ARN of the dead-letter queue."
  value       = aws_sqs_queue.dlq.arn
}

output "db_address" {
  description = "Host name of the PostgreSQL instance (private)."
  value       = aws_db_instance.main.address
}

output "db_port" {
  description = "Port of the PostgreSQL instance."
  value       = aws_db_instance.main.port
}

output "db_master_secret_arn" {
  description = "ARN of the RDS-managed Secrets Manager secret holding the master user's password."
  value       = local.db_secret_arn
}

output "importer_instance_id" {
  description = "Instance ID of the importer."
  value       = aws_instance.host["importer"].id
}

output "transformer_instance_id" {
  description = "Instance ID of the transformer (null when transformer_autoscaling is on)."
  value       = try(aws_instance.host["transformer"].id, null)
}

output "transformer_autoscaling_group" {
  description = "Name of the transformer Auto Scaling group (null when transformer_autoscaling is off)."
  value       = try(aws_autoscaling_group.transformer[0].name, null)
}

output "role_arns" {
  description = "IAM role ARNs of the hosts."
  value       = { for role, r in aws_iam_role.host : role => r.arn }
}

output "log_groups" {
  description = "CloudWatch log groups: the daemons', the RDS postgresql log, VPC flow logs."
  value = {
    importer      = aws_cloudwatch_log_group.barge["importer"].name
    transformer   = aws_cloudwatch_log_group.barge["transformer"].name
    rds           = aws_cloudwatch_log_group.rds_postgresql.name
    vpc_flow_logs = aws_cloudwatch_log_group.flow_logs.name
  }
}

output "alarm_topic_arn" {
  description = "SNS topic the alarms notify."
  value       = aws_sns_topic.alarms.arn
}

output "release_tarball" {
  description = "S3 URI of the release tarball the hosts install."
  value       = "s3://${local.artifacts_bucket}/${local.tarball_key}"
}

output "settings_toml" {
  description = "The barge.toml written to both hosts (no secrets)."
  value       = local.settings_toml
}
