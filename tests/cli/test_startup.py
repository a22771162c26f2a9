"""Start-up is part of the product: each command imports only what it uses (no timing here; the
figures are in benchmarks/startup_and_scale.py and RESULTS.md). Every case runs in a fresh
interpreter and reports which of the heavy libraries it loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny_models import conv_model, residual_net

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("onnx", "onnxruntime", "onnx_graphsurgeon", "numpy", "torch", "sympy", "ml_dtypes")

PROBE = """
import json, sys
from onnxprune.cli import main
rc = main(sys.argv[1:])
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(%r))
print("\\nLOADED " + json.dumps({"rc": rc, "loaded": loaded}))
""" % (HEAVY,)


def _loaded(*args: str) -> tuple[int, set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    line = next(line for line in done.stdout.splitlines() if line.startswith("LOADED "))
    payload = json.loads(line[len("LOADED ") :])
    return payload["rc"], set(payload["loaded"])


@pytest.mark.parametrize(
    "argv",
    [["--version"], ["--help"], [], ["profile", "--help"], ["shrink", "--help"], ["train", "--help"], ["nonsense"]],
    ids=["version", "help", "no-args", "profile-help", "shrink-help", "train-help", "unknown-verb"],
)
def test_help_version_and_usage_errors_load_no_model_library(argv):
    rc, loaded = _loaded(*argv)
    assert rc in (0, 2)
    assert not loaded, f"onnxprune {' '.join(argv)} imported {sorted(loaded)}"


def test_version_json_reads_metadata_not_modules():
    rc, loaded = _loaded("version", "--json")
    assert rc == 0 and not loaded


def test_profile_loads_neither_torch_nor_onnxruntime(tmp_path):
    model = conv_model(tmp_path / "m.onnx")
    rc, loaded = _loaded("profile", model, "--json")
    assert rc == 0
    assert {"onnx", "onnx_graphsurgeon", "numpy"} <= loaded
    assert not loaded & {"torch", "onnxruntime", "sympy"}, loaded


def test_shrink_loads_no_torch(tmp_path):
    import onnx

    model = tmp_path / "m.onnx"
    onnx.save(residual_net(), str(model))
    rc, loaded = _loaded("shrink", model, "--mode", "FA", "--target", "0.5", "-o", tmp_path / "p.onnx")
    assert rc == 0
    assert "torch" not in loaded and "sympy" not in loaded


def test_import_onnxprune_binds_the_api_on_first_use():
    code = (
        "import sys, onnxprune; before = 'onnx' in sys.modules; f = onnxprune.profile; "
        "print(before, 'onnx' in sys.modules, f.__module__)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True", "onnxprune.analysis.complexity"]
