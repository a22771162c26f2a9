"""Writing one section of benchmarks/RESULTS.md: replaced in place when its heading is there, else appended."""
from __future__ import annotations

from pathlib import Path


def write_section(results: Path, text: str, heading: str) -> None:
    """Replace the section that starts with `heading` (up to the next `## `) by `text`, atomically."""
    current = results.read_text() if results.exists() else "# Benchmark results\n"
    start = current.find(f"\n{heading}")
    if start < 0:
        updated = current.rstrip("\n") + "\n\n" + text
    else:
        end = current.find("\n## ", start + 1)
        updated = current[:start + 1] + text + ("" if end < 0 else "\n" + current[end + 1:])
    tmp = results.with_suffix(".tmp")
    tmp.write_text(updated)
    tmp.replace(results)
