"""What every benchmark shares: the machine line and rewriting its own marked block of docs/benchmarks.md.

Each benchmark owns one block between ``<!-- name:start -->`` and ``<!-- name:end -->``; rewriting it leaves
the other blocks alone, so benchmarks can be rerun one at a time or all together (``benchmarks/run_all.py``).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    """Cores, CPU, OS and the load at the end of the run (a busy machine compresses speed-ups)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} cores ({cpu_name()}), {platform.system()}, no GPU; load average {load:.1f} at the end"


def write_section(name: str, text: str, after: str | None = None, path: Path = DOC) -> str:
    """Replace block ``name`` of the doc with ``text`` (added after block ``after``, or at the end, if new)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{text.strip()}\n{end}"
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.is_file() else "# Benchmarks\n"
    if start in old and end in old:
        new = old[: old.index(start)] + block + old[old.index(end) + len(end):]
    elif after and f"<!-- {after}:end -->" in old:
        anchor = f"<!-- {after}:end -->"
        new = old.replace(anchor, anchor + "\n" + block, 1)
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(new)
    return block
