"""ncnn as an interop runtime: pnnx converts the ONNX to ncnn's param/bin in a private temporary
folder (never next to the input), and the ncnn Python binding runs it at float32.

Why ncnn and not TFLite: onnx2tf needs TensorFlow (a 274 MB wheel, 1.27 GB installed) and, on
Python 3.11, pins older onnx/onnxruntime/numpy than ours, while pnnx and ncnn are 40 MB of wheels
(docs/handoff.md). pnnx's wheel declares torch, but its converter is
a static binary that reads ONNX without it: we run the binary, never `import pnnx` (which imports
torch).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from onnxprune.errors import UserError
from onnxprune.measure.runtime_errors import rejection

INSTALL_HINT = "install onnxprune[ncnn] (pip install -e '.[ncnn]')"
# pnnx embeds onnxruntime 1.30, which reads IR versions up to 13; IR 14 (onnx 1.23's default) adds FLOAT6 types only
PNNX_MAX_IR_VERSION = 13
CONVERT_TIMEOUT_S = 600
# lines of pnnx's log that say why it failed, most specific first
PNNX_REASONS = (
    r"unexpected op_type \S+",
    r"is not a registered function/op",
    r"not supported",
    r"Unsupported",
    r"(?i)\berror\b",
    r"(?i)failed",
)


def pnnx_executable() -> Path | None:
    """The converter binary inside the installed pnnx package, found without importing it."""
    spec = importlib.util.find_spec("pnnx")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for name in ("pnnx", "pnnx.exe"):
            candidate = Path(folder) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    return None


def ncnn_available() -> str | None:
    """None when both the ncnn binding and the pnnx converter are there, else why not."""
    try:
        import ncnn  # noqa: F401
    except ImportError as exc:
        return f"ncnn is not installed ({exc}); {INSTALL_HINT}"
    if pnnx_executable() is None:
        return f"ncnn needs the pnnx converter, which is not installed; {INSTALL_HINT}"
    return None


def graph_inputs(model: onnx.ModelProto) -> list[str]:
    """The graph's real inputs in order: pnnx names them in0, in1, ... in this order."""
    initializers = {i.name for i in model.graph.initializer}
    return [value.name for value in model.graph.input if value.name not in initializers]


def _batch_one_inputs(model: onnx.ModelProto, feeds: dict) -> list[str]:
    """pnnx's inputshape= argument per graph input; ncnn runs one float32 sample (no batch axis)."""
    shapes = []
    for name in graph_inputs(model):
        if name not in feeds:
            raise UserError(f"ncnn: no value given for input {name!r}")
        value = feeds[name]
        if value.dtype != np.float32:
            raise UserError(f"ncnn takes float32 inputs only; input {name!r} is {value.dtype}")
        if value.ndim < 1 or value.shape[0] != 1 or value.ndim > 5:
            raise UserError(f"ncnn runs batch 1 of rank 1 to 5 only; input {name!r} has shape {list(value.shape)}")
        shapes.append("[" + ",".join(str(d) for d in value.shape) + "]f32")
    return shapes


def _log_reason(log: str, returncode: int) -> str:
    """The most specific line of pnnx's log, and how pnnx ended."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in log.splitlines()]
    for pattern in PNNX_REASONS:
        for line in lines:
            found = re.search(pattern, line)
            if found:
                # "canonicalize ...   unexpected op_type X": keep the reason, not the pass's name
                reason = line[found.start() :] if pattern.startswith("unexpected") else line
                break
        else:
            continue
        break
    else:
        reason = next((line for line in reversed(lines) if line), "no output")
    ending = f"crashed with signal {-returncode}" if returncode < 0 else f"exited {returncode}"
    return f"{reason} (pnnx {ending})"


def convert_with_pnnx(model: onnx.ModelProto, feeds: dict, folder: Path) -> tuple[Path, Path]:
    """ncnn param and bin files for `model`, written in `folder`, at float32 weights."""
    shapes = _batch_one_inputs(model, feeds)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.ir_version = min(copy.ir_version, PNNX_MAX_IR_VERSION)
    source = folder / "model.onnx"
    onnx.save(copy, source)
    outputs = {
        key: folder / f"model.{key}"
        for key in ("ncnnparam", "ncnnbin", "ncnnpy", "pnnxparam", "pnnxbin", "pnnxpy", "pnnxonnx")
    }
    command = [
        str(pnnx_executable()),
        str(source),
        "inputshape=" + ",".join(shapes),
        "fp16=0",
        *(f"{key}={path}" for key, path in outputs.items()),
    ]
    try:
        done = subprocess.run(
            command, cwd=folder, capture_output=True, text=True, errors="replace", timeout=CONVERT_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise UserError(f"ncnn: pnnx did not convert the graph within {CONVERT_TIMEOUT_S} s") from None
    param, weights = outputs["ncnnparam"], outputs["ncnnbin"]
    if done.returncode != 0 or not param.is_file() or not weights.is_file():
        reason = _log_reason(done.stdout + "\n" + done.stderr, done.returncode)
        raise rejection("ncnn", model, RuntimeError(reason), "converting it with pnnx")
    return param, weights


def _unknown_layers(param: Path) -> list[str]:
    """Layer types in an ncnn param file that this ncnn build does not know (pnnx passes unmapped ops through)."""
    import ncnn

    types = [line.split()[0] for line in param.read_text().splitlines()[2:] if line.strip()]
    return sorted({t for t in types if ncnn.layer_to_index(t) < 0})


def _output_shape(value: onnx.ValueInfoProto, size: int) -> list[int] | None:
    dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
    return dims if dims and all(d > 0 for d in dims) and int(np.prod(dims)) == size else None


def ncnn_session(model: onnx.ModelProto, feeds: dict) -> Callable[[dict], list[np.ndarray]]:
    """Convert `model` (shapes from `feeds`) and return an infer(feeds) over ncnn."""
    import ncnn

    net = ncnn.Net()
    # float32 throughout: ncnn defaults to fp16/bf16 storage where the CPU has it, far above 1e-4
    for option in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage"):
        setattr(net.opt, option, False)
    net.opt.num_threads = 1
    with tempfile.TemporaryDirectory(prefix="onnxprune-ncnn-") as folder:
        param, weights = convert_with_pnnx(model, feeds, Path(folder))
        unknown = _unknown_layers(param)
        if unknown:
            raise rejection("ncnn", model, RuntimeError(f"no ncnn layer for {', '.join(unknown)}"), "loading it")
        if net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0:
            raise rejection("ncnn", model, RuntimeError("ncnn could not load pnnx's param/bin"), "loading it")
    inputs, graph_outputs = graph_inputs(model), list(model.graph.output)

    def infer(run_feeds: dict) -> list[np.ndarray]:
        with net.create_extractor() as extractor:
            for index, name in enumerate(inputs):
                extractor.input(f"in{index}", ncnn.Mat(np.ascontiguousarray(run_feeds[name][0])).clone())
            results = []
            for index, declared in enumerate(graph_outputs):
                status, mat = extractor.extract(f"out{index}")
                if status != 0:
                    failure = RuntimeError(f"extracting output {declared.name!r} failed ({status})")
                    raise rejection("ncnn", model, failure, "running it")
                array = np.array(mat, dtype=np.float32)
                shape = _output_shape(declared, array.size)
                results.append(array.reshape(shape) if shape else array[np.newaxis])  # ncnn drops the batch axis
            return results

    return infer
