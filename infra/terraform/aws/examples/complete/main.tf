# The product's origin, end to end: a private VPC (created or given), ElastiCache Serverless for
# Valkey (reached only as the service's IAM user), valkey-sessions on ECS Fargate behind an
# internal gRPC load balancer (TLS to the load balancer and from it to the tasks, bearer tokens).
module "valkey_sessions" {
  source = "../../modules/valkey-sessions"

  name                        = var.name
  vpc_id                      = local.vpc_id
  private_subnet_ids          = local.private_subnet_ids
  client_cidr_blocks          = coalesce(var.client_cidr_blocks, [local.vpc_cidr])
  certificate_arn             = var.certificate_arn
  container_image             = var.container_image
  init_container_image        = var.init_container_image
  grpc_tls_secret_arn         = var.grpc_tls_secret_arn
  grpc_auth_tokens_secret_arn = var.grpc_auth_tokens_secret_arn
  service_config_toml         = var.service_config_toml
  valkey_major_engine_version = var.valkey_major_engine_version
  enable_gateway              = var.enable_gateway

  # Interface endpoints must exist before tasks try to pull the image.
  depends_on = [aws_vpc_endpoint.interface, aws_vpc_endpoint.s3]
}
