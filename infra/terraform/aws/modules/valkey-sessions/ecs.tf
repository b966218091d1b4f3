resource "aws_cloudwatch_log_group" "service" {
  name              = "/${var.name}/service"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = local.tags
}

locals {
  log_configuration = {
    logDriver = "awslogs"
    options = {
      awslogs-group         = aws_cloudwatch_log_group.service.name
      awslogs-region        = local.region
      awslogs-stream-prefix = "ecs"
    }
  }

  service_defaults = {
    GRPC_LISTEN    = "0.0.0.0:${local.grpc_port}"
    METRICS_LISTEN = "0.0.0.0:${local.metrics_port}"
    LOG_FORMAT     = "json"
    RUST_LOG       = "info"
  }

  # What the module's security rests on; merged last, so extra_environment cannot override it.
  # ElastiCache IAM authentication: the service signs a token (SigV4, 15 minutes, refreshed) with
  # the task role for this cache and its user; ResourceType=ServerlessCache for a serverless cache.
  service_security_environment = {
    VALKEY_SESSIONS_PROFILE                 = "cloud"
    SESSION_HOST                            = local.cache_endpoint
    VALKEY_SESSIONS_VALKEY__KEY_PREFIX      = var.valkey_key_prefix
    VALKEY_SESSIONS_VALKEY__AUTH            = "iam"
    VALKEY_USERNAME                         = aws_elasticache_user.service.user_name
    VALKEY_SESSIONS_VALKEY__IAM__CACHE_NAME = aws_elasticache_serverless_cache.this.name
    VALKEY_SESSIONS_VALKEY__IAM__REGION     = local.region
    VALKEY_SESSIONS_VALKEY__IAM__SERVERLESS = "true"
  }

  service_environment = merge(local.service_defaults, var.extra_environment, local.service_security_environment)

  service_container = {
    name                   = "valkey-sessions"
    image                  = var.container_image
    essential              = true
    readonlyRootFilesystem = true
    user                   = "65532:65532"
    # The service drains for grpc.shutdown_grace (10s) after SIGTERM; give it that and a margin.
    stopTimeout  = 20
    portMappings = [{ containerPort = local.grpc_port, protocol = "tcp", appProtocol = "grpc", name = "grpc" }]
    environment  = [for k, v in local.service_environment : { name = k, value = v }]
    # No container healthCheck: it would replace every task while the cache is down, which cures
    # nothing. The load balancer's gRPC check (process answers) is the liveness signal; health
    # NOT_SERVING still shows in grpc.health.v1, the logs and the metrics.
    logConfiguration = local.log_configuration
  }

  gateway_container = {
    name                   = "todo-gateway"
    image                  = var.container_image
    essential              = false
    readonlyRootFilesystem = true
    user                   = "65532:65532"
    entryPoint             = ["/usr/local/bin/todo-gateway"]
    portMappings           = [{ containerPort = local.gateway_port, protocol = "tcp", name = "http" }]
    environment = [
      { name = "SESSION_SERVICE_URL", value = "http://127.0.0.1:${local.grpc_port}" },
      { name = "GATEWAY_LISTEN", value = "0.0.0.0:${local.gateway_port}" },
      # Browsers reach it through the HTTPS listener only.
      { name = "GATEWAY_COOKIE_SECURE", value = "true" },
      { name = "LOG_FORMAT", value = "json" },
    ]
    dependsOn        = [{ containerName = "valkey-sessions", condition = "START" }]
    logConfiguration = local.log_configuration
  }
}

resource "aws_ecs_task_definition" "this" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode(
    var.enable_gateway ? [local.service_container, local.gateway_container] : [local.service_container]
  )

  tags = local.tags
}

resource "aws_ecs_service" "this" {
  name             = var.name
  cluster          = aws_ecs_cluster.this.id
  task_definition  = aws_ecs_task_definition.this.arn
  desired_count    = var.desired_count
  launch_type      = "FARGATE"
  platform_version = "LATEST"

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = 30
  enable_ecs_managed_tags            = true
  propagate_tags                     = "SERVICE"

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.service.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.grpc.arn
    container_name   = "valkey-sessions"
    container_port   = local.grpc_port
  }

  dynamic "load_balancer" {
    for_each = var.enable_gateway ? [1] : []
    content {
      target_group_arn = aws_lb_target_group.gateway[0].arn
      container_name   = "todo-gateway"
      container_port   = local.gateway_port
    }
  }

  depends_on = [aws_lb_listener.grpc]
  tags       = local.tags
}
