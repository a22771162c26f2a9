"""LSTM and GRU with ONNX semantics (CRNN text recognisers): trainable W, R, B in ONNX's own layout.

ONNX gate order: LSTM `i, o, f, c` (W [dirs, 4H, I], R [dirs, 4H, H], B [dirs, 8H] = Wb | Rb);
GRU `z, r, h` (W [dirs, 3H, I], R [dirs, 3H, H], B [dirs, 6H]), with `linear_before_reset`
choosing whether the reset gate multiplies before or after R_h. Directions forward, reverse and
bidirectional; layout 0 (X [seq, batch, in]) and 1 ([batch, seq, in]); initial_h / initial_c
constant or run time. The step loop is explicit (sequences here are tens of steps); the default
activations only, no clip, no peepholes, no `input_forget`, and `sequence_lens` only when every
sequence has the full length -- anything else is refused by name.
"""

from __future__ import annotations

import torch
from torch import nn

from .builder import _attrs, _Builder, _Unsupported, handles

DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}


class _Recurrent(nn.Module):
    def __init__(
        self,
        op: str,
        w,
        r,
        b,
        hidden: int,
        direction: str,
        layout: int,
        linear_before_reset: bool,
        init_slots: list[str],
        init_consts: dict[int, torch.Tensor],
    ):
        super().__init__()
        self.op, self.hidden, self.direction, self.layout = op, hidden, direction, layout
        self.linear_before_reset = linear_before_reset
        self.n_out = 1
        self.W = nn.Parameter(w.clone())
        self.R = nn.Parameter(r.clone())
        self.B = nn.Parameter(b.clone())
        self.init_slots = init_slots  # initial_h (and initial_c): "rt" | "const" | "none"
        for i, value in init_consts.items():
            self.register_buffer(f"init{i}", value.clone())

    def _lstm_dir(self, x, d, h, c, reverse):
        H = self.hidden
        wb, rb = self.B[d, : 4 * H], self.B[d, 4 * H :]
        xw = torch.matmul(x, self.W[d].t()) + wb + rb  # [seq, batch, 4H]
        steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
        out = [None] * x.shape[0]
        for t in steps:
            gates = xw[t] + torch.matmul(h, self.R[d].t())
            i, o, f, g = gates.split(H, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            out[t] = h
        return torch.stack(out), h, c

    def _gru_dir(self, x, d, h, reverse):
        H = self.hidden
        wb, rb = self.B[d, : 3 * H], self.B[d, 3 * H :]
        xw = torch.matmul(x, self.W[d].t()) + wb  # [seq, batch, 3H]
        r_w = self.R[d]
        steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
        out = [None] * x.shape[0]
        for t in steps:
            xz, xr, xh = xw[t].split(H, dim=-1)
            hz = torch.matmul(h, r_w[:H].t()) + rb[:H]
            hr = torch.matmul(h, r_w[H : 2 * H].t()) + rb[H : 2 * H]
            z = torch.sigmoid(xz + hz)
            r = torch.sigmoid(xr + hr)
            if self.linear_before_reset:
                cand = torch.tanh(xh + r * (torch.matmul(h, r_w[2 * H :].t()) + rb[2 * H :]))
            else:
                cand = torch.tanh(xh + torch.matmul(r * h, r_w[2 * H :].t()) + rb[2 * H :])
            h = (1 - z) * cand + z * h
            out[t] = h
        return torch.stack(out), h

    def forward(self, x, *runtime):
        if self.layout == 1:
            x = x.transpose(0, 1)
        batch, dirs = x.shape[1], self.W.shape[0]
        values, k = [], 0
        for i, slot in enumerate(self.init_slots):
            if slot == "rt":
                value = runtime[k]
                k += 1
                values.append(value.transpose(0, 1) if self.layout == 1 else value)
            elif slot == "const":
                value = getattr(self, f"init{i}")
                values.append(value.transpose(0, 1) if self.layout == 1 else value)
            else:
                values.append(x.new_zeros(dirs, batch, self.hidden))
        ys, hs, cs = [], [], []
        for d in range(dirs):
            reverse = self.direction == "reverse" or d == 1
            if self.op == "LSTM":
                y, h, c = self._lstm_dir(x, d, values[0][d], values[1][d], reverse)
                cs.append(c)
            else:
                y, h = self._gru_dir(x, d, values[0][d], reverse)
            ys.append(y)
            hs.append(h)
        y = torch.stack(ys, 1)  # [seq, dirs, batch, H]
        y_h = torch.stack(hs)  # [dirs, batch, H]
        y_c = torch.stack(cs) if cs else None
        if self.layout == 1:
            y = y.permute(2, 0, 1, 3)
            y_h = y_h.transpose(0, 1)
            y_c = y_c.transpose(0, 1) if y_c is not None else None
        outs = (y, y_h, y_c) if self.op == "LSTM" else (y, y_h)
        return outs[0] if self.n_out == 1 else outs[: self.n_out]


def _recurrent(b: _Builder, node, op: str, gates: int):
    attrs = _attrs(node)
    w, r = b.const(node, 1), b.const(node, 2)
    if w is None or r is None:
        raise _Unsupported("W and R must be constants")
    dirs, hidden = w.shape[0], int(attrs.get("hidden_size", r.shape[-1]))
    bias = b.const(node, 3)
    bias = torch.zeros(dirs, 2 * gates * hidden, dtype=w.dtype) if bias is None else bias
    activations = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    if activations and [a.lower() for a in activations] != [a.lower() for a in DEFAULT_ACTIVATIONS[op] * dirs]:
        raise _Unsupported(f"activations {activations}")
    for name in ("clip", "activation_alpha", "activation_beta"):
        if name in attrs:
            raise _Unsupported(f"attribute {name}")
    if attrs.get("input_forget", 0):
        raise _Unsupported("input_forget")
    if op == "LSTM" and len(node.input) > 7 and node.input[7]:
        raise _Unsupported("peepholes (P)")
    layout = int(attrs.get("layout", 0))
    if len(node.input) > 4 and node.input[4]:
        lens = b.const(node, 4)
        seq = b.shape_of(node.input[0])[1 if layout else 0]
        if lens is None or not bool((lens == seq).all()):
            raise _Unsupported("sequence_lens shorter than the sequence")
    direction = attrs.get("direction", "forward")
    slots, consts, runtime = [], {}, []
    for k, index in enumerate([5, 6] if op == "LSTM" else [5]):
        name = node.input[index] if index < len(node.input) else ""
        if not name:
            slots.append("none")
        elif b.is_static(name):
            slots.append("const")
            consts[k] = b.static[name]
        else:
            slots.append("rt")
            runtime.append(name)
    module = _Recurrent(
        op, w, r, bias, hidden, direction, layout, bool(attrs.get("linear_before_reset", 0)), slots, consts
    )
    module.n_out = len(node.output)
    module.onnx_source = {
        "kind": "rnn",
        "W": node.input[1],
        "R": node.input[2],
        "B": node.input[3] if len(node.input) > 3 and node.input[3] else None,
    }
    return module, [node.input[0], *runtime]


@handles("LSTM")
def _lstm(b: _Builder, node):
    return _recurrent(b, node, "LSTM", 4)


@handles("GRU")
def _gru(b: _Builder, node):
    return _recurrent(b, node, "GRU", 3)
