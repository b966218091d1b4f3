"""The compose twin's Prometheus configuration passes `promtool check config`, with the rule
file it loads (infra/docker/compose.yaml, profile observability)."""

import pathlib
import shutil
import tempfile
import unittest

import yaml

import promtool
import sources

COMPOSE = sources.KIT.parent / "docker" / "compose.yaml"


class ComposePrometheus(unittest.TestCase):
    def test_config_and_its_rules_pass_promtool(self):
        compose = yaml.safe_load(COMPOSE.read_text())
        config = compose["configs"]["prometheus-config"]["content"]
        rules = (COMPOSE.parent / compose["configs"]["prometheus-rules"]["file"]).resolve()
        with tempfile.TemporaryDirectory(prefix="obs-compose-") as tmp:
            (pathlib.Path(tmp) / "prometheus.yml").write_text(config)
            for name in yaml.safe_load(config)["rule_files"]:
                shutil.copy(rules, pathlib.Path(tmp) / name)
            ok, output = promtool.run("check", "config", "prometheus.yml", cwd=tmp)
        self.assertTrue(ok, output)
        count = sum(len(group["rules"]) for group in sources.load_rules()["groups"])
        self.assertIn(f"SUCCESS: {count} rules found", output)


if __name__ == "__main__":
    unittest.main()
