locals {
  db_identifier   = "${var.name}-db"
  db_major        = split(".", var.db_engine_version)[0]
  db_name         = "barge"
  db_port         = 5432
  db_log_group    = "/aws/rds/instance/${local.db_identifier}/postgresql"
  db_secret_arn   = aws_db_instance.main.master_user_secret[0].secret_arn
  db_final_backup = "${local.db_identifier}-final"
}

resource "aws_db_subnet_group" "main" {
  name        = local.db_identifier
  description = "barge database: the private subnets"
  subnet_ids  = aws_subnet.private[*].id

  tags = { Name = local.db_identifier }
}

resource "aws_db_parameter_group" "main" {
  name_prefix = "${local.db_identifier}-postgres${local.db_major}-"
  family      = "postgres${local.db_major}"
  description = "barge: TLS required, slow statements logged"

  # Refuse every connection that is not TLS (the transformer uses verify-full anyway).
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = tostring(var.db_log_min_duration_statement_ms)
  }

  # DDL only (CREATE/ALTER of the source tables and the ledger): every statement would log
  # row data and cost CloudWatch ingestion; slow statements are covered above.
  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "log_connections"
    value = "1"
  }

  parameter {
    name  = "log_disconnections"
    value = "1"
  }

  lifecycle {
    create_before_destroy = true
  }

  tags = { Name = local.db_identifier }
}

resource "aws_db_instance" "main" {
  #checkov:skip=CKV_AWS_157:Multi-AZ is opt-in (var.db_multi_az) because it doubles the database cost; a batch ETL tolerates the minutes of a single-AZ restart, and loads are retried from the queue.
  #checkov:skip=CKV_AWS_353:Performance Insights is opt-in (var.db_performance_insights): not every micro class supports it and the workload is a few COPY/merge transactions per hour.
  #checkov:skip=CKV_AWS_354:Performance Insights is off by default (see CKV_AWS_353); when enabled it uses the AWS-managed key.
  #checkov:skip=CKV_AWS_118:Enhanced monitoring needs an extra IAM role and bills its OS metrics as CloudWatch Logs; the CloudWatch RDS metrics and the exported postgresql log suffice here.
  identifier     = local.db_identifier
  engine         = "postgres"
  engine_version = var.db_engine_version
  instance_class = var.db_instance_class

  allocated_storage     = 20
  max_allocated_storage = var.db_max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true

  db_name                             = local.db_name
  port                                = local.db_port
  username                            = var.db_username
  manage_master_user_password         = true
  iam_database_authentication_enabled = true

  db_subnet_group_name   = aws_db_subnet_group.main.name
  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false
  multi_az               = var.db_multi_az
  parameter_group_name   = aws_db_parameter_group.main.name
  ca_cert_identifier     = "rds-ca-rsa2048-g1"

  backup_retention_period   = var.db_backup_retention_days
  backup_window             = "03:00-03:30"
  maintenance_window        = "sun:04:00-sun:04:30"
  copy_tags_to_snapshot     = true
  deletion_protection       = var.db_deletion_protection
  skip_final_snapshot       = false
  final_snapshot_identifier = local.db_final_backup
  delete_automated_backups  = false

  auto_minor_version_upgrade  = true
  allow_major_version_upgrade = false

  enabled_cloudwatch_logs_exports = ["postgresql"]

  performance_insights_enabled          = var.db_performance_insights
  performance_insights_retention_period = var.db_performance_insights ? 7 : null

  tags = { Name = local.db_identifier }

  # The log group exists (with its retention) before RDS would create it without one.
  depends_on = [aws_cloudwatch_log_group.rds_postgresql]
}
