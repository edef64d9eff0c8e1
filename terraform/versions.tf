terraform {
  required_version = ">= 1.11, < 2.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      project     = var.name
      environment = var.environment
      owner       = var.owner
      cost_centre = var.cost_centre
    }
  }
}

data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}

# The provider's default tags, so that instances launched by the Auto Scaling group (which do
# not inherit default_tags) carry them too.
data "aws_default_tags" "current" {}
