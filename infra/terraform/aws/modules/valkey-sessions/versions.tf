terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 6.x: aws_elasticache_user and aws_elasticache_user_group take a lowercase engine
      # (5.x releases validated the group's engine as "REDIS" only, 6.0 deprecated uppercase).
      version = ">= 6.0, < 7.0"
    }
  }
}
