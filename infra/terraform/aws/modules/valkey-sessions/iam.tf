# Two roles: ECS uses the execution role to pull the image and ship logs; the task role is what
# the containers themselves may do: valkey-sessions signs its ElastiCache IAM token with it, and
# may connect to exactly this cache as exactly its cache user, nothing else.

locals {
  # Image pulls need ECR permissions only when the image lives in ECR.
  ecr_repository = try(regex("^(\\d+)\\.dkr\\.ecr\\.([a-z0-9-]+)\\.amazonaws\\.com/([^:@]+)", var.container_image), null)
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
  description        = "ECS pulls the valkey-sessions image and writes its logs"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "WriteOwnLogStreams"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.service.arn}:log-stream:*"]
  }

  dynamic "statement" {
    for_each = local.ecr_repository == null ? [] : [local.ecr_repository]
    content {
      sid = "PullTheImage"
      actions = [
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
      ]
      resources = ["arn:${local.partition}:ecr:${statement.value[1]}:${statement.value[0]}:repository/${statement.value[2]}"]
    }
  }

  dynamic "statement" {
    for_each = local.ecr_repository == null ? [] : [1]
    content {
      # GetAuthorizationToken has no resource-level permissions.
      sid       = "EcrLogin"
      actions   = ["ecr:GetAuthorizationToken"]
      resources = ["*"]
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "pull-image-and-write-logs"
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
