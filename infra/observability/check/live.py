"""A throwaway valkey-server and the built valkey-sessions binary on free loopback ports."""

import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, ready, timeout=30.0, alive=None):
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return
        if alive is not None and alive.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {alive.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(0.1)


def stop(process):
    if process.poll() is None:
        process.send_signal(signal.SIGCONT)  # a frozen process cannot act on SIGTERM
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Stack:
    """What the traffic needs: the gRPC and metrics addresses, and Valkey's process to freeze."""

    def __init__(self, valkey, service, grpc_addr, metrics_url, logs):
        self.valkey = valkey
        self.service = service
        self.grpc_addr = grpc_addr
        self.metrics_url = metrics_url
        self.logs = logs

    def scrape(self):
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            return response.read().decode()

    def value(self, name, **labels):
        """The sum of the scraped samples `name` whose labels include `labels`; None when there
        is none."""
        found = [sample.value for family in text_string_to_metric_families(self.scrape())
                 for sample in family.samples
                 if sample.name == name and labels.items() <= sample.labels.items()]
        return sum(found) if found else None

    def service_log(self):
        return (self.logs / "service.log").read_text(errors="replace")


@contextlib.contextmanager
def running(binary, service_env):
    """Valkey, then the service against it (env: `service_env` on top of the addresses); both are
    stopped on exit, whatever happened. A failure prints the end of the service's log."""
    with tempfile.TemporaryDirectory(prefix="obs-live-") as tmp, contextlib.ExitStack() as stack:
        logs = pathlib.Path(tmp)
        valkey_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
        valkey = subprocess.Popen(
            ["valkey-server", "--bind", "127.0.0.1", "--port", str(valkey_port), "--save", "",
             "--appendonly", "no", "--dir", tmp],
            stdout=stack.enter_context(open(logs / "valkey.log", "w")), stderr=subprocess.STDOUT)
        stack.callback(stop, valkey)
        wait_for("valkey-server", lambda: subprocess.run(
            ["valkey-cli", "-p", str(valkey_port), "PING"], capture_output=True,
            text=True).stdout.strip() == "PONG", alive=valkey)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "VALKEY_URL": f"redis://127.0.0.1:{valkey_port}",
            "GRPC_LISTEN": f"127.0.0.1:{grpc_port}",
            "METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
            "RUST_LOG": "info",
            **service_env,
        }
        service = subprocess.Popen([str(binary)], env=env, stderr=subprocess.STDOUT,
                                   stdout=stack.enter_context(open(logs / "service.log", "w")))
        stack.callback(stop, service)
        live = Stack(valkey, service, f"127.0.0.1:{grpc_port}",
                     f"http://127.0.0.1:{metrics_port}/metrics", logs)
        try:
            wait_for("the service's /metrics", lambda: _answers(live), alive=service)
            yield live
        except BaseException:
            print(live.service_log()[-4000:])
            raise


def _answers(stack):
    try:
        return "valkey_up 1" in stack.scrape()
    except OSError:
        return False
