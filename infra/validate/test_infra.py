"""Offline checks of infra/ that need no provider, image or cluster.

Run by infra/validate/run.sh inside its virtualenv: python -m unittest -v test_infra
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import tomllib
import unittest

import hcl2
import jsonschema
import yaml

INFRA = pathlib.Path(__file__).resolve().parent.parent
TERRAFORM = INFRA / "terraform" / "aws"
MODULE = TERRAFORM / "modules" / "valkey-sessions"
CACHE_SG = "${aws_security_group.cache.id}"
SERVICE_SG = "${aws_security_group.service.id}"
CACHE_PORTS = {6379, 6380}


def rules_job():
    """The one scrape job every selector of infra/observability/rules.yaml names."""
    jobs = set(re.findall(r'job="([^"]+)"', (INFRA / "observability" / "rules.yaml").read_text()))
    assert len(jobs) == 1, jobs
    return jobs.pop()


def unwrap(value):
    """python-hcl2 wraps attribute values in one-element lists; blocks stay lists."""
    if isinstance(value, list) and len(value) == 1 and not isinstance(value[0], dict):
        return value[0]
    return value


def resources(documents):
    """{(type, name): body} of every resource in the parsed documents."""
    found = {}
    for doc in documents:
        for entry in doc.get("resource", []):
            for rtype, named in entry.items():
                for name, body in named.items():
                    found[(rtype, name)] = {k: unwrap(v) for k, v in body.items()}
    return found


def data_sources(documents):
    """{(type, name): body} of every data source in the parsed documents."""
    found = {}
    for doc in documents:
        for entry in doc.get("data", []):
            for dtype, named in entry.items():
                for name, body in named.items():
                    found[(dtype, name)] = {k: unwrap(v) for k, v in body.items()}
    return found


def locals_of(documents):
    """Every local value of the parsed documents, by name."""
    found = {}
    for doc in documents:
        for entry in doc.get("locals", []):
            # Each value arrives as a one-element list, whatever its type (a map too).
            found.update({k: v[0] for k, v in entry.items() if not k.startswith("__")})
    return found


def parse_dir(directory):
    return [hcl2.loads(path.read_text()) for path in sorted(directory.glob("*.tf"))]


def module_text():
    return "\n".join(path.read_text() for path in sorted(MODULE.glob("*.tf")))


def block(body, name):
    """The single nested block `name` of a parsed body, its attributes unwrapped."""
    blocks = body.get(name) or [{}]
    return {k: unwrap(v) for k, v in blocks[0].items()}


def ref(expression):
    return "${" + expression + "}"


def squeeze(expression):
    """An expression without whitespace: python-hcl2 re-spaces what it does not evaluate."""
    return "".join(str(expression).split())


SERVICE_USER = "aws_elasticache_user.service"
DEFAULT_USER = "aws_elasticache_user.default"
# Commands the cache user must never hold: keyspace-wide, admin, or arbitrary code without a key
# declaration. The exact list it holds is tried on a real Valkey in test_cache_acl.py.
FORBIDDEN_COMMANDS = {"keys", "scan", "flushall", "flushdb", "config", "eval", "script", "debug",
                      "acl", "client", "cluster", "monitor", "shutdown", "save", "bgsave", "module",
                      "function", "fcall", "migrate", "restore", "sync", "psync", "replicaof",
                      "slaveof", "subscribe", "psubscribe", "publish", "randomkey", "rename"}


def key_prefix_default():
    for doc in parse_dir(MODULE):
        for entry in doc.get("variable", []):
            if "valkey_key_prefix" in entry:
                return unwrap(entry["valkey_key_prefix"]["default"])
    raise KeyError("variable valkey_key_prefix")


def service_access_string():
    """The module's access string with var.valkey_key_prefix at its default."""
    found = locals_of(parse_dir(MODULE))
    template = found["cache_access_string"]
    # python-hcl2 keeps a template with nested interpolations as ${"..."}.
    if template.startswith('${"') and template.endswith('"}'):
        template = template[3:-2]
    commands = found["cache_user_commands"]
    # The template is written as a literal around the command list; anything else (a second
    # interpolation, a different layout) must be looked at by a human and this function updated.
    expected = '~${var.valkey_key_prefix}* -@all ${join(" ", local.cache_user_commands)}'
    assert template.startswith("on ") and template.endswith(expected), template
    return template.replace("${var.valkey_key_prefix}", key_prefix_default()).replace(
        '${join(" ", local.cache_user_commands)}', " ".join(commands))


