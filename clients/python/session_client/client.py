"""A small typed wrapper over the generated session.v1 stubs.

The generated ``SessionServiceStub`` is usable directly; this module adds plain Python types
(``Session`` with ``datetime``/``timedelta``) and exceptions a caller can catch by kind:
``SessionNotFound`` (NOT_FOUND) and ``VersionConflict`` (ABORTED), both ``SessionError``.
The sessions of a principal are listed as ``SessionInfo`` (a revocation handle, never the id),
one ``SessionPage`` at a time or all of them with ``iter_sessions``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterable, Iterator, Mapping, Optional

import grpc
from google.protobuf import duration_pb2, timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from session_client._pb import session_pb2, session_pb2_grpc

SERVICE_NAME = "session.v1.SessionService"


class SessionError(Exception):
    """The service answered with a non-OK status; ``code`` is the ``grpc.StatusCode``."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class SessionNotFound(SessionError):
    """NOT_FOUND: the session does not exist, expired or was deleted."""


class VersionConflict(SessionError):
    """ABORTED: ``expected_version`` was stale. Re-read the session and retry.

    ``current_version`` is the stored version, parsed from the status message (None if absent).
    """

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(code, message)
        m = re.search(r"current version is (\d+)", message)
        self.current_version: Optional[int] = int(m.group(1)) if m else None


class StorageFull(SessionError):
    """RESOURCE_EXHAUSTED, reason VALKEY_OUT_OF_MEMORY: Valkey is at its memory limit and refused
    the write. Nothing was written and reads keep working; answer the user 503.
    """


ERROR_DOMAIN = "valkey-sessions"


def _fields(buf: bytes):
    """The (field number, value) pairs of a protobuf message's varint and length-delimited fields."""
    i = 0

    def varint() -> int:
        nonlocal i
        shift = result = 0
        while True:
            b = buf[i]
            i += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result
            shift += 7

    while i < len(buf):
        tag = varint()
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            yield field, varint()
        elif wire == 2:
            n = varint()
            yield field, buf[i : i + n]
            i += n
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            return


def _error_reason(err: grpc.RpcError) -> Optional[str]:
    """The reason of the google.rpc.ErrorInfo detail the service attached, if any.

    The details travel as a google.rpc.Status in the ``grpc-status-details-bin`` trailer:
    ``details`` (field 3) are Any messages (type_url = 1, value = 2); ErrorInfo has reason = 1
    and domain = 2. Read here with the wire format rather than a googleapis dependency.
    """
    trailers = err.trailing_metadata() or ()  # type: ignore[attr-defined]
    for key, value in trailers:
        if key != "grpc-status-details-bin":
            continue
        try:
            for field, detail in _fields(value):
                if field != 3:
                    continue
                any_ = dict(_fields(detail))
                if any_.get(1, b"").decode().endswith("/google.rpc.ErrorInfo"):
                    info = dict(_fields(any_.get(2, b"")))
                    if info.get(2, b"").decode() == ERROR_DOMAIN:
                        return info.get(1, b"").decode()
        except (IndexError, UnicodeDecodeError):
            return None
    return None


def _error(err: grpc.RpcError) -> SessionError:
    code = err.code()  # type: ignore[attr-defined]
    message = err.details() or ""  # type: ignore[attr-defined]
    if code == grpc.StatusCode.NOT_FOUND:
        return SessionNotFound(code, message)
    if code == grpc.StatusCode.ABORTED:
        return VersionConflict(code, message)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and _error_reason(err) == "VALKEY_OUT_OF_MEMORY":
        return StorageFull(code, message)
    return SessionError(code, message)


def _time(msg: session_pb2.Session | session_pb2.SessionInfo, name: str) -> Optional[datetime]:
    if not msg.HasField(name):
        return None
    ts: timestamp_pb2.Timestamp = getattr(msg, name)
    return ts.ToDatetime(tzinfo=timezone.utc)


def _duration(d: Optional[timedelta]) -> Optional[duration_pb2.Duration]:
    if d is None:
        return None
    out = duration_pb2.Duration()
    out.FromTimedelta(d)
    return out


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds ``authorization: Bearer <token>`` to every call."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details):  # grpc.ClientCallDetails is an interface: rebuild it
        metadata = list(details.metadata or []) + [self._header]
        return _CallDetails(
            details.method, details.timeout, metadata, details.credentials,
            getattr(details, "wait_for_ready", None), getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)


@dataclass(frozen=True)
class _CallDetails(grpc.ClientCallDetails):
    method: str
    timeout: Optional[float]
    metadata: Optional[list]
    credentials: Optional[grpc.CallCredentials]
    wait_for_ready: Optional[bool]
    compression: Optional[grpc.Compression]


