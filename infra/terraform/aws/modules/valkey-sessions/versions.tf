terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # aws_elasticache_serverless_cache with engine "valkey" and the VPC security group rule
      # resources need 5.x; 6.x is accepted.
      version = ">= 5.70, < 7.0"
    }
  }
}