def task_role_violations(found_data, found):
    """Everything that lets the task role do more than elasticache:Connect to this cache as the
    service's user."""
    problems = []
    role = found.get(("aws_iam_role", "task"), {})
    for inline in ("inline_policy", "managed_policy_arns"):
        if inline in role:
            problems.append(f"aws_iam_role.task has {inline}")
    task_role = ref("aws_iam_role.task.id")
    task_role_name = ref("aws_iam_role.task.name")
    policies = []
    for (rtype, name), body in found.items():
        if rtype in ("aws_iam_role_policy", "aws_iam_role_policy_attachment", "aws_iam_policy_attachment") \
                and body.get("role") in (task_role, task_role_name):
            policies.append((rtype, name, body))
        if rtype == "aws_iam_policy_attachment" and task_role_name in (body.get("roles") or []):
            policies.append((rtype, name, body))
    if [(t, n) for t, n, _ in policies] != [("aws_iam_role_policy", "task")]:
        problems.append(f"task role policies {[(t, n) for t, n, _ in policies]}, want only aws_iam_role_policy.task")
        return problems
    if policies[0][2].get("policy") != ref("data.aws_iam_policy_document.task.json"):
        problems.append("aws_iam_role_policy.task is not data.aws_iam_policy_document.task")
        return problems
    document = found_data.get(("aws_iam_policy_document", "task"), {})
    for key in ("source_policy_documents", "override_policy_documents"):
        if key in document:
            problems.append(f"task policy document merges {key}")
    statements = document.get("statement", [])
    if len(statements) != 1:
        problems.append(f"{len(statements)} statements in the task policy, want 1")
    for statement in statements:
        statement = {k: unwrap(v) for k, v in statement.items()}
        if statement.get("effect", "Allow") != "Allow":
            continue
        for key in ("not_actions", "not_resources", "condition"):
            if key in statement:
                problems.append(f"task policy statement uses {key}")
        if statement.get("actions") != ["elasticache:Connect"]:
            problems.append(f"task policy actions {statement.get('actions')!r}, want ['elasticache:Connect']")
        resources = statement.get("resources")
        if resources != [ref("aws_elasticache_serverless_cache.this.arn"), ref(f"{SERVICE_USER}.arn")]:
            problems.append(f"task policy resources {resources!r}, want the cache and the service user ARNs")
        if any("*" in r for r in resources or []):
            problems.append("task policy resources contain a wildcard")
    return problems


def cache_ingress_violations(found):
    """Everything that lets traffic reach the cache other than TCP 6379/6380 from the service."""
    problems = []
    cache = found.get(("aws_security_group", "cache"))
    if cache is None:
        return ["no aws_security_group.cache"]
    for inline in ("ingress", "egress"):
        if inline in cache:
            problems.append(f"aws_security_group.cache has inline {inline} rules")
    ports = set()
    for (rtype, name), body in found.items():
        if body.get("security_group_id") != CACHE_SG:
            continue
        where = f"{rtype}.{name}"
        if rtype == "aws_security_group_rule":
            problems.append(f"{where}: use aws_vpc_security_group_*_rule for the cache")
            continue
        if rtype != "aws_vpc_security_group_ingress_rule":
            continue
        if "count" in body or "for_each" in body:
            problems.append(f"{where}: conditional or repeated cache rule")
        if body.get("ip_protocol") != "tcp":
            problems.append(f"{where}: protocol {body.get('ip_protocol')!r}, want tcp")
        low, high = body.get("from_port"), body.get("to_port")
        if low != high or low not in CACHE_PORTS:
            problems.append(f"{where}: ports {low}-{high}, want exactly 6379 or 6380")
        else:
            ports.add(low)
        if body.get("referenced_security_group_id") != SERVICE_SG:
            problems.append(f"{where}: source {body.get('referenced_security_group_id')!r}, want the service group")
        for open_source in ("cidr_ipv4", "cidr_ipv6", "prefix_list_id"):
            if open_source in body:
                problems.append(f"{where}: {open_source} opens the cache beyond the service")
    if ports != CACHE_PORTS:
        problems.append(f"cache ingress ports {sorted(ports)}, want [6379, 6380]")
    cache_sgs = found.get(("aws_elasticache_serverless_cache", "this"), {}).get("security_group_ids")
    if cache_sgs != [CACHE_SG]:
        problems.append(f"the cache's security_group_ids are {cache_sgs!r}, want only the cache group")
    return problems


