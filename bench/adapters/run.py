#!/usr/bin/env python3
"""The adapter rows of the benchmark: requests/second of a minimal "read the session,
render" handler through each framework adapter, next to the same app on the framework's
best-known Redis store, on the same Valkey, in the same run.

    python3 bench/adapters/run.py                      # 3 x 10 s per side, c=16; ~6 min after builds
    python3 bench/adapters/run.py --doc                # ... and rewrite the table in docs/benchmarks.md
    python3 bench/adapters/run.py --seconds 1 --repeats 1 --frameworks node,python,go   # a smoke

One valkey-server and one valkey-sessions service (release build) on free loopback ports. Per
framework, two processes of the same app: through our adapter, and through the baseline store
(tower-sessions-redis-store, connect-redis, Django's cache backend with RedisCache, boj/redistore)
on that same Valkey. Each app's session is created once (GET /init, the cookie captured); the
timed requests are `GET /read` with that cookie, driven by wrk (one thread, --concurrency
keep-alive connections) for --seconds, after a --warmup. Repeats are interleaved: every repeat
runs every framework's adapter and baseline back to back, alternating which goes first, so a
noisy neighbour hits both sides alike; the ratio is the median of the per-repeat ratios.
Also measured over each timed interval: the CPU time of the app, and of what it talks to (the
service and Valkey for the adapter, Valkey for the baseline), per request, from /proc/<pid>/stat.

Writes target/bench-adapters/results.json (or $CARGO_TARGET_DIR/bench-adapters/) and prints the
markdown table; --doc replaces the block between the adapters markers in docs/benchmarks.md and
copies the results (every repeat's figures) to docs/bench/adapters.json.
SESSION_SERVICE_BIN, when set, is the service binary to run (no cargo build of it).
Needs: wrk, valkey-server, cargo + protoc, node >= 20 + npm, python3 (venv), go (Debian's
golang-go, golang-github-gorilla-sessions-dev, golang-github-boj-redistore-dev).
"""

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
WORK = os.path.join(TARGET, "bench-adapters")
TICK = os.sysconf("SC_CLK_TCK")

# Pinned versions of what the apps install (node: npm, python: pip).
NODE_PACKAGES = ["express@4.21.2", "express-session@1.18.1", "connect-redis@9.0.0", "redis@5.9.0"]
PY_PACKAGES = ["Django==5.2.19", "redis==6.4.0", "gunicorn==23.0.0"]

FRAMEWORKS = {
    "rust": ("axum + tower-sessions 0.14", "tower-sessions-valkey-sessions", "tower-sessions-redis-store 0.16 (fred pool of 6)"),
    "node": ("Express 4 + express-session 1.18", "valkey-sessions-client/express", "connect-redis 9 (node-redis 5)"),
    "python": ("Django 5.2 (gunicorn: 1 gthread worker × 8 threads)", "valkey_sessions.django", "cache backend + RedisCache (redis-py 6)"),
    "go": ("net/http + gorilla/sessions 1.2", "gorillastore", "boj/redistore (redigo pool of 10)"),
}
BEGIN, END = "<!-- adapters:begin -->", "<!-- adapters:end -->"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run(cmd, **kw):
    log("+", " ".join(cmd) if isinstance(cmd, list) else cmd)
    subprocess.run(cmd, check=True, **kw)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid):
    """utime + stime of pid and its live descendants (gunicorn's worker is the master's child)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    total = (int(fields[11]) + int(fields[12])) / TICK
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                total += sum(cpu_seconds(int(c)) for c in f.read().split())
        except FileNotFoundError:
            pass
    return total


def wait_http(pr, seconds=30):
    """Until the app accepts connections (gunicorn prints the port before it listens)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", pr.port), timeout=1).close()
            return
        except OSError:
            if pr.p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{pr.name} is not listening on {pr.port}; log {pr.log.name}")
            time.sleep(0.1)


