"""Offline checks of infra/ that need no provider, image or cluster (issue 8).

Run by infra/validate/run.sh inside its virtualenv: python -m unittest -v test_infra
"""

import json
import pathlib
import re
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


def parse_dir(directory):
    return [hcl2.loads(path.read_text()) for path in sorted(directory.glob("*.tf"))]


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
        text = (MODULE / "ecs.tf").read_text()
        self.assertIn('VALKEY_SESSIONS_PROFILE = "cloud"', text)
        self.assertIn("SESSION_HOST            = local.cache_endpoint", text)
        self.assertIn('logDriver = "awslogs"', text)

    def test_outputs(self):
        outputs = {}
        for doc in parse_dir(TERRAFORM / "examples" / "complete"):
            for entry in doc.get("output", []):
                outputs.update(entry)
        self.assertTrue({"grpc_endpoint", "cache_endpoint", "cache_reader_endpoint"} <= set(outputs))


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

    def test_probes_ask_grpc_health(self):
        pod = self.load("deployment.yaml")["spec"]["template"]["spec"]
        container = pod["containers"][0]
        self.assertEqual(container["readinessProbe"]["grpc"]["port"], 50051)
        self.assertEqual(container["startupProbe"]["grpc"]["port"], 50051)
        self.assertGreater(pod["terminationGracePeriodSeconds"], 10)


if __name__ == "__main__":
    unittest.main()