class Terraform(unittest.TestCase):
    def test_every_tf_file_parses(self):
        files = sorted(TERRAFORM.rglob("*.tf"))
        self.assertGreaterEqual(len(files), 10)
        for path in files:
            with self.subTest(path=str(path.relative_to(INFRA))):
                hcl2.loads(path.read_text())

    def test_cache_accepts_only_6379_and_6380_from_the_service(self):
        self.assertEqual(cache_ingress_violations(resources(parse_dir(MODULE))), [])

    def test_the_check_catches_what_cost_the_team_a_day(self):
        base = "\n".join(path.read_text() for path in sorted(MODULE.glob("*.tf")))
        wide_open = base + """
resource "aws_vpc_security_group_ingress_rule" "cache_from_anywhere" {
  security_group_id = aws_security_group.cache.id
  ip_protocol       = "tcp"
  from_port         = 6379
  to_port           = 6379
  cidr_ipv4         = "0.0.0.0/0"
}
"""
        self.assertTrue(
            any("cidr_ipv4" in p for p in cache_ingress_violations(resources([hcl2.loads(wide_open)]))))
        reader_forgotten = base.replace("from_port                    = 6380", "from_port                    = 6379", 1)
        reader_forgotten = reader_forgotten.replace("to_port                      = 6380", "to_port                      = 6379", 1)
        self.assertIn(
            "cache ingress ports [6379], want [6379, 6380]",
            cache_ingress_violations(resources([hcl2.loads(reader_forgotten)])))

    def test_service_may_reach_both_cache_ports(self):
        found = resources(parse_dir(MODULE))
        ports = {
            body["from_port"]
            for (rtype, _), body in found.items()
            if rtype == "aws_vpc_security_group_egress_rule"
            and body.get("security_group_id") == SERVICE_SG
            and body.get("referenced_security_group_id") == CACHE_SG
        }
        self.assertEqual(ports, CACHE_PORTS)

    def test_serverless_valkey_with_limits_snapshots_and_kms(self):
        cache = resources(parse_dir(MODULE))[("aws_elasticache_serverless_cache", "this")]
        self.assertEqual(cache["engine"], "valkey")
        self.assertEqual(cache["major_engine_version"], "${var.valkey_major_engine_version}")
        self.assertIn("cache_usage_limits", cache)
        self.assertEqual(cache["snapshot_retention_limit"], "${var.snapshot_retention_limit}")
        self.assertEqual(cache["kms_key_id"], "${local.kms_key_arn}")

    def test_load_balancer_checks_grpc_health(self):
        found = resources(parse_dir(MODULE))
        group = found[("aws_lb_target_group", "grpc")]
        self.assertEqual(group["protocol_version"], "GRPC")
        check = {k: unwrap(v) for k, v in group["health_check"][0].items()}
        self.assertEqual(check["path"], "/grpc.health.v1.Health/Check")
        self.assertEqual(check["matcher"], "0")
        self.assertEqual(found[("aws_lb", "this")]["internal"], True)
        self.assertEqual(found[("aws_lb_listener", "grpc")]["protocol"], "HTTPS")

    def test_task_runs_the_cloud_profile_against_the_cache_endpoint(self):
        found = locals_of(parse_dir(MODULE))
        env = found["service_security_environment"]
        self.assertEqual(env["VALKEY_SESSIONS_PROFILE"], "cloud")
        self.assertEqual(env["SESSION_HOST"], ref("local.cache_endpoint"))
        self.assertEqual(found["log_configuration"]["logDriver"], "awslogs")

    def test_the_example_passes_every_required_variable_and_no_unknown_one(self):
        # What `terraform validate` would say about the module call, without the provider.
        declared = {}
        for doc in parse_dir(MODULE):
            for entry in doc.get("variable", []):
                declared.update(entry)
        required = {name for name, body in declared.items() if "default" not in body}
        call = {}
        for doc in parse_dir(TERRAFORM / "examples" / "complete"):
            for entry in doc.get("module", []):
                call.update(entry.get("valkey_sessions", {}))
        passed = {k for k in call if not k.startswith("__") and k not in ("source", "depends_on")}
        self.assertEqual(required - passed, set())
        self.assertEqual(passed - set(declared), set())

    def test_the_example_configuration_is_toml_with_callers(self):
        tfvars = hcl2.loads((TERRAFORM / "examples" / "complete" / "terraform.tfvars.example").read_text())
        config = tomllib.loads(unwrap(tfvars["service_config_toml"]))
        for caller in config["auth"]["callers"]:
            self.assertEqual(set(caller), {"identity", "tenant", "methods"})
        self.assertRegex(unwrap(tfvars["grpc_tls_secret_arn"]), r":secret:.+-[A-Za-z0-9]{6}$")

    def test_outputs(self):
        outputs = {}
        for doc in parse_dir(TERRAFORM / "examples" / "complete"):
            for entry in doc.get("output", []):
                outputs.update(entry)
        self.assertTrue({"grpc_endpoint", "cache_endpoint", "cache_reader_endpoint"} <= set(outputs))


