"""The alerting rules: metadata every alert needs, and proof by mutation that promtool's tests
(rules.test.yaml) hold, for every alerting rule, a case where it fires and one where it does not."""

import copy
import re
import unittest

import yaml

import promtool
import sources

TESTS = sources.KIT / "rules.test.yaml"
RUNBOOK = sources.KIT.parent.parent / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/valkey-sessions/valkey-sessions/blob/main/docs/runbook.md#"
SEVERITIES = {"critical", "warning"}


def alerting_rules(document):
    """(group index, rule index, rule) of every alerting rule."""
    for g, group in enumerate(document["groups"]):
        for r, rule in enumerate(group["rules"]):
            if "alert" in rule:
                yield g, r, rule


def github_anchors(markdown):
    """Anchors GitHub gives the headings of a markdown file."""
    anchors = set()
    for line in markdown.splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
        if heading:
            text = re.sub(r"[^\w\- ]", "", heading.group(1).lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def cases(tests, alert, severity, firing):
    """`tests` reduced to the alert_rule_test entries of `alert` that expect (firing=True) or do
    not expect (firing=False) an alert of `severity`."""
    kept = []
    for test in tests["tests"]:
        entries = [
            e for e in test.get("alert_rule_test", [])
            if e["alertname"] == alert
            and firing == any(a["exp_labels"].get("severity") == severity for a in e.get("exp_alerts") or [])
        ]
        if entries:
            kept.append({**{k: v for k, v in test.items() if k != "promql_expr_test"},
                         "alert_rule_test": entries})
    return {**tests, "tests": kept}


def mutated(document, g, r, expr):
    out = copy.deepcopy(document)
    rule = out["groups"][g]["rules"][r]
    rule["expr"] = expr
    rule.pop("for", None)
    return out


class Alerts(unittest.TestCase):
    def setUp(self):
        self.rules = sources.load_rules()
        self.tests = yaml.safe_load(TESTS.read_text())

    def test_rule_file_passes_promtool_check(self):
        ok, output = promtool.check_rules(self.rules)
        self.assertTrue(ok, output)

    def test_every_alert_has_severity_summary_description_and_a_runbook_section(self):
        anchors = github_anchors(RUNBOOK.read_text())
        for _, _, rule in alerting_rules(self.rules):
            with self.subTest(alert=rule["alert"], severity=rule["labels"].get("severity")):
                self.assertIn(rule["labels"].get("severity"), SEVERITIES)
                self.assertTrue(rule["annotations"].get("summary"))
                self.assertTrue(rule["annotations"].get("description"))
                url = rule["annotations"]["runbook_url"]
                self.assertTrue(url.startswith(RUNBOOK_URL), url)
                self.assertEqual(url[len(RUNBOOK_URL):], rule["alert"].lower())
                self.assertIn(url[len(RUNBOOK_URL):], anchors)

    def test_github_anchors(self):
        self.assertEqual(github_anchors("## ValkeySessionsValkeyDown\n### Port 6380: blocked?\n"),
                         {"valkeysessionsvalkeydown", "port-6380-blocked"})

    def test_every_alerting_rule_has_a_case_that_fires_and_one_that_does_not(self):
        """Mutation: a rule that never fires must fail its firing cases, and a rule that always
        fires (vector(1)) must fail the cases where it should stay quiet."""
        rules = list(alerting_rules(self.rules))
        self.assertGreaterEqual(len(rules), 10)
        for g, r, rule in rules:
            alert, severity = rule["alert"], rule["labels"]["severity"]
            with self.subTest(alert=alert, severity=severity):
                firing = cases(self.tests, alert, severity, firing=True)
                quiet = cases(self.tests, alert, severity, firing=False)
                self.assertTrue(firing["tests"], "no case where it fires")
                self.assertTrue(quiet["tests"], "no case where it does not fire")
                ok, output = promtool.test_rules(self.rules, firing)
                self.assertTrue(ok, output)
                ok, _ = promtool.test_rules(mutated(self.rules, g, r, "vector(1) < 0"), firing)
                self.assertFalse(ok, "its firing cases still pass when it can never fire")
                ok, output = promtool.test_rules(self.rules, quiet)
                self.assertTrue(ok, output)
                ok, _ = promtool.test_rules(mutated(self.rules, g, r, "vector(1)"), quiet)
                self.assertFalse(ok, "its quiet cases still pass when it always fires")


if __name__ == "__main__":
    unittest.main()
