# ElastiCache Serverless for Valkey: cluster mode and TLS are always on; encryption at rest uses
# the module's KMS key. The only way in is the cache security group (security_groups.tf).
resource "aws_elasticache_serverless_cache" "this" {
  engine               = "valkey"
  name                 = var.name
  description          = "valkey-sessions: HTTP sessions"
  major_engine_version = var.valkey_major_engine_version
  kms_key_id           = local.kms_key_arn
  security_group_ids   = [aws_security_group.cache.id]
  subnet_ids           = var.private_subnet_ids

  snapshot_retention_limit = var.snapshot_retention_limit
  daily_snapshot_time      = var.daily_snapshot_time

  cache_usage_limits {
    data_storage {
      maximum = var.cache_max_data_storage_gb
      unit    = "GB"
    }
    ecpu_per_second {
      maximum = var.cache_max_ecpu_per_second
    }
  }

  tags = local.tags
}
