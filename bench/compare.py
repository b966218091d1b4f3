#!/usr/bin/env python3
"""Before/after table of two bench/run.py results files (markdown on stdout).

    bench/compare.py docs/bench/before.json docs/bench/after.json
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
]


def main():
    before, after = (json.load(open(path)) for path in sys.argv[1:3])
    print("| standalone | before | after |")
    print("|---|---:|---:|")
    for label, get, fmt in ROWS:
        print(f"| {label} | {fmt.format(get(before['standalone']))} | {fmt.format(get(after['standalone']))} |")
    print()
    print("| serverless-shaped TLS pair | before | after |")
    print("|---|---:|---:|")
    for label, get, fmt in ROWS:
        print(f"| {label} | {fmt.format(get(before['serverless']))} | {fmt.format(get(after['serverless']))} |")


if __name__ == "__main__":
    main()
