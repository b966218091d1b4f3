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
    GRPC_LISTEN                      = "0.0.0.0:${local.grpc_port}"
    METRICS_LISTEN                   = "0.0.0.0:${local.metrics_port}"
    LOG_FORMAT                       = "json"
    RUST_LOG                         = "info"
    VALKEY_SESSIONS_GRPC__REFLECTION = "false"
  }

  # The files the service reads, written by the init container into the task's volume (below):
  # the same names as the Kubernetes Secret and ConfigMap mounts (infra/k8s/deployment.yaml).
  files_dir       = "/etc/valkey-sessions"
  tls_cert_file   = "${local.files_dir}/tls/tls.crt"
  tls_key_file    = "${local.files_dir}/tls/tls.key"
  auth_file       = "${local.files_dir}/auth/tokens.toml"
  config_file     = "${local.files_dir}/config/config.toml"
  with_tokens     = var.grpc_auth_tokens_secret_arn != null
  with_config     = var.service_config_toml != null
  files_volume    = "service-files"
  files_init_name = "files-init"

  # With a token file, every session RPC needs a bearer token whose SHA-256 is in it (health stays
  # open for the load balancer's check).
  service_auth_environment = {
    GRPC_AUTH_TOKENS_FILE          = local.auth_file
    VALKEY_SESSIONS_AUTH__REQUIRED = "true"
  }
  service_config_environment = {
    VALKEY_SESSIONS_CONFIG = local.config_file
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
    # The gRPC hop: the load balancer's target group speaks HTTPS to this certificate.
    GRPC_TLS_CERT_FILE = local.tls_cert_file
    GRPC_TLS_KEY_FILE  = local.tls_key_file
  }

  service_environment = merge(
    local.service_defaults,
    var.extra_environment,
    { for k, v in local.service_config_environment : k => v if local.with_config },
    { for k, v in local.service_auth_environment : k => v if local.with_tokens },
    local.service_security_environment,
  )

  # ECS injects secrets only as environment variables; this container turns them into files on
  # the task's volume, owned by the service's user (65532) and readable by it alone, then exits.
  # The service starts only after it succeeded, and mounts the volume read-only.
  files_init_script = <<-EOT
    umask 077
    cd ${local.files_dir}
    mkdir -p tls auth config
    printf '%s\n' "$GRPC_TLS_CERT_PEM" > tls/tls.crt
    printf '%s\n' "$GRPC_TLS_KEY_PEM" > tls/tls.key
    files="tls/tls.crt tls/tls.key"
    if [ -n "$${GRPC_AUTH_TOKENS_TOML:-}" ]; then
      printf '%s\n' "$GRPC_AUTH_TOKENS_TOML" > auth/tokens.toml
      files="$files auth/tokens.toml"
    fi
    if [ -n "$${SERVICE_CONFIG_TOML:-}" ]; then
      printf '%s\n' "$SERVICE_CONFIG_TOML" > config/config.toml
      files="$files config/config.toml"
    fi
    # Files first, their directories last: root keeps CHOWN only, no DAC_OVERRIDE.
    chown 65532:65532 $files tls auth config
  EOT

  files_init_container = {
    name                   = local.files_init_name
    image                  = var.init_container_image
    essential              = false
    readonlyRootFilesystem = true
    # root, to hand the files to the service's user; every capability but CHOWN is dropped.
    user       = "0:0"
    entryPoint = ["/bin/sh", "-euc"]
    command    = [local.files_init_script]
    secrets = concat(
      [
        { name = "GRPC_TLS_CERT_PEM", valueFrom = "${var.grpc_tls_secret_arn}:cert::" },
        { name = "GRPC_TLS_KEY_PEM", valueFrom = "${var.grpc_tls_secret_arn}:key::" },
      ],
      local.with_tokens ? [{ name = "GRPC_AUTH_TOKENS_TOML", valueFrom = var.grpc_auth_tokens_secret_arn }] : [],
    )
    environment = local.with_config ? [{ name = "SERVICE_CONFIG_TOML", value = var.service_config_toml }] : []
    mountPoints = [{ sourceVolume = local.files_volume, containerPath = local.files_dir, readOnly = false }]
    linuxParameters = {
      capabilities = {
        drop = [
          "AUDIT_WRITE", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
          "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
        ]
      }
    }
    logConfiguration = local.log_configuration
  }

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
    mountPoints  = [{ sourceVolume = local.files_volume, containerPath = local.files_dir, readOnly = true }]
    dependsOn    = [{ containerName = local.files_init_name, condition = "SUCCESS" }]
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
    # The service serves TLS on loopback too: the gateway trusts the served certificate (a
    # self-signed certificate is its own anchor) and, when tokens are required, needs its own
    # token file (not minted by this module; see the variable's description).
    environment = [
      { name = "SESSION_SERVICE_URL", value = "https://localhost:${local.grpc_port}" },
      { name = "SESSION_SERVICE_CA_FILE", value = "${local.files_dir}/tls/tls.crt" },
      { name = "GATEWAY_LISTEN", value = "0.0.0.0:${local.gateway_port}" },
      # Browsers reach it through the HTTPS listener only.
      { name = "GATEWAY_COOKIE_SECURE", value = "true" },
      { name = "LOG_FORMAT", value = "json" },
    ]
    mountPoints      = [{ sourceVolume = local.files_volume, containerPath = local.files_dir, readOnly = true }]
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

  container_definitions = jsonencode(concat(
    [local.files_init_container, local.service_container],
    var.enable_gateway ? [local.gateway_container] : [],
  ))

  # Task storage, gone with the task: the init container writes the service's files here.
  volume {
    name = local.files_volume
  }

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
