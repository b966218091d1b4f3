"""Example: one session's life. SESSION_SERVICE_ADDR=host:port python example.py"""

import os
import sys
from datetime import timedelta

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from session_client import SessionClient, VersionConflict  # noqa: E402


def main() -> None:
    address = os.environ.get("SESSION_SERVICE_ADDR", "127.0.0.1:50051")
    with SessionClient(address) as client:
        print("health:", client.check("session.v1.SessionService"))

        session = client.create({"theme": b"dark"}, principal="alice", idle_timeout=timedelta(minutes=1))
        print(f"created session version {session.version}, expires {session.expires_at:%Y-%m-%dT%H:%M:%S}Z")

        read = client.get(session.id)
        print("theme =", read.attributes["theme"].decode())

        updated = client.put(session.id, {"cart": b"3 items"}, expected_version=read.version)
        print(f"put -> version {updated.version}, attributes {','.join(sorted(updated.attributes))}")

        try:
            client.put(session.id, {"cart": b"stale"}, expected_version=read.version)
        except VersionConflict as err:
            print(f"stale put rejected (ABORTED), current version {err.current_version}")

        # Login (or privilege change): a new id, the old one is NOT_FOUND from now on.
        session = client.rotate(session.id, principal="alice")
        print(f"rotated to a new id, version {session.version}")

        # Where alice is logged in: each session with a revocation handle (never its id).
        mine = list(client.iter_sessions("alice", display_attributes=["theme"]))
        print(f"alice has {len(mine)} session(s)")

        print("deleted:", client.delete(session.id))


if __name__ == "__main__":
    main()
