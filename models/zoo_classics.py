"""The ONNX Model Zoo's classic CNNs, offline: IR 3 graphs with random weights.

The onnx wheel ships structure-only copies of nine onnx-caffe2 exports (IR 3, opset 9) in
``onnx/backend/test/data/light/``: every large weight is a ``ConstantOfShape`` fill of 0.02.
``materialise`` turns each fill into a seeded random initializer of its shape, drawn by what
reads it (He-normal conv/linear weights, BatchNorm variances > 0, ...), and lists it as a graph
input, as IR < 4 requires and the originals do. The result has the real files' layout (every
initializer also a graph input); the weights are random, so accuracy means nothing here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxprune.read.io import file_sha256

LIGHT_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"

EXPORTER = "onnx-caffe2 (ONNX Model Zoo layout: IR 3, opset 9, initializers listed as inputs)"
IMAGE = [1, 3, 224, 224]

# name, light file, image input, sha256 of the light file (unchanged in onnx 1.16-1.23), what it brings
CLASSICS = [
    dict(
        name="zoo_resnet50",
        light="light_resnet50.onnx",
        image="gpu_0/data_0",
        light_sha256="05e77a5c9c9ce0913f549a50d6ebaced5e0ff6817b61e09bae26e4c5bd9055e4",
        about="ResNet-50 (caffe2): Sum of two inputs as the residual merge, spatial BN",
    ),
    dict(
        name="zoo_squeezenet",
        light="light_squeezenet.onnx",
        image="data_0",
        light_sha256="770b0f3c8623e18bf58b53754d710051b4c268248422142980a132bbe6dfe908",
        about="SqueezeNet 1.0: fire modules (Concat of 1x1 and 3x3 expands), Dropout, conv classifier",
    ),
    dict(
        name="zoo_vgg19",
        light="light_vgg19.onnx",
        image="data_0",
        light_sha256="8e547d732b3a3d66eeb8fa64a026adb994d3db552f0bbd52e436d06300d89afe",
        about="VGG-19: 16 convs, Reshape to 3 FC layers, Dropout with a mask output; 575 MB",
        heavy=True,
    ),
    dict(
        name="zoo_alexnet",
        light="light_bvlc_alexnet.onnx",
        image="data_0",
        light_sha256="2afa78cef5a88aed9d6e3d63fb92bd330c9177ac150d19189c6b3e7204ba0212",
        about="BVLC AlexNet: LRN, grouped convs (group 2), Reshape to FC, Dropout with a mask output",
    ),
    dict(
        name="zoo_zfnet512",
        light="light_zfnet512.onnx",
        image="gpu_0/data_0",
        light_sha256="6444bb58b98c3d14f551a3bdb83eea9e5db7e147790db3115c447e9c9a8338b0",
        about="ZFNet-512: LRN, Reshape to FC, an unused initializer listed as an input",
    ),
    dict(
        name="zoo_densenet121",
        light="light_densenet121.onnx",
        image="data_0",
        light_sha256="49ddb5712797d6164f1d864bedaad927de4f3909ad1b4ba390a92c2f8150e9f6",
        about="DenseNet-121: dense Concat, BN after Concat, Unsqueeze+Mul/Add scale layers",
    ),
    dict(
        name="zoo_inception_v1",
        light="light_inception_v1.onnx",
        image="data_0",
        light_sha256="bb7a0e6c370c709f5615eeef961b43628de13d0009ae4d6f4bfb0d5aea5d8270",
        about="GoogLeNet: inception Concat, LRN, Dropout, Reshape to FC",
    ),
    dict(
        name="zoo_inception_v2",
        light="light_inception_v2.onnx",
        image="data_0",
        light_sha256="224d77d55b26559a959db627c3f417a623fbf3b3000d25f0939327aa935d933f",
        about="Inception v2 (BN-Inception): spatial BN, Unsqueeze+Mul/Add scale, inception Concat",
    ),
    dict(
        name="zoo_shufflenet",
        light="light_shufflenet.onnx",
        image="gpu_0/data_0",
        light_sha256="c6f406d62be36d6b4572542c0950a2abd59f56237068793290680bba89fbafe5",
        about="ShuffleNet v1: grouped 1x1 convs, Reshape-Transpose-Reshape channel shuffle, Sum, Concat",
    ),
]


def _readers(graph: onnx.GraphProto) -> dict[str, list[tuple[onnx.NodeProto, int]]]:
    found: dict[str, list] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            found.setdefault(name, []).append((node, index))
    return found


def _draw(shape: list[int], reader: tuple[onnx.NodeProto, int] | None, readers: dict, rng) -> np.ndarray:
    """Random values of `shape` that keep activations O(1), chosen by the first reader."""
    if reader is None:
        return rng.normal(0.0, 0.1, shape)
    node, index = reader
    if node.op_type == "Unsqueeze":  # a per-channel scale or shift written as Unsqueeze -> Mul/Add
        next_readers = readers.get(node.output[0], [])
        kind = next_readers[0][0].op_type if next_readers else "Add"
        return rng.uniform(0.5, 1.5, shape) if kind == "Mul" else rng.normal(0.0, 0.1, shape)
    if node.op_type == "BatchNormalization":
        # scale, bias, mean, var: gamma in [0.5, 1.5], beta and mean small, var in [0.5, 1.5]
        return rng.uniform(0.5, 1.5, shape) if index in (1, 4) else rng.normal(0.0, 0.1, shape)
    if node.op_type in ("Conv", "Gemm") and index == 1:
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        fan_in = int(np.prod(shape[1:])) if node.op_type == "Conv" or trans_b else int(shape[0])
        return rng.normal(0.0, np.sqrt(2.0 / max(fan_in, 1)), shape)
    return rng.normal(0.0, 0.01, shape)  # biases


def materialise(light: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """`light` with every ConstantOfShape(initializer shape) replaced by a random initializer
    of that shape, listed as a graph input too (IR 3: every initializer is an input)."""
    model = onnx.ModelProto()
    model.CopyFrom(light)
    graph = model.graph
    rng = np.random.default_rng(seed)
    readers = _readers(graph)
    shapes = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    fills = [n for n in graph.node if n.op_type == "ConstantOfShape" and n.input[0] in shapes]
    used_shapes = {n.input[0] for n in fills}
    new_inits, new_inputs = [], []
    for node in fills:
        shape = [int(d) for d in shapes[node.input[0]]]
        name = node.output[0]
        first = next(iter(readers.get(name, [])), None)
        value = _draw(shape, first, readers, rng).astype(np.float32)
        new_inits.append(numpy_helper.from_array(value, name))
        new_inputs.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape))
    filled = {node.output[0] for node in fills}
    kept_nodes = [n for n in graph.node if not (n.op_type == "ConstantOfShape" and n.output[0] in filled)]
    still_read = {name for node in kept_nodes for name in node.input}
    dropped = {name for name in used_shapes if name not in still_read}
    del graph.node[:]
    graph.node.extend(kept_nodes)
    kept_inits = [i for i in graph.initializer if i.name not in dropped]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits + new_inits)
    kept_inputs = [i for i in graph.input if i.name not in dropped]
    del graph.input[:]
    graph.input.extend(kept_inputs + new_inputs)
    model.doc_string = "onnxprune corpus: ONNX Model Zoo layout (IR 3) from onnx's light test model; RANDOM weights"
    return model


def calibrate_batchnorm(model: onnx.ModelProto, input_name: str, seed: int = 0) -> None:
    """Set every BatchNormalization's mean and variance to the statistics of its input on a seeded
    random image, as trained running statistics would be, so activations stay O(1) through the
    depth (random residual nets otherwise grow ~2x per block and overflow).

    One onnxruntime session, with the statistics as graph inputs and every BN input as an output;
    BNs are calibrated level by level (a level: BNs whose BN ancestors are all calibrated)."""
    import onnxruntime as ort

    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    norms = [n for n in graph.node if n.op_type == "BatchNormalization" and all(i in inits for i in n.input[3:5])]
    if not norms:
        return
    stats = {name for n in norms for name in n.input[3:5]}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    kept = [init for init in probe.graph.initializer if init.name not in stats]
    del probe.graph.initializer[:]
    probe.graph.initializer.extend(kept)
    listed = {v.name for v in probe.graph.input}
    probe.graph.input.extend(
        helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(inits[name].dims))
        for name in sorted(stats - listed)
    )
    names = [n.input[0] for n in norms]
    probe.graph.output.extend(helper.make_tensor_value_info(x, onnx.TensorProto.FLOAT, None) for x in names)
    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    image = next(v for v in graph.input if v.name == input_name)
    shape = [d.dim_value or 1 for d in image.type.tensor_type.shape.dim]
    feed = {input_name: np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}
    feed.update({name: numpy_helper.to_array(inits[name]) for name in stats})
    levels = _bn_levels(graph, norms)
    for level in range(1, max(levels) + 1):
        values = session.run(names, feed)
        for node, x, node_level in zip(norms, values, levels):
            if node_level == level:
                axes = (0, *range(2, x.ndim))
                feed[node.input[3]] = x.mean(axis=axes).astype(np.float32)
                feed[node.input[4]] = (x.var(axis=axes) + 1e-3).astype(np.float32)
    for name in stats:
        inits[name].CopyFrom(numpy_helper.from_array(feed[name], name))


def _bn_levels(graph: onnx.GraphProto, norms: list[onnx.NodeProto]) -> list[int]:
    """Per BN: 1 + the most BNs on a path from the inputs to it (graph nodes are in topological order)."""
    bn_ids = {id(n) for n in norms}
    depth: dict[str, int] = {}
    levels = {}
    for node in graph.node:
        upstream = max((depth.get(name, 0) for name in node.input), default=0)
        if id(node) in bn_ids:
            levels[id(node)] = upstream + 1
            upstream += 1
        for name in node.output:
            depth[name] = upstream
    return [levels[id(n)] for n in norms]


def build_classics(out: Path, previous: dict[str, dict] | None = None, seed: int = 0) -> list[dict]:
    """Write every classic as `<out>/<name>.onnx` (atomically) and return its manifest entries.

    A file is regenerated unless the previous manifest recorded its sha256 for the same light file."""
    entries = []
    for classic in CLASSICS:
        source = LIGHT_DIR / classic["light"]
        if not source.is_file():
            raise RuntimeError(f"{source}: not in the installed onnx wheel ({onnx.__version__})")
        digest = file_sha256(source)
        if digest != classic["light_sha256"]:
            raise RuntimeError(f"{source}: sha256 {digest} != pinned {classic['light_sha256']}")
        path = out / f"{classic['name']}.onnx"
        old = (previous or {}).get(classic["name"], {})
        if not (path.exists() and old.get("light_sha256") == digest and old.get("sha256") == file_sha256(path)):
            model = materialise(onnx.load(str(source)), seed)
            calibrate_batchnorm(model, classic["image"], seed=seed)
            onnx.checker.check_model(model, full_check=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(model.SerializeToString())
            os.replace(tmp, path)
        entries.append(
            {
                "name": classic["name"],
                "package": "onnx",
                "version": onnx.__version__,
                "member": f"onnx/backend/test/data/light/{classic['light']}",
                "exporter": EXPORTER,
                "input_shape": {classic["image"]: IMAGE},
                "light_sha256": digest,
                "sha256": file_sha256(path),
                "about": classic["about"] + "; RANDOM weights (seeded, BN statistics calibrated)",
                "random_weights": True,
                "heavy": bool(classic.get("heavy")),
                "quantized": False,
                "file": path.name,
            }
        )
    return entries
