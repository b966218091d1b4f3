"""A Django session engine on valkey-sessions: ``SESSION_ENGINE = "valkey_sessions.django"``.

Settings (all optional), in ``settings.VALKEY_SESSIONS``::

    VALKEY_SESSIONS = {
        "ADDRESS": "sessions.internal:50051",  # host:port of the service
        "TOKEN": "...",                        # bearer token: the caller identity, hence the tenant
        "TLS": True,                           # TLS with the system roots (implied by TLS_CA/CERT/KEY)
        "TLS_CA": "/etc/ssl/private-ca.pem",   # PEM CA file for a private CA
        "TLS_CERT": "client.pem",              # PEM client certificate (mTLS; also an identity)
        "TLS_KEY": "client.key",               # its key
        "TIMEOUT": 2.0,                        # seconds per call
        "MAX_IDLE": 86400,                     # longest idle timeout sent (the service's default max)
        "ALLOW_TOKEN_OVER_PLAINTEXT": False,   # a TOKEN needs TLS unless the network encrypts
    }

How it maps (docs/adapters.md):

* Ids: the service chooses (Create returns the id; ``create()`` sets ``session_key`` from it),
  so a request costs one Get, plus one Put when the session changed. Django lets a backend set
  the key in ``create()``; nothing of Django's key generation is used.
* Data: one service attribute per top-level session key, holding its JSON (what the other
  adapters read and write). A value JSON cannot encode raises ``TypeError`` naming the key.
* Expiry: ``get_expiry_age()`` (``SESSION_COOKIE_AGE`` or ``set_expiry``) is the session's idle
  timeout, clamped to 1 s ..= ``MAX_IDLE``; the service refreshes it on reads.
* Concurrency: ``load`` remembers the version and values it read; ``save`` sends only the keys
  that changed with ``expected_version`` and, on ABORTED, re-reads, merges three ways and retries
  (``valkey_sessions.merge``). Both requests setting one scalar differently raises
  ``SessionConflict`` (HTTP 500): never a silent loss.
* Login: ``cycle_key()`` (called by ``django.contrib.auth.login``) is the service's Rotate: a new
  id, the old cookie finds nothing. Logout's ``flush()`` is a Delete.
* Faults: a cookie that is no valid or live id is a new, empty session. The service unreachable
  (or any unexpected status) raises ``ServiceUnavailable`` from the session access or the
  middleware's save: Django's error path (HTTP 500), never an empty session. A session deleted
  elsewhere during the request is not resurrected: ``save`` raises ``UpdateError``, which
  Django's middleware turns into ``SessionInterrupted`` (HTTP 400).
* Storage full: a write Valkey refused for memory raises ``StorageFull`` (a
  ``ServiceUnavailable``); with ``valkey_sessions.django.SessionMiddleware`` in place of Django's,
  the response is a 503 with ``STORAGE_FULL_MESSAGE`` and the cookie stays as it was.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any, Optional

import grpc
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.http import HttpResponse

from session_client import SessionClient, SessionError, SessionNotFound, VersionConflict
from session_client.client import StorageFull as ClientStorageFull
from valkey_sessions.merge import MISSING, MergeConflict, canonical, merge

CONFLICT_RETRIES = 8
DEFAULTS = {
    "ADDRESS": "127.0.0.1:50051",
    "TOKEN": None,
    "TLS": False,
    "TLS_CA": None,
    "TLS_CERT": None,
    "TLS_KEY": None,
    "TIMEOUT": 2.0,
    "MAX_IDLE": 86400,
    "ALLOW_TOKEN_OVER_PLAINTEXT": False,
}


class ServiceUnavailable(Exception):
    """The session service could not be reached or failed; the request cannot use its session."""


class StorageFull(ServiceUnavailable):
    """Valkey is at its memory limit and refused the write (RESOURCE_EXHAUSTED,
    VALKEY_OUT_OF_MEMORY): nothing was written, the stored session is intact."""


STORAGE_FULL_MESSAGE = (
    "session storage is full: your change was not saved and your session is intact; try again later"
)


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's ``SessionMiddleware`` that answers 503 with a clear body when Valkey is full.

    Use it in place of ``django.contrib.sessions.middleware.SessionMiddleware``. Django's own
    turns the failed save (after the view) into a 500, and an exception in a view (a login's
    ``cycle_key``) too; here both are a 503 that neither sets nor clears the cookie.
    """

    def process_response(self, request, response):
        try:
            return super().process_response(request, response)
        except StorageFull:
            return _storage_full()

    def process_exception(self, request, exception):
        return _storage_full() if isinstance(exception, StorageFull) else None


