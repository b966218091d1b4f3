"""The name extraction and the comparison with a scrape that check/live_scrape.py relies on."""

import unittest

import names
import promql

SCRAPE = """\
# TYPE grpc_requests_total counter
grpc_requests_total{method="Get",code="OK"} 3
# TYPE valkey_up gauge
valkey_up 1
# TYPE grpc_request_duration_seconds histogram
grpc_request_duration_seconds_bucket{method="Get",le="0.005"} 3
grpc_request_duration_seconds_bucket{method="Get",le="+Inf"} 3
grpc_request_duration_seconds_sum{method="Get"} 0.004
grpc_request_duration_seconds_count{method="Get"} 3
"""


def refs(*exprs):
    dashboard = {"panels": [{"id": i, "title": str(i), "targets": [{"refId": "A", "expr": e}]}
                            for i, e in enumerate(exprs)]}
    return names.references({"groups": []}, dashboard)


class Selectors(unittest.TestCase):
    def test_names_and_matched_labels_through_functions_and_operators(self):
        found = promql.selectors(
            'sum by (method) (rate(grpc_requests_total{job="j", code!="OK"}[5m]))'
            ' / on (job) group_left max_over_time(valkey_up[1h:1m]) or absent({__name__="x", a="b"})')
        self.assertEqual(found, [("grpc_requests_total", {"job", "code"}), ("valkey_up", set()),
                                 ("x", {"a"})])

    def test_a_regular_expression_on_the_name_cannot_be_checked(self):
        with self.assertRaises(ValueError):
            promql.selectors('{__name__=~"grpc_.*"}')

    def test_grafana_variables(self):
        self.assertEqual(promql.substitute('rate(x{job="$job", instance=~"$instance"}[$__rate_interval])'),
                         'rate(x{job="valkey-sessions", instance=~".*"}[5m])')
        with self.assertRaises(ValueError):
            promql.substitute("rate(x[$interval])")

    def test_label_values_variable(self):
        self.assertEqual(promql.label_values_selector('label_values(valkey_up{job="$job"}, instance)'),
                         'valkey_up{job="$job"}')


class Compare(unittest.TestCase):
    exported = names.exposition(SCRAPE)

    def problems(self, *exprs, recorded=()):
        return names.compare(refs(*exprs), self.exported, set(recorded))

    def test_exported_names_histogram_suffixes_and_target_labels_pass(self):
        self.assertEqual(self.problems(
            'rate(grpc_requests_total{job="j", instance="i", method="Get", code="OK"}[5m])',
            'histogram_quantile(0.99, rate(grpc_request_duration_seconds_bucket{le="1"}[5m]))',
            "valkey_up"), [])

    def test_a_name_the_service_does_not_export_fails(self):
        [problem] = self.problems("rate(grpc_requests{code='OK'}[5m])")
        self.assertIn("grpc_requests is not exported", problem)
        [problem] = self.problems("grpc_request_duration_seconds")  # the base name is no series
        self.assertIn("not exported", problem)

    def test_a_label_the_metric_does_not_carry_fails(self):
        [problem] = self.problems('rate(grpc_requests_total{status="OK"}[5m])')
        self.assertIn("no label status", problem)

    def test_a_name_recorded_by_a_rule_passes(self):
        self.assertEqual(self.problems("a:b:rate5m", recorded={"a:b:rate5m"}), [])
        [problem] = self.problems("a:b:rate5m", recorded={"a:b:rate1h"})
        self.assertIn("a:b:rate5m is not exported", problem)

    def test_no_name_is_exempt_a_tls_metric_missing_from_the_scrape_fails(self):
        # The live check runs the service with TLS and tokens; nothing is allow-listed any more.
        [problem] = self.problems(
            'rate(grpc_tls_reloads_total{outcome="error"}[15m])', "valkey_up")
        self.assertIn("grpc_tls_reloads_total is not exported", problem)

    def test_families_no_panel_shows(self):
        used = refs("rate(grpc_request_duration_seconds_count[5m])", "valkey_up")
        self.assertEqual(names.unused_families(self.exported, used), ["grpc_requests_total"])


if __name__ == "__main__":
    unittest.main()
