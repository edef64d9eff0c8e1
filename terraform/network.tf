locals {
  # Two zones, named (pinned) rather than "the first two available": a zone that is added, or
  # that is impaired during a plan, must not move the subnets.
  azs = length(var.availability_zones) > 0 ? var.availability_zones : ["${var.region}a", "${var.region}b"]

  use_nat_instance = var.egress == "nat_instance"
  use_nat_gateway  = var.egress == "nat_gateway"
}

# Checks at plan time that both named zones exist in the region (for this account).
data "aws_availability_zones" "pinned" {
  filter {
    name   = "zone-name"
    values = local.azs
  }

  lifecycle {
    postcondition {
      condition     = length(self.names) == 2
      error_message = "Both availability_zones must exist in the region; set var.availability_zones to two zone names of ${var.region}."
    }
  }
}

# ---------------------------------------------------------------------------------------------
# VPC, subnets, routing
# ---------------------------------------------------------------------------------------------

resource "aws_vpc" "main" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = { Name = var.name }
}

# The default security group of the VPC, managed so that it has no rules at all: anything
# accidentally launched into it can neither receive nor send.
resource "aws_default_security_group" "default" {
  vpc_id = aws_vpc.main.id

  tags = { Name = "${var.name}-default-locked" }
}

resource "aws_internet_gateway" "main" {
  vpc_id = aws_vpc.main.id

  tags = { Name = var.name }
}

# Private subnets: the two hosts and the database. 10.40.0.0/24, 10.40.1.0/24 by default.
resource "aws_subnet" "private" {
  count = length(local.azs)

  vpc_id                  = aws_vpc.main.id
  availability_zone       = local.azs[count.index]
  cidr_block              = cidrsubnet(var.vpc_cidr, 8, count.index)
  map_public_ip_on_launch = false

  tags = { Name = "${var.name}-private-${local.azs[count.index]}", tier = "private" }
}

# Public subnets: only the NAT instance or NAT gateway. 10.40.100.0/24, 10.40.101.0/24 by
# default. Nothing gets a public address automatically; the NAT instance asks for one itself.
resource "aws_subnet" "public" {
  count = length(local.azs)

  vpc_id                  = aws_vpc.main.id
  availability_zone       = local.azs[count.index]
  cidr_block              = cidrsubnet(var.vpc_cidr, 8, 100 + count.index)
  map_public_ip_on_launch = false

  tags = { Name = "${var.name}-public-${local.azs[count.index]}", tier = "public" }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.main.id

  tags = { Name = "${var.name}-public" }
}

resource "aws_route" "public_internet" {
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.main.id
}

resource "aws_route_table_association" "public" {
  count = length(aws_subnet.public)

  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

# One private route table for both AZs: there is one NAT (instance or gateway), so a second
# table would only repeat the same routes.
resource "aws_route_table" "private" {
  vpc_id = aws_vpc.main.id

  tags = { Name = "${var.name}-private" }
}

resource "aws_route_table_association" "private" {
  count = length(aws_subnet.private)

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private.id
}

# Default route of the private subnets: to the NAT instance's interface or to the NAT gateway.
resource "aws_route" "private_egress" {
  route_table_id         = aws_route_table.private.id
  destination_cidr_block = "0.0.0.0/0"
  network_interface_id   = local.use_nat_instance ? aws_instance.nat[0].primary_network_interface_id : null
  nat_gateway_id         = local.use_nat_gateway ? aws_nat_gateway.main[0].id : null
}

# ---------------------------------------------------------------------------------------------
# Egress option 1 (default): NAT instance
# ---------------------------------------------------------------------------------------------

data "aws_ssm_parameter" "al2023_arm64" {
  name = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
}

resource "aws_security_group" "nat" {
  count = local.use_nat_instance ? 1 : 0

  name        = "${var.name}-nat"
  description = "NAT instance: HTTPS from the barge hosts, HTTPS out to the internet"
  vpc_id      = aws_vpc.main.id

  tags = { Name = "${var.name}-nat" }
}

resource "aws_vpc_security_group_ingress_rule" "nat_from_importer" {
  count = local.use_nat_instance ? 1 : 0

  security_group_id            = aws_security_group.nat[0].id
  description                  = "HTTPS from the importer, forwarded to the internet"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.importer.id
}

resource "aws_vpc_security_group_ingress_rule" "nat_from_transformer" {
  count = local.use_nat_instance ? 1 : 0

  security_group_id            = aws_security_group.nat[0].id
  description                  = "HTTPS from the transformer, forwarded to the internet"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.transformer.id
}

resource "aws_vpc_security_group_egress_rule" "nat_https" {
  count = local.use_nat_instance ? 1 : 0

  security_group_id = aws_security_group.nat[0].id
  description       = "HTTPS to the internet (forwarded traffic and the instance's own dnf)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_instance" "nat" {
  count = local.use_nat_instance ? 1 : 0
  #checkov:skip=CKV_AWS_88:A NAT instance needs a public IPv4 address to translate to; its security group admits only HTTPS from the two barge security groups.
  #checkov:skip=CKV2_AWS_41:The NAT instance calls no AWS API, so it gets no IAM role (least privilege).
  #checkov:skip=CKV_AWS_126:Detailed monitoring is opt-in (var.detailed_monitoring, ~$2.10/instance/month); the StatusCheckFailed alarm works on basic 5-minute metrics.

  ami                         = data.aws_ssm_parameter.al2023_arm64.value
  instance_type               = var.nat_instance_type
  subnet_id                   = aws_subnet.public[0].id
  vpc_security_group_ids      = [aws_security_group.nat[0].id]
  associate_public_ip_address = true
  source_dest_check           = false
  ebs_optimized               = true
  monitoring                  = var.detailed_monitoring

  user_data = templatefile("${path.module}/templates/nat-user-data.sh.tftpl", {
    vpc_cidr = var.vpc_cidr
  })
  user_data_replace_on_change = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = 8
    encrypted             = true
    delete_on_termination = true
  }

  # A new AL2023 AMI is picked up when the instance is replaced for another reason (or with
  # `terraform apply -replace=aws_instance.nat[0]`), not on every apply.
  lifecycle {
    ignore_changes = [ami]
  }

  tags = { Name = "${var.name}-nat" }
}

# ---------------------------------------------------------------------------------------------
# Egress option 2: NAT gateway
# ---------------------------------------------------------------------------------------------

resource "aws_eip" "nat" {
  count = local.use_nat_gateway ? 1 : 0
  #checkov:skip=CKV2_AWS_19:This Elastic IP belongs to the NAT gateway (aws_nat_gateway.main), not to an EC2 instance.

  domain = "vpc"

  tags = { Name = "${var.name}-nat" }

  depends_on = [aws_internet_gateway.main]
}

resource "aws_nat_gateway" "main" {
  count = local.use_nat_gateway ? 1 : 0

  allocation_id = aws_eip.nat[0].id
  subnet_id     = aws_subnet.public[0].id

  tags = { Name = var.name }

  depends_on = [aws_internet_gateway.main]
}

# ---------------------------------------------------------------------------------------------
# VPC endpoints
# ---------------------------------------------------------------------------------------------

# S3 through the private route table: raw objects, errors and the release tarball never cross
# the NAT (no NAT charge, no internet path).
resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.main.id
  service_name      = "com.amazonaws.${var.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.private.id]

  tags = { Name = "${var.name}-s3" }
}

