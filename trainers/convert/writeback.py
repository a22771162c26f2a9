"""Trained weights written back into the source graph: the trained ONNX has the same nodes, with
the same names, as the graph that was trained (a pruned graph stays the pruned graph).

Every layer the converter turned into Parameters remembers where they came from
(`onnx_source` on the layer, `onnx_node` on the op); `write_back` replaces those tensors --
initializers or `Constant` nodes alike -- with the trained values in ONNX's layout, folding a
BatchNorm inserted for training (norms.py) into its layer. A layer without a bias that gains one
from the fold gets a new bias initializer as its optional input (no new node).

`CannotWriteBack` says why a graph cannot be written back (a weight shared by two layers, or one
computed rather than stored); the caller then exports through torch instead.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from onnxprune.read.initializer_inputs import initializer_inputs, sync_initializer_inputs

from .modules import OnnxModule
from .norms import fold, layer_of


class CannotWriteBack(Exception):
    pass


RESHAPES = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")  # same values, row-major, another shape


class _Tensors:
    """Initializers and Constant-node values of a graph, by tensor name, written at most once each."""

    def __init__(self, proto: onnx.ModelProto):
        self.proto = proto
        self.inits = {init.name: init for init in proto.graph.initializer}
        self.constants = {}
        for node in proto.graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.constants[node.output[0]] = node.attribute[0]
        self.written: set[str] = set()
        # a weight an exporter stores in another layout and reshapes in the graph (onnx-caffe2's
        # GoogLeNet classifier: Reshape(initializer, shape initializer)): written into the stored tensor
        stored = self.inits.keys() | self.constants.keys()
        self.reshaped = {
            node.output[0]: node.input[0]
            for node in proto.graph.node
            if node.op_type in RESHAPES and node.input and node.input[0] in stored
        }

    def set(self, name: str, value: torch.Tensor, shape: list[int] | None = None) -> None:
        if name in self.reshaped:
            name, shape = self.reshaped[name], None
        if name in self.written:
            raise CannotWriteBack(f"tensor {name!r} is read by several layers (trained apart)")
        self.written.add(name)
        array = value.detach().cpu().numpy()
        if shape is not None:
            array = array.reshape(shape)
        if name in self.inits:
            old = self.inits[name]
        elif name in self.constants:
            old = self.constants[name].t
        else:
            raise CannotWriteBack(f"weight {name!r} is computed in the graph, not stored")
        dtype = onnx.helper.tensor_dtype_to_np_dtype(old.data_type)
        if shape is None:
            if int(np.prod(old.dims)) != array.size:
                raise CannotWriteBack(f"tensor {name!r} changed size")
            array = array.reshape(tuple(old.dims))
        old.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(array.astype(dtype)), old.name))

    def add(self, base: str, value: torch.Tensor) -> str:
        """A new initializer (a bias the fold created); returns its unique name."""
        taken = (
            self.inits.keys()
            | {o for n in self.proto.graph.node for o in n.output}
            | {i.name for i in self.proto.graph.input}
        )
        name, k = f"{base}_bias", 1
        while name in taken:
            k += 1
            name = f"{base}_bias{k}"
        init = numpy_helper.from_array(value.detach().cpu().numpy().astype(np.float32), name)
        self.proto.graph.initializer.append(init)
        self.inits[name] = self.proto.graph.initializer[-1]
        self.written.add(name)
        return name


def write_back(module: OnnxModule, source: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `source` holding `module`'s trained weights (module in eval statistics)."""
    if source.functions:
        raise CannotWriteBack("the graph has local functions")
    proto = onnx.ModelProto()
    proto.CopyFrom(source)
    tensors = _Tensors(proto)
    inserted = getattr(module, "inserted_norms", {}) or {}
    for key, op in module.ops.items():
        layer = layer_of(op)
        src = getattr(layer, "onnx_source", None)
        if src is None:
            continue
        node = proto.graph.node[op.onnx_node]
        kind = src["kind"]
        if kind == "batchnorm":
            for field, value in (
                ("scale", layer.weight),
                ("bias", layer.bias),
                ("mean", layer.running_mean),
                ("var", layer.running_var),
            ):
                tensors.set(src[field], value)
            continue
        if kind == "rnn":
            tensors.set(src["W"], layer.W)
            tensors.set(src["R"], layer.R)
            if src["B"]:
                tensors.set(src["B"], layer.B)
            elif bool(layer.B.detach().abs().sum() > 0):
                name = tensors.add(node.name or src["W"], layer.B)
                while len(node.input) < 4:
                    node.input.append("")
                node.input[3] = name
            continue
        if kind == "affine":  # InstanceNormalization's scale and shift
            tensors.set(src["weight"], layer.weight)
            tensors.set(src["bias"], layer.bias)
            continue
        if kind == "prelu":
            tensors.set(src["weight"], layer.weight, src["shape"])
            continue
        norm = module.ops[inserted[key]] if key in inserted else None
        weight, bias = fold(layer, kind, norm)
        if kind in ("conv", "conv_transpose"):
            tensors.set(src["weight"], weight)
            scale = 1.0
        elif kind == "gemm":
            weight = weight / src["alpha"]
            tensors.set(src["weight"], weight if src["trans_b"] else weight.transpose(0, 1))
            scale = src["beta"]
        else:  # matmul: (in, out) in ONNX
            tensors.set(src["weight"], weight.transpose(0, 1))
            scale = 1.0
        if bias is None:
            continue
        bias = bias / scale if scale != 1.0 else bias
        if src.get("bias"):
            shape = src.get("bias_shape")
            fits = shape is not None and int(np.prod(shape)) == bias.numel()
            tensors.set(src["bias"], bias, shape if fits else None)
        elif kind == "matmul":
            raise CannotWriteBack(f"MatMul {node.name!r} has no bias to fold a normalisation into")
        else:
            if len(node.input) < 2:
                raise CannotWriteBack(f"node {node.name!r} has no weight input")
            name = tensors.add(node.name or src["weight"], bias)
            if len(node.input) == 2:
                node.input.append(name)
            else:
                node.input[2] = name
    sync_initializer_inputs(proto, initializer_inputs(source))  # IR < 4: a new bias is listed as an input
    return proto


def dynamic_batch(proto: onnx.ModelProto) -> bool:
    """Make the batch axis of the first input and all outputs symbolic when the graph still runs with
    a batch of 2 (a Reshape to a constant [1, ...] would not); in place. True when it did."""
    import onnxruntime as ort

    initializers = {init.name for init in proto.graph.initializer}
    image = next((v for v in proto.graph.input if v.name not in initializers), None)  # IR < 4 lists weights too
    if image is None:
        return False
    first = image.type.tensor_type.shape
    if not first.dim or first.dim[0].dim_param or not first.dim[0].HasField("dim_value"):
        return False
    trial = onnx.ModelProto()
    trial.CopyFrom(proto)
    trial_image = next(v for v in trial.graph.input if v.name == image.name)
    for value in [trial_image, *trial.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_param = "batch"
    del trial.graph.value_info[:]
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 4
        session = ort.InferenceSession(trial.SerializeToString(), options, providers=["CPUExecutionProvider"])
        inp = session.get_inputs()[0]
        shape = [2] + [d.dim_value for d in first.dim[1:]]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(image.type.tensor_type.elem_type)
        outs = session.run(None, {inp.name: np.zeros(shape, dtype=dtype)})
        if any(getattr(o, "shape", (0,))[:1] != (2,) for o in outs):
            return False
    except Exception:  # onnxruntime refuses the graph at batch 2: keep the static batch
        return False
    proto.CopyFrom(trial)
    return True
