"""dashboard.json: valid JSON, a sound layout, every query on the templated Prometheus data
source, and every query parsed by promtool (through a rule file made of the queries)."""

import unittest

import promql
import promtool
import sources

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def queries_as_rules(dashboard):
    """A rule file with one recording rule per panel query, Grafana's variables substituted."""
    rules = [{"record": f"dashboard:panel_{panel['id']}_{target['refId']}",
              "expr": promql.substitute(target["expr"])}
             for panel, target in sources.panel_queries(dashboard)]
    return {"groups": [{"name": "dashboard-queries", "rules": rules}]}


class Dashboard(unittest.TestCase):
    def setUp(self):
        self.dashboard = sources.load_dashboard()
        self.panels = [p for p in sources.panels(self.dashboard) if p["type"] != "row"]

    def test_identity_and_variables(self):
        self.assertEqual(self.dashboard["uid"], "valkey-sessions")
        variables = {v["name"]: v for v in self.dashboard["templating"]["list"]}
        self.assertEqual(variables["datasource"]["type"], "datasource")
        self.assertEqual(variables["datasource"]["query"], "prometheus")
        for name in ("job", "instance"):
            self.assertEqual(variables[name]["datasource"], DATASOURCE)

    def test_panel_ids_are_unique_and_panels_do_not_overlap(self):
        everything = list(sources.panels(self.dashboard))
        ids = [p["id"] for p in everything]
        self.assertEqual(len(ids), len(set(ids)))
        cells = {}
        for panel in everything:
            pos = panel["gridPos"]
            self.assertLessEqual(pos["x"] + pos["w"], 24, panel["title"])
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    self.assertNotIn((x, y), cells, f"{panel['title']} overlaps {cells.get((x, y))}")
                    cells[(x, y)] = panel["title"]

    def test_every_panel_queries_the_templated_prometheus(self):
        self.assertGreaterEqual(len(self.panels), 12)
        for panel in self.panels:
            with self.subTest(panel=panel["title"]):
                self.assertEqual(panel["datasource"], DATASOURCE)
                self.assertTrue(panel.get("description"))
                targets = panel["targets"]
                self.assertTrue(targets)
                self.assertEqual(len({t["refId"] for t in targets}), len(targets))
                for target in targets:
                    self.assertEqual(target["datasource"], DATASOURCE)
                    self.assertTrue(promql.selectors(promql.substitute(target["expr"])),
                                    "a query that reads no series")

    def test_every_query_parses_with_promtool(self):
        ok, output = promtool.check_rules(queries_as_rules(self.dashboard))
        self.assertTrue(ok, output)
        self.assertIn(f"SUCCESS: {sum(1 for _ in sources.panel_queries(self.dashboard))} rules found", output)

    def test_the_promtool_check_rejects_a_broken_query(self):
        broken = {"panels": [{"id": 1, "targets": [{"refId": "A", "expr": "sum(rate(x[$__rate_interval])"}]}]}
        ok, output = promtool.check_rules(queries_as_rules(broken))
        self.assertFalse(ok)
        self.assertIn("parse error", output)


if __name__ == "__main__":
    unittest.main()
