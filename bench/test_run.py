"""Unit tests of bench/run.py's accounting: python3 -m unittest bench/test_run.py"""

import pathlib
import sys
import tempfile
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import run  # noqa: E402


class FakeValkey:
    port = 7000
    ports = [7000, 7001]


class MonitorCounts(unittest.TestCase):
    def test_script_internals_and_replication_are_not_round_trips(self):
        with tempfile.TemporaryDirectory() as tmp:
            monitor = run.Monitor(FakeValkey(), pathlib.Path(tmp))
            monitor.files[0].write_text(
                'OK\n'
                '1.1 [0 127.0.0.1:5000] "evalsha" "abc" "1" "vs:{x}"\n'
                '1.2 [0 lua] "GET" "vs:{x}"\n'
                '1.3 [0 lua] "SET" "vs:{x}" "blob"\n'
                '1.4 [0 127.0.0.1:5001] "PING"\n')
            monitor.files[1].write_text(
                'OK\n'
                '1.5 [0 127.0.0.1:7000] "SET" "vs:{x}" "blob"\n'
                '1.6 [0 127.0.0.1:5002] "GET" "vs:{y}"\n')
            trips, commands = monitor.counts()
        self.assertEqual(trips, 2)  # the EVALSHA and the replica GET
        self.assertEqual(commands["set"], 1)  # the replicated SET is not the service's
        self.assertEqual(commands["7001:get"], 1)
        self.assertNotIn("ping", commands)


class Check(unittest.TestCase):
    def results(self, trips=1.0, errors=None):
        topology = {
            "rpcs": {"get": {"errors": errors or {}}},
            "half_peak_get": {"errors": {}},
            "counts": {"get": {"round_trips": trips, "errors": {}}},
        }
        security = {"plaintext": {"errors": 0}, "tls_token": {"errors": 0}}
        return {"standalone": topology, "serverless": topology, "security": security}

    def test_passes_one_round_trip_without_errors(self):
        self.assertEqual(run.check(self.results()), [])

    def test_fails_on_an_extra_round_trip_or_an_error(self):
        self.assertTrue(run.check(self.results(trips=2.0)))
        self.assertTrue(run.check(self.results(errors={"UNAVAILABLE": 1})))
        failing = self.results()
        failing["security"]["tls_token"]["errors"] = 3
        self.assertTrue(run.check(failing))

    def test_fails_on_an_error_of_the_load_curve(self):
        results = self.results()
        results["standalone"] = {**results["standalone"], "get_load_curve": [
            {"offered_rps": 100, "errors": {}}, {"offered_rps": 200, "errors": {"UNAVAILABLE": 3}}]}
        self.assertEqual(run.check(results), ["standalone get at 200/s: errors {'UNAVAILABLE': 3}"])


    def test_fails_on_a_slow_near_cache_invalidation(self):
        def with_coherence(p99_us):
            results = self.results()
            near = {"hot_get_counts": {"round_trips": 0.0}, "hot_get": {"errors": {}},
                    "coherence": {"errors": {}, "total": {"p99_us": p99_us}}}
            results["standalone"] = {**results["standalone"], "near_cache": near}
            return run.check(results)
        self.assertEqual(with_coherence(2_000), [])
        self.assertEqual(len(with_coherence(250_000)), 1)


class SpringLayout(unittest.TestCase):
    def test_java_serialization_sizes(self):
        self.assertEqual(len(run.java_long(1)), 82)
        self.assertEqual(len(run.java_integer(1800)), 81)
        self.assertEqual(len(run.java_string("v" * 100)), 107)

    def test_one_session_is_five_commands(self):
        self.assertEqual(run.spring_layout(1, attributes=5, value_size=100).count(b"\r\n*"), 4)


if __name__ == "__main__":
    unittest.main()