def _storage_full() -> HttpResponse:
    return HttpResponse(STORAGE_FULL_MESSAGE, status=503, content_type="text/plain; charset=utf-8")


class SessionConflict(Exception):
    """A concurrent request set a session key to another value; this request's change was not saved."""


_clients: dict = {}
_clients_lock = threading.Lock()


def _options() -> dict:
    return {**DEFAULTS, **getattr(settings, "VALKEY_SESSIONS", {})}


def _read(path: Optional[str]) -> Optional[bytes]:
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()


def get_client() -> SessionClient:
    """The process's client for the configured service (one channel, shared by all threads)."""
    o = _options()
    key = tuple(sorted((k, str(v)) for k, v in o.items()))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = SessionClient(
                o["ADDRESS"],
                timeout=float(o["TIMEOUT"]),
                token=o["TOKEN"],
                tls=bool(o["TLS"]),
                ca=_read(o["TLS_CA"]),
                cert=_read(o["TLS_CERT"]),
                key=_read(o["TLS_KEY"]),
                allow_token_over_plaintext=bool(o["ALLOW_TOKEN_OVER_PLAINTEXT"]),
            )
            _clients[key] = client
        return client


def _unavailable(op: str, err: SessionError) -> ServiceUnavailable:
    kind = StorageFull if isinstance(err, ClientStorageFull) else ServiceUnavailable
    return kind(f"valkey-sessions {op} failed ({err.code.name}): {err.message}")


