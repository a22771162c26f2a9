"""Models for the start-up and scaling benchmark, built offline into a git-ignored folder.

- The ONNX Model Zoo's classic onnx-caffe2 CNNs (IR 3, opset 9, weights listed as graph inputs):
  the onnx wheel ships structure-only copies in `onnx/backend/test/data/light/` whose weights are
  `ConstantOfShape` fills; each fill becomes a seeded random initializer of its shape (listed as a
  graph input, as the originals do), which gives the real files' layout and size.
- A synthetic plain CNN of 5 GiB, saved with external data (one side file), since protobuf
  cannot hold it in one message; `shrink --mode FA --target 0.5` of it is still over 2 GiB, so
  the output is written with external data too.

    python -m benchmarks.bench_models [--out build/bench_models] [--big]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "build" / "bench_models"
LIGHT = ("squeezenet", "resnet50", "bvlc_alexnet", "vgg19")  # 5, 102, 244, 575 MB
BIG_NAME = "synthetic_big"


def rebuild_light(name: str, out: Path, seed: int = 0) -> Path:
    """light_<name>.onnx with every ConstantOfShape fill replaced by a random initializer (IR 3
    layout), by the corpus's own builder (models/zoo_classics.py) without its BN calibration."""
    from models.zoo_classics import LIGHT_DIR, materialise

    target = out / f"{name}.onnx"
    if target.exists():
        return target
    model = materialise(onnx.load(str(LIGHT_DIR / f"light_{name}.onnx")), seed)
    out.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(target)
    return target


def synthetic_big(out: Path, gib: float = 5.0, seed: int = 0) -> Path:
    """A plain conv stack + Gemm head whose weights exceed `gib` GiB, with its weights in one
    external data file, written tensor by tensor (the builder never holds the whole model).

    Wide 3x3 convs on a 4x4 map hold most of the bytes (each 4096x4096x3x3 float conv is 576 MiB),
    so the graph stays small and the model is cheap to run."""
    target = out / f"{BIG_NAME}.onnx"
    if target.exists():
        return target
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, per_conv = 4096, 4096 * 4096 * 9 * 4
    layers = max(2, int(np.ceil(gib * 2**30 / per_conv)))
    data_name = f"{BIG_NAME}.onnx.data"
    nodes, inits = [], []
    with open(out / data_name, "wb") as data:

        def weight(name, dims):
            value = rng.standard_normal(dims, dtype=np.float32) * np.float32(0.01)
            tensor = onnx.TensorProto(name=name, data_type=onnx.TensorProto.FLOAT, dims=dims)
            tensor.data_location = onnx.TensorProto.EXTERNAL
            offset = data.tell()
            data.write(value.tobytes())
            for key, val in (("location", data_name), ("offset", str(offset)), ("length", str(value.nbytes))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, val
            inits.append(tensor)
            return name

        prev, channels = "input", 3
        for i in range(layers):
            w = weight(f"conv{i}.weight", [width, channels, 3, 3])
            b = weight(f"conv{i}.bias", [width])
            nodes.append(helper.make_node("Conv", [prev, w, b], [f"conv{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]))
            nodes.append(helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"], name=f"relu{i}"))
            prev, channels = f"relu{i}", width
        nodes.append(helper.make_node("GlobalAveragePool", [prev], ["pool"], name="pool"))
        nodes.append(helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"))
        fc_w, fc_b = weight("fc.weight", [10, width]), weight("fc.bias", [10])
        nodes.append(helper.make_node("Gemm", ["flat", fc_w, fc_b], ["logits"], name="fc", transB=1))
    graph = helper.make_graph(
        nodes,
        "synthetic_big",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(model, str(target))
    return target


def build_all(out: Path = DEFAULT_OUT, big: bool = False) -> dict[str, Path]:
    models = {name: rebuild_light(name, out) for name in LIGHT}
    if big:
        models[BIG_NAME] = synthetic_big(out)
    return models


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--big", action="store_true", help="also the >2 GiB synthetic model (external data)")
    args = ap.parse_args(argv)
    for name, path in build_all(args.out, args.big).items():
        print(f"{name}: {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
