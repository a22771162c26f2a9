"""Why a student that kept its weights distils at a tenth of the learning rate (issue 26).

MTCNN's O-net from the corpus with every conv weight perturbed by Gaussian noise of 10 % of the mean
absolute weight (seed 0) is a student that starts near its teacher. It is distilled from the original
on 1,024 CIFAR-10 training JPEGs for 2 epochs (the `distill` recipe, 1 thread) at Adam lr 1e-3 and
1e-4, and the held-out relative error (256 test images, worst output) is printed before and after.

    PYTHONPATH=. .venv/bin/python benchmarks/distill_lr.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from trainers.distill_loop import distill  # noqa: E402

SOURCE = ROOT / "build" / "corpus" / "mtcnn_onet.onnx"
NOISE = 0.1


def perturbed(path: Path) -> Path:
    model = onnx.load(str(SOURCE))
    rng = np.random.default_rng(0)
    for init in model.graph.initializer:
        weight = numpy_helper.to_array(init)
        if weight.ndim == 4 and weight.dtype == np.float32:
            noisy = weight + rng.standard_normal(weight.shape).astype(np.float32) * NOISE * np.abs(weight).mean()
            init.CopyFrom(numpy_helper.from_array(noisy.astype(np.float32), init.name))
    onnx.save(model, path)
    return path


def main() -> int:
    student = perturbed(Path(tempfile.mkdtemp(prefix="distill-lr-")) / "noisy.onnx")
    data = f"images={ROOT.parent / 'shared' / 'datasets' / 'cifar10-jpeg.zip'}"
    for lr in (1e-3, 1e-4):
        result = distill(
            student,
            SOURCE,
            data,
            lr=lr,
            student_init="keep",
            input_shapes={"input_3": [1, 48, 48, 3]},
            limit_train=1024,
            limit_test=256,
            mean=(0.5,),
            std=(0.50196,),
            threads=1,
            progress=False,
            guard=False,
        )
        print(f"lr {lr:g}: relative error {result.relative_error_before:.3f} -> {result.relative_error:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
