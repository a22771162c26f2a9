"""The loss for a Sigmoid output (issue 26): Bernoulli KL at T = 2 (`--output-loss NAME=kl`) against the
default, normalised MSE on the logits, on PP-OCRv4's text detector pruned at FLOPs 0.5 (seed 0, keep,
l1) at 160x160, distilled on 512 CIFAR-10 training images for 2 epochs (1 thread); errors against the
original measured with onnxruntime on 64 held-out test images, on the logits and on the probabilities.

    PYTHONPATH=. .venv/bin/python benchmarks/distill_sigmoid_loss.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.distill_corpus import held_out  # noqa: E402
from onnxprune import shrink  # noqa: E402
from onnxprune.measure.verify import with_logit_outputs  # noqa: E402
from trainers.distill_loop import distill  # noqa: E402

SOURCE = ROOT / "build" / "corpus" / "ppocrv4_det.onnx"
SHAPE = {"x": [1, 3, 160, 160]}
OUTPUT = "sigmoid_0.tmp_0"


def outputs(path, x: np.ndarray, logits: bool) -> np.ndarray:
    model = onnx.load(str(path))
    model = with_logit_outputs(model) if logits else model
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options)
    return np.concatenate([session.run(None, {"x": x[i : i + 1]})[0] for i in range(len(x))])


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((a - b) ** 2).sum() / (b**2).sum()))


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix="distill-sigmoid-"))
    pruned, report = shrink(str(SOURCE), mode="FA", target=0.5, seed=0, init="keep", criterion="l1", input_shapes=SHAPE)
    onnx.save(pruned, folder / "pruned.onnx")
    x = held_out(SOURCE, SHAPE["x"], "0.5", "0.5", 64)
    want_logits, want = outputs(SOURCE, x, True), outputs(SOURCE, x, False)
    print(
        f"pruned: logits {relative(outputs(folder / 'pruned.onnx', x, True), want_logits):.3f}, probabilities "
        f"{relative(outputs(folder / 'pruned.onnx', x, False), want):.3f}"
    )
    for name, override in (("Bernoulli KL", {OUTPUT: "kl"}), ("MSE on logits (default)", {})):
        out = folder / f"{len(override)}.onnx"
        distill(
            folder / "pruned.onnx",
            SOURCE,
            f"images={ROOT.parent / 'shared' / 'datasets' / 'cifar10-jpeg.zip'}",
            input_shapes=SHAPE,
            shrink_report=report,
            output_loss=override,
            limit_train=512,
            limit_test=64,
            epochs=2,
            threads=1,
            mean=(0.5,),
            std=(0.5,),
            progress=False,
            guard=False,
            output=out,
        )
        logits, probabilities = outputs(out, x, True), outputs(out, x, False)
        print(
            f"{name}: logits {relative(logits, want_logits):.3f}, probabilities {relative(probabilities, want):.3f}, "
            f"pixels agreeing at 0.3: {100 * float(((probabilities > 0.3) == (want > 0.3)).mean()):.2f} %"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
