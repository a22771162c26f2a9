"""The measurements of benchmarks/perf_core.py: each worker runs in its own fresh process (spawned by
perf_core.py --worker KIND) and returns one dict, which perf_core.py prints as a JSON line.

work_profile, work_surgery and work_shrink time onnxprune on a zoo export and record peak RSS;
work_torch_pruning times Torch-Pruning 1.6.1 on the PyTorch ResNet-50 at matching MACs.
"""

from __future__ import annotations

import os
import time

MODEL = "resnet50_imagenet"


# --------------------------------------------------------------------------------------
# Workers (each runs in its own fresh process; prints one JSON line)
# --------------------------------------------------------------------------------------
def _rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _mark_loaded() -> dict:
    """RSS now (after loading), then reset the RSS high-water mark (VmHWM) so the work's own peak is seen."""
    info = {"rss_loaded_mib": _status_mib("VmRSS"), "rss_load_peak_mib": _rss_mib()}
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        info["hwm_reset"] = True
    except OSError:
        info["hwm_reset"] = False
    return info


def _peak_info(loaded: dict) -> dict:
    work_peak = _status_mib("VmHWM") if loaded["hwm_reset"] else _rss_mib()
    return {
        **loaded,
        "rss_work_peak_mib": work_peak,
        "rss_peak_mib": _rss_mib(),
        "rss_increase_mib": work_peak - loaded["rss_loaded_mib"],
    }


def _import_all() -> None:
    # Import every library module up front so imports count neither in timings nor in RSS increases.
    import onnx  # noqa: F401
    import onnx_graphsurgeon  # noqa: F401

    import onnxprune  # noqa: F401
    from onnxprune import shrink  # noqa: F401
    from onnxprune.analysis import (
        complexity,  # noqa: F401
        groups,  # noqa: F401
    )
    from onnxprune.prune import (
        initialize,  # noqa: F401
        surgery,  # noqa: F401
    )
    from onnxprune.read import (
        graph,  # noqa: F401
        io,  # noqa: F401
    )


def work_profile(path: str, prof: str | None) -> dict:
    _import_all()
    from onnxprune.analysis.complexity import profile
    from onnxprune.read.io import load_model

    t0 = time.perf_counter()
    model = load_model(path)
    t1 = time.perf_counter()
    c1 = time.process_time()
    loaded = _mark_loaded()
    p = _maybe_profiled(prof, lambda: profile(model))
    t2 = time.perf_counter()
    c2 = time.process_time()
    return {
        "load_s": t1 - t0,
        "work_s": t2 - t1,
        "work_cpu_s": c2 - c1,
        **_peak_info(loaded),
        "flops": p.totals["flops"],
        "params": p.totals["params"],
    }