@dataclass(frozen=True)
class Session:
    """A session as the service returns it."""

    id: str
    attributes: dict[str, bytes] = field(default_factory=dict)
    principal: str = ""
    created_at: Optional[datetime] = None
    last_accessed_at: Optional[datetime] = None
    expires_at: Optional[datetime] = None
    idle_timeout: Optional[timedelta] = None
    absolute_expires_at: Optional[datetime] = None
    version: int = 0

    @classmethod
    def from_proto(cls, msg: session_pb2.Session) -> "Session":
        return cls(
            id=msg.id,
            attributes=dict(msg.attributes),
            principal=msg.principal,
            created_at=_time(msg, "created_at"),
            last_accessed_at=_time(msg, "last_accessed_at"),
            expires_at=_time(msg, "expires_at"),
            idle_timeout=msg.idle_timeout.ToTimedelta() if msg.HasField("idle_timeout") else None,
            absolute_expires_at=_time(msg, "absolute_expires_at"),
            version=msg.version,
        )


@dataclass(frozen=True)
class SessionInfo:
    """One session of a principal as ``list_sessions`` returns it: metadata and a handle, no id.

    The ``handle`` revokes the session (``revoke_session``) but cannot read or write it.
    """

    handle: str
    created_at: Optional[datetime] = None
    last_accessed_at: Optional[datetime] = None
    expires_at: Optional[datetime] = None
    version: int = 0
    display_attributes: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def from_proto(cls, msg: session_pb2.SessionInfo) -> "SessionInfo":
        return cls(
            handle=msg.handle,
            created_at=_time(msg, "created_at"),
            last_accessed_at=_time(msg, "last_accessed_at"),
            expires_at=_time(msg, "expires_at"),
            version=msg.version,
            display_attributes=dict(msg.display_attributes),
        )


@dataclass(frozen=True)
class SessionPage:
    """One page of ``list_sessions``, newest activity first; ``next_page_token`` is "" on the last."""

    sessions: list[SessionInfo] = field(default_factory=list)
    next_page_token: str = ""


