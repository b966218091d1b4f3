#!/usr/bin/env python3
"""Every figure of docs/benchmarks.md, measured in one run on this machine.

Started by bench/run.sh, which builds the binaries first. For each topology (standalone Valkey,
and the ElastiCache-Serverless-shaped TLS pair: primary P, replica P+1) it measures

  1. the physical reference: valkey-benchmark GET/SET of a value as large as one session, with
     its own and Valkey's CPU per request;
  2. session-bench Get, Put, Create and mixed at the same concurrency, with the service's and the
     generator's CPU per RPC, and Get at half of its peak rate (fixed-rate, so p99 is honest);
     Get at fixed rates from a tenth of that peak to beyond it: latency against offered load;
  3. Valkey commands and round trips per RPC: MONITOR on every node during two runs of N and 2N
     requests, differenced so the working set's creation cancels out;
  4. memory per session (used_memory delta) next to Spring Session's RedisIndexedSessionRepository
     layout for the same data, written with valkey-cli --pipe;
  5. the service's peak RSS (VmHWM);
  6. the cost of security on the hot path: Get over TLS with a bearer token against plaintext
     without auth, alternating on the same Valkey;
  7. the sessions of a user: ListSessions of principals with 10 and with 1,000
     sessions, RevokeSessions, and the principal index's memory per session;
  8. the gRPC floor: session-floor, the same proto answering from memory, measured
     with the same generator and settings; the near cache: hot Gets, Valkey commands per hot Get,
     the delay from a Put on one instance to another no longer serving the old version, and
     Valkey commands and bytes per 1,000 RPCs of the mixed workload with the cache off and on.

Results go to target/bench/results.json and, unless --no-doc, into docs/benchmarks.md between
the `bench:begin` and `bench:end` markers. --check exits 1 on any RPC error or any RPC that is
not exactly one Valkey round trip.
"""

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import pathlib
import platform
import re
import resource
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parent.parent
VALKEY_SH = ROOT / "infra" / "local" / "valkey.sh"
# Commands the measurement itself or the service's background tasks send, not the RPCs (the
# deployment secret's agreement check: exists, hgetall, hset, pexpire, hdel).
BACKGROUND = re.compile(r"^(info|client|ping|cluster|readonly|hello|command|config|memory|scan|strlen|select|replconf|monitor|script|exists|hgetall|hset|pexpire|hdel)$")
RPC_OPS = ("get", "put", "create", "mixed")
# The most a Put acknowledged on one instance may take, at p99, to stop another instance's near
# cache serving the old version, for --check: release runs measure 1-2 ms; the CI smoke run (a
# debug build on 2 cores, sharing them with six Valkey processes) 11-30 ms.
COHERENCE_P99_MS = 100
# Interleaved rounds of the security cost (plaintext, then TLS + token, each round).
SECURITY_ROUNDS = 3
FLOOR_OPS = ("get", "put", "create")
# Offered load of the Get latency curve, as fractions of the closed-loop Get peak.
LOAD_CURVE = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5)
LOAD_CURVE_QUICK = (0.25, 0.75, 1.2)
COUNTED_OPS = ("create", "get", "put", "delete")
# The session every figure is about: 5 attributes of 100 bytes, for both layouts.
SESSION = {"value_size": 100, "attributes": 5}


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def free_ports(count):
    """`count` consecutive free loopback ports."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count + 10000 >= 65536:
            continue
        ok = True
        for port in range(base, base + count):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
        if ok:
            return base
    raise RuntimeError("no free consecutive ports")


class Valkey:
    """A topology started by infra/local/valkey.sh in its own state directory."""

    def __init__(self, topology, workdir):
        self.topology = topology
        self.port = free_ports(2 if topology == "serverless" else 1)
        self.state = workdir / f"valkey-{topology}-{self.port}"
        self.env = dict(os.environ, VALKEY_LOCAL_DIR=str(self.state), VALKEY_PORT=str(self.port))
        subprocess.run([str(VALKEY_SH), "start", topology], env=self.env, check=True,
                       stdout=subprocess.DEVNULL)
        self.tls = topology != "standalone"
        self.ports = [self.port, self.port + 1] if self.tls else [self.port]
        self.url = (f"rediss-cluster://127.0.0.1:{self.port}" if self.tls
                    else f"redis://127.0.0.1:{self.port}")
        self.ca = str(self.state / "tls" / "ca.pem") if self.tls else None

    def stop(self):
        subprocess.run([str(VALKEY_SH), "stop", self.topology], env=self.env, check=False,
                       stdout=subprocess.DEVNULL)

    def cli_args(self, port):
        args = ["valkey-cli", "-h", "127.0.0.1", "-p", str(port)]
        if self.tls:
            args += ["--tls", "--cacert", self.ca]
        return args

    def cli(self, port, *command):
        return subprocess.run(self.cli_args(port) + list(command), check=True,
                              capture_output=True, text=True).stdout

    def info(self, port, section):
        out = {}
        for line in self.cli(port, "INFO", section).splitlines():
            if ":" in line and not line.startswith("#"):
                key, value = line.split(":", 1)
                out[key] = value.strip()
        return out


class Monitor:
    """MONITOR on every node of a topology while a block runs.

    MONITOR shows each command with the connection that sent it; commands run by a script are
    marked `lua` and a replica shows what it applies from its primary with the primary's
    address, so round trips (commands the service sent) and commands executed can be told apart.
    """

    LINE = re.compile(r'^\d+\.\d+ \[\d+ ([^\]]+)\] "([^"]+)"')

    def __init__(self, valkey, workdir):
        self.valkey = valkey
        self.files = [workdir / f"monitor-{port}.txt" for port in valkey.ports]

    def __enter__(self):
        self.processes = []
        for port, path in zip(self.valkey.ports, self.files):
            out = open(path, "w")
            self.processes.append((subprocess.Popen(self.valkey.cli_args(port) + ["MONITOR"],
                                                    stdout=out, stderr=subprocess.DEVNULL), out))
        for path in self.files:
            deadline = time.monotonic() + 10
            while not path.read_text().startswith("OK"):
                if time.monotonic() > deadline:
                    raise RuntimeError("MONITOR did not start")
                time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        time.sleep(0.3)
        for process, out in self.processes:
            process.terminate()
            process.wait()
            out.close()

    def counts(self):
        """(round trips, {command: n, 'port:command': n}) of the RPC traffic seen."""
        primary = f"127.0.0.1:{self.valkey.port}"
        trips, commands = 0, {}
        for port, path in zip(self.valkey.ports, self.files):
            for line in path.read_text().splitlines():
                found = self.LINE.match(line)
                if not found:
                    continue
                client, command = found.group(1), found.group(2).lower()
                if BACKGROUND.match(command) or (port != self.valkey.port and client == primary):
                    continue
                if client != "lua":
                    trips += 1
                commands[command] = commands.get(command, 0) + 1
                commands[f"{port}:{command}"] = commands.get(f"{port}:{command}", 0) + 1
        return trips, commands


class Service:
    """The valkey-sessions binary against a topology."""

    def __init__(self, binaries, valkey, workdir, secured=None, near_cache=False, name=""):
        self.grpc_port = free_ports(1)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "VALKEY_URL": valkey.url,
            "GRPC_LISTEN": f"127.0.0.1:{self.grpc_port}",
            "METRICS_LISTEN": "127.0.0.1:0",
            "LOG_FORMAT": "json",
            "RUST_LOG": "info",
        }
        if valkey.tls:
            env.update(VALKEY_SESSIONS_PROFILE="cloud", VALKEY_CA_FILE=valkey.ca,
                       VALKEY_SESSIONS_GRPC__TRUSTED_NETWORK="true",
                       VALKEY_SESSIONS_NEAR_CACHE__ENABLED="false")
        # Secured: TLS on the gRPC port and a bearer token required (Secured.env), and the
        # caller flags session-bench and health-probe need to match.
        self.caller_flags = []
        scheme = "http"
        if secured:
            env.update(secured.env)
            self.caller_flags = secured.caller_flags
            scheme = "https"
        if near_cache:
            env["VALKEY_SESSIONS_NEAR_CACHE__ENABLED"] = "true"
        suffix = ("-secured" if secured else "") + ("-near-cache" if near_cache else "") + name
        self.log = open(workdir / f"service-{valkey.topology}{suffix}.log", "w")
        self.process = subprocess.Popen([str(binaries / "valkey-sessions")], env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        self.addr = f"{scheme}://127.0.0.1:{self.grpc_port}"
        deadline = time.monotonic() + 30
        while subprocess.run([str(binaries / "health-probe"), "--addr", self.addr, *self.caller_flags],
                             capture_output=True).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the service did not become SERVING; see {self.log.name}")
            time.sleep(0.1)

    @property
    def pid(self):
        return self.process.pid

    def peak_rss_kib(self):
        for line in pathlib.Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return None

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


class Floor:
    """session-floor: the proto on tonic's defaults, answering from memory (the gRPC floor)."""

    def __init__(self, binaries, workdir):
        port = free_ports(1)
        self.log = open(workdir / "session-floor.log", "w")
        self.process = subprocess.Popen([str(binaries / "session-floor"), "--listen", f"127.0.0.1:{port}"],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        self.addr = f"http://127.0.0.1:{port}"
        self.caller_flags = []
        deadline = time.monotonic() + 30
        while subprocess.run([str(binaries / "health-probe"), "--addr", self.addr],
                             capture_output=True).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("session-floor did not start")
            time.sleep(0.1)

    @property
    def pid(self):
        return self.process.pid

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def valkey_totals(valkey):
    """Commands executed and bytes in and out, summed over every node."""
    commands = bytes_moved = 0
    for port in valkey.ports:
        stats = valkey.info(port, "stats")
        commands += int(stats.get("total_commands_processed", 0))
        bytes_moved += int(stats.get("total_net_input_bytes", 0)) + int(stats.get("total_net_output_bytes", 0))
    return commands, bytes_moved


class Runner:
    def __init__(self, options):
        self.options = options
        self.binaries = ROOT / "target" / options.profile
        self.workdir = ROOT / "target" / "bench"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.commands = []

    def run(self, args, **kwargs):
        self.commands.append(" ".join(str(a) for a in args))
        return subprocess.run(args, check=True, **kwargs)

    def bench(self, service, op, **flags):
        """One session-bench run; returns its JSON report."""
        out = self.workdir / "session-bench.json"
        args = [str(self.binaries / "session-bench"), "--addr", service.addr, "--op", op,
                "--server-pid", str(service.pid), "--json", str(out), *service.caller_flags]
        for flag, value in flags.items():
            args += [f"--{flag.replace('_', '-')}", str(value)]
        self.run(args, stdout=subprocess.DEVNULL)
        report = json.loads(out.read_text())
        log(f"{op} {flags}: {report['total']['rps']:.0f} rps, p99 {report['total']['p99_us'] / 1000:.2f} ms, "
            f"errors {report['errors'] or 'none'}")
        return report

    def load(self, **flags):
        """The closed-loop flags shared by every throughput run."""
        o = self.options
        return {**dict(concurrency=o.concurrency, connections=o.connections, duration=o.duration,
                       warmup=o.warmup, sessions=o.sessions, **SESSION), **flags}

    def load_curve(self, service, peak):
        """Get at fixed offered rates around the closed-loop peak (shorter runs than the others):
        [{offered_rps, p50_us, p99_us, schedule_lag_p99_us, errors}]. Above saturation
        session-bench still sends every scheduled request, late: the lag and the latency (from the
        schedule) grow, and its RPS stays the offered rate, so it is not recorded here."""
        o = self.options
        points = []
        for fraction in LOAD_CURVE_QUICK if o.quick else LOAD_CURVE:
            rate = max(1, int(peak * fraction))
            r = self.bench(service, "get", **self.load(rate=rate, duration=o.curve_duration,
                                                       warmup=o.curve_warmup))
            points.append({"fraction_of_peak": fraction, "offered_rps": rate,
                           "p50_us": r["total"]["p50_us"],
                           "p99_us": r["total"]["p99_us"],
                           "schedule_lag_p99_us": (r.get("schedule_lag") or {}).get("p99_us"),
                           "errors": r["errors"]})
        return points

    def valkey_benchmark(self, valkey, size):
        args = ["valkey-benchmark", "-h", "127.0.0.1", "-p", str(valkey.port), "-c",
                str(self.options.concurrency), "-n", str(self.options.reference_requests), "-t",
                "get,set", "-d", str(size), "-r", "10000", "--csv"]
        if valkey.tls:
            args += ["--tls", "--cacert", valkey.ca, "--cluster"]
        valkey_cpu = self.valkey_cpu_seconds(valkey)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = self.run(args, capture_output=True, text=True).stdout
        client = resource.getrusage(resource.RUSAGE_CHILDREN)
        client_cpu = client.ru_utime + client.ru_stime - children.ru_utime - children.ru_stime
        valkey_cpu = self.valkey_cpu_seconds(valkey) - valkey_cpu
        requests = 2 * self.options.reference_requests  # GET and SET
        rows = {"cpu_us_per_request": {"client": client_cpu * 1e6 / requests,
                                       "valkey": valkey_cpu * 1e6 / requests}}
        for line in out.splitlines():
            cells = [c.strip('"') for c in line.split(",")]
            if cells[0] in ("GET", "SET"):
                rows[cells[0]] = {"rps": float(cells[1]), "p50_ms": float(cells[4]),
                                  "p99_ms": float(cells[6])}
        log(f"valkey-benchmark: GET {rows['GET']['rps']:.0f}, SET {rows['SET']['rps']:.0f} rps")
        return rows

    @staticmethod
    def valkey_cpu_seconds(valkey):
        """CPU seconds the primary has used (INFO cpu)."""
        cpu = valkey.info(valkey.port, "cpu")
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])

    def session_size(self, valkey, service):
        """Bytes of one stored session of 5 x 100 B (the reference's value size)."""
        self.bench(service, "create", sessions=0, requests=1, warmup="0s", duration="5s",
                   concurrency=1, connections=1, **SESSION)
        primary = valkey.port
        cursor, keys = "0", []
        while not keys:
            reply = valkey.cli(primary, "SCAN", cursor, "MATCH", "vs:*", "COUNT", "1000").split()
            cursor, keys = reply[0], reply[1:]
            if cursor == "0" and not keys:
                raise RuntimeError("no session key found")
        return int(valkey.cli(primary, "STRLEN", keys[0]).strip())

    def count(self, valkey, service, op, sessions=None):
        """Commands and round trips per RPC of `op`, from MONITOR on every node: the difference of
        an N and a 2N run, so creating the working set cancels out."""
        n = self.options.count_requests
        if sessions is None:
            sessions = 0 if op == "create" else 2 * n
        samples = []
        for requests in (n, 2 * n):
            with Monitor(valkey, self.workdir) as monitor:
                report = self.bench(service, op, sessions=sessions, requests=requests,
                                    warmup="0s", duration="60s", concurrency=16, connections=2,
                                    **SESSION)
            samples.append((report, monitor.counts()))
        (r1, (trips1, c1)), (r2, (trips2, c2)) = samples
        extra = r2["total"]["requests"] - r1["total"]["requests"]
        per_rpc = {}
        for name in set(c1) | set(c2):
            delta = (c2.get(name, 0) - c1.get(name, 0)) / extra
            if abs(delta) >= 0.005:
                per_rpc[name] = round(delta, 3)
        return {
            "requests": [r1["total"]["requests"], r2["total"]["requests"]],
            "commands": {k: v for k, v in per_rpc.items() if ":" not in k},
            "by_node": {k: v for k, v in per_rpc.items() if ":" in k},
            "round_trips": round((trips2 - trips1) / extra, 3),
            "errors": {**r1["errors"], **r2["errors"]},
        }

    @contextlib.contextmanager
    def running(self, topology):
        """A Valkey topology and the service against it, both stopped afterwards."""
        valkey = Valkey(topology, self.workdir)
        service = None
        try:
            service = Service(self.binaries, valkey, self.workdir)
            yield valkey, service
        finally:
            if service:
                service.stop()
            valkey.stop()

    def topology(self, name):
        log(f"--- {name}")
        with self.running(name) as (valkey, service):
            size = self.session_size(valkey, service)
            result = {"valkey_url": valkey.url, "session_bytes": size,
                      "reference": self.valkey_benchmark(valkey, size), "rpcs": {}}
            for op in RPC_OPS:
                result["rpcs"][op] = self.bench(service, op, **self.load())
            peak = result["rpcs"]["get"]["total"]["rps"]
            half = max(1, int(peak / 2))
            result["half_peak_get"] = self.bench(service, "get", **self.load(rate=half))
            result["get_load_curve"] = self.load_curve(service, peak)
            result["counts"] = {op: self.count(valkey, service, op) for op in COUNTED_OPS}
            result["peak_rss_kib"] = service.peak_rss_kib()
            result["cost_off"] = self.cost(valkey, service)
            floor = Floor(self.binaries, self.workdir)
            try:
                result["floor"] = {op: self.bench(floor, op, **self.load()) for op in FLOOR_OPS}
            finally:
                floor.stop()
            result["near_cache"] = self.near_cache(valkey, service)
            return result

    def cost(self, valkey, service):
        """Valkey commands and bytes per 1,000 RPCs of the mixed workload (ElastiCache bills
        ECPUs: about one per simple command per KB moved). session-bench creates its working set
        before measuring; a populate-only run of the same size, measured alike, is subtracted."""
        sessions = self.options.sessions
        t0 = valkey_totals(valkey)
        self.run([str(self.binaries / "session-bench"), "--addr", service.addr, *service.caller_flags,
                  "--populate-only", "--sessions", str(sessions),
                  "--value-size", str(SESSION["value_size"]), "--attributes", str(SESSION["attributes"])],
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t1 = valkey_totals(valkey)
        report = self.bench(service, "mixed", **self.load(warmup="0s"))
        t2 = valkey_totals(valkey)
        rpcs = report["total"]["requests"]
        commands = (t2[0] - t1[0]) - (t1[0] - t0[0])
        moved = (t2[1] - t1[1]) - (t1[1] - t0[1])
        return {"rpcs": rpcs, "commands_per_1000": commands / rpcs * 1000,
                "bytes_per_1000": moved / rpcs * 1000, "errors": report["errors"]}

    def near_cache(self, valkey, plain):
        """A second service with the near cache on, against the same Valkey."""
        log("--- near cache")
        cached = Service(self.binaries, valkey, self.workdir, near_cache=True)
        try:
            time.sleep(2)  # replicas discovered and tracked before measuring
            hot = self.bench(cached, "get", **self.load(sessions=1000))
            counts = self.count(valkey, cached, "get", sessions=50)
            cost = self.cost(valkey, cached)
            o = self.options
            coherence = self.bench(cached, "coherence", peer=plain.addr, sessions=1000,
                                   requests=500 if o.quick else 10000, concurrency=4, connections=2,
                                   warmup="0s", duration="300s", **SESSION)
        finally:
            cached.stop()
        return {"hot_get": hot, "hot_get_counts": counts, "cost_on": cost, "coherence": coherence}

    def principals(self):
        """ListSessions (first page of 20) of principals with 10 and 1,000 sessions, and
        RevokeSessions of principals with 10, on standalone Valkey."""
        log("--- sessions of a user (ListSessions, RevokeSessions)")
        o = self.options
        results = {}
        with self.running("standalone") as (valkey, service):
            for per, principals in ((10, 100), (1000, 10 if o.quick else 20)):
                valkey.cli(valkey.port, "FLUSHALL", "SYNC")
                results[f"list_{per}"] = self.bench(
                    service, "list", **self.load(sessions=per * principals, principals=principals))
            valkey.cli(valkey.port, "FLUSHALL", "SYNC")
            principals = 100 if o.quick else 500
            report = self.bench(service, "revoke-all", sessions=10 * principals, principals=principals,
                                concurrency=8, connections=2, warmup="0s", duration="120s", **SESSION)
            report["sessions_per_call"] = 10
            results["revoke_all_10"] = report
        return results

    def security_cost(self):
        """Get over TLS with a bearer token against plaintext without auth, in three interleaved
        rounds on the same Valkey so drift on a shared machine hits both alike."""
        log("--- security on the hot path (Get: TLS + token vs plaintext)")
        secured = Secured(self.workdir / "secured")
        valkey = Valkey("standalone", self.workdir)
        runs = {"plaintext": [], "tls_token": []}
        try:
            for _ in range(SECURITY_ROUNDS):
                for name, sec in (("plaintext", None), ("tls_token", secured)):
                    service = Service(self.binaries, valkey, self.workdir, secured=sec)
                    try:
                        runs[name].append(self.bench(service, "get", **self.load()))
                    finally:
                        service.stop()
        finally:
            valkey.stop()
        mean = lambda rs, key: sum(r[key] if key != "rps" else r["total"]["rps"] for r in rs) / len(rs)
        summary = {name: {"rps": mean(rs, "rps"), "server_cpu_us_per_rpc": mean(rs, "server_cpu_us_per_rpc"),
                          "p99_us": mean([r["total"] for r in rs], "p99_us"),
                          "errors": sum(sum(r["errors"].values()) for r in rs)}
                   for name, rs in runs.items()}
        summary["rps_loss"] = 1 - summary["tls_token"]["rps"] / summary["plaintext"]["rps"]
        summary["round_losses"] = [1 - t["total"]["rps"] / p["total"]["rps"]
                                   for p, t in zip(runs["plaintext"], runs["tls_token"])]
        log(f"security: plaintext {summary['plaintext']['rps']:.0f} rps, TLS + token "
            f"{summary['tls_token']['rps']:.0f} rps ({summary['rps_loss']:.1%} fewer)")
        return summary

    def memory(self):
        log("--- memory per session")
        n = self.options.memory_sessions
        with self.running("standalone") as (valkey, service):
            port = valkey.port

            def used():
                return int(valkey.info(port, "memory")["used_memory"])

            base = used()
            self.run([str(self.binaries / "session-bench"), "--addr", service.addr,
                      "--populate-only", "--sessions", str(n),
                      "--value-size", str(SESSION["value_size"]),
                      "--attributes", str(SESSION["attributes"])],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            ours_total = used() - base
            key = valkey.cli(port, "RANDOMKEY").strip()
            ours_sample = int(valkey.cli(port, "MEMORY", "USAGE", key).strip())

            # The same sessions, each belonging to a principal with 10: session + index entry.
            valkey.cli(port, "FLUSHALL", "SYNC")
            base = used()
            self.run([str(self.binaries / "session-bench"), "--addr", service.addr,
                      "--populate-only", "--sessions", str(n), "--principals", str(n // 10),
                      "--value-size", str(SESSION["value_size"]),
                      "--attributes", str(SESSION["attributes"])],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            indexed_total = used() - base

            valkey.cli(port, "FLUSHALL", "SYNC")
            base = used()
            spring = spring_layout(n, **SESSION)
            self.commands.append(f"valkey-cli -p {port} --pipe < (Spring layout, {n} sessions)")
            subprocess.run(valkey.cli_args(port) + ["--pipe"], input=spring, check=True,
                           capture_output=True)
            spring_total = used() - base
            hashes = valkey.cli(port, "--scan", "--pattern", "spring:session:sessions:????????-*").split()
            sample = hashes[0]
            spring_sample = (int(valkey.cli(port, "MEMORY", "USAGE", sample).strip())
                             + int(valkey.cli(port, "MEMORY", "USAGE", sample.replace(
                                 "sessions:", "sessions:expires:")).strip()))
            encoding = valkey.cli(port, "OBJECT", "ENCODING", sample).strip()
            return {
                "sessions": n,
                "ours_bytes_per_session": ours_total / n,
                "ours_memory_usage_sample": ours_sample,
                "indexed_bytes_per_session": indexed_total / n,
                "index_overhead": indexed_total / ours_total - 1,
                "spring_bytes_per_session": spring_total / n,
                "spring_memory_usage_sample": spring_sample,
                "spring_hash_encoding": encoding,
                "ratio": ours_total / spring_total,
            }


class Secured:
    """TLS material (a throwaway CA and a certificate for 127.0.0.1), a token, its hash and a
    config that requires it: what the service and its callers need for a secured run."""

    def __init__(self, directory):
        directory.mkdir(parents=True, exist_ok=True)
        d = directory

        def openssl(*args):
            subprocess.run(["openssl", *args], check=True, capture_output=True)

        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=bench CA",
                "-keyout", d / "ca.key", "-out", d / "ca.pem")
        openssl("req", *ec, "-subj", "/CN=localhost", "-keyout", d / "grpc.key", "-out", d / "grpc.csr")
        (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
        openssl("x509", "-req", "-in", d / "grpc.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", d / "ext.cnf", "-out", d / "grpc.pem")
        token = uuid.uuid4().hex + uuid.uuid4().hex
        (d / "token").write_text(token)
        digest = hashlib.sha256(token.encode()).hexdigest()
        (d / "tokens.toml").write_text(f'[[token]]\nidentity = "bench"\nsha256 = "{digest}"\n')
        (d / "config.toml").write_text('[auth]\nrequired = true\n\n[[auth.callers]]\nidentity = "bench"\n')
        self.env = {"GRPC_TLS_CERT_FILE": str(d / "grpc.pem"), "GRPC_TLS_KEY_FILE": str(d / "grpc.key"),
                    "GRPC_AUTH_TOKENS_FILE": str(d / "tokens.toml"),
                    "VALKEY_SESSIONS_CONFIG": str(d / "config.toml")}
        self.caller_flags = ["--service-ca-file", str(d / "ca.pem"), "--service-token-file", str(d / "token")]


def java_long(value):
    """java.lang.Long as JdkSerializationRedisSerializer writes it (82 bytes)."""
    return (b"\xac\xed\x00\x05" + b"sr\x00\x0ejava.lang.Long" + bytes.fromhex("3b8be490cc8f23df")
            + b"\x02\x00\x01J\x00\x05value" + b"xr\x00\x10java.lang.Number"
            + bytes.fromhex("86ac951d0b94e08b") + b"\x02\x00\x00xp" + struct.pack(">q", value))


def java_integer(value):
    """java.lang.Integer, serialized (81 bytes)."""
    return (b"\xac\xed\x00\x05" + b"sr\x00\x11java.lang.Integer" + bytes.fromhex("12e2a0a4f7818738")
            + b"\x02\x00\x01I\x00\x05value" + b"xr\x00\x10java.lang.Number"
            + bytes.fromhex("86ac951d0b94e08b") + b"\x02\x00\x00xp" + struct.pack(">i", value))


def java_string(text):
    """java.lang.String, serialized (TC_STRING: length + 7 bytes)."""
    data = text.encode()
    return b"\xac\xed\x00\x05t" + struct.pack(">H", len(data)) + data


def resp(*parts):
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        part = part if isinstance(part, bytes) else str(part).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def spring_layout(n, attributes, value_size):
    """RESP for n sessions as Spring Session's RedisIndexedSessionRepository stores them
    (Spring Session 3.x reference, "Storage Details"): the session hash, the expires key and the
    entry in the per-minute expirations set, default 30-minute timeout."""
    now = int(time.time() * 1000)
    timeout = 1800
    value = "v" * value_size
    commands = []
    for _ in range(n):
        sid = str(uuid.uuid4())
        key = f"spring:session:sessions:{sid}"
        fields = [b"creationTime", java_long(now), b"lastAccessedTime", java_long(now),
                  b"maxInactiveInterval", java_integer(timeout)]
        for i in range(attributes):
            fields += [f"sessionAttr:attr{i}".encode(), java_string(value)]
        commands.append(resp("HSET", key, *fields))
        commands.append(resp("EXPIRE", key, timeout + 300))
        commands.append(resp("SET", f"spring:session:sessions:expires:{sid}", "", "EX", timeout))
        bucket = ((now + timeout * 1000) // 60000 + 1) * 60000
        commands.append(resp("SADD", f"spring:session:expirations:{bucket}", f"expires:{sid}"))
        commands.append(resp("EXPIRE", f"spring:session:expirations:{bucket}", timeout + 300))
    return b"".join(commands)


def machine():
    cpu = "unknown"
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(re.search(r"MemTotal:\s+(\d+)", pathlib.Path("/proc/meminfo").read_text()).group(1))
    valkey = subprocess.run(["valkey-server", "--version"], capture_output=True, text=True).stdout
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "valkey": re.search(r"v=(\S+)", valkey).group(1),
        "rustc": rustc,
        "wakeup_jitter": wakeup_jitter(),
    }


def wakeup_jitter():
    """How late this machine wakes an idle process from a 1 ms sleep (µs p50, p99): the floor
    under every tail latency measured here, since each RPC wakes three processes."""
    late = []
    for _ in range(2000):
        start = time.perf_counter()
        time.sleep(0.001)
        late.append((time.perf_counter() - start - 0.001) * 1e6)
    late.sort()
    return {"p50_us": round(late[1000]), "p99_us": round(late[1980])}


def ms(us):
    return f"{us / 1000:.2f}"


def render(results):
    """The markdown that goes between the markers of docs/benchmarks.md."""
    m = results["machine"]
    o = results["options"]
    lines = [
        f"Measured {results['date']} by `bench/run.sh{' --quick' if o['quick'] else ''}` in one run "
        f"on {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Valkey {m['valkey']}, {m['rustc']}; the load generator, the service and Valkey share "
        "the machine, over loopback. Waking an idle process from a 1 ms sleep is late by "
        f"{m['wakeup_jitter']['p50_us']} µs (p50) and {m['wakeup_jitter']['p99_us']} µs (p99) here.",
        "",
        f"Throughput runs: concurrency {o['concurrency']} over {o['connections']} connections, "
        f"{o['duration']} after {o['warmup']} warm-up, {o['sessions']} sessions of 5 attributes x "
        "100 B. valkey-benchmark: same concurrency, `-d` = the stored session's size.",
        "",
    ]
    for name, title in (("standalone", "Standalone Valkey (profile `local`)"),
                        ("serverless", "Serverless-shaped TLS pair, Gets from the replica (profile `cloud`)")):
        t = results[name]
        ref = t["reference"]
        lines += [f"#### {title}", "",
                  "| what | RPS | p50 ms | p90 ms | p99 ms | p99.9 ms | errors | service CPU µs/RPC | generator CPU µs/RPC |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for cmd in ("GET", "SET"):
            r = ref[cmd]
            lines.append(f"| valkey-benchmark {cmd} ({t['session_bytes']} B) | {r['rps']:,.0f} | "
                         f"{r['p50_ms']:.2f} | – | {r['p99_ms']:.2f} | – | – | – | – |")
        for op in RPC_OPS:
            r = t["rpcs"][op]
            s = r["total"]
            errors = sum(r["errors"].values())
            label = {"mixed": "mixed (80/15/5)"}.get(op, op.capitalize())
            lines.append(f"| session-bench {label} | {s['rps']:,.0f} | {ms(s['p50_us'])} | {ms(s['p90_us'])} | "
                         f"{ms(s['p99_us'])} | {ms(s['p999_us'])} | {errors} | "
                         f"{r['server_cpu_us_per_rpc']:.1f} | {r['client_cpu_us_per_rpc']:.1f} |")
        h = t["half_peak_get"]
        get = t["rpcs"]["get"]["total"]["rps"]
        lines += [
            "",
            f"* **Get / valkey-benchmark GET: {get / ref['GET']['rps']:.0%}** "
            f"({get:,.0f} / {ref['GET']['rps']:,.0f} RPS at concurrency {o['concurrency']}).",
            f"* Get at half of that peak (fixed rate {h['params']['rate']:,}/s, latency from the scheduled "
            f"time): achieved {h['total']['rps']:,.0f} RPS, p50 {ms(h['total']['p50_us'])} ms, "
            f"**p99 {ms(h['total']['p99_us'])} ms**, p99.9 {ms(h['total']['p999_us'])} ms"
            + (f"; the generator's own send delay against the schedule, included in these: p50 "
               f"{ms(h['schedule_lag']['p50_us'])} ms, p99 {ms(h['schedule_lag']['p99_us'])} ms."
               if h.get("schedule_lag") else "."),
            f"* Service CPU per 1000 Gets: {t['rpcs']['get']['server_cpu_us_per_rpc']:.0f} ms; "
            f"peak RSS (VmHWM) over the whole run: {t['peak_rss_kib'] / 1024:.1f} MiB.",
            "",
            "| RPC | Valkey round trips per RPC | commands executed per RPC (script-internal included; MONITOR) |",
            "|---|---:|---|",
        ]
        for op in COUNTED_OPS:
            c = t["counts"][op]
            commands = ", ".join(f"{k} {v:g}" for k, v in sorted(c["commands"].items())) or "none"
            lines.append(f"| {op.capitalize()} | {c['round_trips']:.2f} | {commands} |")
        floor, nc = t["floor"], t["near_cache"]
        lines += [
            "",
            "Against the gRPC floor (`session-floor`: the same proto on tonic's defaults, answering "
            "from memory; same generator and settings, same run):",
            "",
            "| RPC | floor RPS | service RPS | service / floor (RPS) | floor CPU µs/RPC | service CPU µs/RPC | CPU ratio |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        rows = [(op.capitalize(), floor[op], t["rpcs"][op]) for op in FLOOR_OPS]
        rows.append(("Get, near cache on, hot (1,000 sessions)", floor["get"], nc["hot_get"]))
        for label, f, r in rows:
            lines.append(f"| {label} | {f['total']['rps']:,.0f} | {r['total']['rps']:,.0f} | "
                         f"**{r['total']['rps'] / f['total']['rps']:.2f}** | {f['server_cpu_us_per_rpc']:.1f} | "
                         f"{r['server_cpu_us_per_rpc']:.1f} | {r['server_cpu_us_per_rpc'] / f['server_cpu_us_per_rpc']:.2f} |")
        co = nc["coherence"]["total"]
        off, on = t["cost_off"], nc["cost_on"]
        lines += [
            "",
            f"* Valkey round trips per hot Get with the near cache on: "
            f"**{round(nc['hot_get_counts']['round_trips'], 3) + 0.0:.3f}** (MONITOR, N vs 2N runs over 50 sessions, "
            f"N = {nc['hot_get_counts']['requests'][0]:,}; background commands such as health probes "
            f"fall unevenly into the two runs, and each moves the figure by 1/N either way).",
            f"* A Put acknowledged by one instance to another (near cache on) no longer serving the old "
            f"version, over {co['requests']:,} writes: p50 {ms(co['p50_us'])} ms, p99 **{ms(co['p99_us'])} ms**, "
            f"max {ms(co['max_us'])} ms.",
            "",
            "| mixed workload (80/15/5) | Valkey commands per 1,000 RPCs | Valkey bytes moved per 1,000 RPCs |",
            "|---|---:|---:|",
            f"| near cache off | {off['commands_per_1000']:,.0f} | {off['bytes_per_1000'] / 1024:,.0f} KiB |",
            f"| near cache on | {on['commands_per_1000']:,.0f} | {on['bytes_per_1000'] / 1024:,.0f} KiB |",
        ]
        if name == "serverless":
            nodes = t["counts"]["get"]["by_node"]
            replica = [f"{k} {v:g}" for k, v in sorted(nodes.items())]
            lines += ["", f"Get commands by node (primary {t['valkey_url'].rsplit(':', 1)[1]}, replica +1): "
                      f"{', '.join(replica)}."]
        lines.append("")
    mem = results["memory"]
    lines += [
        "#### Memory per session (5 attributes x 100 B)",
        "",
        "| layout | bytes per session (used_memory delta) | MEMORY USAGE of one session's keys |",
        "|---|---:|---:|",
        f"| valkey-sessions, anonymous: one string `vs:{{tag}}.handle` | {mem['ours_bytes_per_session']:,.0f} | {mem['ours_memory_usage_sample']:,} |",
        f"| valkey-sessions, 10 sessions per principal: the string + its entry in `vs:{{tag}}:i` | {mem['indexed_bytes_per_session']:,.0f} | – |",
        f"| Spring Session RedisIndexedSessionRepository: hash ({mem['spring_hash_encoding']}) + expires key + expirations set entry | "
        f"{mem['spring_bytes_per_session']:,.0f} | {mem['spring_memory_usage_sample']:,} (without the set entry) |",
        "",
        f"**valkey-sessions needs {mem['ratio']:.0%} of the Spring layout's memory** "
        f"({mem['sessions']:,} sessions each). **The principal index adds "
        f"{mem['index_overhead']:.1%} per session** (goal: at most 15%).",
        "",
    ]
    pr = results["principals"]
    lines += [
        "#### Sessions of a user (standalone)",
        "",
        "| RPC | RPS | p50 ms | p99 ms | errors | service CPU µs/RPC |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {label} | {pr[k]['total']['rps']:,.0f} | {ms(pr[k]['total']['p50_us'])} | "
          f"{ms(pr[k]['total']['p99_us'])} | {sum(pr[k]['errors'].values())} | "
          f"{pr[k]['server_cpu_us_per_rpc']:.1f} |"
          for k, label in (("list_10", "ListSessions, first page of 20, principal with 10 sessions"),
                           ("list_1000", "ListSessions, first page of 20, principal with 1,000 sessions"),
                           ("revoke_all_10", "RevokeSessions of a principal with 10 sessions (concurrency 8)"))),
        "",
    ]
    sec = results["security"]
    lines += [
        "#### Security on the hot path: Get over TLS with a bearer token (standalone)",
        "",
        "| Get | RPS | p99 ms | errors | service CPU µs/RPC |",
        "|---|---:|---:|---:|---:|",
        *(f"| {label} | {sec[k]['rps']:,.0f} | {ms(sec[k]['p99_us'])} | {sec[k]['errors']} | "
          f"{sec[k]['server_cpu_us_per_rpc']:.1f} |"
          for k, label in (("plaintext", "plaintext, no auth"), ("tls_token", "TLS 1.3 + bearer token (auth required)"))),
        "",
        f"**TLS + token: {sec['rps_loss']:.1%} fewer RPS than plaintext** (goal: at most 15%); "
        f"each row is the mean of {len(sec.get('round_losses', [])) or 2} interleaved runs on the "
        "same Valkey"
        + (f" (per round: {', '.join(f'{x:.1%}' for x in sec['round_losses'])})."
           if sec.get("round_losses") else "."),
        "",
        "<details><summary>Exact commands of this run</summary>",
        "",
        "```",
        *results["commands"],
        "```",
        "",
        "</details>",
    ]
    return "\n".join(lines)


def check(results):
    problems = []
    for name in ("standalone", "serverless"):
        nc = results[name].get("near_cache")
        if not nc:
            continue
        if nc["hot_get_counts"]["round_trips"] > 0.05:
            problems.append(f"{name}: {nc['hot_get_counts']['round_trips']} Valkey round trips per hot Get "
                            "with the near cache on, want at most 0.05")
        for part in ("hot_get", "coherence"):
            if sum(nc[part]["errors"].values()):
                problems.append(f"{name} near cache {part}: errors {nc[part]['errors']}")
        p99_ms = nc["coherence"]["total"]["p99_us"] / 1000
        if p99_ms > COHERENCE_P99_MS:
            problems.append(f"{name} near cache: a write reached the other instance's cache in "
                            f"{p99_ms:.1f} ms at p99, want at most {COHERENCE_P99_MS} ms")
    for name, r in results.get("principals", {}).items():
        if sum(r["errors"].values()):
            problems.append(f"principals {name}: errors {r['errors']}")
    for name in ("plaintext", "tls_token"):
        if results["security"][name]["errors"]:
            problems.append(f"security {name}: {results['security'][name]['errors']} errors")
    for name in ("standalone", "serverless"):
        t = results[name]
        curve = {f"get at {p['offered_rps']}/s": p for p in t.get("get_load_curve", [])}
        for op, r in {**t["rpcs"], "half-peak get": t["half_peak_get"], **curve}.items():
            if r["errors"]:
                problems.append(f"{name} {op}: errors {r['errors']}")
        for op, c in t["counts"].items():
            if c["errors"]:
                problems.append(f"{name} count {op}: errors {c['errors']}")
            if abs(c["round_trips"] - 1.0) > 0.02:
                problems.append(f"{name} {op}: {c['round_trips']} Valkey round trips per RPC, want 1")
    return problems


def write_doc(text):
    """Replaces the results between the markers of docs/benchmarks.md with `text`."""
    doc = ROOT / "docs" / "benchmarks.md"
    current = doc.read_text()
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    if begin not in current or end not in current:
        sys.exit(f"bench: {doc} lacks the {begin} / {end} markers")
    head, rest = current.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{begin}\n{text}\n{end}{tail}")
    log(f"updated {doc.relative_to(ROOT)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test, CI)")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument("--check", action="store_true", help="exit 1 on errors or extra round trips")
    parser.add_argument("--profile", default="release", help="cargo profile directory of the binaries")
    parser.add_argument("--render", metavar="RESULTS_JSON",
                        help="measure nothing: rewrite docs/benchmarks.md from an earlier run's results")
    options = parser.parse_args()
    if options.render:
        write_doc(render(json.loads(pathlib.Path(options.render).read_text())))
        return
    quick = options.quick
    options.concurrency = 64
    options.connections = 4
    options.duration = "2s" if quick else "10s"
    options.warmup = "1s" if quick else "2s"
    options.sessions = 1000 if quick else 10000
    options.reference_requests = 50000 if quick else 500000
    options.count_requests = 500 if quick else 5000
    options.memory_sessions = 2000 if quick else 20000
    options.curve_duration = "2s" if quick else "5s"
    options.curve_warmup = "1s"

    runner = Runner(options)
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "options": {k: getattr(options, k) for k in ("quick", "concurrency", "connections", "duration",
                                                      "warmup", "sessions", "profile")},
    }
    results["standalone"] = runner.topology("standalone")
    results["serverless"] = runner.topology("serverless")
    results["memory"] = runner.memory()
    results["security"] = runner.security_cost()
    results["principals"] = runner.principals()
    results["commands"] = runner.commands
    out = runner.workdir / "results.json"
    out.write_text(json.dumps(results, indent=2))
    text = render(results)
    print(text)
    log(f"results: {out}")
    if not options.no_doc:
        write_doc(text)
    if options.check:
        problems = check(results)
        for problem in problems:
            log(f"CHECK FAILED: {problem}")
        if problems:
            sys.exit(1)
        log("check: no errors, one Valkey round trip per Create, Get, Put and Delete")


if __name__ == "__main__":
    main()
