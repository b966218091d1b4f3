#!/usr/bin/env python3
"""Counts of what the observability checks cover, for the CI log."""

import yaml

import sources
import test_rules


def main():
    rules = sources.load_rules()
    alerts = [rule for _, rule in sources.rules(rules) if "alert" in rule]
    tests = yaml.safe_load(test_rules.TESTS.read_text())["tests"]
    evaluations = [e for t in tests for e in t.get("alert_rule_test", [])]
    firing = sum(1 for e in evaluations if e.get("exp_alerts"))
    expr_tests = sum(len(t.get("promql_expr_test", [])) for t in tests)
    dashboard = sources.load_dashboard()
    panels = [p for p in sources.panels(dashboard) if p["type"] != "row"]
    queries = sum(1 for _ in sources.panel_queries(dashboard))
    print(f"observability: {len(alerts)} alerting rules ({len({a['alert'] for a in alerts})} alerts), "
          f"{len(sources.recorded(rules))} recording rules; promtool: {len(tests)} test cases with "
          f"{len(evaluations)} alert evaluations ({firing} firing, {len(evaluations) - firing} quiet) "
          f"and {expr_tests} expression tests; dashboard: {len(panels)} panels, {queries} queries, "
          "all parsed by promtool and checked against a live scrape")


if __name__ == "__main__":
    main()
