# ---------------------------------------------------------------------------------------------
# Naming, region, tags
# ---------------------------------------------------------------------------------------------

variable "name" {
  description = "Name prefix of every resource (queues, instances, roles, log groups /<name>/importer ...)."
  type        = string
  default     = "barge"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]*(-[a-z0-9]+)*$", var.name)) && length(var.name) <= 24
    error_message = "name must be 1-24 characters of lower-case letters, digits and single hyphens, starting with a letter and not ending with a hyphen (it prefixes RDS, IAM and SQS names)."
  }
}

variable "region" {
  description = "AWS region to deploy into, e.g. us-east-1."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]+$", var.region))
    error_message = "region must look like an AWS region name, e.g. us-east-1 or eu-west-2."
  }
}

variable "environment" {
  description = "Deployment environment, used in the 'environment' default tag."
  type        = string
  default     = "prod"

  validation {
    condition     = contains(["dev", "test", "staging", "prod"], var.environment)
    error_message = "environment must be one of dev, test, staging, prod."
  }
}

variable "owner" {
  description = "Team or person responsible for this stack ('owner' default tag). No default: set it."
  type        = string

  validation {
    condition     = length(trimspace(var.owner)) > 0 && length(var.owner) <= 256
    error_message = "owner must be a non-empty tag value of at most 256 characters."
  }
}

variable "cost_centre" {
  description = "Cost centre billed for this stack ('cost_centre' default tag). No default: set it."
  type        = string

  validation {
    condition     = length(trimspace(var.cost_centre)) > 0 && length(var.cost_centre) <= 256
    error_message = "cost_centre must be a non-empty tag value of at most 256 characters."
  }
}

# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "IPv4 CIDR of the VPC, /16 to /20; the subnets are /24s of a /16 (newbits 8)."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.vpc_cidr)) && tonumber(split("/", var.vpc_cidr)[1]) >= 16 && tonumber(split("/", var.vpc_cidr)[1]) <= 20
    error_message = "vpc_cidr must be an IPv4 CIDR block with a prefix length between /16 and /20."
  }
}

variable "availability_zones" {
  description = "The two availability zones of the subnets. Empty (default) = <region>a and <region>b."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.availability_zones) == 0 || (length(var.availability_zones) == 2 && length(distinct(var.availability_zones)) == 2 && alltrue([for az in var.availability_zones : startswith(az, var.region)]))
    error_message = "availability_zones must be empty or two distinct zone names of var.region, e.g. [\"us-east-1a\", \"us-east-1b\"]."
  }
}

variable "egress" {
  description = "How the private subnets reach the internet: \"nat_instance\" (a t4g.nano NAT instance, cheapest) or \"nat_gateway\" (managed, highly available within its AZ, ~10x the price)."
  type        = string
  default     = "nat_instance"

  validation {
    condition     = contains(["nat_instance", "nat_gateway"], var.egress)
    error_message = "egress must be \"nat_instance\" or \"nat_gateway\"."
  }
}

variable "nat_instance_type" {
  description = "Instance type of the NAT instance (egress = \"nat_instance\"). Must be a Graviton (arm64) type: the AMI is Amazon Linux 2023 arm64."
  type        = string
  default     = "t4g.nano"

  validation {
    condition     = can(regex("^[a-z][0-9]+g[a-z]*\\.[a-z0-9]+$", var.nat_instance_type))
    error_message = "nat_instance_type must be a Graviton (arm64) instance type such as t4g.nano or t4g.micro."
  }
}

variable "sqs_interface_endpoint" {
  description = "Create an SQS interface VPC endpoint (private DNS) in the private subnets, so SQS traffic stays off the NAT. Costs about $14.60/month (2 AZs)."
  type        = bool
  default     = true
}

variable "flow_log_traffic_type" {
  description = "Which VPC flow log records to send to CloudWatch Logs: ACCEPT, REJECT or ALL. REJECT keeps ingestion cost near zero while still showing blocked traffic."
  type        = string
  default     = "REJECT"

  validation {
    condition     = contains(["ACCEPT", "REJECT", "ALL"], var.flow_log_traffic_type)
    error_message = "flow_log_traffic_type must be ACCEPT, REJECT or ALL."
  }
}

# ---------------------------------------------------------------------------------------------
# Storage
# ---------------------------------------------------------------------------------------------

