# An internal Application Load Balancer: ALB is the AWS balancer that speaks gRPC (HTTP/2 end to
# end, per-RPC balancing) and checks targets with a gRPC health check.
resource "aws_lb" "this" {
  name                       = var.name
  internal                   = true
  load_balancer_type         = "application"
  subnets                    = var.private_subnet_ids
  security_groups            = [aws_security_group.lb.id]
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  # Long-lived gRPC channels; idle ones are closed after this.
  idle_timeout = 300

  dynamic "access_logs" {
    for_each = var.access_logs_bucket == null ? [] : [var.access_logs_bucket]
    content {
      bucket  = access_logs.value
      prefix  = var.name
      enabled = true
    }
  }

  tags = local.tags
}

# HTTPS to the targets: the hop from the load balancer to the tasks is encrypted too. The tasks
# serve the certificate of grpc_tls_secret_arn; an ALB does not validate target certificates, so
# it may be self-signed (the clients' trust ends at the listener's ACM certificate).
resource "aws_lb_target_group" "grpc" {
  name             = "${var.name}-grpc"
  port             = local.grpc_port
  protocol         = "HTTPS"
  protocol_version = "GRPC"
  target_type      = "ip"
  vpc_id           = var.vpc_id
  # Shorter than the service's drain (grpc.shutdown_grace) so no RPC arrives after it.
  deregistration_delay = 15

  # grpc.health.v1: the ALB sends Health/Check for the server as a whole and treats grpc-status 0
  # as healthy. It cannot read the SERVING/NOT_SERVING body, so this is a liveness check.
  health_check {
    enabled             = true
    protocol            = "HTTPS"
    port                = "traffic-port"
    path                = "/grpc.health.v1.Health/Check"
    matcher             = "0"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = local.tags
}

resource "aws_lb_listener" "grpc" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.grpc.arn
  }

  tags = local.tags
}

resource "aws_lb_target_group" "gateway" {
  count = var.enable_gateway ? 1 : 0

  name                 = "${var.name}-gw"
  port                 = local.gateway_port
  protocol             = "HTTP"
  protocol_version     = "HTTP1"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 15

  health_check {
    enabled             = true
    protocol            = "HTTP"
    path                = "/healthz"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = local.tags
}

resource "aws_lb_listener" "gateway" {
  count = var.enable_gateway ? 1 : 0

  load_balancer_arn = aws_lb.this.arn
  port              = 8443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.gateway[0].arn
  }

  tags = local.tags
}
