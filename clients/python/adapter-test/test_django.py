"""A small Django project on SESSION_ENGINE = "valkey_sessions.django", driven by HTTP requests
with a cookie jar against the real service at SESSION_SERVICE_ADDR (no mocks).

Run where the wheel (with Django) is installed: clients/adapters-test.sh does it in a fresh venv.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from http.cookiejar import CookieJar
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import django
from django.conf import settings

ADDRESS = os.environ.get("SESSION_SERVICE_ADDR", "")
DB_DIR = tempfile.mkdtemp(prefix="django-sessions-")

settings.configure(
    DEBUG=False,
    SECRET_KEY="test-only-" + "x" * 50,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
    MIDDLEWARE=[
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(DB_DIR, "db.sqlite3")}},
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    SESSION_ENGINE="valkey_sessions.django",
    VALKEY_SESSIONS={"ADDRESS": ADDRESS, "TIMEOUT": 2.0},
    USE_TZ=True,
    LOGGING_CONFIG=None,
)
django.setup()

import pytest  # noqa: E402
from django.contrib.auth import authenticate, login, logout  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse, JsonResponse  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402

from session_client import SessionClient, SessionNotFound  # noqa: E402
from valkey_sessions.django import ServiceUnavailable, SessionConflict, SessionStore  # noqa: E402

COOKIE = settings.SESSION_COOKIE_NAME


# -- the app -----------------------------------------------------------------------------------

def state(request):
    s = request.session
    return {
        "count": s.get("count", 0),
        "items": s.get("items", []),
        "user": request.user.username if request.user.is_authenticated else None,
    }


def count(request):
    request.session["count"] = request.session.get("count", 0) + 1
    return JsonResponse(state(request))


def add(request):
    items = request.session.get("items", [])  # read first: the load happens here
    time.sleep(float(request.GET.get("delay", "0")))
    items.append(request.GET["item"])
    request.session["items"] = items
    return JsonResponse(state(request))


def show(request):
    return JsonResponse(state(request))


def short(request):
    request.session.set_expiry(2)
    request.session["count"] = request.session.get("count", 0) + 1
    return JsonResponse(state(request))


def do_login(request):
    user = authenticate(request, username=request.POST["username"], password=request.POST["password"])
    if user is None:
        return HttpResponse(status=403)
    login(request, user)  # calls request.session.cycle_key()
    return JsonResponse(state(request))


def do_logout(request):
    logout(request)  # request.session.flush()
    return JsonResponse({"user": None})


def bad(request):
    request.session["count"] = 99
    request.session["when"] = datetime.now()  # JSON cannot encode it
    return JsonResponse({})


def other_device():
    return SessionClient(ADDRESS)


def deleted_meanwhile(request):
    request.session.get("count")  # loaded
    with other_device() as c:  # "logout on another device" while this request runs
        c.delete(request.session.session_key)
    request.session["count"] = 1000
    return JsonResponse({})


def added_meanwhile(request):
    items = request.session.get("items", [])
    with other_device() as c:  # a concurrent request of the same browser adds "theirs" first
        s = c.get(request.session.session_key, strong=True)
        theirs = json.loads(s.attributes.get("items", b"[]")) + ["theirs"]
        c.put(s.id, {"items": json.dumps(theirs).encode()}, expected_version=s.version)
    request.session["items"] = items + ["mine"]
    return JsonResponse({})


def scalar_meanwhile(request):
    request.session.get("color")
    with other_device() as c:
        c.put(request.session.session_key, {"color": b'"red"'})
    request.session["color"] = "blue"
    return JsonResponse({})


urlpatterns = [
    path("count", count),
    path("add", add),
    path("show", show),
    path("short", short),
    path("login", do_login),
    path("logout", do_logout),
    path("bad", bad),
    path("deleted-meanwhile", deleted_meanwhile),
    path("added-meanwhile", added_meanwhile),
    path("scalar-meanwhile", scalar_meanwhile),
]


# -- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def database():
    if not ADDRESS:
        pytest.fail("set SESSION_SERVICE_ADDR=host:port of a running valkey-sessions")
    call_command("migrate", verbosity=0, interactive=False)
    User.objects.create_user("alice", password="wonderland")


@pytest.fixture
def service():
    with SessionClient(ADDRESS) as c:
        yield c


def cookie(client):
    m = client.cookies.get(COOKIE)
    return m.value if m is not None else None


def body(response):
    assert response.status_code == 200, response.content
    return json.loads(response.content)


class _Threading(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def live():
    server = make_server("127.0.0.1", 0, get_wsgi_application(), server_class=_Threading, handler_class=_Quiet)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def browser():
    jar = CookieJar()
    return jar, urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))


def fetch(opener, url):
    with opener.open(url, timeout=30) as r:
        return json.loads(r.read())


# -- the tests ---------------------------------------------------------------------------------

def test_session_survives_requests_one_attribute_per_key(service):
    c = Client()
    assert body(c.get("/count"))["count"] == 1
    sid = cookie(c)
    assert sid and "." in sid  # the service chose it (slot tag . 43 characters)
    assert body(c.get("/count"))["count"] == 2
    assert body(c.get("/add?item=book"))["items"] == ["book"]
    assert body(c.get("/count")) == {"count": 3, "items": ["book"], "user": None}
    assert cookie(c) == sid
    stored = service.get(sid, strong=True)
    # one attribute per top-level key, holding its JSON: what the other adapters read
    assert stored.attributes == {"count": b"3", "items": b'["book"]'}
    # SESSION_COOKIE_AGE (two weeks) clamped to the service's default maximum
    assert stored.idle_timeout == timedelta(days=1)


def test_reads_sessions_written_by_other_adapters(service):
    s = service.create({"count": b"41", "items": b'["from-express"]'})
    c = Client()
    c.cookies[COOKIE] = s.id
    assert body(c.get("/count")) == {"count": 42, "items": ["from-express"], "user": None}
    assert service.get(s.id, strong=True).attributes["count"] == b"42"


def test_expires_after_idle_timeout(service):
    c = Client()
    assert body(c.get("/short"))["count"] == 1
    sid = cookie(c)
    assert service.get(sid, strong=True).idle_timeout == timedelta(seconds=2)
    time.sleep(3.5)
    with pytest.raises(SessionNotFound):
        service.get(sid, strong=True)
    assert body(c.get("/count"))["count"] == 1  # a new session
    assert cookie(c) != sid


def test_logout_destroys_the_session(service):
    c = Client()
    body(c.get("/add?item=x"))
    assert body(c.post("/login", {"username": "alice", "password": "wonderland"}))["user"] == "alice"
    sid = cookie(c)
    r = c.get("/logout")
    assert r.status_code == 200
    assert r.cookies[COOKIE].value == ""  # Django deletes the cookie
    with pytest.raises(SessionNotFound):
        service.get(sid, strong=True)
    old = Client()
    old.cookies[COOKIE] = sid  # the old cookie, replayed
    assert body(old.get("/show")) == {"count": 0, "items": [], "user": None}


def test_login_rotates_the_id_and_the_old_cookie_no_longer_works(service):
    c = Client()
    assert body(c.get("/add?item=cart-item"))["items"] == ["cart-item"]
    before = cookie(c)
    r = c.post("/login", {"username": "alice", "password": "wonderland"})
    assert body(r) == {"count": 0, "items": ["cart-item"], "user": "alice"}
    after = cookie(c)
    assert after and after != before
    with pytest.raises(SessionNotFound):
        service.get(before, strong=True)
    assert body(c.get("/show")) == {"count": 0, "items": ["cart-item"], "user": "alice"}
    old = Client()
    old.cookies[COOKIE] = before
    assert body(old.get("/show")) == {"count": 0, "items": [], "user": None}


def test_concurrent_requests_of_one_browser_keep_every_item(live, service):
    jar, opener = browser()
    fetch(opener, f"{live}/count")
    sid = next(c.value for c in jar if c.name == COOKIE)
    items = ["a", "b", "c", "d"]
    start = threading.Barrier(len(items))
    errors = []

    def one(item):
        try:
            start.wait()
            fetch(opener, f"{live}/add?item={item}&delay=0.4")  # all four read before any writes
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    got = fetch(opener, f"{live}/show")
    assert sorted(got["items"]) == items and got["count"] == 1
    assert next(c.value for c in jar if c.name == COOKIE) == sid
    # the Create (with count), then one Put per item: each conflicting save re-read, merged, retried
    assert service.get(sid, strong=True).version == 1 + len(items)


def test_a_change_made_meanwhile_is_merged():
    c = Client()
    body(c.get("/add?item=first"))
    assert c.get("/added-meanwhile").status_code == 200
    assert body(c.get("/show"))["items"] == ["first", "theirs", "mine"]


def test_one_scalar_set_meanwhile_to_another_value_is_an_error_not_a_loss(service):
    c = Client()
    body(c.get("/count"))
    with pytest.raises(SessionConflict, match="'color'"):
        c.get("/scalar-meanwhile")
    assert service.get(cookie(c), strong=True).attributes["color"] == b'"red"'
    quiet = Client(raise_request_exception=False)  # what a browser gets
    body(quiet.get("/count"))
    assert quiet.get("/scalar-meanwhile").status_code == 500


@pytest.mark.parametrize(
    "value",
    ["garbage", "short", "x" * 300, "../../etc/passwd", "abc.def", "A" * 43, "dGhpcyBpcyBub3QgYSBzZXNzaW9uIGlkIGF0IGFsbA"],
)
def test_a_cookie_that_is_no_valid_id_is_a_new_session(value):
    c = Client()
    c.cookies[COOKIE] = value
    assert body(c.get("/count"))["count"] == 1
    assert cookie(c) not in (value, "")


def test_service_unavailable_is_an_error_and_writes_nothing(service):
    c = Client()
    body(c.get("/count"))
    sid = cookie(c)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = f"127.0.0.1:{s.getsockname()[1]}"  # bound, not listening: connection refused
    try:
        with override_settings(VALKEY_SESSIONS={"ADDRESS": dead, "TIMEOUT": 1.0}):
            with pytest.raises(ServiceUnavailable, match="UNAVAILABLE"):
                c.get("/count")
            quiet = Client(raise_request_exception=False)
            quiet.cookies[COOKIE] = sid
            r = quiet.get("/count")
            assert r.status_code == 500
            assert COOKIE not in r.cookies  # the cookie is neither replaced nor deleted
            fresh = Client(raise_request_exception=False)
            r = fresh.get("/count")
            assert r.status_code == 500 and COOKIE not in r.cookies  # no session made up
    finally:
        s.close()
    # The service back: the same session, unchanged (the user was not logged out).
    assert body(c.get("/count"))["count"] == 2
    assert cookie(c) == sid


def valkey_cli(*args):
    port = os.environ.get("SESSION_SERVICE_VALKEY_PORT")
    assert port, "with-service.sh sets SESSION_SERVICE_VALKEY_PORT"
    return subprocess.run(["valkey-cli", "-p", port, *args], check=True, capture_output=True, text=True).stdout


STORAGE_FULL_MIDDLEWARE = [
    "valkey_sessions.django.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]


@override_settings(MIDDLEWARE=STORAGE_FULL_MIDDLEWARE)
def test_storage_full_is_a_503_and_the_session_is_kept(service):
    c = Client()
    assert body(c.get("/count"))["count"] == 1
    sid = cookie(c)
    valkey_cli("CONFIG", "SET", "maxmemory-policy", "noeviction")
    valkey_cli("CONFIG", "SET", "maxmemory", "1")
    try:
        assert body(c.get("/show"))["count"] == 1  # reads keep working
        for r in (c.get("/count"), c.post("/login", {"username": "alice", "password": "wonderland"})):
            assert r.status_code == 503, r.content
            assert r.content.decode().startswith("session storage is full: your change was not saved")
            assert COOKIE not in r.cookies  # neither replaced nor cleared
    finally:
        valkey_cli("CONFIG", "SET", "maxmemory", "0")
    assert cookie(c) == sid
    assert body(c.get("/count"))["count"] == 2


def test_a_session_deleted_by_another_device_between_requests(service):
    c = Client()
    body(c.get("/count"))
    body(c.get("/count"))
    sid = cookie(c)
    assert service.delete(sid)
    assert body(c.get("/count"))["count"] == 1  # a new anonymous session
    assert cookie(c) != sid
    with pytest.raises(SessionNotFound):
        service.get(sid, strong=True)


def test_a_session_deleted_during_a_request_is_not_resurrected(service):
    c = Client(raise_request_exception=False)
    body(c.get("/count"))
    sid = cookie(c)
    r = c.get("/deleted-meanwhile")
    assert r.status_code == 400  # Django's SessionInterrupted
    with pytest.raises(SessionNotFound):
        service.get(sid, strong=True)


def test_an_attribute_that_cannot_be_serialized_is_a_clear_error(service):
    c = Client()
    body(c.get("/count"))
    sid = cookie(c)
    with pytest.raises(TypeError, match=r"session key 'when' cannot be serialized to JSON.*datetime"):
        c.get("/bad")
    assert service.get(sid, strong=True).attributes == {"count": b"1"}  # unchanged
    quiet = Client(raise_request_exception=False)
    quiet.cookies[COOKIE] = sid
    assert quiet.get("/bad").status_code == 500
    assert service.get(sid, strong=True).attributes == {"count": b"1"}


def test_store_contract(service):
    s = SessionStore()
    assert s.session_key is None and not s.exists("nothing-here-" + "x" * 20)
    s["a"] = {"n": 1}
    s.save()
    key = s.session_key
    assert key and s.exists(key)
    assert dict(SessionStore(key).items()) == {"a": {"n": 1}}
    s2 = SessionStore(key)
    s2["b"] = [1, 2]
    s2.set_expiry(60)
    s2.save()
    assert service.get(key, strong=True).idle_timeout == timedelta(seconds=60)
    s2.cycle_key()
    new = s2.session_key
    assert new != key and not s2.exists(key)
    assert dict(SessionStore(new).items()) == {"a": {"n": 1}, "b": [1, 2], "_session_expiry": 60}
    s3 = SessionStore(new)
    s3.clear()
    s3["c"] = True
    s3.save()
    assert dict(SessionStore(new).items()) == {"c": True}
    assert service.get(new, strong=True).attributes == {"c": b"true"}
    SessionStore.clear_expired()  # a no-op: Valkey expires
    s3.delete()
    assert not s3.exists(new)
    assert SessionStore(new).load() == {}
    # a key chosen by the caller (Django's must_create contract): written only if free
    from django.contrib.sessions.backends.base import CreateError

    own = SessionStore()
    own._session_key = "k" + os.urandom(20).hex()
    own["x"] = 1
    own.save(must_create=True)
    assert dict(SessionStore(own.session_key).items()) == {"x": 1}
    again = SessionStore()
    again._session_key = own.session_key
    with pytest.raises(CreateError):
        again.save(must_create=True)
    own.delete()


def test_a_token_needs_tls_unless_the_network_encrypts():
    # A bearer token is a credential: the client refuses to send it in clear by default.
    with pytest.raises(ValueError, match="needs TLS"):
        SessionClient(ADDRESS, token="a-secret-token")
    SessionClient(ADDRESS, token="a-secret-token", allow_token_over_plaintext=True).close()


def test_merge_rules():
    from valkey_sessions.merge import MISSING, MergeConflict, merge

    assert merge([1], [1, 2], [1, 3]) == [1, 2, 3]  # items added by each are kept
    assert merge([1, 2], [1, 2, 3], [2]) == [2, 3]  # an item removed by this request goes
    assert merge({"a": 1}, {"a": 1, "b": 2}, {"a": 5}) == {"a": 5, "b": 2}
    assert merge(1, 2, 1) == 2 and merge(1, 1, 3) == 3 and merge(MISSING, 4, 4) == 4
    assert merge(True, True, 1) == 1  # JSON equality: true is not 1
    assert merge("x", MISSING, "x") is MISSING  # deleted by the other, untouched here
    with pytest.raises(MergeConflict):
        merge("a", "b", "c")


def test_async_login_rotates(service):
    from asgiref.sync import async_to_sync

    s = SessionStore()
    s["k"] = "v"
    s.save()
    old = s.session_key
    async_to_sync(s.acycle_key)()
    assert s.session_key != old and not s.exists(old)
    assert service.get(s.session_key, strong=True).attributes == {"k": b'"v"'}
    s.delete()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
