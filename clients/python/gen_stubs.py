"""Generates the session.v1 stubs into session_client/_pb/ (session_pb2.py, .pyi, session_pb2_grpc.py).

Used by generate.sh (development) and by setup.py at build time (the wheel); nothing generated is
committed. protoc's grpc output imports ``session.v1.session_pb2`` (the proto's package path); the
stubs are rewritten to import from ``session_client._pb`` so the package installs no top-level
``session`` module of its own.

    python gen_stubs.py [OUT_DIR] [--proto-root DIR]

Needs grpcio-tools. The proto root defaults to $VALKEY_SESSIONS_PROTO or the repository's proto/
(../../proto from here).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = "session/v1/session.proto"


def proto_root() -> Path:
    root = Path(os.environ.get("VALKEY_SESSIONS_PROTO", HERE.parent.parent / "proto"))
    if not (root / PROTO).is_file():
        raise SystemExit(
            f"gen_stubs: {root / PROTO} not found: build from the repository checkout "
            "(clients/python) or set VALKEY_SESSIONS_PROTO to the directory holding session/v1/"
        )
    return root


def generate(out_pkg: Path, root: Path | None = None) -> list[str]:
    """Writes the stubs into ``out_pkg`` (the ``session_client/_pb`` directory); returns file names."""
    from grpc_tools import protoc  # build-time dependency

    root = root or proto_root()
    # grpc_tools ships the well-known types (google/protobuf/*.proto).
    wkt = Path(protoc.__file__).resolve().parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{root}",
            f"-I{wkt}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            PROTO,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("gen_stubs: protoc failed")
        src = Path(tmp) / "session" / "v1"
        out_pkg.mkdir(parents=True, exist_ok=True)
        names = []
        for f in sorted(src.iterdir()):
            text = f.read_text()
            text = re.sub(r"^from session\.v1 import ", "from session_client._pb import ", text, flags=re.M)
            (out_pkg / f.name).write_text(text)
            names.append(f.name)
        (out_pkg / "__init__.py").write_text('"""Generated from proto/session/v1/session.proto by gen_stubs.py."""\n')
    return names


if __name__ == "__main__":
    argv = sys.argv[1:]
    root = None
    if "--proto-root" in argv:
        i = argv.index("--proto-root")
        root = Path(argv[i + 1])
        del argv[i : i + 2]
    out = Path(argv[0]) if argv else HERE / "session_client" / "_pb"
    if out.exists():
        shutil.rmtree(out)
    names = generate(out, root)
    print(f"python: generated {out.relative_to(HERE) if out.is_relative_to(HERE) else out}: {' '.join(names)}")