resource "aws_security_group" "sqs_endpoint" {
  count = var.sqs_interface_endpoint ? 1 : 0

  name        = "${var.name}-sqs-endpoint"
  description = "SQS interface endpoint: HTTPS from the barge hosts only"
  vpc_id      = aws_vpc.main.id

  tags = { Name = "${var.name}-sqs-endpoint" }
}

resource "aws_vpc_security_group_ingress_rule" "sqs_endpoint_from_importer" {
  count = var.sqs_interface_endpoint ? 1 : 0

  security_group_id            = aws_security_group.sqs_endpoint[0].id
  description                  = "HTTPS to SQS from the importer"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.importer.id
}

resource "aws_vpc_security_group_ingress_rule" "sqs_endpoint_from_transformer" {
  count = var.sqs_interface_endpoint ? 1 : 0

  security_group_id            = aws_security_group.sqs_endpoint[0].id
  description                  = "HTTPS to SQS from the transformer"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.transformer.id
}

resource "aws_vpc_endpoint" "sqs" {
  count = var.sqs_interface_endpoint ? 1 : 0

  vpc_id              = aws_vpc.main.id
  service_name        = "com.amazonaws.${var.region}.sqs"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = aws_subnet.private[*].id
  security_group_ids  = [aws_security_group.sqs_endpoint[0].id]
  private_dns_enabled = true

  tags = { Name = "${var.name}-sqs" }
}

# ---------------------------------------------------------------------------------------------
# Security groups of the hosts and the database (no ingress to the hosts at all)
# ---------------------------------------------------------------------------------------------

resource "aws_security_group" "importer" {
  name        = "${var.name}-importer"
  description = "barge importer: no ingress; HTTPS out (APIs, S3, SQS, CloudWatch Logs)"
  vpc_id      = aws_vpc.main.id

  tags = { Name = "${var.name}-importer" }
}

resource "aws_vpc_security_group_egress_rule" "importer_https" {
  security_group_id = aws_security_group.importer.id
  description       = "HTTPS to the source APIs and AWS endpoints (via NAT, S3 gateway or SQS endpoint)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_security_group" "transformer" {
  name        = "${var.name}-transformer"
  description = "barge transformer: no ingress; HTTPS out, PostgreSQL to the database"
  vpc_id      = aws_vpc.main.id

  tags = { Name = "${var.name}-transformer" }
}

resource "aws_vpc_security_group_egress_rule" "transformer_https" {
  security_group_id = aws_security_group.transformer.id
  description       = "HTTPS to AWS endpoints (S3, SQS, Secrets Manager, CloudWatch Logs) and the RDS CA bundle"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "transformer_postgres" {
  security_group_id            = aws_security_group.transformer.id
  description                  = "PostgreSQL (TLS) to the database"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.db.id
}

resource "aws_security_group" "db" {
  name        = "${var.name}-db"
  description = "barge database: PostgreSQL from the transformer only"
  vpc_id      = aws_vpc.main.id

  tags = { Name = "${var.name}-db" }
}

resource "aws_vpc_security_group_ingress_rule" "db_from_transformer" {
  security_group_id            = aws_security_group.db.id
  description                  = "PostgreSQL from the transformer"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.transformer.id
}

# ---------------------------------------------------------------------------------------------
# VPC flow logs (rejected traffic by default, see var.flow_log_traffic_type)
# ---------------------------------------------------------------------------------------------

resource "aws_flow_log" "vpc" {
  vpc_id                   = aws_vpc.main.id
  traffic_type             = var.flow_log_traffic_type
  log_destination_type     = "cloud-watch-logs"
  log_destination          = aws_cloudwatch_log_group.flow_logs.arn
  iam_role_arn             = aws_iam_role.flow_logs.arn
  max_aggregation_interval = 600

  tags = { Name = var.name }
}