# ---------------------------------------------------------------- builds (skipped when present)

def build_service(profile):
    if os.environ.get("SESSION_SERVICE_BIN"):  # as in clients/with-service.sh
        return os.environ["SESSION_SERVICE_BIN"]
    cmd = ["cargo", "build", "--locked", "-j", os.environ.get("BENCH_JOBS", "2"), "--bin", "valkey-sessions"]
    if profile == "release":
        cmd.append("--release")
    run(cmd, cwd=ROOT)
    return os.path.join(TARGET, profile, "valkey-sessions")


def build_rust(profile):
    cmd = ["cargo", "build", "--locked", "-j", os.environ.get("BENCH_JOBS", "2"),
           "--manifest-path", os.path.join(HERE, "rust", "Cargo.toml"),
           # its own workspace would build into bench/adapters/rust/target otherwise
           "--target-dir", TARGET]
    if profile == "release":
        cmd.append("--release")
    run(cmd, cwd=ROOT)
    return [os.path.join(TARGET, profile, "adapter-bench-app")]


def build_node():
    ts = os.path.join(ROOT, "clients", "typescript")
    if not os.path.isdir(os.path.join(ts, "node_modules")):
        run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=ts)
    app = os.path.join(WORK, "node-app")
    os.makedirs(app, exist_ok=True)
    for old in os.listdir(app):
        if old.endswith(".tgz"):
            os.remove(os.path.join(app, old))
    tgz = subprocess.run(["npm", "pack", "--silent", "--pack-destination", app], cwd=ts, check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    with open(os.path.join(app, "package.json"), "w") as f:
        f.write('{"name":"adapter-bench-node","private":true,"type":"module"}\n')
    run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "./" + tgz, *NODE_PACKAGES], cwd=app)
    shutil.copy(os.path.join(HERE, "node", "app.mjs"), app)
    return ["node", os.path.join(app, "app.mjs")]


def build_python():
    venv = os.path.join(WORK, "django-venv")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        run([sys.executable, "-m", "venv", venv])
    dist = tempfile.mkdtemp(prefix="wheel-", dir=WORK)
    src = os.path.join(dist, "src")
    shutil.copytree(os.path.join(ROOT, "clients", "python"), src, ignore=shutil.ignore_patterns(
        ".venv", "build", "*.egg-info", "_pb", "__pycache__"))
    env = {**os.environ, "VALKEY_SESSIONS_PROTO": os.path.join(ROOT, "proto")}
    run([py, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps", "-w", dist, src], env=env)
    wheel = [os.path.join(dist, w) for w in os.listdir(dist) if w.endswith(".whl")][0]
    run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--force-reinstall", "--no-deps", wheel])
    run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel, *PY_PACKAGES])
    shutil.rmtree(dist)
    return [py, os.path.join(HERE, "django_bench.py")]


def build_go():
    go = os.path.join(ROOT, "clients", "go")
    run(["bash", os.path.join(go, "generate.sh")])
    out = os.path.join(WORK, "gorilla-bench-app")
    run(["bash", "-c", f'. "{go}/env.sh" && go build -o "{out}" ./bench/adapters/go/'], cwd=ROOT)
    return [out]


# ---------------------------------------------------------------- processes

class Proc:
    def __init__(self, name, cmd, env=None, ready=None, port_on_stdout=False):
        self.name = name
        self.log = open(os.path.join(WORK, f"{name}.log"), "w+")
        self.p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE if port_on_stdout else self.log,
                                  stderr=self.log, text=True)
        self.port = None
        if port_on_stdout:
            line = self.p.stdout.readline()
            if not line.strip().isdigit():
                self.stop()
                raise RuntimeError(f"{name} did not start: {line!r}; log {self.log.name}")
            self.port = int(line)
        if ready:
            for _ in range(300):
                if ready(self):
                    break
                if self.p.poll() is not None:
                    raise RuntimeError(f"{name} exited; log {self.log.name}")
                time.sleep(0.1)
            else:
                raise RuntimeError(f"{name} not ready; log {self.log.name}")

    @property
    def pid(self):
        return self.p.pid

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def http_get(port, path, cookie=""):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        r = c.getresponse()
        body = r.read().decode(errors="replace")
        return r.status, r.getheader("Set-Cookie") or "", body
    finally:
        c.close()


