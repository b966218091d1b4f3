# ElastiCache Serverless for Valkey: cluster mode and TLS are always on; encryption at rest uses
# the module's KMS key. Two locks: the cache security group (security_groups.tf) decides who may
# open a connection, the user group below decides who may use one: only the service's IAM user,
# and only on the service's keys. The default user is switched off, so a connection that has not
# authenticated can run nothing.
resource "aws_elasticache_serverless_cache" "this" {
  engine               = "valkey"
  name                 = var.name
  description          = "valkey-sessions: HTTP sessions"
  major_engine_version = var.valkey_major_engine_version
  kms_key_id           = local.kms_key_arn
  security_group_ids   = [aws_security_group.cache.id]
  user_group_id        = aws_elasticache_user_group.this.user_group_id
  subnet_ids           = var.private_subnet_ids

  snapshot_retention_limit = var.snapshot_retention_limit
  daily_snapshot_time      = var.daily_snapshot_time

  cache_usage_limits {
    data_storage {
      maximum = var.cache_max_data_storage_gb
      unit    = "GB"
    }
    ecpu_per_second {
      maximum = var.cache_max_ecpu_per_second
    }
  }

  tags = local.tags
}

locals {
  # With IAM authentication the user's id and name must be identical (AWS requirement); the
  # service sends it as VALKEY_USERNAME and signs its token for it.
  cache_user_id = "${var.name}-service"

  # Exactly what the service sends (fred 10 in cluster mode, RESP2, and the three Lua scripts):
  #   data:        GET, SET (Create, Rotate), DEL; inside the scripts GET, SET, DEL, GETRANGE,
  #                SETRANGE, PEXPIREAT (Valkey checks script calls against the caller's ACL too)
  #   scripts:     EVALSHA, and SCRIPT LOAD at start-up and after NOSCRIPT; no EVAL (nothing sends it)
  #   index:       inside the scripts, a principal's sorted set of sessions: EXISTS, ZADD, ZREM,
  #                ZCARD, ZRANGE, ZPOPMIN, ZSCORE, PEXPIRETIME; WAIT after a
  #                revocation, so the replica has it before the call returns
  #   connection:  AUTH (every connection, and again with each refreshed IAM token), HELLO (RESP3
  #                clients), PING (health), READONLY (replica connections on 6380)
  #   topology:    CLUSTER SLOTS (routing), CLUSTER INFO (fred's cluster_state check on connect),
  #                ASKING (following an ASK redirection while a slot migrates)
  #   near cache:  CLIENT TRACKING (BCAST invalidations on the prefix)
  #   setup:       CLIENT ID and INFO (fred reads its connection id and the server version on
  #                connect; without them it logs a warning per connection)
  # Keys: only the service's prefix (tenant prefixes live under it). No other key, no pub/sub
  # channel, no admin, dangerous or keyspace-wide command (KEYS, SCAN, FLUSHALL, CONFIG, ...).
  cache_user_commands = [
    "+get", "+set", "+del", "+getrange", "+setrange", "+pexpireat",
    "+exists", "+zadd", "+zrem", "+zcard", "+zrange", "+zpopmin", "+zscore", "+pexpiretime",
    "+evalsha", "+script|load", "+wait",
    "+auth", "+hello", "+ping", "+readonly",
    "+cluster|slots", "+cluster|info", "+asking",
    "+client|id", "+info", "+client|tracking",
  ]
  cache_access_string = "on ~${var.valkey_key_prefix}* -@all ${join(" ", local.cache_user_commands)}"

  # Users and group use engine "redis": a group of engine "valkey" admits only users that have a
  # password or IAM, and the switched-off default user below has neither. AWS accepts "redis"
  # groups on Valkey caches.
  cache_user_engine = "redis"
}

# The service's user: authenticates with a SigV4 token of the ECS task role (elasticache:Connect,
# iam.tf), never with a password.
resource "aws_elasticache_user" "service" {
  user_id       = local.cache_user_id
  user_name     = local.cache_user_id
  engine        = local.cache_user_engine
  access_string = local.cache_access_string

  authentication_mode {
    type = "iam"
  }

  tags = local.tags
}

# Every user group must contain a user named "default": the one every connection is before AUTH.
# This one is off and may run nothing, so an unauthenticated connection gets NOAUTH for everything.
resource "aws_elasticache_user" "default" {
  user_id       = "${var.name}-default-off"
  user_name     = "default"
  engine        = local.cache_user_engine
  access_string = "off -@all"

  authentication_mode {
    type = "no-password-required"
  }

  tags = local.tags
}

resource "aws_elasticache_user_group" "this" {
  user_group_id = var.name
  engine        = local.cache_user_engine
  user_ids      = [aws_elasticache_user.default.user_id, aws_elasticache_user.service.user_id]
  tags          = local.tags
}
