"""Real RPCs that make the service touch every metric it has, each asserted so a change in the
service's behaviour cannot silently leave a metric out of the scrape.

The service runs with read_from=replica (eventual Gets on a standalone Valkey read the node
through the replica path, a miss falls back to the primary), grpc.concurrency_limit=2 and
grpc.request_timeout=300ms, so freezing Valkey (SIGSTOP) yields both admission rejections. Its
gRPC port has TLS and requires a bearer token (secured.py): every call goes over TLS with the
caller's token, and the TLS and authentication metrics are provoked at the end (rejections of
each reason, a failed handshake, a failed and a good certificate reload)."""

import concurrent.futures
import secrets
import signal
import socket
import ssl
import time

import grpc
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from session.v1 import session_pb2 as pb
from session.v1 import session_pb2_grpc

import secured as sec

SERVICE_ENV = {
    "VALKEY_READ_FROM": "replica",
    "VALKEY_SESSIONS_GRPC__CONCURRENCY_LIMIT": "2",
    "VALKEY_SESSIONS_GRPC__REQUEST_TIMEOUT": "300ms",
}


def expect(code, call, request):
    try:
        call(request)
    except grpc.RpcError as e:
        if e.code() != code:
            raise AssertionError(f"{type(request).__name__}: {e.code()} {e.details()}, want {code}") from e
        return
    raise AssertionError(f"{type(request).__name__}: OK, want {code}")


def drive(stack, secured, log):
    with secured.channel(stack.grpc_addr) as channel:
        sessions = session_pb2_grpc.SessionServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(service="")).status == \
            health_pb2.HealthCheckResponse.SERVING

        log("Create, Get (eventual and strong), Put, Rotate, Delete")
        created = sessions.Create(pb.CreateRequest(attributes={"user": b"ada"}, principal="ada")).session
        sessions.Get(pb.GetRequest(id=created.id, consistency=pb.CONSISTENCY_EVENTUAL))
        sessions.Get(pb.GetRequest(id=created.id, consistency=pb.CONSISTENCY_STRONG))
        put = sessions.Put(pb.PutRequest(id=created.id, set={"cart": b"3"}, expected_version=1)).session
        rotated = sessions.Rotate(pb.RotateRequest(id=created.id)).session
        assert sessions.Delete(pb.DeleteRequest(id=rotated.id)).existed

        log("NOT_FOUND (a replica miss falls back to the primary), INVALID_ARGUMENT, ABORTED")
        missing = secrets.token_urlsafe(32)
        expect(grpc.StatusCode.NOT_FOUND, sessions.Get, pb.GetRequest(id=missing))
        expect(grpc.StatusCode.INVALID_ARGUMENT, sessions.Get, pb.GetRequest(id="not-an-id"))
        other = sessions.Create(pb.CreateRequest()).session
        sessions.Put(pb.PutRequest(id=other.id, set={"a": b"1"}))
        expect(grpc.StatusCode.ABORTED, sessions.Put,
               pb.PutRequest(id=other.id, set={"a": b"2"}, expected_version=put.version - 1))

        log("an expiry refresh: a Get in the second half of a 4 s idle window")
        short = sessions.Create(pb.CreateRequest(idle_timeout=duration_pb2.Duration(seconds=4))).session
        time.sleep(2.5)
        sessions.Get(pb.GetRequest(id=short.id))

        log("Valkey frozen: concurrency and deadline rejections, valkey_up 0, a PING timeout")
        stack.valkey.send_signal(signal.SIGSTOP)
        try:
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                calls = [pool.submit(_code, sessions.Get, pb.GetRequest(id=other.id)) for _ in range(8)]
                codes = sorted(str(c.result().name) for c in calls)
            # Two hold the only two permits until their 300 ms deadline, the others are refused.
            assert codes.count("DEADLINE_EXCEEDED") >= 1, codes
            assert codes.count("RESOURCE_EXHAUSTED") >= 1, codes
            _wait(lambda: "valkey_up 0" in stack.scrape(), "valkey_up 0")
        finally:
            stack.valkey.send_signal(signal.SIGCONT)
        _wait(lambda: "valkey_up 1" in stack.scrape(), "valkey_up 1 again")

        log("refused callers: no token, a garbage token, an unknown identity, a method not allowed")
        _refused(stack, secured, other.id)

    log("a plaintext HTTP/2 client on the TLS port: a failed handshake")
    _plaintext_peer(stack)

    log("the certificate file: garbage (a failed reload), then a new certificate (reloaded)")
    _reloads(stack, secured)


def _refused(stack, secured, id):
    get = pb.GetRequest(id=id)
    cases = [
        ("missing_credentials", grpc.StatusCode.UNAUTHENTICATED, None, None, get),
        ("invalid_token", grpc.StatusCode.UNAUTHENTICATED, None, "not-a-token", get),
        ("unknown_identity", grpc.StatusCode.PERMISSION_DENIED, sec.STRANGER, None, get),
        ("method_not_allowed", grpc.StatusCode.PERMISSION_DENIED, sec.READER, None,
         pb.PutRequest(id=id, set={"a": b"3"})),
    ]
    for reason, code, identity, token, request in cases:
        with secured.channel(stack.grpc_addr, identity, token) as channel:
            sessions = session_pb2_grpc.SessionServiceStub(channel)
            call = sessions.Put if isinstance(request, pb.PutRequest) else sessions.Get
            expect(code, call, request)
        assert (stack.value("grpc_auth_rejected_total", reason=reason) or 0) >= 1, reason
    with secured.channel(stack.grpc_addr, sec.READER) as channel:  # the reader's own RPC works
        session_pb2_grpc.SessionServiceStub(channel).Get(get)


def _plaintext_peer(stack):
    host, port = stack.grpc_addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(24))
        try:
            while s.recv(4096):  # the server answers with an alert (or nothing) and closes
                pass
        except OSError:
            pass
    _wait(lambda: (stack.value("grpc_tls_handshake_failures_total") or 0) >= 1,
          "grpc_tls_handshake_failures_total")


def _reloads(stack, secured):
    gauge = "grpc_tls_certificate_expiration_timestamp_seconds"
    assert stack.value(gauge) == sec.not_after(secured.cert), (stack.value(gauge), secured.cert)
    secured.cert.write_text("not a certificate\n")
    _wait(lambda: stack.value("grpc_tls_reloads_total", outcome="error"),
          'grpc_tls_reloads_total{outcome="error"}')
    renewed = secured.rotate(days=2)
    _wait(lambda: stack.value("grpc_tls_reloads_total", outcome="ok") and
          stack.value(gauge) == renewed, f'grpc_tls_reloads_total{{outcome="ok"}} and {gauge} {renewed}')
    host, port = stack.grpc_addr.rsplit(":", 1)
    served = ssl.get_server_certificate((host, int(port)), ca_certs=str(secured.pki.ca))
    assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(secured.cert.read_text()), \
        "a new connection gets the new certificate"
    with secured.channel(stack.grpc_addr) as channel:
        assert health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest()).status == \
            health_pb2.HealthCheckResponse.SERVING


def _code(call, request):
    try:
        call(request, timeout=5)
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def _wait(condition, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f} s")
        time.sleep(0.2)
