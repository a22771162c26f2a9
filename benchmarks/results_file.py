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
        updated = current[: start + 1] + text + ("" if end < 0 else "\n" + current[end + 1 :])
    tmp = results.with_suffix(".tmp")
    tmp.write_text(updated)
    tmp.replace(results)


def append_to_section(results: Path, heading: str, lines: list[str]) -> None:
    """Add `lines` at the end of the section `heading` (created at the end of the file if absent), atomically;
    earlier runs in that section stay, as a history."""
    current = results.read_text() if results.exists() else "# Benchmark results\n"
    start = current.find(f"\n{heading}\n")
    if start < 0:
        write_section(results, "\n".join([heading, *lines]) + "\n", heading)
        return
    end = current.find("\n## ", start + 1)
    end = len(current) if end < 0 else end
    body = current[:end].rstrip("\n") + "\n" + "\n".join(lines) + "\n"
    tmp = results.with_suffix(".tmp")
    tmp.write_text(body + ("" if end == len(current) else "\n" + current[end + 1 :]))
    tmp.replace(results)
