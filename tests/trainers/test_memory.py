"""trainers.memory: after keep_freed_memory(), freeing and re-allocating a large block costs no page faults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainers.memory import OPT_OUT

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")

# 20 times: malloc 64 MB, write every byte, free: what a training step does with its activations
CHURN = """
import ctypes, json, resource, sys
from trainers.memory import keep_freed_memory
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
size = 64 << 20
block = libc.malloc(size); ctypes.memset(block, 1, size); libc.free(block)  # the first one always faults
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    block = libc.malloc(size); ctypes.memset(block, 1, size); libc.free(block)
print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def churn(mode: str, **env: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHURN, mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}, **env},
    )
    return json.loads(done.stdout)


def test_kept_memory_is_not_faulted_in_again():
    as_is, kept = churn("as-is"), churn("keep")
    assert kept["applied"] is True
    pages = 20 * (64 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert as_is["faults"] > pages // 2, as_is  # glibc hands 64 MB back at every free: faulted in anew
    assert kept["faults"] < pages // 100, kept


def test_the_users_own_malloc_settings_and_the_opt_out_win():
    assert churn("keep", MALLOC_TRIM_THRESHOLD_="131072")["applied"] is False
    assert churn("keep", **{OPT_OUT: "0"})["applied"] is False


def test_training_applies_it(tmp_path, monkeypatch):
    import onnx

    from trainers import loop
    from trainers.testing import dropout_model, synthetic_dataset

    calls = []
    monkeypatch.setattr(loop, "keep_freed_memory", lambda: calls.append(True) or True)
    source = tmp_path / "drop.onnx"
    onnx.save(dropout_model(), source)
    loop.train(source, synthetic_dataset(n_train=16, n_test=8), epochs=1, batch_size=8, threads=1, progress=False)
    assert calls == [True]
