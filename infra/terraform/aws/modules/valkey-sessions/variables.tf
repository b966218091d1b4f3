variable "name" {
  description = "Name prefix of every resource (letters, digits and hyphens)."
  type        = string
  default     = "valkey-sessions"

  validation {
    # Load balancer and target group names are limited to 32 characters and get suffixes.
    condition     = can(regex("^[a-z][a-z0-9-]{1,26}$", var.name))
    error_message = "name must be 2-27 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "vpc_id" {
  description = "VPC that holds the cache, the service and the load balancer."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets (at least two availability zones) for the cache, the tasks and the internal load balancer."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "give at least two private subnets in different availability zones."
  }
}

variable "client_cidr_blocks" {
  description = "Networks allowed to call the gRPC endpoint (the load balancer's HTTPS port), e.g. the VPC CIDR of the web tier."
  type        = list(string)
}

variable "certificate_arn" {
  description = "ACM certificate of the load balancer's HTTPS listener (ALB speaks gRPC over TLS only)."
  type        = string
}

variable "container_image" {
  description = "valkey-sessions image (built from infra/docker/Dockerfile), pinned by tag or digest."
  type        = string
}

variable "grpc_tls_secret_arn" {
  description = "Full ARN of the Secrets Manager secret with the certificate the tasks serve to the load balancer: JSON {\"cert\": \"<PEM chain>\", \"key\": \"<PEM key>\"}. The load balancer does not validate it, so a self-signed one will do; it encrypts the hop inside the VPC."
  type        = string

  validation {
    # The full ARN (with Secrets Manager's 6-character suffix): the execution role is granted
    # exactly this secret, and ECS appends :cert:: and :key:: to it.
    condition     = can(regex("^arn:[a-z-]+:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+-[A-Za-z0-9]{6}$", var.grpc_tls_secret_arn))
    error_message = "grpc_tls_secret_arn must be the full secret ARN, ending in the 6-character suffix."
  }
}

variable "grpc_auth_tokens_secret_arn" {
  description = "Full ARN of the Secrets Manager secret whose value is the service's bearer-token file (GRPC_AUTH_TOKENS_FILE: [[token]] tables of identity and sha256). Every session RPC must carry a token (auth.required): the cloud profile refuses to start with TLS alone (docs/security.md)."
  type        = string

  validation {
    condition     = var.grpc_auth_tokens_secret_arn != null && can(regex("^arn:[a-z-]+:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+-[A-Za-z0-9]{6}$", var.grpc_auth_tokens_secret_arn))
    error_message = "grpc_auth_tokens_secret_arn must be the full secret ARN, ending in the 6-character suffix: the cloud profile needs caller authentication as well as TLS."
  }
}

variable "service_config_toml" {
  description = "The service's TOML configuration file (VALKEY_SESSIONS_CONFIG), e.g. the [[auth.callers]] that give each token identity its tenant and methods (docs/configuration.md). Stored in the task definition: no secrets here. null: none."
  type        = string
  default     = null
}

variable "init_container_image" {
  description = "Image with /bin/sh of the init container that writes the certificate, the token file and the configuration file into the task's volume before the service starts. Pin it by digest; without internet access from the subnets, mirror it to ECR (ECR images get pull permissions for exactly their repository)."
  type        = string
  default     = "public.ecr.aws/docker/library/busybox:1.37"
}

variable "valkey_major_engine_version" {
  description = "Major Valkey version of the serverless cache."
  type        = string
  default     = "8"
}

variable "cache_max_data_storage_gb" {
  description = "cache_usage_limits: most data the serverless cache may hold, in GB (a cost ceiling)."
  type        = number
  default     = 10
}

variable "cache_max_ecpu_per_second" {
  description = "cache_usage_limits: most ElastiCache Processing Units per second (a cost ceiling)."
  type        = number
  default     = 50000
}

variable "snapshot_retention_limit" {
  description = "Daily snapshots to keep (0 disables them; sessions survive a restore only as fresh as the snapshot)."
  type        = number
  default     = 7
}

variable "daily_snapshot_time" {
  description = "UTC time (HH:MM) of the daily snapshot."
  type        = string
  default     = "04:00"
}

variable "kms_key_arn" {
  description = "Customer managed KMS key for the cache, the logs and the ECS cluster's data; null creates one."
  type        = string
  default     = null
}

variable "valkey_key_prefix" {
  description = "The service's valkey.key_prefix (VALKEY_SESSIONS_VALKEY__KEY_PREFIX). The cache user may touch only keys that start with it; tenant prefixes live under it."
  type        = string
  default     = "vs:"

  validation {
    # No ACL glob characters (* ? [ ] \\) and no hash-tag braces.
    condition     = can(regex("^[A-Za-z0-9._:-]{1,32}$", var.valkey_key_prefix))
    error_message = "valkey_key_prefix must be 1-32 letters, digits, '.', '_', ':' or '-'."
  }
}

variable "desired_count" {
  description = "Service tasks to run (spread across the subnets' zones)."
  type        = number
  default     = 2
}

variable "task_cpu" {
  description = "Fargate CPU units per task."
  type        = number
  default     = 512
}

variable "task_memory" {
  description = "Fargate memory per task, MiB."
  type        = number
  default     = 1024
}

variable "log_retention_days" {
  description = "CloudWatch Logs retention of the service's logs."
  type        = number
  default     = 365
}

variable "extra_environment" {
  description = "Further environment of the service container, e.g. VALKEY_SESSIONS_SESSIONS__DEFAULT_IDLE_TIMEOUT = \"1h\" (docs/configuration.md)."
  type        = map(string)
  default     = {}
}

variable "enable_gateway" {
  description = "Also run the todo gateway demo (HTTP 8080) as a container of the task, reachable on the load balancer's port 8443. It calls the service over the task's loopback with SESSION_SERVICE_URL=https://localhost:50051; give it SESSION_SERVICE_CA_FILE and SESSION_SERVICE_TOKEN_FILE (docs/security.md) through gateway_extra_environment-style wiring before enabling it with required tokens: the module does not mint a gateway token."
  type        = bool
  default     = false
}

variable "access_logs_bucket" {
  description = "Existing S3 bucket for the load balancer's access logs (null leaves them off)."
  type        = string
  default     = null
}

variable "deletion_protection" {
  description = "Protect the load balancer from deletion (turn off before terraform destroy)."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