class CacheAccess(unittest.TestCase):
    """Who may use a connection to the cache, and as whom."""

    def setUp(self):
        documents = parse_dir(MODULE)
        self.found = resources(documents)
        self.data = data_sources(documents)
        self.locals = locals_of(documents)
        self.service = self.found[("aws_elasticache_user", "service")]
        self.default = self.found[("aws_elasticache_user", "default")]
        self.group = self.found[("aws_elasticache_user_group", "this")]

    def test_the_cache_has_the_user_group(self):
        cache = self.found[("aws_elasticache_serverless_cache", "this")]
        self.assertEqual(cache["user_group_id"], ref("aws_elasticache_user_group.this.user_group_id"))

    def test_the_group_holds_the_iam_user_and_the_default_user_only(self):
        self.assertEqual(sorted(self.group["user_ids"]),
                         sorted([ref(f"{DEFAULT_USER}.user_id"), ref(f"{SERVICE_USER}.user_id")]))
        users = sorted(name for rtype, name in self.found if rtype == "aws_elasticache_user")
        self.assertEqual(users, ["default", "service"])
        self.assertFalse([k for k in self.found if k[0] == "aws_elasticache_user_group_association"])
        engines = {self.group["engine"], self.service["engine"], self.default["engine"]}
        self.assertEqual(engines, {ref("local.cache_user_engine")})
        self.assertIn(self.locals["cache_user_engine"], ("redis", "valkey"))

    def test_the_default_user_cannot_connect(self):
        self.assertEqual(self.default["user_name"], "default")
        rules = self.default["access_string"].split()
        self.assertIn("off", rules)
        self.assertNotIn("on", rules)
        self.assertEqual([r for r in rules if r[0] in "+~&%" or r in ("allkeys", "allcommands", "allchannels")], [])
        for password in ("passwords", "passwords_wo", "no_password_required"):
            self.assertNotIn(password, self.default)
        self.assertEqual(block(self.default, "authentication_mode"), {"type": "no-password-required"})

    def test_the_service_user_authenticates_with_iam_only(self):
        self.assertEqual(block(self.service, "authentication_mode"), {"type": "iam"})
        for password in ("passwords", "passwords_wo", "no_password_required"):
            self.assertNotIn(password, self.service)
        # AWS: with IAM authentication, user_id and user_name must be identical.
        self.assertEqual(self.service["user_id"], self.service["user_name"])
        self.assertEqual(self.service["user_id"], ref("local.cache_user_id"))

    def test_the_service_user_reaches_only_its_keys_with_named_commands(self):
        self.assertEqual(self.service["access_string"], ref("local.cache_access_string"))
        template = self.locals["cache_access_string"]
        self.assertTrue(template.startswith('${"on ~${var.valkey_key_prefix}* -@all ${join(" ", '), template)
        commands = self.locals["cache_user_commands"]
        self.assertTrue(all(c.startswith("+") and "@" not in c and "*" not in c for c in commands), commands)
        # Of the forbidden commands, only these read-only or self-scoped subcommands are granted.
        for command in commands:
            if command[1:].split("|")[0] in FORBIDDEN_COMMANDS:
                self.assertIn(command, ("+script|load", "+cluster|slots", "+cluster|info", "+client|id", "+client|tracking"))
        for grant in ("~*", "allkeys", "allcommands", "+@all", "&*"):
            self.assertNotIn(grant, template)

    def test_the_task_role_may_connect_to_exactly_this_cache_as_this_user(self):
        self.assertEqual(task_role_violations(self.data, self.found), [])

    def test_the_task_role_check_rejects_wider_policies(self):
        base = module_text()
        wildcard = base.replace(
            "resources = [aws_elasticache_serverless_cache.this.arn, aws_elasticache_user.service.arn]",
            'resources = ["arn:aws:elasticache:*:*:serverlesscache:*", aws_elasticache_user.service.arn]', 1)
        more_actions = base.replace('actions   = ["elasticache:Connect"]',
                                    'actions   = ["elasticache:Connect", "elasticache:ModifyUser"]', 1)
        attached = base + """
resource "aws_iam_role_policy_attachment" "task_admin" {
  role       = aws_iam_role.task.name
  policy_arn = "arn:aws:iam::aws:policy/AdministratorAccess"
}
"""
        for name, text in (("wildcard", wildcard), ("more actions", more_actions), ("attached", attached)):
            with self.subTest(name):
                self.assertNotEqual(text, base)
                documents = [hcl2.loads(text)]
                self.assertNotEqual(task_role_violations(data_sources(documents), resources(documents)), [])

    def test_the_task_definition_authenticates_with_iam_as_the_service_user(self):
        env = self.locals["service_security_environment"]
        self.assertEqual(env["VALKEY_SESSIONS_VALKEY__AUTH"], "iam")
        self.assertEqual(env["VALKEY_USERNAME"], ref(f"{SERVICE_USER}.user_name"))
        self.assertEqual(env["VALKEY_SESSIONS_VALKEY__IAM__CACHE_NAME"], ref("aws_elasticache_serverless_cache.this.name"))
        self.assertEqual(env["VALKEY_SESSIONS_VALKEY__IAM__REGION"], ref("local.region"))
        self.assertEqual(env["VALKEY_SESSIONS_VALKEY__IAM__SERVERLESS"], "true")
        self.assertEqual(env["VALKEY_SESSIONS_VALKEY__KEY_PREFIX"], ref("var.valkey_key_prefix"))
        # Merged last: extra_environment cannot switch any of it off.
        self.assertTrue(squeeze(self.locals["service_environment"]).endswith(
            ",local.service_security_environment)}"), self.locals["service_environment"])
        self.assertEqual(squeeze(self.locals["service_container"]["environment"]),
                         squeeze(ref("[for k, v in local.service_environment : {'name': '${k}', 'value': '${v}'}]")))
        self.assertEqual(self.found[("aws_ecs_task_definition", "this")]["task_role_arn"], ref("aws_iam_role.task.arn"))

    def test_outputs_name_the_user(self):
        outputs = {}
        for doc in parse_dir(MODULE):
            for entry in doc.get("output", []):
                outputs.update(entry)
        self.assertEqual(unwrap(outputs["cache_user_id"]["value"]), ref(f"{SERVICE_USER}.user_id"))


def render_heredoc(text, values):
    """A heredoc as Terraform renders it: the given ${...} replaced, $${ unescaped."""
    for expression, value in values.items():
        text = text.replace("${" + expression + "}", value)
    assert "${" not in text.replace("$${", ""), text
    return text.replace("$${", "${")


