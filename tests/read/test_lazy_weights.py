"""Weights left in the file (read/lazy_weights.py) and models written field by field
(read/model_writer.py): the analysis of a model read from a path never holds its weights, and
every model that leaves the tool (to onnxruntime, to a user, to a file) is the same model an
ordinary `onnx.load` gives."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import onnxprune
from onnxprune.cli import main
from onnxprune.errors import UserError
from onnxprune.read import lazy_weights, model_writer
from onnxprune.read.graph import load_graph
from onnxprune.read.io import load_model
from onnxprune.read.save import save_model
from tests.tiny_models import residual_net


@pytest.fixture
def small_lazy(monkeypatch):
    """Tensors from 1025 bytes are left in the file (every lazy tensor still has > 64 elements, the
    skeleton's limit for the small constants shape inference reads)."""
    monkeypatch.setattr(lazy_weights, "LAZY_MIN_BYTES", 1025)


@pytest.fixture
def net_path(tmp_path):
    path = tmp_path / "net.onnx"
    onnx.save(residual_net(), str(path))
    return path


def test_large_weights_stay_in_the_file_and_read_back_identically(net_path, small_lazy):
    lazy = load_model(net_path, lazy=True)
    left = {t.name for t in lazy_weights.lazy_initializers(lazy)}
    assert left == {"w0", "w1", "w2", "fc_w"} and lazy.ByteSize() < net_path.stat().st_size / 4
    eager = onnx.load(str(net_path))
    for name in left:
        tensor = next(t for t in lazy.graph.initializer if t.name == name)
        expected = numpy_helper.to_array(next(t for t in eager.graph.initializer if t.name == name))
        np.testing.assert_array_equal(lazy_weights.read_array(tensor), expected)
    assert lazy_weights.materialize(lazy).SerializeToString() == eager.SerializeToString()


def test_saving_a_lazy_model_streams_its_weights(net_path, tmp_path, small_lazy):
    out = save_model(load_model(net_path, lazy=True), tmp_path / "copy.onnx")
    assert onnx.load(str(out)).SerializeToString() == onnx.load(str(net_path)).SerializeToString()


@pytest.mark.parametrize("lazy", [False, True])
def test_the_writers_planned_size_is_what_it_writes(net_path, tmp_path, lazy, small_lazy):
    model = load_model(net_path, lazy=lazy)
    plan = model_writer.Plan(model)
    path = tmp_path / "w.onnx"
    with open(path, "wb") as handle:
        plan.write(handle)
    assert path.stat().st_size == plan.size
    assert onnx.load(str(path)).SerializeToString() == onnx.load(str(net_path)).SerializeToString()


def test_external_data_written_by_the_writer_loads_and_runs(net_path, tmp_path, small_lazy):
    model = load_model(net_path, lazy=True)
    with open(tmp_path / "e.onnx", "wb") as out, open(tmp_path / "e.onnx.data", "wb") as data:
        model_writer.write_model(model, out, data=data, data_name="e.onnx.data", threshold=1024)
    written = onnx.load(str(tmp_path / "e.onnx"))  # loads the side file
    for tensor in written.graph.initializer:
        tensor.ClearField("data_location")  # onnx.load sets DEFAULT on what it read from the side file
    assert written.SerializeToString() == onnx.load(str(net_path)).SerializeToString()
    relative = onnx.load(str(tmp_path / "e.onnx"), load_external_data=False)
    assert {e.value for t in relative.graph.initializer for e in t.external_data if e.key == "location"} == {
        "e.onnx.data"
    }


def test_a_side_files_weights_stay_there_too(net_path, tmp_path, small_lazy):
    folder = tmp_path / "ext"
    folder.mkdir()
    onnx.save(onnx.load(str(net_path)), str(folder / "m.onnx"), save_as_external_data=True, location="m.data")
    lazy = load_model(folder / "m.onnx", lazy=True)
    assert {t.name for t in lazy_weights.lazy_initializers(lazy)} >= {"w0", "w1", "w2"}
    eager = load_model(folder / "m.onnx")
    for tensor in eager.graph.initializer:
        tensor.ClearField("data_location")  # onnx.load sets DEFAULT on what it read from the side file
    assert lazy_weights.materialize(lazy).SerializeToString() == eager.SerializeToString()


def test_a_truncated_side_file_is_one_clear_error(net_path, tmp_path):
    folder = tmp_path / "ext"
    folder.mkdir()
    onnx.save(onnx.load(str(net_path)), str(folder / "m.onnx"), save_as_external_data=True, location="m.data")
    data = folder / "m.data"
    data.write_bytes(data.read_bytes()[:-100])
    with pytest.raises(UserError, match="external data"):
        load_model(folder / "m.onnx", lazy=True)


def test_a_weight_shorter_than_its_shape_is_refused_without_reading_it(tmp_path, small_lazy):
    model = residual_net()
    w = next(t for t in model.graph.initializer if t.name == "w1")
    w.raw_data = w.raw_data[:-8]
    path = tmp_path / "bad.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(UserError, match="'w1' holds"):
        load_model(path, lazy=True)


@pytest.mark.parametrize("junk", [b"\x08\x96\x01" * 10, b"not a model at all", bytes(range(256)) * 4])
def test_junk_gets_the_ordinary_parse_error(tmp_path, junk):
    path = tmp_path / "junk.onnx"
    path.write_bytes(junk)
    with pytest.raises(UserError) as lazy_error:
        load_model(path, lazy=True)
    with pytest.raises(UserError) as eager_error:
        load_model(path)
    assert str(lazy_error.value) == str(eager_error.value)


def test_profile_and_groups_read_no_weight(net_path, small_lazy, monkeypatch):
    def refuse(tensor):
        raise AssertionError(f"read {tensor.name}")

    monkeypatch.setattr(lazy_weights, "read_array", refuse)
    monkeypatch.setattr(lazy_weights, "read_bytes", refuse)
    assert onnxprune.profile(net_path).totals == onnxprune.profile(onnx.load(str(net_path))).totals
    assert len(onnxprune.channel_groups(net_path).prunable) == len(
        onnxprune.channel_groups(onnx.load(str(net_path))).prunable
    )


@pytest.mark.parametrize("init", ["keep", "reinit"])
@pytest.mark.parametrize("criterion", ["random", "l1"])
def test_shrink_from_a_path_equals_shrink_of_the_loaded_model(net_path, small_lazy, init, criterion):
    from_path, report_a = onnxprune.shrink(net_path, mode="FA", target=0.5, seed=3, init=init, criterion=criterion)
    loaded, report_b = onnxprune.shrink(
        onnx.load(str(net_path)), mode="FA", target=0.5, seed=3, init=init, criterion=criterion
    )
    assert not lazy_weights.lazy_initializers(from_path)  # what users get is self-contained
    assert from_path.SerializeToString() == loaded.SerializeToString()
    assert report_a["after"] == report_b["after"]


def test_cli_shrink_from_a_lazy_model_writes_the_same_file(net_path, tmp_path, small_lazy, capsys):
    out = tmp_path / "p.onnx"
    args = ["shrink", str(net_path), "--mode", "FA", "--target", "0.5", "--init", "keep", "--verify", "--json"]
    assert main([*args, "-o", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verify"]["runs"] and report["verify"]["zero_mask_max_rel_error"] < 1e-4
    expected, _ = onnxprune.shrink(onnx.load(str(net_path)), mode="FA", target=0.5, seed=0, init="keep")
    written = onnx.load(str(out))
    del written.metadata_props[:]
    assert written.SerializeToString() == expected.SerializeToString()


def test_the_analysed_model_handed_out_is_self_contained(net_path, small_lazy):
    import onnxruntime as ort

    deps = onnxprune.channel_groups(net_path)
    assert lazy_weights.lazy_initializers(deps.mg.proto)  # the analysis kept them in the file
    session = ort.InferenceSession(deps.mg.model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": np.zeros((1, 3, 8, 8), np.float32)})[0].shape == (1, 10)


def test_load_graph_of_a_path_holds_no_weight_bytes(tmp_path):
    big = residual_net(widths=(64, 128, 128), size=4)  # 0.3 MB of conv weights, above the default threshold
    path = tmp_path / "big.onnx"
    onnx.save(big, str(path))
    mg = load_graph(path)
    assert mg.proto.ByteSize() < path.stat().st_size / 10


def test_small_tensors_of_a_side_file_are_read_in(net_path, tmp_path):
    """Shape inference reads small constants (the skeleton keeps them): they must be in memory."""
    folder = tmp_path / "ext"
    folder.mkdir()
    onnx.save(onnx.load(str(net_path)), str(folder / "m.onnx"), save_as_external_data=True, size_threshold=0)
    lazy = load_model(folder / "m.onnx", lazy=True)
    assert {t.name for t in lazy_weights.lazy_initializers(lazy)} == {
        "w1",
        "w2",
    }  # 18 KB and 36 KB; the rest is under 4 KB
    assert onnxprune.profile(folder / "m.onnx").totals == onnxprune.profile(net_path).totals


@pytest.mark.parametrize("axes", [(0,), (1,), (0, 1), (1, 3)])
def test_a_cut_read_block_by_block_equals_the_cut_of_the_whole(tmp_path, monkeypatch, axes):
    from onnxprune.analysis.shared_constants import cut

    rng = np.random.default_rng(1)
    value = rng.standard_normal((37, 20, 3, 3)).astype(np.float32)
    model = helper.make_model(helper.make_graph([], "g", [], [], [numpy_helper.from_array(value, "w")]), ir_version=8)
    path = tmp_path / "w.onnx"
    path.write_bytes(model.SerializeToString())
    tensor = lazy_weights.scan(path).graph.initializer[0]
    monkeypatch.setattr(lazy_weights, "CUT_BLOCK", 5 * 20 * 9 * 4)  # five rows at a time: eight blocks
    masks = {axis: rng.random(value.shape[axis]) < 0.6 for axis in axes}
    expected = value
    for axis, mask in masks.items():
        expected = np.compress(mask, expected, axis=axis)
    np.testing.assert_array_equal(lazy_weights.cut_from_file(lazy_weights.read_array(tensor), masks), expected)
    np.testing.assert_array_equal(cut(lazy_weights.read_array(tensor), masks), expected)
