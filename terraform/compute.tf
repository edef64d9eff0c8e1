data "aws_ssm_parameter" "al2023_x86_64" {
  name = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}

locals {
  roles = ["importer", "transformer"]

  # The settings file both daemons read (/etc/barge/barge.toml). No secret in it: the database
  # password is read at start-up from the RDS-managed secret named by password_secret. Strings
  # go through jsonencode, whose escapes are valid TOML basic strings.
  settings_toml = <<-EOT
    # Written by Terraform (terraform/compute.tf) through EC2 user data. Do not edit on the host:
    # a change here replaces the instance.
    [storage]
    bucket = ${jsonencode(aws_s3_bucket.data.bucket)}
    prefix = ${jsonencode(local.raw_prefix)}
    errors_prefix = ${jsonencode(local.errors_prefix)}
    state_prefix = ${jsonencode(local.state_prefix)}

    [queue]
    queue = ${jsonencode(aws_sqs_queue.main.url)}
    wait_seconds = 20
    dead_letter_queue = ${jsonencode(aws_sqs_queue.dlq.url)}

    # Used by the transformer only; harmless for the importer, which never connects.
    [database]
    host = ${jsonencode(aws_db_instance.main.address)}
    port = ${aws_db_instance.main.port}
    user = ${jsonencode(aws_db_instance.main.username)}
    password_secret = ${jsonencode(local.db_secret_arn)}
    dbname = ${jsonencode(local.db_name)}
    tls = "verify-full"
    ca_file = "/etc/barge/rds-ca.pem"

    [transformer]
    shutdown_grace = "60s"

    ${trimspace(var.sources_toml)}
  EOT

  # CloudWatch agent: ships the file the unit writes (see the systemd drop-in in the user data)
  # and the bootstrap log, one stream per instance.
  cloudwatch_agent_config = {
    for role in local.roles : role => jsonencode({
      agent = {
        run_as_user = "root"
      }
      logs = {
        force_flush_interval = 5
        logs_collected = {
          files = {
            collect_list = [
              {
                file_path       = "/var/log/barge/${role}.log"
                log_group_name  = aws_cloudwatch_log_group.barge[role].name
                log_stream_name = "{instance_id}"
                timezone        = "UTC"
              },
              {
                file_path       = "/var/log/cloud-init-output.log"
                log_group_name  = aws_cloudwatch_log_group.barge[role].name
                log_stream_name = "{instance_id}-cloud-init"
                timezone        = "UTC"
              },
            ]
          }
        }
      }
    })
  }

  user_data = {
    for role in local.roles : role => templatefile("${path.module}/templates/user-data.sh.tftpl", {
      role                    = role
      region                  = var.region
      artifacts_bucket        = local.artifacts_bucket
      artifacts_prefix        = var.artifacts_prefix
      tarball_key             = local.tarball_key
      release_version         = var.release_version
      release_sha256          = var.release_sha256
      settings_toml           = local.settings_toml
      cloudwatch_agent_config = local.cloudwatch_agent_config[role]
    })
  }
}

# ---------------------------------------------------------------------------------------------
# Hosts: always exactly one importer (two would fetch every source twice), and one transformer
# unless the transformer is an Auto Scaling group (transformer_autoscaling, below).
# ---------------------------------------------------------------------------------------------

locals {
  # role => where it runs: one host per private subnet, each with its own security group.
  hosts = {
    for role, host in {
      importer    = { subnet = 0, security_group = aws_security_group.importer.id }
      transformer = { subnet = 1, security_group = aws_security_group.transformer.id }
    } : role => host if role == "importer" || !var.transformer_autoscaling
  }
}

resource "aws_instance" "host" {
  for_each = local.hosts
  #checkov:skip=CKV_AWS_135:t2.micro does not support EBS optimisation (the API rejects ebs_optimized = true for it); larger types in var.instance_type are EBS-optimised by default.
  #checkov:skip=CKV_AWS_126:Detailed monitoring is opt-in (var.detailed_monitoring, ~$2.10/instance/month); the alarms use SQS metrics and 5-minute status checks.

  ami                         = data.aws_ssm_parameter.al2023_x86_64.value
  instance_type               = var.instance_type
  subnet_id                   = aws_subnet.private[each.value.subnet].id
  vpc_security_group_ids      = [each.value.security_group]
  iam_instance_profile        = aws_iam_instance_profile.host[each.key].name
  associate_public_ip_address = false
  monitoring                  = var.detailed_monitoring

  user_data                   = local.user_data[each.key]
  user_data_replace_on_change = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size_gb
    encrypted             = true
    delete_on_termination = true
  }

  # A newer AL2023 AMI is taken when the instance is replaced anyway (each release upgrade
  # changes the user data), not on every apply that happens to follow an AMI publication.
  lifecycle {
    ignore_changes = [ami]
  }

  tags = { Name = "${var.name}-${each.key}", role = each.key }

  # The bootstrap needs a default route (NAT), the S3 and SQS endpoints and its permissions.
  depends_on = [aws_route.private_egress, aws_vpc_endpoint.s3, aws_vpc_endpoint.sqs, aws_iam_role_policy.host]
}