variable "bucket_name" {
  description = "Name of the data bucket to create (raw/, landing/, errors/). Globally unique; no dots (they break TLS with virtual-hosted addressing)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", var.bucket_name)) && !startswith(var.bucket_name, "xn--") && !endswith(var.bucket_name, "-s3alias") && !endswith(var.bucket_name, "--ol-s3")
    error_message = "bucket_name must be 3-63 characters of lower-case letters, digits and hyphens, start and end with a letter or digit, and not use a reserved prefix/suffix (xn--, -s3alias, --ol-s3)."
  }
}

variable "raw_transition_days" {
  description = "Days after which raw/ objects move to raw_storage_class. STANDARD_IA and GLACIER_IR need at least 30."
  type        = number
  default     = 30

  validation {
    condition     = var.raw_transition_days >= 0 && floor(var.raw_transition_days) == var.raw_transition_days
    error_message = "raw_transition_days must be a whole number >= 0."
  }
}

variable "raw_storage_class" {
  description = "Storage class raw/ objects transition to: STANDARD_IA, INTELLIGENT_TIERING or GLACIER_IR (all keep millisecond reads, so replays still work)."
  type        = string
  default     = "STANDARD_IA"

  validation {
    condition     = contains(["STANDARD_IA", "INTELLIGENT_TIERING", "GLACIER_IR"], var.raw_storage_class)
    error_message = "raw_storage_class must be STANDARD_IA, INTELLIGENT_TIERING or GLACIER_IR."
  }

  validation {
    condition     = var.raw_storage_class == "INTELLIGENT_TIERING" || var.raw_transition_days >= 30
    error_message = "S3 requires raw_transition_days >= 30 for STANDARD_IA and GLACIER_IR."
  }
}

variable "raw_expiration_days" {
  description = "Days after which raw/ objects expire. 0 (default) = never: the raw archive is the replay source."
  type        = number
  default     = 0

  validation {
    condition     = var.raw_expiration_days >= 0 && floor(var.raw_expiration_days) == var.raw_expiration_days
    error_message = "raw_expiration_days must be a whole number >= 0 (0 = never expire)."
  }

  validation {
    condition     = var.raw_expiration_days == 0 || var.raw_expiration_days > var.raw_transition_days
    error_message = "raw_expiration_days must be 0 (never) or greater than raw_transition_days."
  }
}

variable "landing_expiration_days" {
  description = "Days after which objects under the landing prefixes expire."
  type        = number
  default     = 30

  validation {
    condition     = var.landing_expiration_days >= 1 && floor(var.landing_expiration_days) == var.landing_expiration_days
    error_message = "landing_expiration_days must be a whole number >= 1."
  }
}

variable "landing_prefixes" {
  description = "Landing zones: key prefixes of the data bucket (no trailing slash, e.g. \"landing/posts\") where other systems drop files for the transformer. S3 announces every object created under one on the batch queue; each must be the landing_prefix of a source in sources_toml, and every landing_prefix in sources_toml must be here. Empty: no landing zone."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for prefix in var.landing_prefixes : can(regex("^[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*)*$", prefix))])
    error_message = "landing_prefixes must be key prefixes of [a-z0-9_.-] segments joined by /, without a leading or trailing slash."
  }

  validation {
    condition     = alltrue([for prefix in var.landing_prefixes : !contains(["raw", "errors", "state"], split("/", prefix)[0])])
    error_message = "landing_prefixes must lie outside raw/, errors/ and state/ (the archive, rejected records and the importer's state)."
  }

  # S3 refuses notification filters that overlap; the transformer refuses overlapping landing
  # prefixes too.
  validation {
    condition = alltrue([
      for i, prefix in var.landing_prefixes : alltrue([
        for j, other in var.landing_prefixes : i == j || !startswith("${prefix}/", "${other}/")
      ])
    ])
    error_message = "landing_prefixes must not repeat or lie under one another."
  }

  # Both ways: a prefix no source declares would announce files nothing loads; a source's
  # landing_prefix missing here would get no notification and no read permission, so its files
  # would never load. Only lines that begin with the key count (not a commented-out one).
  validation {
    condition     = alltrue([for prefix in var.landing_prefixes : can(regex("(?m)^\\s*landing_prefix\\s*=\\s*\"${replace(prefix, ".", "\\.")}/?\"", var.sources_toml))])
    error_message = "Each of landing_prefixes must be the landing_prefix of a source in sources_toml (landing_prefix = \"<prefix>\"): S3 announces the objects, the source says where they load."
  }

  validation {
    condition     = alltrue([for found in regexall("(?m)^\\s*landing_prefix\\s*=\\s*\"([^\"]*)\"", var.sources_toml) : contains(var.landing_prefixes, trimsuffix(found[0], "/"))])
    error_message = "Each landing_prefix of a source in sources_toml must be in landing_prefixes (without its trailing slash): otherwise S3 announces none of its files and the transformer may not read them."
  }
}

