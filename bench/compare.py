#!/usr/bin/env python3
"""Before/after table of bench/run.py results files, one column each (markdown on stdout).

    bench/compare.py docs/bench/before.json docs/bench/after-allocator-and-spans.json docs/bench/final.json
"""

import json
import sys

ROWS = [
    ("Get RPS", lambda t: t["rpcs"]["get"]["total"]["rps"], "{:,.0f}"),
    ("Get / valkey-benchmark GET", lambda t: t["rpcs"]["get"]["total"]["rps"] / t["reference"]["GET"]["rps"], "{:.0%}"),
    ("Get p99 ms (closed loop, c=64)", lambda t: t["rpcs"]["get"]["total"]["p99_us"] / 1000, "{:.2f}"),
    ("Get p99 ms at half peak", lambda t: t["half_peak_get"]["total"]["p99_us"] / 1000, "{:.2f}"),
    ("Put RPS", lambda t: t["rpcs"]["put"]["total"]["rps"], "{:,.0f}"),
    ("Create RPS", lambda t: t["rpcs"]["create"]["total"]["rps"], "{:,.0f}"),
    ("mixed RPS", lambda t: t["rpcs"]["mixed"]["total"]["rps"], "{:,.0f}"),
    ("service CPU µs per Get", lambda t: t["rpcs"]["get"]["server_cpu_us_per_rpc"], "{:.1f}"),
    ("service CPU µs per Put", lambda t: t["rpcs"]["put"]["server_cpu_us_per_rpc"], "{:.1f}"),
    ("generator CPU µs per Get", lambda t: t["rpcs"]["get"]["client_cpu_us_per_rpc"], "{:.1f}"),
    ("peak RSS MiB", lambda t: t["peak_rss_kib"] / 1024, "{:.1f}"),
    # The gRPC floor and the near cache rows; older result files have neither.
    ("floor Get RPS", lambda t: t["floor"]["get"]["total"]["rps"], "{:,.0f}"),
    ("floor CPU µs per Get", lambda t: t["floor"]["get"]["server_cpu_us_per_rpc"], "{:.1f}"),
    ("Get / floor RPS", lambda t: t["rpcs"]["get"]["total"]["rps"] / t["floor"]["get"]["total"]["rps"], "{:.2f}"),
    ("hot Get RPS (near cache)", lambda t: t["near_cache"]["hot_get"]["total"]["rps"], "{:,.0f}"),
    ("hot Get / floor RPS", lambda t: t["near_cache"]["hot_get"]["total"]["rps"] / t["floor"]["get"]["total"]["rps"], "{:.2f}"),
    ("hot Get CPU µs", lambda t: t["near_cache"]["hot_get"]["server_cpu_us_per_rpc"], "{:.1f}"),
    ("hot Get CPU / floor CPU", lambda t: t["near_cache"]["hot_get"]["server_cpu_us_per_rpc"] / t["floor"]["get"]["server_cpu_us_per_rpc"], "{:.2f}"),
]


def cell(get, fmt, topology):
    """One figure, or a dash where that run did not measure it."""
    try:
        return fmt.format(get(topology))
    except KeyError:
        return "–"


def main():
    paths = sys.argv[1:]
    runs = [json.load(open(path)) for path in paths]
    names = [path.rsplit("/", 1)[-1].removesuffix(".json") for path in paths]
    for topology, title in (("standalone", "standalone"), ("serverless", "serverless-shaped TLS pair")):
        print(f"| {title} | " + " | ".join(names) + " |")
        print("|---|" + "---:|" * len(runs))
        for label, get, fmt in ROWS:
            print(f"| {label} | " + " | ".join(cell(get, fmt, r[topology]) for r in runs) + " |")
        print()


if __name__ == "__main__":
    main()