class GrpcHop(unittest.TestCase):
    """Clients -TLS-> load balancer -TLS-> tasks, callers with bearer tokens."""

    def setUp(self):
        documents = parse_dir(MODULE)
        self.found = resources(documents)
        self.data = data_sources(documents)
        self.locals = locals_of(documents)

    def test_the_load_balancer_speaks_tls_to_the_tasks(self):
        group = self.found[("aws_lb_target_group", "grpc")]
        self.assertEqual(group["protocol"], "HTTPS")
        self.assertEqual(group["protocol_version"], "GRPC")
        self.assertEqual(block(group, "health_check")["protocol"], "HTTPS")

    def test_the_service_serves_the_certificate_and_requires_tokens_when_given(self):
        env = self.locals["service_security_environment"]
        self.assertEqual(env["GRPC_TLS_CERT_FILE"], ref("local.tls_cert_file"))
        self.assertEqual(env["GRPC_TLS_KEY_FILE"], ref("local.tls_key_file"))
        auth = self.locals["service_auth_environment"]
        self.assertEqual(auth, {"GRPC_AUTH_TOKENS_FILE": ref("local.auth_file"), "VALKEY_SESSIONS_AUTH__REQUIRED": "true"})
        self.assertEqual(self.locals["with_tokens"], ref("var.grpc_auth_tokens_secret_arn != None"))
        merged = squeeze(self.locals["service_environment"])
        self.assertIn(squeeze("{for k, v in local.service_auth_environment : k => v if local.with_tokens}"), merged)
        self.assertEqual(self.locals["service_defaults"]["VALKEY_SESSIONS_GRPC__REFLECTION"], "false")
        for key in ("VALKEY_SESSIONS_GRPC__TRUSTED_NETWORK", "GRPC_TLS_CLIENT_CA_FILE"):
            self.assertNotIn(key, module_text())

    def test_the_init_container_writes_the_files_the_service_reads(self):
        files_dir = self.locals["files_dir"]
        for local, path in (("tls_cert_file", "tls/tls.crt"), ("tls_key_file", "tls/tls.key"),
                            ("auth_file", "auth/tokens.toml"), ("config_file", "config/config.toml")):
            self.assertEqual(self.locals[local], "${local.files_dir}/" + path)
            self.assertIn(f"> {path}\n", self.locals["files_init_script"])
        self.assertEqual(files_dir, "/etc/valkey-sessions")
        init, service = self.locals["files_init_container"], self.locals["service_container"]
        self.assertEqual(init["mountPoints"], [{"sourceVolume": ref("local.files_volume"),
                                               "containerPath": ref("local.files_dir"), "readOnly": False}])
        self.assertEqual(service["mountPoints"], [{"sourceVolume": ref("local.files_volume"),
                                                  "containerPath": ref("local.files_dir"), "readOnly": True}])
        self.assertEqual(service["dependsOn"], [{"containerName": ref("local.files_init_name"), "condition": "SUCCESS"}])
        self.assertEqual(init["name"], ref("local.files_init_name"))
        self.assertIs(init["essential"], False)
        self.assertIs(init["readonlyRootFilesystem"], True)
        self.assertNotIn("CHOWN", init["linuxParameters"]["capabilities"]["drop"])
        self.assertIn("DAC_OVERRIDE", init["linuxParameters"]["capabilities"]["drop"])
        secrets = squeeze(init["secrets"])
        for value_from in ("'${var.grpc_tls_secret_arn}:cert::'", "'${var.grpc_tls_secret_arn}:key::'",
                           "'${var.grpc_auth_tokens_secret_arn}'"):
            self.assertIn(value_from, secrets)
        task = self.found[("aws_ecs_task_definition", "this")]
        self.assertEqual(block(task, "volume"), {"name": ref("local.files_volume")})
        self.assertIn("concat(['${local.files_init_container}','${local.service_container}']",
                      squeeze(task["container_definitions"]))

    def test_the_execution_role_reads_exactly_these_secrets(self):
        statements = self.data[("aws_iam_policy_document", "execution")]["statement"]
        secrets = [{k: unwrap(v) for k, v in st.items()} for st in statements
                   if any(a.startswith("secretsmanager:") for a in unwrap(st["actions"]))]
        self.assertEqual(len(secrets), 1)
        self.assertEqual(secrets[0]["actions"], ["secretsmanager:GetSecretValue"])
        self.assertEqual(secrets[0]["resources"], ref("local.service_secret_arns"))
        self.assertEqual(squeeze(self.locals["service_secret_arns"]),
                         squeeze(ref("compact(['${var.grpc_tls_secret_arn}', '${var.grpc_auth_tokens_secret_arn}'])")))

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv")
    def test_the_init_script_hands_the_files_to_the_service_user_with_chown_alone(self):
        script = self.locals["files_init_script"]
        sh = shutil.which("busybox") and [shutil.which("busybox"), "sh"] or ["/bin/sh"]
        for tokens, config in ((True, True), (False, False)):
            with self.subTest(tokens=tokens, config=config), tempfile.TemporaryDirectory() as root:
                os.chmod(root, 0o755)  # a fresh Fargate bind mount: root's, 0755
                env = {"PATH": os.environ["PATH"], "GRPC_TLS_CERT_PEM": "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----",
                       "GRPC_TLS_KEY_PEM": "-----BEGIN PRIVATE KEY-----\ny\n-----END PRIVATE KEY-----"}
                if tokens:
                    env["GRPC_AUTH_TOKENS_TOML"] = '[[token]]\nidentity = "web"\nsha256 = "00"'
                if config:
                    env["SERVICE_CONFIG_TOML"] = '[[auth.callers]]\nidentity = "web"\ntenant = "shop"\nmethods = ["*"]'
                # Docker's default capabilities less the dropped ones: CHOWN alone.
                subprocess.run(["setpriv", "--bounding-set=-all,+chown", "--inh-caps=-all", "--",
                                *sh, "-euc", render_heredoc(script, {"local.files_dir": root})],
                               env=env, check=True, cwd=root)
                written = {"tls/tls.crt": env["GRPC_TLS_CERT_PEM"], "tls/tls.key": env["GRPC_TLS_KEY_PEM"]}
                if tokens:
                    written["auth/tokens.toml"] = env["GRPC_AUTH_TOKENS_TOML"]
                if config:
                    written["config/config.toml"] = env["SERVICE_CONFIG_TOML"]
                for path, content in written.items():
                    stat = os.stat(os.path.join(root, path))
                    self.assertEqual((stat.st_uid, stat.st_gid, stat.st_mode & 0o777), (65532, 65532, 0o600), path)
                    self.assertEqual(pathlib.Path(root, path).read_text(), content + "\n")
                for directory in ("tls", "auth", "config"):
                    stat = os.stat(os.path.join(root, directory))
                    self.assertEqual((stat.st_uid, stat.st_mode & 0o777), (65532, 0o700), directory)
                self.assertEqual(os.path.exists(os.path.join(root, "auth/tokens.toml")), tokens)
                # The service's user reads them; another user does not.
                as_service = ["setpriv", "--reuid=65532", "--regid=65532", "--clear-groups", "cat"]
                as_other = ["setpriv", "--reuid=65533", "--regid=65533", "--clear-groups", "cat"]
                for path in written:
                    full = os.path.join(root, path)
                    self.assertEqual(subprocess.run([*as_service, full], capture_output=True).returncode, 0)
                    self.assertNotEqual(subprocess.run([*as_other, full], capture_output=True).returncode, 0)

    def test_the_init_script_stops_without_the_certificate(self):
        with tempfile.TemporaryDirectory() as root:
            script = render_heredoc(self.locals["files_init_script"], {"local.files_dir": root})
            result = subprocess.run(["/bin/sh", "-euc", script], env={"PATH": os.environ["PATH"]},
                                    capture_output=True, cwd=root)
            self.assertNotEqual(result.returncode, 0)
            self.assertFalse(os.path.exists(os.path.join(root, "tls/tls.key")))


