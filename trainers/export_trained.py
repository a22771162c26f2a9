"""Writing the trained model: into the source graph's own structure when possible, through torch's
exporter otherwise; then checking onnxruntime against torch on test images."""

from __future__ import annotations

import numpy as np
import onnx
import torch

from onnxprune.read.save import save_model

from .batches import Batches
from .convert import OnnxModule, export_onnx
from .convert.norms import graph_has_norm
from .convert.writeback import CannotWriteBack, dynamic_batch, write_back


def export_trained(
    module: OnnxModule, source: onnx.ModelProto, out_path, *, keep_bn: bool, refuse, metadata: dict[str, str]
) -> tuple[onnx.ModelProto, str]:
    """Save the trained `module` (eval mode) to `out_path`; returns (saved model, how).

    A graph without normalisation of its own (a folded export), or any graph with `keep_bn`, gets
    its trained weights written back: same nodes, same names, inserted BatchNorms folded into their
    layers, batch axis made dynamic when the graph allows it. So does a graph whose inputs have free
    sizes beyond the batch (a text line's width), which torch's exporter would fix. Any other graph with
    BatchNorm of its own is exported through torch with its BN folded into the convolutions (the smaller
    graph to deploy), as is a graph whose weights cannot be written back (the reason goes into `how`).
    """
    module.eval()
    how = "torch export (BatchNorm folded)"
    symbolic = symbolic_beyond_batch(source)
    if keep_bn or not graph_has_norm(source) or symbolic:
        try:
            proto = write_back(module, source)
        except CannotWriteBack as exc:
            how = f"torch export ({exc})"
        else:
            batch = "dynamic batch" if dynamic_batch(proto) else "batch as in the source"
            del proto.metadata_props[:]
            for entry in source.metadata_props:
                if entry.key not in metadata:
                    proto.metadata_props.add().CopyFrom(entry)
            for key, value in metadata.items():
                entry = proto.metadata_props.add()
                entry.key, entry.value = key, str(value)
            save_model(proto, out_path, *refuse)
            return proto, f"written back into the source graph ({batch})"
    exported = export_onnx(module, None, out_path, keep_bn=keep_bn, refuse=refuse, metadata=metadata)
    if symbolic:  # torch's exporter traces one shape: say which of the source's free sizes it fixed
        how += f"; the source's symbolic {', '.join(symbolic)} are fixed at the training shape"
    return exported, how


def symbolic_beyond_batch(source: onnx.ModelProto) -> list[str]:
    """The source's input dimensions after the first that have no fixed size (an OCR recogniser's
    width): written back, the graph keeps them; through torch's exporter they would be fixed."""
    stored = {init.name for init in source.graph.initializer}
    free = []
    for value in source.graph.input:
        if value.name in stored or not value.type.tensor_type.HasField("shape"):
            continue
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if axis and not (dim.HasField("dim_value") and dim.dim_value > 0):
                free.append(f"{value.name}[{axis}]" + (f" ({dim.dim_param})" if dim.dim_param else ""))
    return free


def onnx_agreement(module: torch.nn.Module, exported: onnx.ModelProto, batches: Batches, limit: int = 512) -> float:
    """Share of (up to `limit`) test images on which onnxruntime and torch predict the same class."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(exported.SerializeToString(), options, providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0]
    static = first.shape[0] if first.shape and isinstance(first.shape[0], int) else None
    same = count = 0
    module.eval()
    with torch.no_grad():
        for xb, _yb in batches:
            xb = xb[: limit - count].cpu()
            torch_pred = module(xb).argmax(1).numpy()
            x = xb.numpy()
            if static:  # a graph with a fixed batch (a Reshape to [1, ...]): feed it that many at a time
                usable = (x.shape[0] // static) * static
                x, torch_pred = x[:usable], torch_pred[:usable]
                outs = [session.run(None, {first.name: x[i : i + static]})[0] for i in range(0, usable, static)]
                ort_pred = np.concatenate(outs).argmax(1) if outs else np.zeros(0, dtype=np.int64)
            else:
                ort_pred = np.asarray(session.run(None, {first.name: x})[0]).argmax(1)
            same += int((torch_pred == ort_pred).sum())
            count += len(torch_pred)
            if count >= limit or not len(torch_pred):
                break
    return same / max(count, 1)
