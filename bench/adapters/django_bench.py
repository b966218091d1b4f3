"""Django adapter row of the benchmark: requests/second of a "read the session, render" view
through SESSION_ENGINE = "valkey_sessions.django", next to the same app on Django's cache session
backend (django.contrib.sessions.backends.cache) with Django's built-in RedisCache on the same
Valkey, in the same run.

    python bench/adapters/django_bench.py --service 127.0.0.1:50051 --valkey redis://127.0.0.1:6379/0 \\
        [--seconds 10] [--concurrency 8]

Needs, in the running Python: the valkey-sessions-client wheel, Django 5.2 and redis (redis-py,
for RedisCache), e.g. `pip install dist/valkey_sessions_client-*.whl Django==5.2.19 redis==6.4.0`.
Each app runs in its own process (a threaded WSGI server on a free port, DEBUG off); this process
is the load generator: `--concurrency` threads, each a browser with its own session (created
before the clock starts, so the timed requests only read), each request a new connection.
Prints one JSON line: {"adapter", "baseline", "rps", "baseline_rps", "ratio", ...}.

bench/adapters/run.py (the table in docs/benchmarks.md) uses only the app of this file:
`--serve-gunicorn ENGINE` serves it under gunicorn (one gthread worker, HTTP keep-alive) on a
free port it prints, and drives it with wrk next to the other frameworks' apps.
"""

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time

ENGINES = {
    "valkey_sessions.django": "valkey_sessions.django",
    "cache+RedisCache": "django.contrib.sessions.backends.cache",
}


def configure(engine: str, service: str, valkey: str) -> None:
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-" + "x" * 50,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
        SESSION_ENGINE=engine,
        VALKEY_SESSIONS={"ADDRESS": service},
        CACHES={"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": valkey}},
        LOGGING_CONFIG=None,
    )
    django.setup()


def serve(engine: str, service: str, valkey: str) -> None:
    """Child process: the app, on a free port printed on stdout."""
    configure(engine, service, valkey)
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from django.core.wsgi import get_wsgi_application

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        request_queue_size = 256

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, get_wsgi_application(), server_class=Server, handler_class=Quiet)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def _views():
    from django.http import HttpResponse
    from django.urls import path

    def init(request):
        request.session["user"] = {"name": "bench", "roles": ["reader"]}
        request.session["cart"] = list(range(10))
        return HttpResponse("ok")

    def read(request):  # read the session, render
        user = request.session.get("user") or {}
        cart = request.session.get("cart") or []
        return HttpResponse(f"<html><body><p>{user.get('name')}</p><p>{len(cart)} items</p></body></html>")

    return [path("init", init), path("read", read)]


if os.environ.get("DJANGO_BENCH_CHILD"):
    urlpatterns = _views()

if os.environ.get("DJANGO_BENCH_WSGI"):
    # gunicorn's app (`django_bench:application`), configured by serve_gunicorn below.
    urlpatterns = _views()
    configure(os.environ["DJANGO_BENCH_ENGINE"], os.environ["DJANGO_BENCH_SERVICE"], os.environ["DJANGO_BENCH_VALKEY"])
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()


def serve_gunicorn(engine: str, service: str, valkey: str, threads: int) -> None:
    """The app under gunicorn (one gthread worker, `threads` threads, HTTP keep-alive) on a free
    port printed on stdout; this process becomes gunicorn's master (bench/adapters/run.py)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    print(port, flush=True)
    os.environ.update(DJANGO_BENCH_WSGI="1", DJANGO_BENCH_ENGINE=engine, DJANGO_BENCH_SERVICE=service,
                      DJANGO_BENCH_VALKEY=valkey)
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    os.execv(gunicorn, [gunicorn, "--chdir", os.path.dirname(os.path.abspath(__file__)), "-b", f"127.0.0.1:{port}",
                        "-w", "1", "-k", "gthread", "--threads", str(threads), "--keep-alive", "30",
                        "--log-level", "warning", "django_bench:application"])


def request(port: int, path: str, cookie: str = ""):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        r = c.getresponse()
        r.read()
        return r.status, r.getheader("Set-Cookie") or ""
    finally:
        c.close()


def measure(engine: str, args) -> dict:
    env = {**os.environ, "DJANGO_BENCH_CHILD": "1"}
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", engine, "--service", args.service, "--valkey", args.valkey],
        stdout=subprocess.PIPE, env=env, text=True,
    )
    try:
        port = int(child.stdout.readline())
        cookies = []
        for _ in range(args.concurrency):
            status, set_cookie = request(port, "/init")
            assert status == 200 and set_cookie, (engine, status)
            cookies.append(set_cookie.split(";", 1)[0])
        counts, errors = [0] * args.concurrency, [0] * args.concurrency
        stop = time.monotonic() + args.seconds

        def browser(i):
            while time.monotonic() < stop:
                status, _ = request(port, "/read", cookies[i])
                if status == 200:
                    counts[i] += 1
                else:
                    errors[i] += 1

        threads = [threading.Thread(target=browser, args=(i,)) for i in range(args.concurrency)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
        return {"rps": round(sum(counts) / elapsed, 1), "requests": sum(counts), "errors": sum(errors)}
    finally:
        child.terminate()
        child.wait()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--service", required=True, help="host:port of valkey-sessions")
    p.add_argument("--valkey", required=True, help="redis:// URL of the same Valkey, for RedisCache")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--serve-gunicorn", metavar="ENGINE", help="serve ENGINE under gunicorn (bench/adapters/run.py)")
    p.add_argument("--threads", type=int, default=8, help="gunicorn's threads (with --serve-gunicorn)")
    args = p.parse_args()
    if args.serve_gunicorn:
        return serve_gunicorn(args.serve_gunicorn, args.service, args.valkey, args.threads)
    if args.serve:
        return serve(args.serve, args.service, args.valkey)
    ours = measure(ENGINES["valkey_sessions.django"], args)
    base = measure(ENGINES["cache+RedisCache"], args)
    print(json.dumps({
        "adapter": "django valkey_sessions.django",
        "baseline": "django cache backend + RedisCache (same Valkey)",
        "rps": ours["rps"],
        "baseline_rps": base["rps"],
        "ratio": round(ours["rps"] / base["rps"], 3) if base["rps"] else None,
        "errors": ours["errors"] + base["errors"],
        "seconds": args.seconds,
        "concurrency": args.concurrency,
    }))


if __name__ == "__main__":
    main()
