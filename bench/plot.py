#!/usr/bin/env python3
"""Pictures of one bench/run.py results file (bench/run.sh draws them after every run).

    bench/plot.py [target/bench/results.json] [--out docs/bench]

Writes, for both topologies of the run:
  throughput.png            RPS of each RPC next to valkey-benchmark GET/SET (and the floor)
  cpu-per-rpc.png           CPU µs per request of the service (Valkey's under valkey-benchmark, the
                            floor's) and of the load generator
  get-latency-vs-load.png   Get p50/p99 against offered load (fixed rates up to saturation)

A `floor` entry of a topology, {name: session-bench report} like `rpcs`, is drawn when present;
results without it (or without `get_load_curve`, from older runs) draw what they have.
"""

import argparse
import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOPOLOGIES = (("standalone", "Standalone Valkey"), ("serverless", "Serverless-shaped TLS pair"))
RPC_LABELS = {"get": "Get", "put": "Put", "create": "Create", "mixed": "mixed 80/15/5"}
COLOURS = {"reference": "#9e9e9e", "floor": "#f0a030", "rpc": "#3b75af", "generator": "#a6c8e8",
           "standalone": "#3b75af", "serverless": "#c0504d"}
SERVER_LABELS = {"reference": "Valkey (primary)", "floor": "floor server", "rpc": "valkey-sessions"}


def floor_rows(topology):
    """{label: session-bench report} of the floor measurement, if the run has one."""
    floor = topology.get("floor")
    if not isinstance(floor, dict):
        return {}
    return {f"floor {name}": r for name, r in floor.items()
            if isinstance(r, dict) and "total" in r and "rps" in r["total"]}


def throughput_rows(topology):
    """[(label, RPS, kind)] in drawing order, top to bottom."""
    rows = [(f"valkey-benchmark {cmd}", topology["reference"][cmd]["rps"], "reference")
            for cmd in ("GET", "SET")]
    rows += [(label, r["total"]["rps"], "floor") for label, r in floor_rows(topology).items()]
    rows += [(f"session-bench {RPC_LABELS.get(op, op)}", r["total"]["rps"], "rpc")
             for op, r in topology["rpcs"].items()]
    return rows


def cpu_rows(topology):
    """[(label, server µs, generator µs, kind)] per request: valkey-benchmark (server = Valkey,
    from runs that measured it), the floor rows, every RPC (server = the service)."""
    rows = []
    reference = topology["reference"].get("cpu_us_per_request")
    if reference:
        rows.append(("valkey-\nbenchmark", reference["valkey"], reference["client"], "reference"))
    rows += [(label, r.get("server_cpu_us_per_rpc"), r.get("client_cpu_us_per_rpc"), "floor")
             for label, r in floor_rows(topology).items()]
    rows += [(RPC_LABELS.get(op, op), r.get("server_cpu_us_per_rpc"), r.get("client_cpu_us_per_rpc"), "rpc")
             for op, r in topology["rpcs"].items()]
    return [row for row in rows if row[1] is not None]


def caption(results):
    return f"bench/run.sh{' --quick' if results['options'].get('quick') else ''}, {results['date']}"


def topologies(results):
    return [(key, title) for key, title in TOPOLOGIES if key in results]


def plot_throughput(results, path):
    shown = topologies(results)
    fig, axes = plt.subplots(1, len(shown), figsize=(6.5 * len(shown), 4.2), squeeze=False)
    for ax, (key, title) in zip(axes[0], shown):
        rows = throughput_rows(results[key])[::-1]
        bars = ax.barh([r[0] for r in rows], [r[1] for r in rows],
                       color=[COLOURS[r[2]] for r in rows])
        ax.bar_label(bars, labels=[f"{r[1]:,.0f}" for r in rows], padding=3, fontsize=8)
        ax.set_title(title)
        ax.set_xlabel("requests per second (concurrency 64)")
        ax.set_xlim(0, max(r[1] for r in rows) * 1.18)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"Throughput per RPC against valkey-benchmark on the same Valkey ({caption(results)})",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_cpu(results, path):
    shown = topologies(results)
    fig, axes = plt.subplots(1, len(shown), figsize=(6.5 * len(shown), 4.2), squeeze=False)
    for ax, (key, title) in zip(axes[0], shown):
        rows = cpu_rows(results[key])
        labels = [r[0] for r in rows]
        service = [r[1] for r in rows]
        generator = [r[2] or 0 for r in rows]
        bars = ax.bar(labels, service, color=[COLOURS[r[3]] for r in rows])
        ax.bar(labels, generator, bottom=service, color=COLOURS["generator"])
        kinds = {r[3] for r in rows}
        ax.legend(handles=[Patch(color=COLOURS[k], label=SERVER_LABELS[k]) for k in SERVER_LABELS if k in kinds]
                  + [Patch(color=COLOURS["generator"], label="load generator (valkey-benchmark, session-bench)")],
                  fontsize=8, loc="upper left", ncol=2)
        ax.set_ylim(0, max(s + g for s, g in zip(service, generator)) * 1.45)
        ax.bar_label(bars, labels=[f"{s:.0f}" for s in service], label_type="center", fontsize=8,
                     color="white")
        ax.set_title(title)
        ax.set_ylabel("CPU µs per RPC")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("CPU per request of the server (Valkey's only under valkey-benchmark) and of the load "
                 f"generator ({caption(results)})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_load_curve(results, path):
    shown = [(key, title) for key, title in topologies(results) if results[key].get("get_load_curve")]
    if not shown:
        return False
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for key, title in shown:
        points = results[key]["get_load_curve"]
        offered = [p["offered_rps"] for p in points]
        colour = COLOURS[key]
        ax.plot(offered, [p["p50_us"] / 1000 for p in points], "o-", color=colour, label=f"{title} p50")
        ax.plot(offered, [p["p99_us"] / 1000 for p in points], "s--", color=colour, label=f"{title} p99")
        peak = results[key]["rpcs"]["get"]["total"]["rps"]
        ax.axvline(peak, color=colour, linestyle=":", linewidth=1,
                   label=f"{title}: closed-loop peak, {peak:,.0f}/s")
    ax.set_yscale("log")
    ax.set_xlabel("offered Gets per second (fixed rate)")
    ax.set_ylabel("latency from the scheduled send, ms (log)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(f"Get latency against offered load ({caption(results)})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="?", type=pathlib.Path,
                        default=ROOT / "target" / "bench" / "results.json")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "docs" / "bench")
    options = parser.parse_args()
    results = json.loads(options.results.read_text())
    options.out.mkdir(parents=True, exist_ok=True)
    written = [options.out / "throughput.png", options.out / "cpu-per-rpc.png"]
    plot_throughput(results, written[0])
    plot_cpu(results, written[1])
    curve = options.out / "get-latency-vs-load.png"
    if plot_load_curve(results, curve):
        written.append(curve)
    else:
        print("plot: no get_load_curve in these results; no latency-vs-load picture", file=sys.stderr)
    for path in written:
        print(f"plot: wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
