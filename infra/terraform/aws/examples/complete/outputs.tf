output "grpc_endpoint" {
  description = "host:port clients dial (TLS): grpcurl <grpc_endpoint> list"
  value       = module.valkey_sessions.grpc_endpoint
}

output "cache_endpoint" {
  description = "ElastiCache endpoint (primary, 6379)."
  value       = module.valkey_sessions.cache_endpoint
}

output "cache_reader_endpoint" {
  description = "ElastiCache reader_endpoint (replicas, 6380)."
  value       = module.valkey_sessions.cache_reader_endpoint
}

output "gateway_url" {
  description = "The todo gateway, when enabled."
  value       = module.valkey_sessions.gateway_url
}

output "vpc_id" {
  description = "The VPC in use (created or given)."
  value       = local.vpc_id
}
