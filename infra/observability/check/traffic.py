"""Real RPCs that make the service touch every metric it has, each asserted so a change in the
service's behaviour cannot silently leave a metric out of the scrape.

The service runs with read_from=replica (eventual Gets on a standalone Valkey read the node
through the replica path, a miss falls back to the primary), grpc.concurrency_limit=2 and
grpc.request_timeout=300ms, so freezing Valkey (SIGSTOP) yields both admission rejections."""

import concurrent.futures
import secrets
import signal
import time

import grpc
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from session.v1 import session_pb2 as pb
from session.v1 import session_pb2_grpc

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


def drive(stack, log):
    with grpc.insecure_channel(stack.grpc_addr) as channel:
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
