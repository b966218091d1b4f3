"""Unit tests of bench/plot.py (needs bench/.venv, which bench/run.sh installs):
bench/.venv/bin/python -m unittest bench/test_plot.py"""

import copy
import json
import pathlib
import sys
import tempfile
import unittest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import plot  # noqa: E402

# A results file of an earlier run: no floor, no CPU of valkey-benchmark, no load curve.
OLD_RUN = HERE.parent / "docs" / "bench" / "final.json"
PNG = b"\x89PNG\r\n\x1a\n"


def with_everything():
    results = json.loads(OLD_RUN.read_text())
    for key in ("standalone", "serverless"):
        t = results[key]
        t["reference"]["cpu_us_per_request"] = {"client": 4.0, "valkey": 9.0}
        t["get_load_curve"] = [
            {"fraction_of_peak": f, "offered_rps": 1000 * f, "p50_us": 900, "p99_us": 3000 * f,
             "schedule_lag_p99_us": 100, "errors": {}}
            for f in (0.5, 1.0, 1.2)]
    results["standalone"]["floor"] = {"get": copy.deepcopy(results["standalone"]["rpcs"]["get"])}
    return results


class Rows(unittest.TestCase):
    def test_an_old_run_has_the_reference_and_every_rpc(self):
        t = json.loads(OLD_RUN.read_text())["standalone"]
        labels = [r[0] for r in plot.throughput_rows(t)]
        self.assertEqual(labels[:2], ["valkey-benchmark GET", "valkey-benchmark SET"])
        self.assertEqual(len(labels), 2 + len(t["rpcs"]))
        self.assertEqual([r[3] for r in plot.cpu_rows(t)], ["rpc"] * len(t["rpcs"]))

    def test_floor_and_valkey_benchmark_cpu_are_drawn_when_present(self):
        t = with_everything()["standalone"]
        self.assertIn(("floor get", t["floor"]["get"]["total"]["rps"], "floor"), plot.throughput_rows(t))
        kinds = [r[3] for r in plot.cpu_rows(t)]
        self.assertEqual(kinds[:2], ["reference", "floor"])
        self.assertEqual(plot.cpu_rows(t)[0][1:3], (9.0, 4.0))

    def test_a_floor_of_another_shape_is_ignored(self):
        self.assertEqual(plot.floor_rows({"floor": {"get": 12000}}), {})
        self.assertEqual(plot.floor_rows({"floor": [1, 2]}), {})


class Pictures(unittest.TestCase):
    def draw(self, results):
        with tempfile.TemporaryDirectory() as tmp:
            path = pathlib.Path(tmp) / "results.json"
            path.write_text(json.dumps(results))
            sys.argv = ["plot.py", str(path), "--out", tmp]
            plot.main()
            return {p.name: p.read_bytes()[:8] for p in pathlib.Path(tmp).glob("*.png")}

    def test_all_three_pictures(self):
        self.assertEqual(self.draw(with_everything()), {
            "throughput.png": PNG, "cpu-per-rpc.png": PNG, "get-latency-vs-load.png": PNG})

    def test_an_old_run_draws_what_it_has(self):
        self.assertEqual(set(self.draw(json.loads(OLD_RUN.read_text()))),
                         {"throughput.png", "cpu-per-rpc.png"})


if __name__ == "__main__":
    unittest.main()
