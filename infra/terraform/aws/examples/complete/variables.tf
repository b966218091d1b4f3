variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Name prefix of every resource."
  type        = string
  default     = "valkey-sessions"
}

variable "vpc_id" {
  description = "Existing VPC to use; null creates one with private subnets and the VPC endpoints Fargate needs."
  type        = string
  default     = null
}

variable "private_subnet_ids" {
  description = "Private subnets of the existing VPC (required with vpc_id, ignored otherwise)."
  type        = list(string)
  default     = []
}

variable "vpc_cidr" {
  description = "CIDR of the VPC created when vpc_id is null."
  type        = string
  default     = "10.42.0.0/16"
}

variable "availability_zones" {
  description = "Zones of the created private subnets (two or more)."
  type        = list(string)
  default     = ["us-east-1a", "us-east-1b"]
}

variable "client_cidr_blocks" {
  description = "Networks allowed to call the gRPC endpoint; defaults to the VPC's own CIDR."
  type        = list(string)
  default     = null
}

variable "certificate_arn" {
  description = "ACM certificate for the load balancer's HTTPS listener (a private CA or a public certificate for an internal name)."
  type        = string
}

variable "container_image" {
  description = "valkey-sessions image in ECR, e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/valkey-sessions:0.1.0."
  type        = string
}

variable "init_container_image" {
  description = "Image with /bin/sh for the init container that writes the certificate and token file (a copy of busybox in your ECR: the created VPC has no route to public registries)."
  type        = string
}

variable "grpc_tls_secret_arn" {
  description = "Full ARN of the Secrets Manager secret {\"cert\": PEM, \"key\": PEM} the tasks serve to the load balancer (infra/terraform/aws/README.md)."
  type        = string
}

variable "grpc_auth_tokens_secret_arn" {
  description = "Full ARN of the Secrets Manager secret holding the bearer-token file ([[token]] identity/sha256): every session RPC needs a token."
  type        = string
}

variable "service_config_toml" {
  description = "The service's TOML configuration, e.g. [[auth.callers]] mapping token identities to tenants; null for none."
  type        = string
  default     = null
}

variable "valkey_major_engine_version" {
  description = "Major Valkey version of the serverless cache."
  type        = string
  default     = "8"
}

variable "enable_gateway" {
  description = "Also run the todo gateway demo on the load balancer's port 8443."
  type        = bool
  default     = false
}