def work_surgery(path: str, prof: str | None) -> dict:
    _import_all()
    import numpy as np

    from onnxprune.analysis.groups import Tracer
    from onnxprune.prune.surgery import prune_channels
    from onnxprune.read.graph import load_graph
    from onnxprune.read.io import load_model

    t0 = time.perf_counter()
    model = load_model(path)
    t1 = time.perf_counter()
    c1 = time.process_time()
    loaded = _mark_loaded()
    info = {}

    def run():
        mg = load_graph(model)
        ta = time.perf_counter()
        deps = Tracer(mg).run()
        tb = time.perf_counter()
        keep = {g.id: np.arange(g.size // 2 or 1) for g in deps.prunable}
        out = prune_channels(deps, keep)
        tc = time.perf_counter()
        info.update(groups=len(deps.prunable), load_graph_s=ta - t1, tracer_s=tb - ta, prune_s=tc - tb)
        return out

    out = _maybe_profiled(prof, run)
    t2 = time.perf_counter()
    c2 = time.process_time()
    info["out_nodes"] = len(out.graph.node)
    return {"load_s": t1 - t0, "work_s": t2 - t1, "work_cpu_s": c2 - c1, **_peak_info(loaded), **info}


def work_shrink(path: str, prof: str | None) -> dict:
    _import_all()
    import onnxprune
    from onnxprune.read.io import load_model

    try:
        from onnxprune.read.save import save_model
    except ImportError:  # pragma: no cover
        save_model = None
    import tempfile

    t0 = time.perf_counter()
    model = load_model(path)
    t1 = time.perf_counter()
    c1 = time.process_time()
    loaded = _mark_loaded()
    out, report = _maybe_profiled(prof, lambda: onnxprune.shrink(model, mode="FA", target=0.5, seed=0))
    t2 = time.perf_counter()
    c2 = time.process_time()
    peak = _peak_info(loaded)
    with tempfile.TemporaryDirectory() as tmp:
        dest = os.path.join(tmp, "out.onnx")
        if save_model is not None:
            save_model(out, dest)
        else:
            import onnx

            onnx.save(out, dest)
        t3 = time.perf_counter()
    return {
        "load_s": t1 - t0,
        "work_s": t2 - t1,
        "work_cpu_s": c2 - c1,
        "save_s": t3 - t2,
        **peak,
        "before": report["before"],
        "after": report["after"],
        "iterations": report["iterations"],
    }


def _macs_params(model, example):
    import torch_pruning as tp

    macs, params = tp.utils.count_ops_and_params(model, example)
    return int(macs), int(params)


def work_torch_pruning(target_macs: float, ratio: float | None, prof: str | None) -> dict:
    """Torch-Pruning 1.6.1 on the zoo's ResNet-50: DepGraph build + pruning with random importance.

    With `ratio` None, bisect the uniform pruning ratio so that the pruned MACs match `target_macs`
    (each probe on a fresh model), then time one final run at that ratio.
    """
    import torch
    import torch_pruning as tp

    from models.zoo import MODELS, build

    torch.set_num_threads(1)
    spec = MODELS[MODEL]
    example = torch.randn(*spec.input_shape)
    base = build(MODEL, seed=0)

    cpu_used = [0.0]

    def prune_once(r: float, timed: bool = False):
        import copy

        model = copy.deepcopy(base)
        torch.manual_seed(0)
        t0 = time.perf_counter()
        c0 = time.process_time()

        def go():
            pruner = tp.pruner.MetaPruner(
                model,
                example,
                importance=tp.importance.RandomImportance(),
                pruning_ratio=r,
                ignored_layers=[model_fc(model)],
            )
            t_graph = time.perf_counter()
            pruner.step()
            return t_graph

        t_graph = _maybe_profiled(prof if timed else None, go)
        t1 = time.perf_counter()
        cpu_used[0] = time.process_time() - c0
        return model, t1 - t0, t_graph - t0

    macs0, params0 = _macs_params(base, example)
    search = []
    ts = time.perf_counter()
    if ratio is None:
        lo, hi = 0.0, 0.9
        for _ in range(14):
            mid = (lo + hi) / 2
            m, _, _ = prune_once(mid)
            macs, _ = _macs_params(m, example)
            search.append((mid, macs))
            if macs > target_macs:
                lo = mid
            else:
                hi = mid
        # pick the side closer to the target
        cands = [(abs(m - target_macs), r) for r, m in search]
        ratio = min(cands)[1]
    search_s = time.perf_counter() - ts
    model, total_s, graph_s = prune_once(ratio, timed=True)
    macs, params = _macs_params(model, example)
    return {
        "ratio": ratio,
        "work_s": total_s,
        "work_cpu_s": cpu_used[0],
        "depgraph_s": graph_s,
        "macs_before": macs0,
        "params_before": params0,
        "macs": macs,
        "params": params,
        "search_steps": len(search),
        "search_s": search_s,
        "rss_peak_mib": _rss_mib(),
    }


def model_fc(model):
    import torch.nn as nn

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1]


def _maybe_profiled(prof: str | None, fn):
    if not prof:
        return fn()
    import cProfile

    pr = cProfile.Profile()
    result = pr.runcall(fn)
    pr.dump_stats(prof)
    return result