variable "errors_expiration_days" {
  description = "Days after which errors/ objects (rejected records) expire."
  type        = number
  default     = 90

  validation {
    condition     = var.errors_expiration_days >= 1 && floor(var.errors_expiration_days) == var.errors_expiration_days
    error_message = "errors_expiration_days must be a whole number >= 1."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which noncurrent object versions (overwritten or deleted objects) are removed."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days
    error_message = "noncurrent_version_expiration_days must be a whole number >= 1."
  }
}

variable "artifacts_bucket" {
  description = "Existing bucket holding release tarballs. Empty (default) = the data bucket."
  type        = string
  default     = ""

  validation {
    condition     = var.artifacts_bucket == "" || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.artifacts_bucket))
    error_message = "artifacts_bucket must be empty or a valid S3 bucket name."
  }
}

variable "artifacts_prefix" {
  description = "Key prefix (no leading/trailing slash) of the release tarballs in the artifacts bucket; empty = bucket root."
  type        = string
  default     = "releases"

  validation {
    condition     = can(regex("^([A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*)?$", var.artifacts_prefix))
    error_message = "artifacts_prefix must be empty or path segments of [A-Za-z0-9._-] joined by '/', without leading or trailing '/'."
  }
}

variable "release_version" {
  description = "barge release to run: the tarball is <artifacts_prefix>/barge-<release_version>-x86_64-linux.tar.gz. Changing it replaces the instances."
  type        = string

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+([-+][0-9A-Za-z.+-]+)?$", var.release_version))
    error_message = "release_version must be a semantic version such as 0.1.0 or 0.2.0-rc.1."
  }
}

variable "release_sha256" {
  description = "SHA-256 (64 lower-case hex digits) of the release tarball; the hosts refuse a tarball that does not match."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.release_sha256))
    error_message = "release_sha256 must be 64 lower-case hexadecimal digits (the output of sha256sum)."
  }
}

# ---------------------------------------------------------------------------------------------
# Queue
# ---------------------------------------------------------------------------------------------

variable "queue_max_receive_count" {
  description = "Receives of one message before SQS moves it to the dead-letter queue."
  type        = number
  default     = 5

  validation {
    condition     = var.queue_max_receive_count >= 1 && var.queue_max_receive_count <= 1000 && floor(var.queue_max_receive_count) == var.queue_max_receive_count
    error_message = "queue_max_receive_count must be a whole number from 1 to 1000."
  }
}

variable "queue_visibility_timeout_seconds" {
  description = "Visibility timeout of the queues. The transformer extends it every third of this while it holds a message, so it must be at least 3 seconds."
  type        = number
  default     = 60

  validation {
    condition     = var.queue_visibility_timeout_seconds >= 3 && var.queue_visibility_timeout_seconds <= 43200 && floor(var.queue_visibility_timeout_seconds) == var.queue_visibility_timeout_seconds
    error_message = "queue_visibility_timeout_seconds must be a whole number from 3 to 43200 (12 hours)."
  }
}

# ---------------------------------------------------------------------------------------------
# Database
# ---------------------------------------------------------------------------------------------

variable "db_engine_version" {
  description = "RDS PostgreSQL engine version: a major (\"16\", RDS picks the minor and auto-upgrades it) or major.minor (\"16.4\")."
  type        = string
  default     = "16"

  validation {
    condition     = can(regex("^1[3-8](\\.[0-9]+)?$", var.db_engine_version))
    error_message = "db_engine_version must be a PostgreSQL major version 13-18, optionally with a minor (e.g. 16 or 16.4)."
  }
}

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.t4g.micro"

  validation {
    condition     = can(regex("^db\\.[a-z0-9-]+\\.[a-z0-9]+$", var.db_instance_class))
    error_message = "db_instance_class must look like db.<family>.<size>, e.g. db.t4g.micro."
  }
}