def _encode(data: dict) -> dict[str, bytes]:
    out = {}
    for k, v in data.items():
        try:
            out[k] = json.dumps(v, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
        except (TypeError, ValueError) as err:
            raise TypeError(f"session key {k!r} cannot be serialized to JSON: {err}") from err
    return out


def _decode(attributes: dict[str, bytes]) -> dict:
    out = {}
    for k, v in attributes.items():
        try:
            out[k] = json.loads(v)
        except ValueError:
            raise ServiceUnavailable(f"session attribute {k!r} is not JSON") from None
    return out


class _Base:
    """What the request read: the version, the values (decoded) and the idle timeout."""

    __slots__ = ("version", "data", "idle")

    def __init__(self, version: int, data: dict, idle: Optional[timedelta]) -> None:
        self.version, self.data, self.idle = version, data, idle


class SessionStore(SessionBase):
    """Django's ``SessionBase`` on the valkey-sessions gRPC API."""

    def __init__(self, session_key: Optional[str] = None) -> None:
        super().__init__(session_key)
        self._base: Optional[_Base] = None

    # -- helpers ---------------------------------------------------------------------------------

    @property
    def _client(self) -> SessionClient:
        return get_client()

    def _idle(self) -> timedelta:
        age = self.get_expiry_age()
        return timedelta(seconds=min(max(int(age), 1), int(_options()["MAX_IDLE"])))

    def _get(self, session_key: str) -> Optional[_Base]:
        """The stored session, or None when the id is unknown, expired, deleted or malformed."""
        try:
            s = self._client.get(session_key, strong=True)
        except SessionNotFound:
            return None
        except SessionError as err:
            if err.code == grpc.StatusCode.INVALID_ARGUMENT:
                return None
            raise _unavailable("Get", err) from err
        return _Base(s.version, _decode(s.attributes), s.idle_timeout)

    # -- SessionBase -----------------------------------------------------------------------------

    def load(self) -> dict:
        base = self._get(self.session_key)
        if base is None:
            # Not a live session: a new, empty one (Django's backends all do this).
            self._session_key = None
            self._base = None
            return {}
        self._base = base
        return json.loads(json.dumps(base.data))  # a copy: in-place changes are seen at save

    def exists(self, session_key: str) -> bool:
        return bool(session_key) and self._get(session_key) is not None

    def create(self) -> None:
        data = getattr(self, "_session_cache", {})
        attributes = _encode(data)
        idle = self._idle()
        try:
            s = self._client.create(attributes, idle_timeout=idle)
        except SessionError as err:
            raise _unavailable("Create", err) from err
        self._session_key = s.id
        self._base = _Base(s.version, _decode(attributes), s.idle_timeout)
        self._session_cache = data
        self.modified = True

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return self.create()
        if must_create:
            # Only by code that chose the key itself: the key is proposed to the service, which
            # writes it only if no session has it.
            data = self._get_session(no_load=True)
            attributes = _encode(data)
            try:
                s = self._client.create(attributes, idle_timeout=self._idle(), proposed_id=self.session_key)
            except SessionError as err:
                if err.code in (grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.INVALID_ARGUMENT):
                    raise CreateError from err
                raise _unavailable("Create", err) from err
            self._base = _Base(s.version, _decode(attributes), s.idle_timeout)
            return
        target = self._get_session()
        if self.session_key is None:  # the load found nothing: a new session
            return self.create()
        _encode(target)  # the error names the key before anything is sent
        target = json.loads(json.dumps(target))
        base = self._base
        if base is None:  # clear() without a load: compare with what is stored
            base = self._get(self.session_key)
            if base is None:
                raise UpdateError
        idle = self._idle()
        for _ in range(CONFLICT_RETRIES):
            changed = {k: v for k, v in target.items() if canonical(v) != canonical(base.data.get(k, MISSING))}
            removed = [k for k in base.data if k not in target]
            if not changed and not removed and base.idle == idle:
                self._base = base
                return
            try:
                s = self._client.put(
                    self.session_key, _encode(changed), removed, expected_version=base.version, idle_timeout=idle
                )
            except SessionNotFound as err:
                # Deleted meanwhile (logout on another device, revoked, expired): not resurrected.
                raise UpdateError from err
            except VersionConflict:
                current = self._get(self.session_key)
                if current is None:
                    raise UpdateError from None
                target = self._merge(base, current, target)
                base = current
                continue
            except SessionError as err:
                raise _unavailable("Put", err) from err
            self._base = _Base(s.version, target, s.idle_timeout)
            self._session_cache = json.loads(json.dumps(target))
            return
        raise SessionConflict(f"the session still conflicted after {CONFLICT_RETRIES} merges")

    @staticmethod
    def _merge(base: _Base, current: _Base, target: dict) -> dict:
        out = {}
        for k in dict.fromkeys([*base.data, *current.data, *target]):
            try:
                v = merge(base.data.get(k, MISSING), current.data.get(k, MISSING), target.get(k, MISSING))
            except MergeConflict:
                raise SessionConflict(
                    f"concurrent requests set session key {k!r} to different values; "
                    "this request's change was not saved"
                ) from None
            if v is not MISSING:
                out[k] = v
        return out

    def delete(self, session_key: Optional[str] = None) -> None:
        if session_key is None:
            session_key = self.session_key
            if session_key is None:
                return
            self._base = None
        try:
            self._client.delete(session_key)
        except SessionError as err:
            if err.code not in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
                raise _unavailable("Delete", err) from err

    def cycle_key(self) -> None:
        """Login: the session moves to a new id (Rotate); the old id is gone."""
        data = self._session  # loads: a stale cookie's key becomes None here
        if self.session_key is None or self._base is None:
            self._session_cache = data
            return self.create()
        try:
            s = self._client.rotate(self.session_key)
        except SessionNotFound:
            self._session_key = None
            self._base = None
            self._session_cache = data
            return self.create()
        except SessionError as err:
            raise _unavailable("Rotate", err) from err
        current = _Base(s.version, _decode(s.attributes), s.idle_timeout)
        # Rotate moved what is stored; this request's unsaved changes are merged on top.
        merged = self._merge(self._base, current, json.loads(json.dumps(data)))
        self._session_key = s.id
        self._base = current
        self._session_cache = merged
        self.modified = True

    async def acycle_key(self) -> None:
        """``alogin``'s cycle: the same Rotate as ``cycle_key`` (SessionBase's would Create + Delete)."""
        await sync_to_async(self.cycle_key)()

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing to do: Valkey expires sessions by itself."""
