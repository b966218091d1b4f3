#!/usr/bin/env python3
"""Every metric name (and matched label) the rules and the dashboard use is one the service
really exports: starts valkey-server and the built valkey-sessions binary on free loopback ports,
drives real RPCs (traffic.py) so every series appears, scrapes /metrics and compares. The gRPC
port has TLS and bearer-token authentication (secured.py), so the TLS and auth metrics are
exported and checked like every other; no name is exempt. Also fails if the service exports a
metric family no dashboard panel shows.

    live_scrape.py [--binary target/debug/valkey-sessions]
"""

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile

import live
import names
import secured as sec
import sources

ROOT = sources.KIT.parent.parent


def log(message):
    print(f"live-scrape: {message}", flush=True)


def generate_stubs(out):
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT / "proto"),
                    f"--python_out={out}", f"--grpc_python_out={out}", "session/v1/session.proto"],
                   check=True)
    sys.path.insert(0, str(out))


def main():
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", type=pathlib.Path, default=target / "debug" / "valkey-sessions")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="obs-stubs-") as stubs, \
            tempfile.TemporaryDirectory(prefix="obs-tls-") as tls:
        generate_stubs(stubs)
        import traffic

        secured = sec.Secured(pathlib.Path(tls))
        with live.running(options.binary, {**traffic.SERVICE_ENV, **secured.env()}) as stack:
            traffic.drive(stack, secured, log)
            text = stack.scrape()

    exported = names.exposition(text)
    rules_document, dashboard = sources.load_rules(), sources.load_dashboard()
    refs = names.references(rules_document, dashboard)
    problems = names.compare(refs, exported, sources.recorded(rules_document))
    dashboard_refs = names.references({"groups": []}, dashboard)
    problems += [f"{family} is exported but no dashboard panel shows it"
                 for family in names.unused_families(exported, dashboard_refs)]

    log(f"scraped {len(exported)} metric families: {', '.join(sorted(exported))}")
    samples = {name for family in exported.values() for name in family}
    log(f"the rules and the dashboard use {len(refs)} names: "
        f"{len(set(refs) & samples)} exported, "
        f"{len(set(refs) & sources.recorded(rules_document))} recorded by rules.yaml")
    for problem in problems:
        log(f"FAILED: {problem}")
    if problems:
        sys.exit(1)
    log("every metric name and label used is exported")


if __name__ == "__main__":
    main()
