"""Internal-error paths for the fuzzer (issue 25): bugs planted in one stage of our own code.

About one fuzz case in FAULT_EVERY runs its verbs with one of FAULTS planted (an invalid surgery
result, a channel rule or a layer cost that raises). A verb that reaches it must exit 70 with one
"internal error" line naming the model and asking for `onnxprune version --json`, and leave nothing
written; exit 70 without a planted bug is a real bug."""

from __future__ import annotations

import contextlib
import random

from onnx import helper


def _invalid_surgery(real):
    """Surgery whose result the ONNX checker rejects: a node reads a tensor nothing produces."""

    def refresh_value_info(model):
        real(model)
        model.graph.node.append(helper.make_node("Relu", ["fuzz_ghost"], ["fuzz_ghost_out"], name="fuzz_ghost_relu"))

    return refresh_value_info


def _raising(error: Exception):
    def fail(*args, **kwargs):
        raise error

    return lambda real: fail


# name -> (module, attribute, wrapper of the real function): a bug planted in one stage of our code
FAULTS = {
    "surgery-invalid-graph": ("onnxprune.prune.surgery", "refresh_value_info", _invalid_surgery),
    "rule-raises": ("onnxprune.analysis.groups", "apply_rule", _raising(KeyError("fuzz: planted bug"))),
    "cost-raises": ("onnxprune.analysis.layer", "Layer.cost", _raising(ZeroDivisionError("fuzz: planted bug"))),
}
FAULT_EVERY = 6  # about one case in 6 plants one


def fault_for(case: int, seed: int = 0) -> str | None:
    rng = random.Random(f"fault:{seed}:{case}")  # independent of the mutant's and the options' draws
    return rng.choice(sorted(FAULTS)) if rng.random() < 1 / FAULT_EVERY else None


@contextlib.contextmanager
def planted(fault: str | None):
    """Plant `fault` (FAULTS) for the duration of the block."""
    if fault is None:
        yield
        return
    import importlib
    from unittest import mock

    module_name, attribute, wrap = FAULTS[fault]
    owner = importlib.import_module(module_name)
    *path, name = attribute.split(".")
    for part in path:
        owner = getattr(owner, part)
    with mock.patch.object(owner, name, wrap(getattr(owner, name))):
        yield


def _internal_error_failure(err: str, path: str, written: set) -> str | None:
    """Exit 70 must be one line naming the model, asking for `onnxprune version --json`, and leave nothing."""
    lines = [line for line in err.splitlines() if line.strip()]
    if len(lines) != 1 or not lines[0].startswith("onnxprune: internal error: "):
        return "exit 70 without exactly one 'onnxprune: internal error:' line:\n" + err
    if path not in lines[0] or "onnxprune version --json" not in lines[0]:
        return f"internal-error line does not name the model or ask for `onnxprune version --json`: {lines[0]}"
    if written:
        return f"internal error left {sorted(written)} behind (nothing may be written)"
    return None
