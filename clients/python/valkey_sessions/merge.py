"""The three-way merge every adapter applies when a save meets a newer version (docs/adapters.md).

Values are JSON values (None, bool, int, float, str, list, dict). ``MISSING`` stands for an
absent key. Equality is on canonical JSON text, so ``True`` and ``1`` differ as they do in JSON.
"""

from __future__ import annotations

import json
from typing import Any

MISSING: Any = object()


class MergeConflict(Exception):
    """Both sides changed one scalar (or a value of different kinds) to different values."""


def canonical(value: Any) -> str:
    if value is MISSING:
        return "\0missing"
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def merge(base: Any, theirs: Any, mine: Any) -> Any:
    """Merges one value changed concurrently: ``theirs`` is stored now, ``mine`` this request's."""
    cb, ct, cm = canonical(base), canonical(theirs), canonical(mine)
    if cm == cb:
        return theirs
    if ct == cb or ct == cm:
        return mine
    if isinstance(theirs, list) and isinstance(mine, list):
        b = {canonical(v) for v in base} if isinstance(base, list) else set()
        m = {canonical(v) for v in mine}
        # theirs, minus what this request removed; then what this request added
        out = [v for v in theirs if canonical(v) not in b or canonical(v) in m]
        seen = {canonical(v) for v in out}
        for v in mine:
            c = canonical(v)
            if c not in b and c not in seen:
                out.append(v)
                seen.add(c)
        return out
    if isinstance(theirs, dict) and isinstance(mine, dict):
        b = base if isinstance(base, dict) else {}
        out = {}
        for k in list(dict.fromkeys([*b, *theirs, *mine])):
            v = merge(b.get(k, MISSING), theirs.get(k, MISSING), mine.get(k, MISSING))
            if v is not MISSING:
                out[k] = v
        return out
    raise MergeConflict()
