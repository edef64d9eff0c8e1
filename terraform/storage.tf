locals {
  # Key prefixes of the data bucket. raw/ is the immutable archive the importer writes (and the
  # replay source), errors/ receives the transformer's rejected records, state/ holds the
  # importer's incremental marks, page digests and markers of unsettled objects;
  # var.landing_prefixes are where other producers drop files (announced to the queue by S3
  # itself).
  raw_prefix    = "raw"
  errors_prefix = "errors"
  state_prefix  = "state"

  # Release tarballs: s3://<artifacts bucket>/<artifacts prefix>/barge-<version>-x86_64-linux.tar.gz
  artifacts_bucket = var.artifacts_bucket != "" ? var.artifacts_bucket : aws_s3_bucket.data.bucket
  tarball_name     = "barge-${var.release_version}-x86_64-linux.tar.gz"
  tarball_key      = var.artifacts_prefix == "" ? local.tarball_name : "${var.artifacts_prefix}/${local.tarball_name}"
  tarball_arn      = "arn:${data.aws_partition.current.partition}:s3:::${local.artifacts_bucket}/${local.tarball_key}"

  # Each landing prefix's part of its lifecycle rule's and notification's IDs: readable, and
  # unique through a digest of the prefix ("/" becoming "-" alone would make landing/posts and
  # landing-posts one ID), cut so that an ID stays within S3's 255 characters.
  landing_ids = {
    for prefix in var.landing_prefixes :
    prefix => "${substr(replace(prefix, "/", "-"), 0, 200)}-${substr(sha256(prefix), 0, 8)}"
  }
}

resource "aws_s3_bucket" "data" {
  #checkov:skip=CKV_AWS_18:Server access logging would need a second bucket and costs per request; bucket-level activity is visible in CloudTrail and every object is accounted for in the barge.loads ledger.
  #checkov:skip=CKV_AWS_144:Cross-region replication doubles storage and transfer cost; the raw archive is versioned and lifecycle-managed in one region, which is the accepted durability for this batch ETL.
  #checkov:skip=CKV_AWS_145:Default encryption is SSE-S3 (AES256) on purpose: SSE-KMS with a customer key adds per-request KMS charges and key-policy plumbing to every PUT/GET for no gain in this threat model (access is controlled by IAM and the TLS-only bucket policy).
  bucket        = var.bucket_name
  force_destroy = false

  tags = { Name = var.bucket_name }
}

resource "aws_s3_bucket_ownership_controls" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "data" {
  bucket = aws_s3_bucket.data.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "data" {
  bucket = aws_s3_bucket.data.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

# TLS only: any request made over plain HTTP is denied, whoever makes it.
data "aws_iam_policy_document" "data_bucket" {
  statement {
    sid    = "DenyInsecureTransport"
    effect = "Deny"
    # Every action on this bucket and its objects: a wildcard only ever narrows a Deny.
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.data.arn,
      "${aws_s3_bucket.data.arn}/*",
    ]

    # Every principal: a Deny must cover anonymous and cross-account callers too.
    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "data" {
  bucket = aws_s3_bucket.data.id
  policy = data.aws_iam_policy_document.data_bucket.json

  # S3 rejects a policy while public access settings are still being applied.
  depends_on = [aws_s3_bucket_public_access_block.data]
}

resource "aws_s3_bucket_lifecycle_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  # raw/: the archive, moved to cheaper storage and kept forever unless raw_expiration_days > 0.
  rule {
    id     = "raw-archive"
    status = "Enabled"

    filter {
      prefix = "${local.raw_prefix}/"
    }

    transition {
      days          = var.raw_transition_days
      storage_class = var.raw_storage_class
    }

    dynamic "expiration" {
      for_each = var.raw_expiration_days > 0 ? [var.raw_expiration_days] : []
      content {
        days = expiration.value
      }
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  # Each landing zone: files dropped by others, loaded once announced; kept a while for replays.
  dynamic "rule" {
    for_each = toset(var.landing_prefixes)
    content {
      id     = "landing-expiry-${local.landing_ids[rule.value]}"
      status = "Enabled"

      filter {
        prefix = "${rule.value}/"
      }

      expiration {
        days = var.landing_expiration_days
      }

      abort_incomplete_multipart_upload {
        days_after_initiation = 7
      }
    }
  }

  rule {
    id     = "errors-expiry"
    status = "Enabled"

    filter {
      prefix = "${local.errors_prefix}/"
    }

    expiration {
      days = var.errors_expiration_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  # Whole bucket: old versions, leftover delete markers and abandoned multipart uploads.
  rule {
    id     = "noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    expiration {
      expired_object_delete_marker = true
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  # Lifecycle rules on a versioned bucket must follow the versioning configuration.
  depends_on = [aws_s3_bucket_versioning.data]
}

# Objects created under each landing prefix are announced on the main queue by S3 itself; the
# transformer loads them into the source whose landing_prefix it is. No landing prefix: no
# notification (this resource then keeps the bucket's notifications empty).
resource "aws_s3_bucket_notification" "data" {
  bucket = aws_s3_bucket.data.id

  dynamic "queue" {
    for_each = toset(var.landing_prefixes)
    content {
      id            = "landing-${local.landing_ids[queue.value]}"
      queue_arn     = aws_sqs_queue.main.arn
      events        = ["s3:ObjectCreated:*"]
      filter_prefix = "${queue.value}/"
    }
  }

  # S3 checks at once that it may send to the queue (and sends an s3:TestEvent).
  depends_on = [aws_sqs_queue_policy.main]
}
