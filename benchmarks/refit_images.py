"""Issue 26, a probe: does the least-squares refit (trainers/recalibrate.py) get closer to the teacher
when it reads more calibration images (IMAGES, default 128) or samples more rows per layer (ROWS,
default 8192)? Refit only: the run stops before the first optimizer step and reports the held-out
relative error as pruned and after the refit, on the pruned files of a `distill_corpus.py` run
(`--out` of that run: <out>/<model>/pruned.onnx, shrink.json).

    PYTHONPATH=. .venv/bin/python benchmarks/refit_images.py mtcnn_onet 512 8192 --runs build/dc5/out
prints one JSON line per call (the results file collects them by hand, with the command).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import benchmarks.distill_corpus as corpus  # noqa: E402
import trainers.distill_loop as loop  # noqa: E402
import trainers.distill_setup as setup  # noqa: E402
import trainers.recalibrate as refit  # noqa: E402


class _Stop(Exception):
    pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("images", type=int)
    parser.add_argument("rows", type=int)
    parser.add_argument("--runs", default=str(ROOT / "build" / "distill-corpus"))
    args = parser.parse_args()
    refit.ROWS = args.rows
    real_refit, real_heldout, errors = refit.recalibrate, setup.heldout, []
    setup.recalibrate = lambda *a, **k: real_refit(*a, images=args.images, **k)

    def heldout(*a, **k):
        measured = real_heldout(*a, **k)
        errors.append(measured["relative_error"])
        return measured

    def stop(*_a, **_k):
        raise _Stop

    setup.heldout, loop.make_optimizer = heldout, stop
    entry = next(m for m in corpus._manifest() if m["name"] == args.model)
    mean, std = corpus.NORMALISATION.get(args.model, ("0", "1"))
    run = Path(args.runs) / args.model
    started = time.perf_counter()
    try:
        loop.distill(
            run / "pruned.onnx", ROOT / "build" / "corpus" / entry["file"], data=f"images={corpus.CIFAR}",
            limit_train=1024, limit_test=256, shrink_report=run / "shrink.json",
            mean=tuple(map(float, mean.split(","))), std=tuple(map(float, std.split(","))),
            input_shapes=entry["input_shape"], progress=False, threads=1, student_init="keep",
        )  # fmt: skip
    except _Stop:
        pass
    row = {"model": args.model, "images": args.images, "rows": args.rows, "before": errors[0]}
    row.update(refit=errors[-1] if len(errors) > 1 else None, seconds=round(time.perf_counter() - started, 1))
    print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
