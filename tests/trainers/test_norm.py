"""`train --norm`: BatchNorm inserted for training after un-normalised layers, folded back at export
into the source graph's own structure (trainers/convert/norms.py, writeback.py)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

torch = pytest.importorskip("torch")

from onnxprune.cli import main  # noqa: E402
from trainers.convert import convert  # noqa: E402
from trainers.convert.norms import insert_norms  # noqa: E402
from trainers.convert.writeback import write_back  # noqa: E402
from trainers.guard import DidNotLearn  # noqa: E402
from trainers.loop import train  # noqa: E402
from trainers.testing import (  # noqa: E402
    export_torch,
    folded_cnn,
    run_ort,
    synthetic_dataset,
    tiny_classifier,
    write_cifar_pickles,
    write_image_folder,
)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ONNXPRUNE_CACHE", str(tmp_path / "cache"))


def _steps(module, n=4, lr=0.1, shape=(16, 3, 16, 16)):
    """A few SGD steps in train mode: inserted BNs get non-trivial weights and running statistics."""
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.SGD(module.parameters(), lr=lr)
    module.train()
    for _ in range(n):
        x = torch.randn(*shape, generator=gen)
        out = module(x)
        loss = (
            out.pow(2).mean()
            if out.dim() != 2
            else torch.nn.functional.cross_entropy(out, torch.randint(0, out.shape[1], (shape[0],), generator=gen))
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    return module.eval()


def _close(model: onnx.ModelProto, module, shape, tol=1e-4):
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    got = run_ort(model, x)
    assert np.abs(got - expected).max() <= tol * max(1.0, np.abs(expected).max()), np.abs(got - expected).max()


def test_folded_cnn_learns_with_norm_auto_and_not_without():
    # lr 0.2 with the cpu recipe's SGD one-cycle: with the inserted BNs the network learns; without them the
    # folded, re-initialised plain network stays at ln(10) (a lower lr trains it slowly: see the guard's advice)
    data = synthetic_dataset(n_train=480, n_test=100, size=16)
    proto = folded_cnn()
    learned = train(proto, data, epochs=2, batch_size=16, lr=0.2, seed=0, threads=1, progress=False, augment=False)
    assert [e["op"] for e in learned.norm["inserted"]] == ["Conv"] * 6 + ["Gemm"]  # not the classifier
    first, last = learned.history
    assert last["train_loss"] < first["train_loss_tail"] < 0.8 * np.log(10)
    assert learned.accuracy >= 0.3 and learned.verdict["status"] == "learned"
    with pytest.raises(DidNotLearn, match="did not learn.*--norm insert"):
        train(
            proto, data, epochs=2, batch_size=16, lr=0.2, seed=0, threads=1, progress=False, augment=False, norm="none"
        )
    stalled = train(
        proto,
        data,
        epochs=2,
        batch_size=16,
        lr=0.2,
        seed=0,
        threads=1,
        progress=False,
        augment=False,
        norm="none",
        guard=False,
    )
    assert min(h["train_loss"] for h in stalled.history) > 0.95 * np.log(10)
    assert stalled.verdict["status"] == "did not learn" and stalled.norm["inserted"] == []


def test_trained_onnx_has_the_source_structure_and_matches_torch():
    proto = folded_cnn()
    module = convert(proto)
    inserted = insert_norms(module, proto, "auto")
    assert len(inserted) == 7
    _steps(module)
    out = write_back(module, proto)
    assert [(n.name, n.op_type) for n in out.graph.node] == [(n.name, n.op_type) for n in proto.graph.node]
    onnx.checker.check_model(out, full_check=True)
    _close(out, module, (1, 3, 16, 16))
    # the folded weights changed (trained), the untouched structure did not
    before = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    after = {i.name: numpy_helper.to_array(i) for i in out.graph.initializer}
    assert set(before) <= set(after) and any(not np.array_equal(before[k], after[k]) for k in before)


def test_train_cli_writes_the_pruned_graph_structure(tmp_path, capsys):
    folder = write_image_folder(tmp_path / "images", per_class=8, n_test=2, size=16)
    source = tmp_path / "folded.onnx"
    onnx.save(folded_cnn(classes=3), source)
    out = tmp_path / "trained.onnx"
    assert (
        main(
            [
                "train",
                str(source),
                "-o",
                str(out),
                "--data",
                f"folder={folder}",
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--quiet",
                "--json",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert len(result["norm"]["inserted"]) == 7 and result["norm"]["mode"] == "auto"
    assert result["export"].startswith("written back") and result["verdict"]["status"] in ("learned", "not judged")
    trained, pruned = onnx.load(str(out)), onnx.load(str(source))
    assert [n.name for n in trained.graph.node] == [n.name for n in pruned.graph.node]
    assert result["onnx_agreement"] == 1.0
    x = np.zeros((3, 3, 16, 16), np.float32)  # batch made dynamic: the graph allows it
    assert run_ort(trained, x).shape == (3, 3)


def test_norm_auto_leaves_normalised_graphs_alone_and_insert_fills_gaps():
    proto = export_torch(tiny_classifier(bn=True, width=8), "legacy", keep_bn=True)
    assert insert_norms(convert(proto), proto, "auto") == []
    assert insert_norms(convert(proto), proto, "none") == []
    assert insert_norms(convert(proto), proto, "insert") == []  # every conv has BN after it, the Gemm is the head
    folded = export_torch(tiny_classifier(bn=False, width=8), "legacy", keep_bn=False)
    assert insert_norms(convert(folded), folded, "none") == []
    assert [e["channels"] for e in insert_norms(convert(folded), folded, "insert")] == [8, 16, 32]


def _constant_weight_model(bias: bool) -> onnx.ModelProto:
    """Conv weights held in Constant nodes (paddle2onnx style), a bias-less conv, ConvTranspose with groups."""
    rng = np.random.default_rng(0)

    def const(name, *shape):
        value = numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)
        return helper.make_node("Constant", [], [name], value=value, name="")  # unnamed, like paddle2onnx

    nodes = [const("w1", 8, 3, 3, 3), const("w2", 8, 4, 2, 2), const("w3", 6, 8, 1, 1)]
    inits = [numpy_helper.from_array(np.zeros(6, np.float32), "b3")]
    nodes += [
        helper.make_node("Conv", ["x", "w1"] + (["b1"] if bias else []), ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("ConvTranspose", ["r1", "w2"], ["t2"], name="up2", strides=[2, 2], group=2),
        helper.make_node("Relu", ["t2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["y"], name="head"),
    ]
    if bias:
        inits.append(numpy_helper.from_array(np.ones(8, np.float32), "b1"))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 16, 16])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("bias", [True, False])
def test_write_back_into_constant_nodes_and_grouped_transpose(bias):
    proto = _constant_weight_model(bias)
    module = convert(proto)
    assert [e["layer"] for e in insert_norms(module, proto, "auto")] == ["conv1", "up2"]  # not the head
    _steps(module, shape=(4, 3, 8, 8))
    out = write_back(module, proto)
    assert len(out.graph.node) == len(proto.graph.node)
    assert [n.name for n in out.graph.node] == [n.name for n in proto.graph.node]
    conv1 = next(n for n in out.graph.node if n.name == "conv1")
    assert len(conv1.input) == 3  # the fold gave the bias-less conv a bias input, not a node
    onnx.checker.check_model(out, full_check=True)
    _close(out, module, (1, 3, 8, 8))
    w1 = next(n for n in out.graph.node if n.op_type == "Constant" and n.output[0] == "w1")
    old = next(n for n in proto.graph.node if n.op_type == "Constant" and n.output[0] == "w1")
    assert not np.array_equal(numpy_helper.to_array(w1.attribute[0].t), numpy_helper.to_array(old.attribute[0].t))


def test_pipeline_scratch_inherits_norm_and_guard(tmp_path, capsys):
    pickles = write_cifar_pickles(tmp_path / "data", per_batch=8, n_test=10)
    model = tmp_path / "folded.onnx"
    onnx.save(folded_cnn(size=32), model)
    run = tmp_path / "run"
    base = [
        "pipeline",
        "scratch",
        str(model),
        "--mode",
        "PA",
        "--target",
        "0.5",
        "--data",
        f"cifar10={pickles}",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--threads",
        "1",
        "-q",
        "--json",
    ]
    assert main(base + ["-o", str(run)]) == 0
    saved = json.loads((run / "pipeline.json").read_text())
    assert saved["train"]["norm"]["mode"] == "auto" and len(saved["train"]["norm"]["inserted"]) == 7
    assert saved["train"]["export"].startswith("written back")
    pruned, trained = onnx.load(str(run / "pruned.onnx")), onnx.load(str(run / "trained.onnx"))
    assert [n.name for n in trained.graph.node] == [n.name for n in pruned.graph.node]
    capsys.readouterr()
    assert main(base + ["-o", str(tmp_path / "run2"), "--norm", "maybe"]) == 2
    assert "--norm 'maybe'" in capsys.readouterr().err and not (tmp_path / "run2").exists()
    assert main(base + ["-o", str(tmp_path / "run3"), "--lr", "1e6", "--schedule", "none"]) == 2
    assert "training diverged" in capsys.readouterr().err
    assert not (tmp_path / "run3" / "trained.onnx").exists()


def test_resume_with_inserted_norms_and_refused_with_another_norm(tmp_path, monkeypatch):
    from onnxprune.errors import UserError
    from trainers import runstate

    data = synthetic_dataset(n_train=48, n_test=16, size=16)
    common = dict(epochs=2, batch_size=8, lr=0.05, seed=1, threads=1, progress=False)
    whole = train(folded_cnn(), data, checkpoint=tmp_path / "a", **common)
    real_save = runstate.save_checkpoint

    class Stop(Exception):
        pass

    def save_then_die(folder, state):
        real_save(folder, state)
        raise Stop

    monkeypatch.setattr(runstate, "save_checkpoint", save_then_die)
    with pytest.raises(Stop):
        train(folded_cnn(), data, checkpoint=tmp_path / "b", **common)
    monkeypatch.setattr(runstate, "save_checkpoint", real_save)
    with pytest.raises(UserError, match="norm='auto'"):
        train(folded_cnn(), data, checkpoint=tmp_path / "b", resume=True, norm="none", **common)
    resumed = train(folded_cnn(), data, checkpoint=tmp_path / "b", resume=True, output=tmp_path / "b.onnx", **common)
    assert resumed.resumed_from_epoch == 1 and resumed.accuracy == whole.accuracy
    assert len(resumed.norm["inserted"]) == 7 and resumed.export.startswith("written back")