resource "aws_launch_template" "transformer" {
  count = var.transformer_autoscaling ? 1 : 0

  name_prefix            = "${var.name}-transformer-"
  description            = "barge transformer ${var.release_version}"
  image_id               = data.aws_ssm_parameter.al2023_x86_64.value
  instance_type          = var.instance_type
  vpc_security_group_ids = [aws_security_group.transformer.id]
  user_data              = base64encode(local.user_data["transformer"])
  update_default_version = true

  iam_instance_profile {
    name = aws_iam_instance_profile.host["transformer"].name
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  monitoring {
    enabled = var.detailed_monitoring
  }

  block_device_mappings {
    device_name = "/dev/xvda"

    ebs {
      volume_type           = "gp3"
      volume_size           = var.root_volume_size_gb
      encrypted             = true
      delete_on_termination = true
    }
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(data.aws_default_tags.current.tags, { Name = "${var.name}-transformer", role = "transformer" })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(data.aws_default_tags.current.tags, { Name = "${var.name}-transformer", role = "transformer" })
  }

  tags = { Name = "${var.name}-transformer" }
}

resource "aws_autoscaling_group" "transformer" {
  count = var.transformer_autoscaling ? 1 : 0

  name                      = "${var.name}-transformer"
  vpc_zone_identifier       = aws_subnet.private[*].id
  min_size                  = var.transformer_min_size
  max_size                  = var.transformer_max_size
  health_check_type         = "EC2"
  health_check_grace_period = 300
  default_instance_warmup   = 300

  launch_template {
    id      = aws_launch_template.transformer[0].id
    version = aws_launch_template.transformer[0].latest_version
  }

  # A new release (new user data, new launch template version) rolls through the group,
  # launching each replacement before its predecessor is terminated.
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 100
      max_healthy_percentage = 200
      instance_warmup        = 300
    }
  }

  tag {
    key                 = "Name"
    value               = "${var.name}-transformer"
    propagate_at_launch = true
  }

  dynamic "tag" {
    for_each = data.aws_default_tags.current.tags
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  # Scaling policies own the desired capacity after creation.
  lifecycle {
    ignore_changes = [desired_capacity]
  }

  # The bootstrap needs a default route (NAT), the S3 and SQS endpoints and its permissions.
  depends_on = [aws_route.private_egress, aws_vpc_endpoint.s3, aws_vpc_endpoint.sqs, aws_iam_role_policy.host]
}

# Step scaling on the main queue's visible messages (alarms in alarms.tf): +1 transformer while
# the backlog is at or above transformer_scale_out_backlog, -1 after 15 minutes of empty queue.
resource "aws_autoscaling_policy" "transformer_scale_out" {
  count = var.transformer_autoscaling ? 1 : 0

  name                      = "${var.name}-transformer-scale-out"
  autoscaling_group_name    = aws_autoscaling_group.transformer[0].name
  policy_type               = "StepScaling"
  adjustment_type           = "ChangeInCapacity"
  metric_aggregation_type   = "Maximum"
  estimated_instance_warmup = 300

  step_adjustment {
    scaling_adjustment          = 1
    metric_interval_lower_bound = 0
  }
}

resource "aws_autoscaling_policy" "transformer_scale_in" {
  count = var.transformer_autoscaling ? 1 : 0

  name                    = "${var.name}-transformer-scale-in"
  autoscaling_group_name  = aws_autoscaling_group.transformer[0].name
  policy_type             = "StepScaling"
  adjustment_type         = "ChangeInCapacity"
  metric_aggregation_type = "Maximum"

  step_adjustment {
    scaling_adjustment          = -1
    metric_interval_upper_bound = 0
  }
}
