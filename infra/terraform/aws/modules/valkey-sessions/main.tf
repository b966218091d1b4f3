data "aws_region" "current" {}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  region      = data.aws_region.current.id
  account_id  = data.aws_caller_identity.current.account_id
  partition   = data.aws_partition.current.partition
  kms_key_arn = var.kms_key_arn != null ? var.kms_key_arn : aws_kms_key.this[0].arn

  # ElastiCache Serverless: one endpoint for writes (6379) and a reader endpoint (6380) on the
  # same name; the service reads the cluster topology from the first.
  cache_endpoint = "${aws_elasticache_serverless_cache.this.endpoint[0].address}:${aws_elasticache_serverless_cache.this.endpoint[0].port}"
  cache_reader   = "${aws_elasticache_serverless_cache.this.reader_endpoint[0].address}:${aws_elasticache_serverless_cache.this.reader_endpoint[0].port}"

  grpc_port    = 50051
  metrics_port = 9090
  gateway_port = 8080

  tags = merge({ "app.kubernetes.io/part-of" = "valkey-sessions", Name = var.name }, var.tags)
}
