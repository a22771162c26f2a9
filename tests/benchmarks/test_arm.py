"""The pruned model on aarch64: the aarch64 onnxruntime (emulated by qemu-aarch64-static, environment
from `make arm-check` / benchmarks/arm/env.sh) gives the x86 onnxruntime's outputs within 1e-4.
Skipped, with the reason, where the emulated environment or qemu is absent."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from onnxprune import shrink
from onnxprune.measure.verify import max_relative_error, run
from onnxprune.read.save import save_model

REPO = Path(__file__).resolve().parents[2]
ARM = Path(os.environ.get("ARM_DIR", REPO / "build" / "arm"))
PYTHON = ARM / "bin" / "python3.11"

RUN_ON_ARM = """
import platform, sys
import numpy as np, onnxruntime as ort
assert platform.machine() == "aarch64", platform.machine()
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
feeds = dict(np.load(sys.argv[2]))
np.save(sys.argv[3], session.run(None, feeds)[0])
"""


def _skip_reason() -> str | None:
    if shutil.which("qemu-aarch64-static") is None:
        return "qemu-aarch64-static absent (apt-get install qemu-user-static; `make arm-check` builds the rest)"
    if not PYTHON.exists() or not (ARM / ".site").exists():
        return f"no emulated aarch64 environment at {ARM}: run `make arm-check` (or benchmarks/arm/env.sh)"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def run_on_aarch64(model: Path, feeds: dict, tmp_path: Path) -> np.ndarray:
    np.savez(tmp_path / "feeds.npz", **feeds)
    env = dict(os.environ, PYTHONPATH=str(ARM / "site"))
    done = subprocess.run(
        [str(PYTHON), "-c", RUN_ON_ARM, str(model), str(tmp_path / "feeds.npz"), str(tmp_path / "out.npy")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return np.load(tmp_path / "out.npy")


def test_pruned_model_on_aarch64_matches_x86(zoo_model, tmp_path):
    source = zoo_model("mobilenetv2_cifar", "legacy", "folded")
    model, report = shrink(source, mode="FA", target=0.5, seed=0, init="keep")
    assert report["after"]["flops"] <= 0.5 * report["before"]["flops"]
    pruned = tmp_path / "pruned.onnx"
    save_model(model, pruned, source)
    feeds = {"input": np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)}
    (x86,) = run(model, feeds)
    arm = run_on_aarch64(pruned, feeds, tmp_path)
    assert arm.shape == x86.shape
    assert max_relative_error(arm, x86) < 1e-4
    np.testing.assert_allclose(arm, x86, rtol=1e-4, atol=1e-4)
