"""LSTM / GRU / RNN (and onnxruntime's DynamicQuantizeLSTM) as profile layers.

Per step and direction a recurrent cell multiplies the input (I) and the previous hidden state
(H) by `gates` x H weights: MACs = seq x batch x directions x gates x H x (I + H). Params are the
W, R, B (and peephole P) elements. The input size I follows the layer's input channels; the
hidden size is fixed (pruning does not reach into the cell). The cost needs X's shape and the
hidden size only: the outputs' shapes are never asked for (Y is often read by nothing, and shape
inference may leave an unread tensor unknown).
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx_graphsurgeon as gs

from onnxprune.analysis.layer import Layer

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1, "DynamicQuantizeLSTM": 4}
# op -> positions of (W, R, B, P) and the axis of W that is the input size
WEIGHTS = {
    "LSTM": ((1, 2, 3, 7), 2),
    "GRU": ((1, 2, 3), 2),
    "RNN": ((1, 2, 3), 2),
    "DynamicQuantizeLSTM": ((1, 2, 3, 7), 1),
}


@dataclass
class RecurrentLayer(Layer):
    steps: int = 1  # seq x batch
    gate_rows: int = 0  # directions x gates x hidden
    hidden: int = 0

    def cost(self, cin: int | None = None, cout: int | None = None) -> tuple[int, int, int]:
        cin = self.cin if cin is None else cin
        params = sum(p.elements(cin, 0) for p in self.params)  # no axis follows cout
        weight_bytes = sum(p.elements(cin, 0) * p.itemsize for p in self.params)
        flops = self.steps * self.gate_rows * (cin + self.hidden)
        return params, flops, weight_bytes + self.act_factor * self.cout * self.act_itemsize


def recurrent_layer(builder, node: gs.Node, out: gs.Tensor, act_itemsize: int) -> Layer:
    x_shape = builder.shape(node, node.inputs[0])
    batch_first = int(node.attrs.get("layout", 0)) == 1
    seq, batch, inputs = (x_shape[1], x_shape[0], x_shape[2]) if batch_first else x_shape[:3]
    directions = 2 if node.attrs.get("direction", "forward") == "bidirectional" else 1
    positions, input_axis = WEIGHTS[node.op]
    # R is [directions, gates x H, H]: asked for only when the attribute does not say H
    hidden = int(node.attrs.get("hidden_size", 0)) or min(builder.shape(node, node.inputs[positions[1]])[1:])
    quantized = node.op == "DynamicQuantizeLSTM"
    params = []
    for index, position in enumerate(positions):
        tensor = node.inputs[position] if len(node.inputs) > position and node.inputs[position].name else None
        # W's input axis follows the layer's input size; the other dims never change
        params += builder.param(tensor, None, input_axis if index == 0 else None, quantized)
    return RecurrentLayer(
        node.name,
        node.op,
        node.inputs[0].name,
        out.name,
        inputs,
        directions * hidden,
        0,
        seq * batch,
        act_itemsize,
        params,
        steps=seq * batch,
        gate_rows=directions * GATES[node.op] * hidden,
        hidden=hidden,
    )
