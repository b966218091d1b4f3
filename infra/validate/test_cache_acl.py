"""The ElastiCache access strings of the Terraform module, tried on a real Valkey.

The module gives the service's cache user an explicit command list on its key prefix and switches
the default user off. A list that is one command short breaks the service only in the cloud, so
this test applies the very strings the module holds (parsed from cache.tf) to a local
cluster-mode valkey-server on loopback and replays what the service sends: fred's connection
set-up, the topology reads, SCRIPT LOAD and EVALSHA of the real Lua scripts (whose inner calls
Valkey checks against the same ACL), and the plain GET/SET/DEL of each operation. It then checks
what must stay out of reach: other keys, keyspace-wide and admin commands, EVAL, pub/sub, and
any command on a connection that has not authenticated.

Skipped when valkey-server is not installed (infra/local/install-deps.sh installs it).
"""

import shutil
import socket
import struct
import subprocess
import tempfile
import time
import unittest

from test_infra import MODULE, parse_dir, resources, service_access_string

REPO = MODULE.parents[4]
SCRIPTS = REPO / "crates" / "session-store" / "src" / "scripts"
PASSWORD = "acl-test-password-0123456789"


def module_resource(rtype, name):
    return resources(parse_dir(MODULE))[(rtype, name)]


class Resp:
    """A minimal RESP2 client: enough to send binary arguments and read any reply."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def close(self):
        self.sock.close()

    def call(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(out))
        return self._read()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return Error(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            while len(self.buf) < size + 2:
                self.buf += self.sock.recv(65536)
            data, self.buf = self.buf[:size], self.buf[size + 2:]
            return data
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._read() for _ in range(size)]
        if kind == b"%":  # RESP3 map (HELLO 3)
            return {self._read(): self._read() for _ in range(int(rest))}
        raise ValueError(f"unexpected reply {line!r}")


class Error(str):
    pass


def session_blob(version, now_ms, idle_ms, principal=b""):
    """Value layout format 1 (docs/key-layout.md): one attribute."""
    header = struct.pack(">BQQQQQ", 1, version, now_ms, now_ms, idle_ms, 0)
    return header + struct.pack(">I", len(principal)) + principal + struct.pack(">I", 1) \
        + struct.pack(">I", 4) + b"name" + struct.pack(">I", 5) + b"value"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@unittest.skipUnless(shutil.which("valkey-server"), "valkey-server is not installed")
class ServiceAccessStringOnValkey(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.default_access = module_resource("aws_elasticache_user", "default")["access_string"]
        cls.access = service_access_string()
        cls.tmp = tempfile.TemporaryDirectory()
        cls.port = free_port()
        cls.server = subprocess.Popen(
            ["valkey-server", "--port", str(cls.port), "--bind", "127.0.0.1", "--dir", cls.tmp.name,
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             # The default bus port is port + 10000, which a high free port would overflow.
             "--cluster-port", str(free_port()),
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            cls.configure()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def configure(cls):
        deadline = time.monotonic() + 10
        while True:
            try:
                admin = Resp(cls.port)
                break
            except OSError:
                if cls.server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"valkey-server did not start: {cls.server.stdout.read()[-2000:]}")
                time.sleep(0.05)
        try:
            assert admin.call("CLUSTER", "ADDSLOTSRANGE", 0, 16383) == "OK"
            while b"cluster_state:ok" not in admin.call("CLUSTER", "INFO"):
                time.sleep(0.05)
            assert admin.call("ACL", "SETUSER", "svc", *cls.access.split(), ">" + PASSWORD) == "OK"
            # Last, as the default user itself: the module's string for it.
            assert admin.call("ACL", "SETUSER", "default", "reset", *cls.default_access.split()) == "OK"
        finally:
            admin.close()

    @classmethod
    def tearDownClass(cls):
        cls.server.terminate()
        cls.server.communicate(timeout=10)
        cls.tmp.cleanup()

    def service_connection(self):
        conn = Resp(self.port)
        self.addCleanup(conn.close)
        self.assertEqual(conn.call("AUTH", "svc", PASSWORD), "OK")
        return conn

    def assertAllowed(self, reply):
        self.assertNotIsInstance(reply, Error, reply)
        return reply

    def assertDenied(self, reply):
        self.assertIsInstance(reply, Error)
        self.assertTrue(reply.startswith("NOPERM"), reply)

    def test_the_iam_user_name_is_the_user_id(self):
        user = module_resource("aws_elasticache_user", "service")
        self.assertEqual(user["user_name"], user["user_id"])

    def test_connection_setup_as_fred_does_it(self):
        conn = self.service_connection()
        self.assertAllowed(conn.call("PING"))
        self.assertAllowed(conn.call("CLIENT", "ID"))
        self.assertIn(b"valkey_version", self.assertAllowed(conn.call("INFO", "server")))
        self.assertIn(b"cluster_state:ok", self.assertAllowed(conn.call("CLUSTER", "INFO")))
        self.assertAllowed(conn.call("CLUSTER", "SLOTS"))
        self.assertEqual(conn.call("ASKING"), "OK")
        self.assertEqual(conn.call("READONLY"), "OK")
        # A refreshed IAM token is sent with AUTH on the open connection.
        self.assertEqual(conn.call("AUTH", "svc", PASSWORD), "OK")

    def test_resp3_hello_with_credentials(self):
        conn = Resp(self.port)
        self.addCleanup(conn.close)
        self.assertIsInstance(self.assertAllowed(conn.call("HELLO", 3, "AUTH", "svc", PASSWORD)), dict)

    def test_every_operation_of_the_store(self):
        conn = self.service_connection()
        shas = {}
        for script in sorted(SCRIPTS.glob("*.lua")):
            shas[script.stem] = self.assertAllowed(conn.call("SCRIPT", "LOAD", script.read_bytes()))
        now = int(time.time() * 1000)
        tag = "{acl-test-tag}"
        key, index, rotated = f"vs:{tag}.h1", f"vs:{tag}:i", f"vs:{tag}.h2"
        members = f"vs:{tag}."
        # The deployment's secret: SET NX GET.
        self.assertAllowed(conn.call("SET", "vs:_secret", b"k" * 32, "NX", "GET"))
        # Create of a principal's session: EXISTS, ZCARD, ZRANGE, ZPOPMIN, DEL, SET, ZADD,
        # PEXPIRETIME, PEXPIREAT inside; at a limit of 1 the second create revokes the first.
        blob = session_blob(1, now - 60_000, 100_000, principal=b"ada")
        self.assertEqual(self.assertAllowed(conn.call(
            "EVALSHA", shas["create"], 2, f"vs:{tag}.h0", index, blob, now + 40_000, "h0", now, 1,
            "revoke", members))[:2], [1, 0])
        self.assertEqual(self.assertAllowed(conn.call(
            "EVALSHA", shas["create"], 2, key, index, blob, now + 40_000, "h1", now, 1,
            "revoke", members))[:2], [1, 1])
        self.assertIsInstance(self.assertAllowed(conn.call("GET", key)), bytes)
        # Touch after a read in the second half of the idle window, with the index entry.
        self.assertEqual(conn.call("EVALSHA", shas["touch"], 2, key, index, now, "h1"), 1)
        # Put: GET and SET inside, the index entry follows.
        reply = self.assertAllowed(conn.call(
            "EVALSHA", shas["put"], 2, key, index, now, "", 4 << 20, 1024, "", "", "h1", 1, "other", "v"))
        self.assertEqual(reply[0], 1, reply)
        # ListSessions: ZRANGE BYSCORE, GET, ZREM inside.
        listed = self.assertAllowed(conn.call("EVALSHA", shas["list"], 1, index, members, 10, "", "", "ada", "other"))
        self.assertEqual(len(listed[2]), 1, listed)
        # Rotate in the slot: GET, EXISTS, SET, DEL, ZREM, ZADD inside.
        self.assertEqual(self.assertAllowed(conn.call(
            "EVALSHA", shas["rotate"], 3, key, rotated, index, now, "", "h1", "h2", ""))[0], 1)
        # Login to another slot: seal, and undo it.
        moved = self.assertAllowed(conn.call(
            "EVALSHA", shas["seal"], 2, rotated, index, now, "", "h2", "new-id", "bob"))
        self.assertEqual(moved[0], 1, moved)
        self.assertEqual(conn.call("EVALSHA", shas["unseal"], 2, rotated, index, "new-id", "h2", now), 1)
        # Revoke one, revoke all, delete; then WAIT for the replica (none here: answers 0).
        self.assertEqual(conn.call("EVALSHA", shas["revoke"], 2, index, rotated, "h2", "ada"), 1)
        self.assertAllowed(conn.call("EVALSHA", shas["revoke_all"], 1, index, members, "", "ada", 500))
        self.assertEqual(conn.call("EVALSHA", shas["delete"], 2, rotated, index, "h2"), 0)
        self.assertEqual(conn.call("WAIT", 1, 10), 0)

    def test_nothing_beyond_the_prefix_and_the_list(self):
        conn = self.service_connection()
        self.assertDenied(conn.call("GET", "other:{x}"))
        self.assertDenied(conn.call("SET", "other:{x}", "1"))
        self.assertDenied(conn.call("EVAL", "return 1", 0))
        self.assertDenied(conn.call("EVALSHA", "0" * 40, 1, "other:{x}"))
        for command in (["KEYS", "*"], ["SCAN", 0], ["FLUSHALL"], ["CONFIG", "GET", "*"],
                        ["SCRIPT", "FLUSH"], ["CLIENT", "LIST"], ["CLIENT", "KILL", "ID", 1],
                        ["ACL", "LIST"], ["CLUSTER", "RESET"],
                        ["MONITOR"], ["SUBSCRIBE", "x"], ["PUBLISH", "x", "y"], ["EXPIRE", "vs:{x}", 1],
                        ["HSET", "vs:{x}", "f", "v"], ["SHUTDOWN"]):
            with self.subTest(command=command[0]):
                self.assertDenied(conn.call(*command))

    def test_a_script_cannot_reach_other_keys(self):
        conn = self.service_connection()
        sha = self.assertAllowed(conn.call("SCRIPT", "LOAD", "return redis.call('GET', 'other:{x}')"))
        reply = conn.call("EVALSHA", sha, 0)
        self.assertIsInstance(reply, Error)
        self.assertIn("permission", reply.lower())

    def test_an_unauthenticated_connection_can_run_nothing(self):
        conn = Resp(self.port)
        self.addCleanup(conn.close)
        for command in (["PING"], ["GET", "vs:{x}"], ["CLUSTER", "SLOTS"], ["INFO"]):
            with self.subTest(command=command[0]):
                reply = conn.call(*command)
                self.assertIsInstance(reply, Error)
                self.assertTrue(reply.startswith("NOAUTH"), reply)
        self.assertIsInstance(conn.call("AUTH", "default", "anything"), Error)
        self.assertIsInstance(conn.call("AUTH", "anything"), Error)


if __name__ == "__main__":
    unittest.main()