class Dockerfile(unittest.TestCase):
    def test_the_build_stage_copies_what_cargo_needs(self):
        """Every workspace member (cargo reads them all) and .cargo/config.toml (the runtime's
        tokio_unstable cfg) are in the build context the image builds from."""
        text = (INFRA / "docker" / "Dockerfile").read_text()
        copied = set()
        for line in text.splitlines():
            parts = line.split()
            if parts[:1] == ["COPY"] and not any(p.startswith("--from") for p in parts):
                copied.update(p.rstrip("/") for p in parts[1:-1])
        workspace = tomllib.loads((INFRA.parent / "Cargo.toml").read_text())["workspace"]
        for member in workspace["members"]:
            if member != ".":
                # A glob member (`crates/*`) is copied as its folder.
                self.assertIn(member.removesuffix("/*"), copied)
        for needed in ("Cargo.toml", "Cargo.lock", "build.rs", "proto", "src", ".cargo"):
            self.assertIn(needed, copied)
            self.assertTrue((INFRA.parent / needed).exists(), needed)


class Compose(unittest.TestCase):
    def setUp(self):
        self.compose = yaml.safe_load((INFRA / "docker" / "compose.yaml").read_text())

    def test_compose_file_follows_the_compose_spec(self):
        schema = json.loads((INFRA / "validate" / "schema" / "compose-spec.json").read_text())
        jsonschema.Draft7Validator.check_schema(schema)
        errors = list(jsonschema.Draft7Validator(schema).iter_errors(self.compose))
        self.assertEqual([e.message for e in errors], [])

    def test_serverless_shape_and_cloud_profile(self):
        services = self.compose["services"]
        self.assertIn("--tls-port", services["valkey"]["command"])
        self.assertEqual(services["valkey"]["command"][services["valkey"]["command"].index("--tls-port") + 1], "6379")
        replica = services["valkey-replica"]
        self.assertEqual(replica["network_mode"], "service:valkey")
        self.assertEqual(replica["command"][replica["command"].index("--tls-port") + 1], "6380")
        conf = self.compose["configs"]["valkey-conf"]["content"]
        for line in ("port 0", "cluster-enabled yes", "tls-replication yes", "cluster-announce-hostname valkey"):
            self.assertIn(line, conf.splitlines())
        env = services["valkey-sessions"]["environment"]
        self.assertEqual(env["VALKEY_SESSIONS_PROFILE"], "cloud")
        self.assertEqual(env["SESSION_HOST"], "valkey:6379")

    def test_valkey_users_are_the_elasticache_ones(self):
        # The same shape as the Terraform module's cache: default off, the service on its prefix
        # with the same command list; an admin user only for cluster-init and replication.
        script = self.compose["services"]["certs"]["command"][0].replace("$$", "$")
        default = resources(parse_dir(MODULE))[("aws_elasticache_user", "default")]["access_string"]
        self.assertIn(f"printf 'user default {default}\\n' > users.acl", script)
        service = service_access_string().split()
        line = next(l for l in script.splitlines() if "user valkey-sessions on #%s" in l)
        self.assertEqual(service[0], "on")
        self.assertIn("user valkey-sessions on #%s " + " ".join(service[1:3]) + " %s", line)  # ~vs:* -@all
        self.assertIn('"' + " ".join(service[3:]) + '"', script)
        conf = self.compose["configs"]["valkey-conf"]["content"].splitlines()
        self.assertIn("aclfile /certs/users.acl", conf)
        self.assertIn("include /certs/replication.conf", conf)
        self.assertIn("--user admin", self.compose["services"]["cluster-init"]["command"][0])

    def test_the_service_serves_tls_and_requires_tokens(self):
        service = self.compose["services"]["valkey-sessions"]
        env = service["environment"]
        self.assertEqual(env["VALKEY_USERNAME"], "valkey-sessions")
        self.assertEqual(env["VALKEY_PASSWORD_FILE"], "/certs/valkey-password")
        self.assertEqual((env["GRPC_TLS_CERT_FILE"], env["GRPC_TLS_KEY_FILE"]), ("/certs/grpc.pem", "/certs/grpc.key"))
        self.assertEqual(env["GRPC_AUTH_TOKENS_FILE"], "/certs/tokens.toml")
        self.assertEqual(env["VALKEY_SESSIONS_AUTH__REQUIRED"], "true")
        self.assertNotIn("VALKEY_SESSIONS_GRPC__TRUSTED_NETWORK", env)
        script = self.compose["services"]["certs"]["command"][0]
        self.assertIn("cert grpc DNS:valkey-sessions,DNS:localhost,IP:127.0.0.1 serverAuth", script)
        self.assertIn("https://localhost:50051", service["healthcheck"]["test"])
        config = tomllib.loads(self.compose["configs"]["service-conf"]["content"])
        identities = {caller["identity"] for caller in config["auth"]["callers"]}
        self.assertEqual(identities, {"dev", "todo-gateway"})
        self.assertIn("for caller in dev todo-gateway; do", script)
        self.assertEqual(service["configs"], [{"source": "service-conf", "target": env["VALKEY_SESSIONS_CONFIG"]}])

    def test_prometheus_and_grafana_only_in_the_observability_profile(self):
        services = self.compose["services"]
        with_profiles = {name for name, s in services.items() if "profiles" in s}
        self.assertEqual(with_profiles, {"prometheus", "grafana"})
        for name in with_profiles:
            self.assertEqual(services[name]["profiles"], ["observability"])

    def test_prometheus_scrapes_the_service_as_the_rules_job_and_loads_the_rules(self):
        configs = self.compose["configs"]
        config = yaml.safe_load(configs["prometheus-config"]["content"])
        [job] = config["scrape_configs"]
        self.assertEqual(job["job_name"], rules_job())
        metrics_port = self.compose["services"]["valkey-sessions"]["ports"][1].rsplit(":", 1)[1]
        self.assertEqual(job["static_configs"][0]["targets"], [f"valkey-sessions:{metrics_port}"])
        mounts = {c["source"]: c["target"] for c in self.compose["services"]["prometheus"]["configs"]}
        self.assertEqual(mounts["prometheus-config"], "/etc/prometheus/prometheus.yml")
        self.assertEqual(config["rule_files"], ["rules.yaml"])  # next to prometheus.yml
        self.assertEqual(mounts["prometheus-rules"], "/etc/prometheus/rules.yaml")
        self.assertEqual((INFRA / "docker" / configs["prometheus-rules"]["file"]).resolve(),
                         INFRA / "observability" / "rules.yaml")

    def test_grafana_provisions_the_datasource_and_the_dashboard(self):
        configs = self.compose["configs"]
        mounts = {c["source"]: c["target"] for c in self.compose["services"]["grafana"]["configs"]}
        [source] = yaml.safe_load(configs["grafana-datasource"]["content"])["datasources"]
        self.assertEqual((source["type"], source["url"]), ("prometheus", "http://prometheus:9090"))
        self.assertTrue(mounts["grafana-datasource"].startswith("/etc/grafana/provisioning/datasources/"))
        [provider] = yaml.safe_load(configs["grafana-dashboards"]["content"])["providers"]
        self.assertTrue(mounts["grafana-dashboards"].startswith("/etc/grafana/provisioning/dashboards/"))
        self.assertEqual(mounts["grafana-dashboard"].rsplit("/", 1)[0], provider["options"]["path"])
        self.assertEqual((INFRA / "docker" / configs["grafana-dashboard"]["file"]).resolve(),
                         INFRA / "observability" / "dashboard.json")


