"""Where do onnxruntime's CPU kernels lose speed? Time per multiply-accumulate of small conv chains
whose pruned channel count c runs over a range, grouped by the largest power of two dividing c.
It picks the channel multiple `--round-to auto` uses per layer kind (onnxprune/prune/rounding.py).

    .venv/bin/python benchmarks/kernel_multiples.py [--counts 48-64] [--size 28] [--runs 30] [--rounds 3]

Kinds (each a chain of three layers, as pruning leaves them in a network):
- conv3x3: three 3x3 convs c -> c (VGG, ResNet's middle conv);
- conv1x1: three 1x1 convs c -> c (ResNet bottleneck ends, MobileNet projections);
- depthwise: MobileNetV2 block 32 -> 1x1 -> c -> 3x3 depthwise c -> 1x1 -> 32; the block's
  expansion channels c are what pruning changes there.
onnxruntime 1 thread, batch 1, all optimisations on (NCHWc layout where the CPU has it).
Time is process CPU time by default (one onnxruntime thread, so it is the work, robust to a busy
machine); models are interleaved over rounds and each keeps its fastest median.
Runs unchanged under emulated aarch64 (benchmarks/arm/env.sh): there, time is an instruction-cost
proxy, not board latency.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

KINDS = ("conv3x3", "conv1x1", "depthwise")
CLASSES = (1, 2, 4, 8, 16, 32)


def _conv(name, x, cin, cout, k, group, rng, inits, nodes):
    w = rng.standard_normal((cout, cin // group, k, k)).astype(np.float32) * 0.1
    b = np.zeros(cout, np.float32)
    inits += [numpy_helper.from_array(w, f"{name}.w"), numpy_helper.from_array(b, f"{name}.b")]
    nodes.append(
        helper.make_node(
            "Conv",
            [x, f"{name}.w", f"{name}.b"],
            [f"{name}.y"],
            name=name,
            kernel_shape=[k, k],
            pads=[k // 2] * 4,
            group=group,
        )
    )
    nodes.append(helper.make_node("Relu", [f"{name}.y"], [f"{name}.r"]))
    return f"{name}.r", cin // group * cout * k * k


def chain(kind: str, c: int, size: int) -> tuple[onnx.ModelProto, int]:
    """The model and its multiply-accumulates per image."""
    rng = np.random.default_rng(0)
    inits, nodes, macs = [], [], 0
    if kind == "depthwise":
        layers = [(32, c, 1, 1), (c, c, 3, c), (c, 32, 1, 1)]
    else:
        k = 3 if kind == "conv3x3" else 1
        layers = [(c, c, k, 1)] * 3
    cin0 = layers[0][0]
    x = "x"
    for i, (cin, cout, k, group) in enumerate(layers):
        x, m = _conv(f"l{i}", x, cin, cout, k, group, rng, inits, nodes)
        macs += m * size * size
    graph = helper.make_graph(
        nodes,
        kind,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin0, size, size])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, macs


def median_ms(session, feeds, runs: int, clock=time.process_time) -> float:
    for _ in range(3):
        session.run(None, feeds)
    times = []
    for _ in range(runs):
        start = clock()
        session.run(None, feeds)
        times.append(clock() - start)
    return float(np.median(times)) * 1e3


def power_class(c: int) -> int:
    return max(m for m in CLASSES if c % m == 0)


def main() -> int:
    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="48-64", help="channel counts: LOW-HIGH or a comma list")
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="cpu: process CPU time (one onnxruntime thread; robust to a busy machine)",
    )
    parser.add_argument("--json", dest="json_out", help="write the raw figures here")
    args = parser.parse_args()
    if "-" in args.counts:
        low, high = map(int, args.counts.split("-"))
        counts = list(range(low, high + 1))
    else:
        counts = [int(v) for v in args.counts.split(",")]
    kinds = args.kinds.split(",")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 4
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    cases = {}
    for kind in kinds:
        for c in counts:
            model, macs = chain(kind, c, args.size)
            session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
            feeds = {"x": np.random.default_rng(1).standard_normal(shape).astype(np.float32)}
            cases[(kind, c)] = [session, feeds, macs, float("inf")]
    for _ in range(args.rounds):
        for case in cases.values():
            clock = time.process_time if args.clock == "cpu" else time.perf_counter
            case[3] = min(case[3], median_ms(case[0], case[1], args.runs, clock))
    print(
        f"# {platform.machine()}, onnxruntime {ort.__version__}, 1 thread, {args.size}x{args.size}, {args.clock} time, "
        f"median of {args.runs} runs, best of {args.rounds} interleaved rounds"
    )
    summary = {}
    for kind in kinds:
        per_mac = {c: cases[(kind, c)][3] * 1e9 / cases[(kind, c)][2] for c in counts}
        best = min(per_mac.values())
        print(f"\n{kind}: ps per MAC (relative to the best count)")
        print("  " + "  ".join(f"{c}:{per_mac[c]:.1f}({per_mac[c] / best:.2f})" for c in counts))
        by_class = {}
        for c in counts:
            by_class.setdefault(power_class(c), []).append(per_mac[c] / best)
        summary[kind] = {m: float(np.mean(v)) for m, v in sorted(by_class.items())}
        print("  by largest power of two dividing c: " + ", ".join(f"{m}: {v:.2f}x" for m, v in summary[kind].items()))
    if args.json_out:
        with open(args.json_out, "w") as handle:
            json.dump(
                {
                    "machine": platform.machine(),
                    "onnxruntime": ort.__version__,
                    "size": args.size,
                    "ps_per_mac": {f"{k}/{c}": cases[(k, c)][3] * 1e9 / cases[(k, c)][2] for k, c in cases},
                    "relative_by_class": summary,
                },
                handle,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
