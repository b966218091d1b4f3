"""The cross-language scenario against a running service at SESSION_SERVICE_ADDR.

Same steps as clients/typescript, clients/go and clients/java.
"""

import base64
import os
import re
import secrets
import time
from datetime import timedelta

import grpc
import pytest
from grpc_health.v1 import health_pb2

from session_client import SessionClient, SessionError, SessionNotFound, VersionConflict

ADDRESS = os.environ.get("SESSION_SERVICE_ADDR")
BINARY = bytes([0, 1, 2, 255])
# The id format: an 11-character slot tag, '.', 256 bits as URL-safe base64 without padding.
ID_FORMAT = re.compile(r"[^.]{11}\.[A-Za-z0-9_-]{43}")


@pytest.fixture(scope="module")
def client():
    if not ADDRESS:
        pytest.fail("set SESSION_SERVICE_ADDR=host:port of a running valkey-sessions")
    with SessionClient(ADDRESS) as c:
        yield c


@pytest.fixture
def cleanup(client):
    ids: list[str] = []
    yield ids
    for session_id in ids:
        try:
            client.delete(session_id)
        except SessionError:
            pass


def unknown_id() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def test_health_check(client):
    assert client.check("") == "SERVING"
    assert client.check("session.v1.SessionService") == "SERVING"


def test_health_watch_first_message_is_serving(client):
    stream = client.health_stub.Watch(
        health_pb2.HealthCheckRequest(service="session.v1.SessionService"), timeout=5
    )
    try:
        first = next(iter(stream))
        assert first.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        stream.cancel()


def test_create_with_attributes_then_get(client, cleanup):
    s = client.create(
        {"user": b"alice", "blob": BINARY}, principal="alice", idle_timeout=timedelta(seconds=60)
    )
    cleanup.append(s.id)
    assert len(s.id) == 55
    assert ID_FORMAT.fullmatch(s.id), s.id
    assert s.version == 1
    assert s.principal == "alice"
    assert s.idle_timeout == timedelta(seconds=60)
    assert s.attributes["user"] == b"alice"
    assert s.created_at is not None and s.expires_at is not None and s.expires_at > s.created_at

    for strong in (False, True):
        got = client.get(s.id, strong=strong)
        assert got.id == s.id
        assert got.version == 1
        assert got.principal == "alice"
        assert got.attributes == {"user": b"alice", "blob": BINARY}


def test_put_with_expected_version_then_stale_put_is_aborted(client, cleanup):
    s = client.create({"user": b"alice", "cart": b"empty"})
    cleanup.append(s.id)
    updated = client.put(s.id, {"cart": b"3 items"}, ["user"], expected_version=1)
    assert updated.version == 2
    assert updated.attributes == {"cart": b"3 items"}

    with pytest.raises(VersionConflict) as info:
        client.put(s.id, {"cart": b"stale"}, expected_version=1)
    assert info.value.code == grpc.StatusCode.ABORTED
    assert info.value.current_version == 2

    got = client.get(s.id, strong=True)
    assert got.version == 2
    assert got.attributes == {"cart": b"3 items"}

    assert client.put(s.id, {"n": b"1"}).version == 3


def test_delete_then_not_found(client):
    s = client.create({"user": b"bob"})
    assert client.delete(s.id) is True
    with pytest.raises(SessionNotFound):
        client.get(s.id, strong=True)
    with pytest.raises(SessionNotFound):
        client.put(s.id, {"a": b"b"})
    assert client.delete(s.id) is False


def test_unknown_id_not_found_malformed_id_invalid_argument(client):
    with pytest.raises(SessionNotFound):
        client.get(unknown_id())
    with pytest.raises(SessionError) as info:
        client.get("not-a-session-id")
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_sessions_of_a_user(client, cleanup):
    principal = f"user-{secrets.token_hex(8)}@example.com"
    try:
        _sessions_of_a_user(client, cleanup, principal)
    finally:
        try:
            client.revoke_sessions(principal)
        except SessionError:
            pass


def _sessions_of_a_user(client, cleanup, principal):
    devices = ["laptop", "phone", "tablet"]
    ids = {}
    for device in devices:
        s = client.create({"device": device.encode(), "secret": b"not listed"}, principal=principal)
        cleanup.append(s.id)
        assert len(s.id) == 55 and s.principal == principal
        ids[device] = s.id
        time.sleep(0.05)  # distinct activity times: the list is newest activity first

    # Two pages of 2 and 1, newest activity first (the last created first).
    first = client.list_sessions(principal, page_size=2, display_attributes=["device"])
    assert len(first.sessions) == 2
    assert first.next_page_token
    second = client.list_sessions(
        principal, page_size=2, page_token=first.next_page_token, display_attributes=["device"]
    )
    assert len(second.sessions) == 1
    assert second.next_page_token == ""
    listed = first.sessions + second.sessions
    assert [info.display_attributes for info in listed] == [
        {"device": b"tablet"},
        {"device": b"phone"},
        {"device": b"laptop"},
    ]
    for newer, older in zip(listed, listed[1:]):
        assert newer.last_accessed_at >= older.last_accessed_at
    for info in listed:
        assert info.version == 1
        assert info.created_at is not None and info.last_accessed_at is not None
        assert info.expires_at is not None and info.expires_at > info.created_at
    assert [info.handle for info in client.iter_sessions(principal, page_size=2)] == [
        info.handle for info in listed
    ]

    # A handle revokes, but is not an id: it cannot read the session.
    handles = {info.display_attributes["device"].decode(): info.handle for info in listed}
    assert all(handles.values()) and len(set(handles.values())) == 3
    for handle in handles.values():
        assert handle not in ids.values()
        with pytest.raises(SessionError) as info:
            client.get(handle, strong=True)
        assert info.value.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)

    # Log out one device.
    assert client.revoke_session(principal, handles["phone"]) == 1
    with pytest.raises(SessionNotFound):
        client.get(ids["phone"], strong=True)

    # Log out everywhere else.
    assert client.revoke_sessions(principal, except_id=ids["laptop"]) == 1
    with pytest.raises(SessionNotFound):
        client.get(ids["tablet"], strong=True)
    assert client.get(ids["laptop"], strong=True).attributes["device"] == b"laptop"
    left = client.list_sessions(principal, display_attributes=["device"])
    assert [info.display_attributes for info in left.sessions] == [{"device": b"laptop"}]
    assert left.next_page_token == ""

    # Bad input: a forged page token; an unknown principal has no sessions.
    with pytest.raises(SessionError) as info:
        client.list_sessions(principal, page_token="garbage")
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    nobody = client.list_sessions(f"nobody-{secrets.token_hex(8)}@example.com")
    assert nobody.sessions == [] and nobody.next_page_token == ""

    # Login: Rotate an anonymous session to the principal.
    anonymous = client.create({"device": b"desktop"})
    cleanup.append(anonymous.id)
    assert anonymous.principal == ""
    rotated = client.rotate(anonymous.id, principal=principal)
    cleanup.append(rotated.id)
    assert len(rotated.id) == 55 and ID_FORMAT.fullmatch(rotated.id), rotated.id
    assert rotated.id != anonymous.id
    assert rotated.principal == principal
    assert rotated.version == anonymous.version + 1
    assert rotated.attributes == {"device": b"desktop"}
    with pytest.raises(SessionNotFound):
        client.get(anonymous.id, strong=True)
    assert client.get(rotated.id, strong=True).principal == principal
    now = client.list_sessions(principal, display_attributes=["device"])
    assert sorted(info.display_attributes["device"] for info in now.sessions) == [b"desktop", b"laptop"]