variable "db_max_allocated_storage" {
  description = "Upper limit (GiB) of RDS storage autoscaling from the initial 20 GiB; 0 disables autoscaling."
  type        = number
  default     = 100

  validation {
    condition     = var.db_max_allocated_storage == 0 || (var.db_max_allocated_storage > 20 && var.db_max_allocated_storage <= 65536)
    error_message = "db_max_allocated_storage must be 0 (no autoscaling) or between 21 and 65536 GiB."
  }
}

variable "db_username" {
  description = "Master user name of the database (its password is generated and kept in Secrets Manager by RDS)."
  type        = string
  default     = "barge"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.db_username)) && !contains(["rdsadmin", "rdsrepladmin", "rds_superuser", "postgres", "admin"], var.db_username)
    error_message = "db_username must start with a letter, use [a-z0-9_], be at most 63 characters and not be a reserved name (rdsadmin, postgres, admin, ...)."
  }
}

variable "db_backup_retention_days" {
  description = "Days RDS keeps automated backups (point-in-time recovery window)."
  type        = number
  default     = 7

  validation {
    condition     = var.db_backup_retention_days >= 1 && var.db_backup_retention_days <= 35 && floor(var.db_backup_retention_days) == var.db_backup_retention_days
    error_message = "db_backup_retention_days must be a whole number from 1 to 35."
  }
}

variable "db_deletion_protection" {
  description = "RDS deletion protection. Set to false (and apply) before `terraform destroy`."
  type        = bool
  default     = true
}

variable "db_multi_az" {
  description = "Run RDS Multi-AZ (a standby in the other AZ; doubles the instance and storage cost)."
  type        = bool
  default     = false
}

variable "db_performance_insights" {
  description = "Enable Performance Insights (7-day retention) where the instance class supports it."
  type        = bool
  default     = false
}

variable "db_log_min_duration_statement_ms" {
  description = "Log statements slower than this many milliseconds to the postgresql log (-1 disables)."
  type        = number
  default     = 1000

  validation {
    condition     = var.db_log_min_duration_statement_ms >= -1 && floor(var.db_log_min_duration_statement_ms) == var.db_log_min_duration_statement_ms
    error_message = "db_log_min_duration_statement_ms must be a whole number >= -1."
  }
}

# ---------------------------------------------------------------------------------------------
# Compute
# ---------------------------------------------------------------------------------------------

