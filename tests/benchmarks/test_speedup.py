"""benchmarks/speedup.py writes its table into its own RESULTS.md section (x86 and emulated apart),
replacing an older run's section in place; measurement and pruning are stubbed here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import speedup  # noqa: E402

OLD = """# Benchmark results

## Realised speed-up of the default output (issue 13) — x86 — 2026-01-01 00:00 UTC

| old x86 row |

## Realised speed-up of the default output (issue 13) — emulated aarch64 — 2026-01-01 00:00 UTC

| old emulated row |

## Next section

kept
"""


@pytest.fixture
def stubbed(monkeypatch, tmp_path):
    rows = [
        ("tiny", "unpruned", tmp_path / "a.onnx"),
        ("tiny", "FA 0.5 (default: --round-to auto)", tmp_path / "b.onnx"),
    ]
    monkeypatch.setattr(speedup, "prune_all", lambda names, target, seed, out: rows)
    figures = {rows[0][2]: (4.0, 4.0, 1000), rows[1][2]: (2.5, 2.0, 500)}
    monkeypatch.setattr(speedup, "measure_native", lambda path, runs, warmup: (*figures[path], {"arch": "x86_64"}))
    results = tmp_path / "RESULTS.md"
    results.write_text(OLD)
    return results


def test_the_x86_section_is_replaced_in_place(stubbed, monkeypatch, tmp_path):
    monkeypatch.setattr(
        sys,
        "argv",
        ["speedup.py", "--models", "tiny", "--rounds", "1", "--results", str(stubbed), "--out", str(tmp_path / "out")],
    )
    assert speedup.main() == 0
    text = stubbed.read_text()
    assert "old x86 row" not in text and "old emulated row" in text and "kept" in text
    assert text.count("## Realised speed-up of the default output (issue 13) — x86") == 1
    # FLOPs ratio 2.00x; CPU speed-up 2.00x -> 1.00 of it; wall 1.60x -> 0.80
    assert (
        "| tiny | FA 0.5 (default: --round-to auto) | 2.00x | 4.000 | 2.500 | 1.60x | 0.80 | 4.000 | 2.000 | 2.00x | 1.00 |"
        in text
    )
    assert text.index("— x86") < text.index("— emulated aarch64") < text.index("## Next section")
