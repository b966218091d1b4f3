output "grpc_endpoint" {
  description = "Where clients connect: host:port of the load balancer's HTTPS (gRPC over TLS) listener."
  value       = "${aws_lb.this.dns_name}:443"
}

output "gateway_url" {
  description = "The todo gateway's URL, when enable_gateway is set."
  value       = var.enable_gateway ? "https://${aws_lb.this.dns_name}:8443/" : null
}

output "cache_endpoint" {
  description = "The cache's endpoint (primary, port 6379) as host:port; the service's SESSION_HOST."
  value       = local.cache_endpoint
}

output "cache_reader_endpoint" {
  description = "The cache's reader_endpoint (replicas, port 6380) as host:port."
  value       = local.cache_reader
}

output "service_security_group_id" {
  description = "Security group of the service tasks, the only source the cache accepts."
  value       = aws_security_group.service.id
}

output "cache_security_group_id" {
  description = "Security group of the cache."
  value       = aws_security_group.cache.id
}

output "ecs_cluster_name" {
  description = "ECS cluster running the service."
  value       = aws_ecs_cluster.this.name
}

output "log_group_name" {
  description = "CloudWatch log group of the containers."
  value       = aws_cloudwatch_log_group.service.name
}

output "kms_key_arn" {
  description = "KMS key of the cache and the logs; CloudWatch Logs may use it for log groups named /<name>/*."
  value       = local.kms_key_arn
}

output "cache_user_id" {
  description = "ElastiCache user of the service (IAM authentication; user id = user name = the service's VALKEY_USERNAME)."
  value       = aws_elasticache_user.service.user_id
}

output "cache_user_group_id" {
  description = "User group of the cache: the service's IAM user and a default user that is off."
  value       = aws_elasticache_user_group.this.user_group_id
}

output "task_role_arn" {
  description = "Role of the service tasks: elasticache:Connect on this cache as cache_user_id, nothing else."
  value       = aws_iam_role.task.arn
}
