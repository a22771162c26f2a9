"""ONNX -> PyTorch, written here, and PyTorch -> ONNX through torch.onnx.export.

Why our own converter and not onnx2torch: onnx2torch is unmaintained (no release for current
opsets, no dynamo-exporter graphs) and depends on torchvision, which drags a CUDA build of torch
onto a CPU machine. The graphs we train are small CNNs, so a node-by-node interpreter covers them.

How the converter works
-----------------------
`convert(model)` walks the graph in topological order and turns every node into a small
`nn.Module`, kept in an `nn.ModuleDict` in that order; `OnnxModule.forward` runs them one by one,
passing tensors by their ONNX names. Weights become `nn.Parameter`s (Conv/ConvTranspose ->
`nn.ConvNd`, Gemm and MatMul-by-a-constant (+ a following bias Add) -> `nn.Linear`-style
parameters, BatchNormalization -> `nn.BatchNormNd` so it trains, PRelu slopes); other constants
become buffers.

While building, every node is also run once on a *probe* input (the graph input's shape, batch 1
for a static graph, 2 for a dynamic one). Nodes that do not depend on the input's values -- constants,
`Shape` and the Gather/Unsqueeze/Concat/... arithmetic on shapes that the legacy exporter emits --
are folded into constants. A `Reshape` whose folded target keeps the leading (batch) dimension, such
as the dynamo exporter's `[1, 25088]` or the legacy `[N, -1]` subgraph, is rewritten to
`[-1, ...]`, so the module trains with any batch size even when the source graph was exported with
a static batch of 1.

Layout: `modules.py` (the nn.Modules), `builder.py` (`_Builder`, the `HANDLERS` registry and the
`@handles("Op")` decorator), one file of op handlers per family -- `ops_layers.py` (weights),
`ops_elementwise.py`, `ops_shape.py`, `ops_resize.py` (Resize/Upsample), `ops_rnn.py` (LSTM/GRU), `ops_more.py` (the rarer ops
the pruner lets through) -- and `export.py` (`convert`, `export_onnx`). To support a new
op, add one `@handles("Op")` function in the family's file.

An op outside the supported set raises `UserError("node 'X' (op Foo) is not supported by the
trainer's converter")`.

`export_onnx` uses the legacy TorchScript exporter (`dynamo=False`): on these graphs it takes
~0.05 s against ~4 s for the dynamo exporter, gives a dynamic batch axis through `dynamic_axes`
without `torch.export` constraints, and folds BatchNorm into the convolutions in eval mode.
"""

from . import ops_elementwise, ops_layers, ops_more, ops_resize, ops_rnn, ops_shape  # noqa: F401  (registers the op handlers)
from .builder import HANDLERS
from .export import convert, export_onnx
from .modules import OnnxModule

__all__ = ["OnnxModule", "convert", "export_onnx", "HANDLERS"]