variable "instance_type" {
  description = "Instance type of the importer and transformer hosts (x86_64: the release binaries are x86_64-linux)."
  type        = string
  default     = "t2.micro"

  validation {
    condition     = can(regex("^[a-z][0-9][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type)) && !can(regex("^[a-z][0-9]+g[a-z]*\\.", var.instance_type))
    error_message = "instance_type must be an x86_64 instance type such as t2.micro or t3.small (not a Graviton 'g' type)."
  }
}

variable "root_volume_size_gb" {
  description = "Size (GiB) of the encrypted gp3 root volume of each host (the AL2023 AMI needs 8)."
  type        = number
  default     = 8

  validation {
    condition     = var.root_volume_size_gb >= 8 && var.root_volume_size_gb <= 1024 && floor(var.root_volume_size_gb) == var.root_volume_size_gb
    error_message = "root_volume_size_gb must be a whole number from 8 to 1024."
  }
}

variable "detailed_monitoring" {
  description = "EC2 detailed (1-minute) monitoring on the hosts; about $2.10 per instance per month."
  type        = bool
  default     = false
}

variable "ssm_session_manager" {
  description = "Attach AmazonSSMManagedInstanceCore to the host roles so operators can open shells with Session Manager (there is no SSH)."
  type        = bool
  default     = false
}

variable "transformer_autoscaling" {
  description = "Run the transformer as a launch template + Auto Scaling group scaled on the queue depth instead of one instance."
  type        = bool
  default     = false
}

variable "transformer_min_size" {
  description = "Minimum transformers when transformer_autoscaling is true."
  type        = number
  default     = 1

  validation {
    condition     = var.transformer_min_size >= 1 && floor(var.transformer_min_size) == var.transformer_min_size
    error_message = "transformer_min_size must be a whole number >= 1 (the no-object-loaded alarm expects a transformer running)."
  }
}

variable "transformer_max_size" {
  description = "Maximum transformers when transformer_autoscaling is true."
  type        = number
  default     = 3

  validation {
    condition     = var.transformer_max_size >= var.transformer_min_size && var.transformer_max_size <= 20 && floor(var.transformer_max_size) == var.transformer_max_size
    error_message = "transformer_max_size must be a whole number from transformer_min_size to 20."
  }
}

variable "transformer_scale_out_backlog" {
  description = "Visible messages on the main queue at or above which the Auto Scaling group adds a transformer (scale-in happens after 15 minutes of an empty queue)."
  type        = number
  default     = 100

  validation {
    condition     = var.transformer_scale_out_backlog >= 1 && floor(var.transformer_scale_out_backlog) == var.transformer_scale_out_backlog
    error_message = "transformer_scale_out_backlog must be a whole number >= 1."
  }
}

variable "sources_toml" {
  description = "The [[sources]] blocks appended to the rendered barge.toml (TOML; see deploy/barge.example.toml). No secrets: the file is in EC2 user data."
  type        = string
  default     = <<-EOT
    [[sources]]
    name = "posts"
    url = "https://jsonplaceholder.typicode.com/posts"
    interval = "15m"
    table = "posts"
    primary_key = ["id"]
    columns = [
        { name = "id", type = "bigint" },
        { name = "user_id", type = "bigint", field = "userId" },
        { name = "title", type = "text" },
        { name = "body", type = "text" },
    ]
  EOT

  validation {
    condition     = strcontains(var.sources_toml, "[[sources]]")
    error_message = "sources_toml must contain at least one [[sources]] block."
  }
}

variable "importer_secret_arns" {
  description = "Secrets Manager secret ARNs the importer may read (API credentials); empty = none."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.importer_secret_arns : can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+$", arn))])
    error_message = "importer_secret_arns must contain only Secrets Manager secret ARNs (arn:aws:secretsmanager:<region>:<account>:secret:<name>), without wildcards."
  }
}

variable "importer_parameter_arns" {
  description = "SSM Parameter Store parameter ARNs the importer may read (API credentials, SecureString decrypted with the AWS-managed aws/ssm key); empty = none."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.importer_parameter_arns : can(regex("^arn:aws[a-z-]*:ssm:[a-z0-9-]+:[0-9]{12}:parameter/[A-Za-z0-9/_.-]+$", arn))])
    error_message = "importer_parameter_arns must contain only SSM parameter ARNs (arn:aws:ssm:<region>:<account>:parameter/<name>), without wildcards."
  }
}

# ---------------------------------------------------------------------------------------------
# Alarms and logs
# ---------------------------------------------------------------------------------------------

variable "alarm_email" {
  description = "E-mail address subscribed to the alarm topic (confirm the subscription mail). Empty = no subscription."
  type        = string
  default     = ""

  validation {
    condition     = var.alarm_email == "" || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alarm_email))
    error_message = "alarm_email must be empty or an e-mail address."
  }
}

variable "queue_age_alarm_seconds" {
  description = "Alarm when the oldest message on the main queue is older than this many seconds."
  type        = number
  default     = 900

  validation {
    condition     = var.queue_age_alarm_seconds >= 60 && var.queue_age_alarm_seconds <= 1209600
    error_message = "queue_age_alarm_seconds must be between 60 and 1209600 (14 days)."
  }
}

variable "no_load_alarm_period_seconds" {
  description = "Alarm when no message was deleted from the main queue (no object loaded) for this many seconds. Keep it above the longest source interval."
  type        = number
  default     = 3600

  validation {
    condition     = var.no_load_alarm_period_seconds >= 300 && var.no_load_alarm_period_seconds <= 86400 && var.no_load_alarm_period_seconds % 60 == 0
    error_message = "no_load_alarm_period_seconds must be a multiple of 60 from 300 to 86400."
  }
}

variable "instance_status_alarms" {
  description = "Create an EC2 StatusCheckFailed alarm for each instance (importer, transformer, NAT instance)."
  type        = bool
  default     = true
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log groups (barge daemons, RDS postgresql log, VPC flow logs)."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of the values CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)."
  }
}
