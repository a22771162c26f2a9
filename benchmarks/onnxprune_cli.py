"""The onnxprune CLI as a benchmark script calls it: a subprocess, as a user would run it, with --json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class CliFailed(RuntimeError):
    """A non-zero exit; `reason` is the one line a bad input prints on stderr (or the exit status)."""

    def __init__(self, args: tuple[str, ...], returncode: int, stderr: str):
        lines = stderr.strip().splitlines()
        self.returncode = returncode
        self.reason = lines[-1] if lines else f"exit {returncode}"
        super().__init__(f"onnxprune {' '.join(args)} failed: {stderr.strip() or self.reason}")


def run_json(*args: str) -> dict:
    """`python -m onnxprune ARGS --json` from the repository root; its stdout parsed, or CliFailed."""
    done = subprocess.run(
        [sys.executable, "-m", "onnxprune", *args, "--json"], cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise CliFailed(args, done.returncode, done.stderr)
    return json.loads(done.stdout)
