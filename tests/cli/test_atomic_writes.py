"""Issue 7: writes are atomic (also under SIGINT/SIGKILL mid-write), the input stays untouched, shrink is deterministic."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest

from benchmarks.fuzz import bn_net, conv_net
from onnxprune.read import save as onnxprune_save
from tests.cli_helpers import run

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


# ------------------------------------------------------------------------- atomic writes


def test_input_never_modified_and_outputs_complete(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(bn_net(), str(path))
    data = path.read_bytes()
    out = tmp_path / "o.onnx"
    rc, _, err = run(
        ["shrink", path, "--mode", "PA", "--target", "0.5", "-o", out, "--report", tmp_path / "r.json"], capsys
    )
    assert rc == 0, err
    assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "o.onnx", "r.json"]


@pytest.mark.parametrize("when", ["write", "replace"])
def test_interrupt_inside_save_leaves_nothing(tmp_path, monkeypatch, capsys, when):
    """KeyboardInterrupt mid-write: exit 130, one line, no output, no temp file."""
    path = tmp_path / "m.onnx"
    onnx.save(conv_net(), str(path))
    if when == "write":

        def boom(*a, **k):
            raise KeyboardInterrupt

        monkeypatch.setattr(onnxprune_save.os, "fsync", boom)
    else:
        real = os.replace

        def boom(src, dst):
            if str(dst).endswith("o.onnx"):
                raise KeyboardInterrupt
            return real(src, dst)

        monkeypatch.setattr(onnxprune_save.os, "replace", boom)
    rc, _, err = run(["shrink", path, "--mode", "PA", "--target", "0.5", "-o", tmp_path / "o.onnx"], capsys)
    assert rc == 130
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_save_over_existing_output_keeps_old_on_failure(tmp_path, monkeypatch):
    out = tmp_path / "o.onnx"
    onnx.save(conv_net(), str(out))
    old = out.read_bytes()

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(onnxprune_save.os, "fsync", fail)
    with pytest.raises(onnxprune_save.UserError, match="disk full"):
        onnxprune_save.save_model(conv_net(channels=(4, 4)), out)
    assert out.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.onnx"]


def _startup_seconds() -> float:
    started = time.perf_counter()
    subprocess.run([PYTHON, "-c", "import onnxprune.cli; onnxprune.cli._register_commands()"], check=True)
    return time.perf_counter() - started


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_killed_mid_shrink_leaves_no_partial_output(sig, tmp_path, zoo_dir):
    """Signal `onnxprune shrink` at random moments: the output is absent or a complete valid model."""
    source = zoo_dir / "vgg16_cifar.legacy.kept.onnx"
    startup = _startup_seconds()
    rng = random.Random(int(sig))
    data_size = source.stat().st_size
    outcomes = []
    for attempt in range(4):
        out = tmp_path / f"out{attempt}.onnx"
        proc = subprocess.Popen(
            [PYTHON, "-m", "onnxprune", "shrink", str(source), "--mode", "FA", "--target", "0.5", "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=REPO,
        )
        # after the imports (a signal during interpreter start-up is Python's, not ours), at a random point
        time.sleep(startup * 1.3 + rng.uniform(0.0, 2.5 + attempt))
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        err = err.decode()
        outcomes.append(proc.returncode)
        if out.exists():
            model = onnx.load(str(out))
            onnx.checker.check_model(model)
        if sig == signal.SIGINT:
            assert proc.returncode in (0, 130), err
            assert "Traceback" not in err, err
            if proc.returncode == 130:
                assert len(err.strip().splitlines()) == 1, err
                assert not out.exists() or out.stat().st_size > 0
            leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
            assert not leftovers, leftovers
        else:
            assert proc.returncode in (0, -signal.SIGKILL)
    assert source.stat().st_size == data_size


# ------------------------------------------------------------------------- determinism


def test_shrink_is_deterministic_with_a_seed(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(conv_net(channels=(16, 24, 32)), str(path))
    outputs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        out = tmp_path / f"{name}.onnx"
        rc, _, err = run(["shrink", path, "--mode", "FA", "--target", "0.5", "--seed", seed, "-o", out], capsys)
        assert rc == 0, err
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1], "same seed, same bytes"
    assert outputs[0] != outputs[2], "another seed draws other channels"
