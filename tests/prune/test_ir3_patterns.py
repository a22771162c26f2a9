"""IR 3 graphs (every initializer also a graph input, as the ONNX Model Zoo's classics) and their
patterns: `shrink` keeps the inputs in step with what surgery adds, cuts or drops, writes valid IR 3,
and the zero-mask oracle holds at --init keep (issue 25, item 1)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from onnxprune.analysis.groups import channel_groups
from onnxprune.cli import main
from onnxprune.measure.verify import output_errors, zero_mask
from onnxprune.read.initializer_inputs import initializer_inputs, sync_initializer_inputs
from tests.ir3_models import PATTERNS, SIZE, dropout_mask, lrn

FEEDS = {"data": np.random.default_rng(7).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)}


def _inputs_mirror_initializers(model: onnx.ModelProto) -> None:
    inputs = {v.name: v for v in model.graph.input}
    for init in model.graph.initializer:
        assert init.name in inputs, f"{init.name} in initializer but not in graph input"
        dims = [d.dim_value for d in inputs[init.name].type.tensor_type.shape.dim]
        assert dims == list(init.dims), (init.name, dims, list(init.dims))
    readers = {name for node in model.graph.node for name in node.input}
    stale = [v.name for v in model.graph.input if v.name not in readers]
    assert not stale, f"graph inputs nothing reads: {stale}"


def _shrink(path, tmp_path, *extra) -> tuple[int, onnx.ModelProto, dict]:
    out, report = tmp_path / "pruned.onnx", tmp_path / "report.json"
    rc = main(
        [
            "shrink",
            str(path),
            "--mode",
            "FA",
            "--target",
            "0.5",
            "--init",
            "keep",
            "-o",
            str(out),
            "--report",
            str(report),
            *extra,
        ]
    )
    return rc, (onnx.load(out) if rc == 0 else None), (json.loads(report.read_text()) if rc == 0 else None)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_ir3_pattern_shrinks_in_step_and_holds_the_zero_mask_oracle(pattern, seed, tmp_path):
    source = PATTERNS[pattern](seed)
    onnx.checker.check_model(source, full_check=True)
    path = tmp_path / f"{pattern}.onnx"
    onnx.save(source, path)
    deps = channel_groups(path)
    assert deps.prunable, [g.reasons for g in deps.groups]
    rc, pruned, report = _shrink(path, tmp_path, "--seed", str(seed))
    assert rc == 0
    assert report["pruned"] and report["after"]["flops"] <= 0.5 * report["before"]["flops"]
    assert pruned.ir_version == 3
    onnx.checker.check_model(pruned, full_check=True)
    _inputs_mirror_initializers(pruned)
    keep = deps.keep_from_layers({row["node"]: row["kept"] for row in report["layers"]})
    assert max(output_errors(pruned, zero_mask(deps, keep), FEEDS)) < 1e-5


def test_shape_constant_rewired_to_a_new_initializer_is_listed_as_an_input(tmp_path):
    """The crash on 8 zoo models: Reshape's OC2_DUMMY target is cut into a fresh initializer that
    IR 3 requires as a graph input; the old one, now unread, goes with its input."""
    path = tmp_path / "lrn.onnx"
    onnx.save(lrn(), path)
    rc, pruned, _ = _shrink(path, tmp_path)
    assert rc == 0
    names = {v.name for v in pruned.graph.input}
    assert any(name.startswith("OC2_DUMMY") and "__pruned_" in name for name in names)
    _inputs_mirror_initializers(pruned)


def test_ir4_model_listing_weights_as_inputs_keeps_them_in_step_without_adding_new_ones(tmp_path):
    """From IR 4 an initializer may still be listed as an input (torch keep_initializers_as_inputs):
    a sliced weight's input is reshaped; a new initializer is not listed (IR 4 does not require it)."""
    model = dropout_mask()
    model.ir_version = 7
    path = tmp_path / "ir7.onnx"
    onnx.save(model, path)
    rc, pruned, _ = _shrink(path, tmp_path)
    assert rc == 0 and pruned.ir_version == 7
    onnx.checker.check_model(pruned, full_check=True)
    inits = {init.name: list(init.dims) for init in pruned.graph.initializer}
    listed = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in pruned.graph.input}
    assert all(listed[name] == inits[name] for name in listed if name in inits)
    assert [name for name in inits if "__pruned_" in name and name in listed] == []


def test_sync_drops_the_input_of_a_dropped_initializer_and_keeps_real_inputs():
    model = dropout_mask()
    mirrored = initializer_inputs(model)
    assert "data" not in mirrored and "fc_w" in mirrored
    kept = [init for init in model.graph.initializer if init.name != "fc_b"]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    sync_initializer_inputs(model, mirrored)
    names = [v.name for v in model.graph.input]
    assert "fc_b" not in names and names[0] == "data"


def test_lrn_is_a_structural_coupling_refused_at_keep_and_pruned_at_reinit(tmp_path):
    """LRN normalises each channel over its neighbours: cutting channels keeps the graph valid but
    changes the kept ones, like a Softmax over channels (exact pruning refuses it, --init reinit prunes)."""
    model = lrn()
    keep_groups = channel_groups(model)
    first = keep_groups.group_of("n1")  # the conv before the LRN
    assert not first.prunable and all("(LRN): normalises over the channel axis" in r for r in first.reasons)
    assert first.structural_only
    assert channel_groups(model, exact=False).group_of("n1").prunable
    path = tmp_path / "lrn.onnx"
    onnx.save(model, path)
    out = tmp_path / "reinit.onnx"
    assert main(["shrink", str(path), "--mode", "FA", "--target", "0.3", "--init", "reinit", "-o", str(out)]) == 0
    pruned = onnx.load(out)
    onnx.checker.check_model(pruned, full_check=True)
    _inputs_mirror_initializers(pruned)


@pytest.mark.parametrize("change", ["dtype", "shape"])
def test_input_declaring_another_type_or_shape_than_its_initializer_is_refused_at_load(change, tmp_path, capsys):
    """Found by the fuzzer (case 612, IR 3 with an int8 weight under a FLOAT input): the checker does
    not compare them, onnxruntime refuses the graph; so does load, with one line (exit 2)."""
    model = dropout_mask()
    value = next(v for v in model.graph.input if v.name == "fc_w")
    if change == "dtype":
        value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    else:
        value.type.tensor_type.shape.dim[0].dim_value = 7
    path = tmp_path / "bad.onnx"
    onnx.save(model, path)
    assert main(["profile", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "initializer 'fc_w'" in err and "graph input of that name declares" in err
