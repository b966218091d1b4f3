# The product's origin, end to end: a private VPC (created or given), ElastiCache Serverless for
# Valkey, valkey-sessions on ECS Fargate behind an internal gRPC load balancer.
module "valkey_sessions" {
  source = "../../modules/valkey-sessions"

  name                        = var.name
  vpc_id                      = local.vpc_id
  private_subnet_ids          = local.private_subnet_ids
  client_cidr_blocks          = coalesce(var.client_cidr_blocks, [local.vpc_cidr])
  certificate_arn             = var.certificate_arn
  container_image             = var.container_image
  valkey_major_engine_version = var.valkey_major_engine_version
  enable_gateway              = var.enable_gateway

  # Interface endpoints must exist before tasks try to pull the image.
  depends_on = [aws_vpc_endpoint.interface, aws_vpc_endpoint.s3]
}
