# Two roles: ECS uses the execution role to pull the images, read the secrets that the init
# container turns into files (ecs.tf) and ship logs. The task role is what the containers
# themselves may do: valkey-sessions signs its ElastiCache IAM token with it, and may connect to
# exactly this cache as exactly its cache user, nothing else.

locals {
  # Image pulls need ECR permissions only for images that live in ECR (the service's, the init
  # container's): [account, region, repository] of each.
  ecr_image_pattern = "^(\\d+)\\.dkr\\.ecr\\.([a-z0-9-]+)\\.amazonaws\\.com/([^:@]+)"
  ecr_repositories = [
    for image in [var.container_image, var.init_container_image] :
    regex(local.ecr_image_pattern, image) if can(regex(local.ecr_image_pattern, image))
  ]
  ecr_repository_arns = distinct([
    for r in local.ecr_repositories : "arn:${local.partition}:ecr:${r[1]}:${r[0]}:repository/${r[2]}"
  ])

  # The secrets ECS reads for the init container, by their full ARNs. A secret encrypted with a
  # customer managed key also needs kms:Decrypt for the execution role in that key's policy.
  service_secret_arns = compact([var.grpc_tls_secret_arn, var.grpc_auth_tokens_secret_arn])
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    # Confused-deputy guard: only ECS on behalf of this account.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:*"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  description        = "ECS pulls the valkey-sessions images, reads its secrets and writes its logs"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "WriteOwnLogStreams"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.service.arn}:log-stream:*"]
  }

  # The certificate and the token file, which ECS hands to the init container.
  statement {
    sid       = "ReadTheServiceSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = local.service_secret_arns
  }

  dynamic "statement" {
    for_each = length(local.ecr_repository_arns) == 0 ? [] : [1]
    content {
      sid = "PullTheImages"
      actions = [
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
      ]
      resources = local.ecr_repository_arns
    }
  }

  dynamic "statement" {
    for_each = length(local.ecr_repository_arns) == 0 ? [] : [1]
    content {
      # GetAuthorizationToken has no resource-level permissions.
      sid       = "EcrLogin"
      actions   = ["ecr:GetAuthorizationToken"]
      resources = ["*"]
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "pull-images-read-secrets-write-logs"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

resource "aws_iam_role" "task" {
  name               = "${var.name}-task"
  description        = "valkey-sessions containers: connect to their cache as their cache user, nothing else"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

# ElastiCache IAM authentication: the token the service signs is accepted only if its signer may
# elasticache:Connect to both the cache and the user it names. No wildcard: another cache or
# another user of this one cannot be reached with this role.
data "aws_iam_policy_document" "task" {
  statement {
    sid       = "ConnectToTheCacheAsTheServiceUser"
    actions   = ["elasticache:Connect"]
    resources = [aws_elasticache_serverless_cache.this.arn, aws_elasticache_user.service.arn]
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "connect-to-the-cache"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}
