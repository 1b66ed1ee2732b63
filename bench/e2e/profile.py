"""Summaries of a coordinator cProfile dump: top functions by cumulative and by own time."""

from __future__ import annotations

import pstats
import sys
from pathlib import Path

# Event-loop plumbing: its cumulative time is everything (and counted more than once).
_PLUMBING = ("/asyncio/", "/selectors.py", "_contextvars.Context", "/threading.py")


def _where(file: str, line: int, fn: str) -> str:
    for base in (str(Path.cwd()) + "/", sys.prefix + "/lib/python3.11/site-packages/"):
        file = file.replace(base, "")
    return f"{file}:{line}:{fn}" if file != "~" else fn


def summary(path: str | Path, top: int = 25) -> str:
    stats = pstats.Stats(str(path))
    raw = stats.stats  # type: ignore[attr-defined]
    total = max(stats.total_tt, 1e-9)  # type: ignore[attr-defined]
    rows = [
        (_where(*key), nc, tt, ct)
        for key, (_cc, nc, tt, ct, _callers) in raw.items()
        if not any(p in key[0] or p in key[2] for p in _PLUMBING)
    ]
    out = [f"cProfile {path}: {total:.2f} s profiled in the event-loop thread"]
    for title, idx in (("cumulative", 3), ("own time", 2)):
        out.append(f"\ntop {top} by {title} (% of profiled time; coroutines: per resumption)")
        out.append(f"{'cum %':>6} {'own %':>6} {'calls':>8}  function")
        for where, nc, tt, ct in sorted(rows, key=lambda r: -r[idx])[:top]:
            out.append(f"{100 * ct / total:>6.1f} {100 * tt / total:>6.1f} {nc:>8}  {where}")
    return "\n".join(out)


if __name__ == "__main__":
    print(summary(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25))
