# Three groups, each opened only to the next hop:
#   clients --443--> load balancer --50051--> service tasks --6379/6380--> cache
# The cache group's only ingress is TCP 6379 (primary endpoint) and 6380 (reader endpoint) from
# the service group; forgetting 6380 makes replica reads hang (see infra/README.md).

resource "aws_security_group" "cache" {
  name        = "${var.name}-cache"
  description = "ElastiCache Serverless Valkey: TLS 6379 and 6380 from the valkey-sessions tasks only"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-cache" })
}

resource "aws_vpc_security_group_ingress_rule" "cache_primary_from_service" {
  security_group_id            = aws_security_group.cache.id
  description                  = "Valkey primary endpoint (writes, cluster topology) from the service tasks"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.service.id
}

resource "aws_vpc_security_group_ingress_rule" "cache_reader_from_service" {
  security_group_id            = aws_security_group.cache.id
  description                  = "Valkey reader endpoint (READONLY replica reads) from the service tasks"
  ip_protocol                  = "tcp"
  from_port                    = 6380
  to_port                      = 6380
  referenced_security_group_id = aws_security_group.service.id
}

resource "aws_security_group" "service" {
  name        = "${var.name}-service"
  description = "valkey-sessions tasks: gRPC from the load balancer, out to the cache and AWS APIs"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-service" })
}

resource "aws_vpc_security_group_ingress_rule" "service_grpc_from_lb" {
  security_group_id            = aws_security_group.service.id
  description                  = "gRPC from the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = local.grpc_port
  to_port                      = local.grpc_port
  referenced_security_group_id = aws_security_group.lb.id
}

resource "aws_vpc_security_group_ingress_rule" "service_gateway_from_lb" {
  count = var.enable_gateway ? 1 : 0

  security_group_id            = aws_security_group.service.id
  description                  = "todo gateway HTTP from the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = local.gateway_port
  to_port                      = local.gateway_port
  referenced_security_group_id = aws_security_group.lb.id
}

resource "aws_vpc_security_group_egress_rule" "service_to_cache_primary" {
  security_group_id            = aws_security_group.service.id
  description                  = "Valkey primary endpoint"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.cache.id
}

resource "aws_vpc_security_group_egress_rule" "service_to_cache_reader" {
  security_group_id            = aws_security_group.service.id
  description                  = "Valkey reader endpoint"
  ip_protocol                  = "tcp"
  from_port                    = 6380
  to_port                      = 6380
  referenced_security_group_id = aws_security_group.cache.id
}

resource "aws_vpc_security_group_egress_rule" "service_https" {
  security_group_id = aws_security_group.service.id
  description       = "HTTPS to ECR, CloudWatch Logs and an OTLP collector (VPC endpoints or NAT)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_security_group" "lb" {
  name        = "${var.name}-lb"
  description = "Internal load balancer of valkey-sessions: HTTPS from the client networks"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-lb" })
}

resource "aws_vpc_security_group_ingress_rule" "lb_https_from_clients" {
  for_each = toset(var.client_cidr_blocks)

  security_group_id = aws_security_group.lb.id
  description       = "gRPC over TLS from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "lb_gateway_from_clients" {
  for_each = var.enable_gateway ? toset(var.client_cidr_blocks) : toset([])

  security_group_id = aws_security_group.lb.id
  description       = "todo gateway over TLS from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 8443
  to_port           = 8443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "lb_to_service" {
  security_group_id            = aws_security_group.lb.id
  description                  = "gRPC to the service tasks"
  ip_protocol                  = "tcp"
  from_port                    = local.grpc_port
  to_port                      = local.grpc_port
  referenced_security_group_id = aws_security_group.service.id
}

resource "aws_vpc_security_group_egress_rule" "lb_to_gateway" {
  count = var.enable_gateway ? 1 : 0

  security_group_id            = aws_security_group.lb.id
  description                  = "HTTP to the todo gateway"
  ip_protocol                  = "tcp"
  from_port                    = local.gateway_port
  to_port                      = local.gateway_port
  referenced_security_group_id = aws_security_group.service.id
}