class SessionClient:
    """Client for session.v1.SessionService (and grpc.health.v1 on the same server).

    ``target`` is host:port. The channel is plaintext unless ``tls`` (or any of ``ca``, ``cert``,
    ``key``: PEM bytes; ``cert``/``key`` are a client certificate for mTLS) is given, or you pass
    your own ``channel``. ``token`` is sent as ``authorization: Bearer <token>`` on every call
    (the caller identity; it decides the tenant); it is a credential, so a token on a plaintext
    channel the client builds is refused unless ``allow_token_over_plaintext`` (a loopback
    sidecar, a mesh that encrypts). Use as a context manager or call ``close()``.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 5.0,
        channel: Optional[grpc.Channel] = None,
        token: Optional[str] = None,
        tls: bool = False,
        ca: Optional[bytes] = None,
        cert: Optional[bytes] = None,
        key: Optional[bytes] = None,
        allow_token_over_plaintext: bool = False,
    ) -> None:
        secure = tls or ca is not None or cert is not None or key is not None
        if channel is None and token is not None and not secure and not allow_token_over_plaintext:
            raise ValueError(
                "a bearer token needs TLS (tls=True or ca=...): it would travel in clear; "
                "pass allow_token_over_plaintext=True only where the network encrypts"
            )
        self._own_channel = channel is None
        if channel is None:
            if secure:
                creds = grpc.ssl_channel_credentials(
                    root_certificates=ca, private_key=key, certificate_chain=cert
                )
                channel = grpc.secure_channel(target, creds)
            else:
                channel = grpc.insecure_channel(target)
        self._raw_channel = channel
        if token is not None:
            channel = grpc.intercept_channel(channel, _BearerToken(token))
        self.channel = channel
        self.stub = session_pb2_grpc.SessionServiceStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)
        self.timeout = timeout

    def __enter__(self) -> "SessionClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own_channel:
            self._raw_channel.close()

    def create(
        self,
        attributes: Optional[Mapping[str, bytes]] = None,
        *,
        principal: str = "",
        idle_timeout: Optional[timedelta] = None,
        absolute_timeout: Optional[timedelta] = None,
        proposed_id: Optional[str] = None,
    ) -> Session:
        """Starts a session, version 1, with a server-generated id or ``proposed_id``.

        A ``proposed_id`` (22..128 characters of A-Z a-z 0-9 - _, drawn from a CSPRNG) that a
        session already has raises ``SessionError`` ALREADY_EXISTS; nothing is overwritten.
        """
        req = session_pb2.CreateRequest(
            attributes=dict(attributes or {}),
            principal=principal,
            idle_timeout=_duration(idle_timeout),
            absolute_timeout=_duration(absolute_timeout),
        )
        if proposed_id is not None:
            req.proposed_id = proposed_id
        try:
            return Session.from_proto(self.stub.Create(req, timeout=self.timeout).session)
        except grpc.RpcError as err:
            raise _error(err) from None

    def get(self, session_id: str, *, strong: bool = False) -> Session:
        """Reads a session (counts as activity). Raises ``SessionNotFound``."""
        consistency = session_pb2.CONSISTENCY_STRONG if strong else session_pb2.CONSISTENCY_EVENTUAL
        req = session_pb2.GetRequest(id=session_id, consistency=consistency)
        try:
            return Session.from_proto(self.stub.Get(req, timeout=self.timeout).session)
        except grpc.RpcError as err:
            raise _error(err) from None

    def put(
        self,
        session_id: str,
        set: Optional[Mapping[str, bytes]] = None,  # noqa: A002 - mirrors the proto field
        remove: Iterable[str] = (),
        *,
        expected_version: Optional[int] = None,
        idle_timeout: Optional[timedelta] = None,
    ) -> Session:
        """Applies one atomic delta; raises ``SessionNotFound`` or ``VersionConflict``.

        ``idle_timeout`` replaces the session's inactivity timeout (expiry: now + it).
        """
        req = session_pb2.PutRequest(
            id=session_id,
            set=dict(set or {}),
            remove=list(remove),
            idle_timeout=_duration(idle_timeout),
        )
        if expected_version is not None:
            req.expected_version = expected_version
        try:
            return Session.from_proto(self.stub.Put(req, timeout=self.timeout).session)
        except grpc.RpcError as err:
            raise _error(err) from None

    def delete(self, session_id: str) -> bool:
        """Deletes a session; returns whether a live session was removed."""
        try:
            return self.stub.Delete(session_pb2.DeleteRequest(id=session_id), timeout=self.timeout).existed
        except grpc.RpcError as err:
            raise _error(err) from None

    def rotate(
        self,
        session_id: str,
        *,
        expected_version: Optional[int] = None,
        principal: Optional[str] = None,
    ) -> Session:
        """Moves the session to a new id (the old one is NOT_FOUND afterwards) and returns it.

        With ``principal`` this is the login step: the session belongs to ``principal`` from now
        on. Raises ``SessionNotFound``, or ``VersionConflict`` if ``expected_version`` is stale.
        """
        req = session_pb2.RotateRequest(id=session_id)
        if expected_version is not None:
            req.expected_version = expected_version
        if principal is not None:
            req.principal = principal
        try:
            return Session.from_proto(self.stub.Rotate(req, timeout=self.timeout).session)
        except grpc.RpcError as err:
            raise _error(err) from None

    def list_sessions(
        self,
        principal: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        display_attributes: Iterable[str] = (),
    ) -> SessionPage:
        """One page of the principal's live sessions, newest activity first.

        ``page_size`` 0 means the server default (20); pass the previous page's
        ``next_page_token`` for the next one. ``display_attributes`` names the attributes to
        return with each session (e.g. a device label). An unknown principal has no sessions;
        a forged or stale token raises ``SessionError`` (INVALID_ARGUMENT).
        """
        req = session_pb2.ListSessionsRequest(
            principal=principal,
            page_size=page_size,
            page_token=page_token,
            display_attributes=list(display_attributes),
        )
        try:
            res = self.stub.ListSessions(req, timeout=self.timeout)
        except grpc.RpcError as err:
            raise _error(err) from None
        return SessionPage(
            sessions=[SessionInfo.from_proto(info) for info in res.sessions],
            next_page_token=res.next_page_token,
        )

    def iter_sessions(
        self,
        principal: str,
        *,
        page_size: int = 0,
        display_attributes: Iterable[str] = (),
    ) -> Iterator[SessionInfo]:
        """All of the principal's live sessions, fetching page after page as it goes."""
        names = list(display_attributes)
        token = ""
        while True:
            page = self.list_sessions(
                principal, page_size=page_size, page_token=token, display_attributes=names
            )
            yield from page.sessions
            token = page.next_page_token
            if not token:
                return

    def revoke_session(self, principal: str, handle: str) -> int:
        """Ends one session of ``principal`` by its handle from ``list_sessions``; returns 1.

        Raises ``SessionNotFound`` for a handle that is not (or no longer) one of its sessions.
        """
        req = session_pb2.RevokeSessionRequest(principal=principal, handle=handle)
        try:
            return self.stub.RevokeSession(req, timeout=self.timeout).revoked
        except grpc.RpcError as err:
            raise _error(err) from None

    def revoke_sessions(self, principal: str, *, except_id: Optional[str] = None) -> int:
        """Ends every session of ``principal`` but ``except_id`` (if given); returns how many."""
        req = session_pb2.RevokeSessionsRequest(principal=principal)
        if except_id is not None:
            req.except_id = except_id
        try:
            return self.stub.RevokeSessions(req, timeout=self.timeout).revoked
        except grpc.RpcError as err:
            raise _error(err) from None

    def check(self, service: str = "") -> str:
        """grpc.health.v1 Check; returns the status name, e.g. ``"SERVING"``."""
        try:
            res = self.health_stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.timeout)
        except grpc.RpcError as err:
            raise _error(err) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(res.status)