class Kubernetes(unittest.TestCase):
    def load(self, name):
        return yaml.safe_load((INFRA / "k8s" / name).read_text())

    def test_kustomization_lists_every_manifest(self):
        listed = set(self.load("kustomization.yaml")["resources"])
        present = {p.name for p in (INFRA / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
        self.assertEqual(listed, present)

    def test_monitoring_resources_follow_their_schema(self):
        schema = json.loads((INFRA / "validate" / "schema" / "prometheus-operator.json").read_text())
        validator = jsonschema.Draft7Validator(schema)
        for name in ("prometheusrule.yaml", "servicemonitor.yaml"):
            with self.subTest(name=name):
                self.assertEqual([e.message for e in validator.iter_errors(self.load(name))], [])
        misspelt = self.load("servicemonitor.yaml")
        misspelt["spec"]["endpoint"] = misspelt["spec"].pop("endpoints")
        self.assertTrue(list(validator.iter_errors(misspelt)))
        bad_duration = self.load("prometheusrule.yaml")
        bad_duration["spec"]["groups"][1]["rules"][0]["for"] = "2 minutes"
        self.assertTrue(list(validator.iter_errors(bad_duration)))

    def test_prometheus_rule_carries_exactly_the_rules_of_infra_observability(self):
        rules = yaml.safe_load((INFRA / "observability" / "rules.yaml").read_text())
        self.assertEqual(self.load("prometheusrule.yaml")["spec"]["groups"], rules["groups"],
                         "regenerate it: infra/observability/check/prometheusrule.py")

    def test_service_monitor_scrapes_the_metrics_port_as_the_rules_job(self):
        monitor = self.load("servicemonitor.yaml")["spec"]
        service = self.load("service.yaml")
        container = self.load("deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
        # Without a jobLabel, prometheus-operator names the job after the Service.
        self.assertNotIn("jobLabel", monitor)
        self.assertEqual(service["metadata"]["name"], rules_job())
        self.assertEqual(monitor["namespaceSelector"]["matchNames"], [service["metadata"]["namespace"]])
        for key, value in monitor["selector"]["matchLabels"].items():
            self.assertEqual(service["metadata"]["labels"].get(key), value)
        [endpoint] = monitor["endpoints"]
        [port] = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
        [container_port] = [p for p in container["ports"] if p["name"] == port["targetPort"]]
        self.assertEqual(container_port["containerPort"], 9090)
        self.assertEqual(endpoint["path"], "/metrics")

    def test_network_policy_egress_is_cache_and_dns_only(self):
        policy = self.load("networkpolicy.yaml")["spec"]
        self.assertIn("Egress", policy["policyTypes"])
        ports = {(p["protocol"], p["port"]) for rule in policy["egress"] for p in rule["ports"]}
        self.assertEqual(ports, {("TCP", 6379), ("TCP", 6380), ("UDP", 53), ("TCP", 53)})

    def test_probes_ask_grpc_health_over_tls(self):
        pod = self.load("deployment.yaml")["spec"]["template"]["spec"]
        container = pod["containers"][0]
        # The kubelet's gRPC probe has no TLS: readiness runs health-probe, the rest needs the port.
        command = container["readinessProbe"]["exec"]["command"]
        self.assertEqual(command[0], "/usr/local/bin/health-probe")
        self.assertEqual(command[command.index("--addr") + 1], "https://localhost:50051")
        self.assertEqual(command[command.index("--service") + 1], "session.v1.SessionService")
        self.assertEqual(command[command.index("--service-ca-file") + 1], "/etc/valkey-sessions/tls/ca.crt")
        self.assertEqual(container["startupProbe"]["tcpSocket"]["port"], "grpc")
        self.assertEqual(container["livenessProbe"]["tcpSocket"]["port"], "grpc")
        self.assertGreater(pod["terminationGracePeriodSeconds"], 10)

    def test_tls_tokens_and_valkey_password_are_files_from_secrets(self):
        env, config = yaml.safe_load_all((INFRA / "k8s" / "configmap.yaml").read_text())
        env = env["data"]
        pod = self.load("deployment.yaml")["spec"]["template"]["spec"]
        mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        expected = {
            "tls": ("secret", "valkey-sessions-tls", ["GRPC_TLS_CERT_FILE", "GRPC_TLS_KEY_FILE"]),
            "auth": ("secret", "valkey-sessions-auth", ["GRPC_AUTH_TOKENS_FILE"]),
            "valkey": ("secret", "valkey-sessions-valkey", ["VALKEY_PASSWORD_FILE"]),
            "config": ("configMap", "valkey-sessions-config", ["VALKEY_SESSIONS_CONFIG"]),
        }
        self.assertEqual(set(mounts), set(expected))
        for name, (kind, source, keys) in expected.items():
            with self.subTest(volume=name):
                mount = mounts[name]
                self.assertIs(mount["readOnly"], True)
                self.assertNotIn("subPath", mount)  # updates must reach the files
                self.assertEqual(volumes[name][kind].get("secretName", volumes[name][kind].get("name")), source)
                self.assertEqual(volumes[name][kind]["defaultMode"], 0o440)
                for key in keys:
                    self.assertEqual(pathlib.PurePosixPath(env[key]).parent, pathlib.PurePosixPath(mount["mountPath"]))
        self.assertEqual(env["VALKEY_SESSIONS_AUTH__REQUIRED"], "true")
        self.assertEqual(env["VALKEY_SESSIONS_GRPC__REFLECTION"], "false")
        self.assertNotIn("VALKEY_SESSIONS_GRPC__TRUSTED_NETWORK", env)
        self.assertEqual(config["metadata"]["name"], "valkey-sessions-config")
        for caller in tomllib.loads(config["data"]["config.toml"])["auth"]["callers"]:
            self.assertEqual(set(caller), {"identity", "tenant", "methods"})
        # The same file layout as the ECS task's volume (terraform ecs.tf).
        module = locals_of(parse_dir(MODULE))
        for key, local in (("GRPC_TLS_CERT_FILE", "tls_cert_file"), ("GRPC_TLS_KEY_FILE", "tls_key_file"),
                           ("GRPC_AUTH_TOKENS_FILE", "auth_file"), ("VALKEY_SESSIONS_CONFIG", "config_file")):
            self.assertEqual(env[key], module[local].replace("${local.files_dir}", module["files_dir"]))


if __name__ == "__main__":
    unittest.main()