# ---------------------------------------------------------------- wrk

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(port, cookie, seconds, concurrency):
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(concurrency), "-d", f"{seconds}s", "--latency", "--timeout", "5s",
         "-H", f"Cookie: {cookie}", f"http://127.0.0.1:{port}/read"],
        check=True, capture_output=True, text=True).stdout
    res = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
           "requests": int(re.search(r"(\d+) requests in", out).group(1))}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        res[f"p{pct}_ms"] = round(float(m.group(1)) * UNITS[m.group(2)], 3) if m else None
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = sum(map(int, m.groups())) if m else 0
    return res


# ---------------------------------------------------------------- main

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frameworks", default="rust,node,python,go")
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--profile", choices=["release", "debug"], default="release",
                   help="cargo profile of the service and the axum app")
    p.add_argument("--doc", action="store_true", help="rewrite the table in docs/benchmarks.md")
    p.add_argument("--shared", default="", help="a note on the machine's load, written with --doc")
    p.add_argument("--from-json", metavar="PATH", help="measure nothing: print (and with --doc write) the table "
                   "of an earlier run's results.json")
    args = p.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            results = json.load(f)
        results["valkey"] = re.sub(r"^Valkey server v=(\S+).*$", r"Valkey \1", results["valkey"])
        table = markdown(results)
        print(table)
        if args.doc:
            write_doc(results, table, args.shared)
        return
    fws = [f for f in args.frameworks.split(",") if f]
    unknown = set(fws) - set(FRAMEWORKS)
    if unknown:
        p.error(f"unknown frameworks {sorted(unknown)}")
    if not shutil.which("wrk"):
        p.error("wrk not found (apt-get install wrk)")
    os.makedirs(WORK, exist_ok=True)

    builders = {"rust": lambda: build_rust(args.profile), "node": build_node, "python": build_python, "go": build_go}
    service_bin = build_service(args.profile)
    cmds = {f: builders[f]() for f in fws}

    procs = []
    results = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": {
        "cpus": os.cpu_count(), "kernel": platform.release(),
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
        "loadavg_before": open("/proc/loadavg").read().split()[:3]},
        "seconds": args.seconds, "warmup": args.warmup, "repeats": args.repeats,
        "concurrency": args.concurrency, "profile": args.profile, "generator": "wrk -t 1 (keep-alive)",
        "rows": []}
    try:
        vdir = tempfile.mkdtemp(prefix="valkey-", dir=WORK)
        vport = free_port()
        valkey = Proc("valkey", ["valkey-server", "--bind", "127.0.0.1", "--port", str(vport), "--save", "",
                                 "--appendonly", "no", "--dir", vdir],
                      ready=lambda _: subprocess.run(["valkey-cli", "-p", str(vport), "ping"], capture_output=True,
                                                     text=True).stdout.strip() == "PONG")
        procs.append(valkey)
        version = subprocess.run(["valkey-server", "--version"], capture_output=True, text=True).stdout
        m = re.search(r"v=(\S+)", version)
        results["valkey"] = f"Valkey {m.group(1)}" if m else version.strip()
        gport = free_port()
        env = {**os.environ, "VALKEY_URL": f"redis://127.0.0.1:{vport}", "GRPC_LISTEN": f"127.0.0.1:{gport}",
               "METRICS_LISTEN": f"127.0.0.1:{free_port()}"}

        def listening(pr):
            pr.log.flush()
            with open(pr.log.name) as f:
                return "grpc listening" in f.read()
        service = Proc("service", [service_bin], env=env, ready=listening)
        procs.append(service)
        svc, vurl = f"127.0.0.1:{gport}", f"redis://127.0.0.1:{vport}"

        app_args = {
            "rust": (["--store", "valkey-sessions", "--url", f"http://{svc}"], ["--store", "redis", "--url", vurl]),
            "node": (["valkey-sessions", svc], ["connect-redis", vurl]),
            "python": (["--serve-gunicorn", "valkey_sessions.django", "--service", svc, "--valkey", vurl + "/0"],
                       ["--serve-gunicorn", "django.contrib.sessions.backends.cache", "--service", svc,
                        "--valkey", vurl + "/0"]),
            "go": (["-store", "valkey-sessions", "-addr", svc], ["-store", "redistore", "-addr", f"127.0.0.1:{vport}"]),
        }
        apps = {}
        for f in fws:
            for side, extra in zip(("adapter", "baseline"), app_args[f]):
                pr = Proc(f"{f}-{side}", cmds[f] + extra, port_on_stdout=True)
                wait_http(pr)
                procs.append(pr)
                status, set_cookie, body = http_get(pr.port, "/init")
                if status != 200 or not set_cookie:
                    raise RuntimeError(f"{f} {side}: /init gave {status} {body[:200]!r}, cookie {set_cookie!r}")
                cookie = set_cookie.split(";", 1)[0]
                status, _, body = http_get(pr.port, "/read", cookie)
                if status != 200 or "<p>bench</p><p>10 items</p>" not in body:
                    raise RuntimeError(f"{f} {side}: /read gave {status} {body[:200]!r}")
                apps[(f, side)] = (pr, cookie)
                if args.warmup:
                    wrk(pr.port, cookie, args.warmup, args.concurrency)
        log(f"apps up: {', '.join(f'{f}-{s}:{pr.port}' for (f, s), (pr, _) in apps.items())}")

        backends = {"adapter": [service.pid, valkey.pid], "baseline": [valkey.pid]}
        runs = {key: [] for key in apps}
        for r in range(args.repeats):
            for f in fws:
                order = ("adapter", "baseline") if r % 2 == 0 else ("baseline", "adapter")
                for side in order:
                    pr, cookie = apps[(f, side)]
                    before = (cpu_seconds(pr.pid), sum(cpu_seconds(b) for b in backends[side]))
                    res = wrk(pr.port, cookie, args.seconds, args.concurrency)
                    after = (cpu_seconds(pr.pid), sum(cpu_seconds(b) for b in backends[side]))
                    n = max(res["requests"], 1)
                    res["app_cpu_us"] = round((after[0] - before[0]) / n * 1e6, 1)
                    res["backend_cpu_us"] = round((after[1] - before[1]) / n * 1e6, 1)
                    runs[(f, side)].append(res)
                    log(f"repeat {r + 1}/{args.repeats} {f:6} {side:8} {res['rps']:9.1f} rps  p50 {res['p50_ms']} ms"
                        f"  p99 {res['p99_ms']} ms  errors {res['non_2xx'] + res['socket_errors']}")
        results["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
        for f in fws:
            a, b = runs[(f, "adapter")], runs[(f, "baseline")]
            med = lambda rs, k: statistics.median(x[k] for x in rs if x[k] is not None) if any(x[k] is not None for x in rs) else None
            ratios = [x["rps"] / y["rps"] for x, y in zip(a, b) if y["rps"]]
            results["rows"].append({
                "framework": f, "app": FRAMEWORKS[f][0], "adapter": FRAMEWORKS[f][1], "baseline": FRAMEWORKS[f][2],
                "adapter_rps": round(med(a, "rps"), 1), "baseline_rps": round(med(b, "rps"), 1),
                "ratio": round(statistics.median(ratios), 3) if ratios else None,
                "ratio_min": round(min(ratios), 3) if ratios else None, "ratio_max": round(max(ratios), 3) if ratios else None,
                "adapter_p50_ms": med(a, "p50_ms"), "adapter_p99_ms": med(a, "p99_ms"),
                "baseline_p50_ms": med(b, "p50_ms"), "baseline_p99_ms": med(b, "p99_ms"),
                "adapter_app_cpu_us": med(a, "app_cpu_us"), "adapter_backend_cpu_us": med(a, "backend_cpu_us"),
                "baseline_app_cpu_us": med(b, "app_cpu_us"), "baseline_backend_cpu_us": med(b, "backend_cpu_us"),
                "errors": sum(x["non_2xx"] + x["socket_errors"] for x in a + b),
                "adapter_runs": a, "baseline_runs": b,
            })
    finally:
        for pr in reversed(procs):
            pr.stop()

    out = os.path.join(WORK, "results.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    table = markdown(results)
    print(table)
    log(f"wrote {out}")
    if args.doc:
        write_doc(results, table, args.shared)
    bad = [r["framework"] for r in results["rows"] if r["errors"] or not r["adapter_rps"] or not r["baseline_rps"]]
    if bad:
        log(f"errors or empty runs in: {bad}")
        sys.exit(1)


def fmt(v, nd=1):
    return "–" if v is None else f"{v:,.{nd}f}"


def markdown(res):
    lines = [
        "| framework | adapter | baseline (same Valkey) | adapter rps | baseline rps | **ratio** (min–max) "
        "| p50 / p99 ms adapter | p50 / p99 ms baseline | CPU µs/req adapter: app + service&Valkey "
        "| CPU µs/req baseline: app + Valkey |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['app']} | `{r['adapter']}` | {r['baseline']} | {fmt(r['adapter_rps'], 0)} | {fmt(r['baseline_rps'], 0)} "
            f"| **{fmt(r['ratio'], 2)}** ({fmt(r['ratio_min'], 2)}–{fmt(r['ratio_max'], 2)}) "
            f"| {fmt(r['adapter_p50_ms'], 2)} / {fmt(r['adapter_p99_ms'], 2)} "
            f"| {fmt(r['baseline_p50_ms'], 2)} / {fmt(r['baseline_p99_ms'], 2)} "
            f"| {fmt(r['adapter_app_cpu_us'], 0)} + {fmt(r['adapter_backend_cpu_us'], 0)} "
            f"| {fmt(r['baseline_app_cpu_us'], 0)} + {fmt(r['baseline_backend_cpu_us'], 0)} |")
    return "\n".join(lines)


def write_doc(res, table, shared):
    path = os.path.join(ROOT, "docs", "benchmarks.md")
    with open(path) as f:
        doc = f.read()
    with open(os.path.join(ROOT, "docs", "bench", "adapters.json"), "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"{path}: no {BEGIN} ... {END} block")
    m = res["machine"]
    block = "\n".join([
        BEGIN,
        f"Run of {res['started']}: {m['cpus']} × {m['cpu']}, Linux {m['kernel']}, {res['valkey']}; "
        f"load average {' / '.join(m['loadavg_before'])} before, {' / '.join(res['loadavg_after'])} after."
        + (f" {shared}" if shared else ""),
        "",
        f"`GET /read` with one session's cookie, wrk, {res['concurrency']} keep-alive connections, "
        f"{res['repeats']} × {res['seconds']} s per side after {res['warmup']} s warm-up, sides interleaved; "
        "rps and latencies are medians over the repeats, the ratio is adapter ÷ baseline rps "
        "(median of the per-repeat ratios, their range in brackets). Errors: "
        f"{sum(r['errors'] for r in res['rows'])}.",
        "",
        table,
        END,
    ])
    doc = doc[:doc.index(BEGIN)] + block + doc[doc.index(END) + len(END):]
    with open(path, "w") as f:
        f.write(doc)
    log(f"rewrote the adapters table in {path}")


if __name__ == "__main__":
    main()
