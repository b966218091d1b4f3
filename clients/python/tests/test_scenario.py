"""The cross-language scenario against a running service at SESSION_SERVICE_ADDR.

Same steps as clients/typescript, clients/go and clients/java.
"""

import base64
import os
import secrets
from datetime import timedelta

import grpc
import pytest
from grpc_health.v1 import health_pb2

from session_client import SessionClient, SessionError, SessionNotFound, VersionConflict

ADDRESS = os.environ.get("SESSION_SERVICE_ADDR")
BINARY = bytes([0, 1, 2, 255])


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
    assert len(s.id) == 43
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
