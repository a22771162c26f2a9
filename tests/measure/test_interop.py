"""Pruned graphs in other runtimes: OpenVINO reads the ONNX directly, ncnn runs it after pnnx converts
it; both must agree with onnxruntime within 1e-4 (float). Each runtime's tests skip with the reason
when it (the `interop` / `ncnn` extra) is absent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxprune.cli import main
from onnxprune.errors import UserError
from onnxprune.measure.interop import (
    RUNTIMES,
    TOLERANCE,
    compare_with_onnxruntime,
    rejection,
    run_in,
    runtime_available,
)
from onnxprune.prune.shrink import shrink

MISSING = runtime_available("openvino")
needs_openvino = pytest.mark.skipif(MISSING is not None, reason=f"interop runtime absent: {MISSING}")
NEEDS = {
    runtime: pytest.mark.skipif(
        runtime_available(runtime) is not None, reason=f"interop runtime absent: {runtime_available(runtime)}"
    )
    for runtime in RUNTIMES
}
EVERY_RUNTIME = [pytest.param(runtime, marks=NEEDS[runtime]) for runtime in RUNTIMES]

PRUNED_MODELS = ("vgg16_cifar", "mobilenetv2_cifar", "resnet50_cifar")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ONNXPRUNE_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("bn", ["folded", "kept"])
@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
@pytest.mark.parametrize("name", PRUNED_MODELS)
@pytest.mark.parametrize("runtime", EVERY_RUNTIME)
def test_pruned_zoo_model_runs_in_other_runtime(runtime, zoo_model, name, exporter, bn):
    pruned, _ = shrink(zoo_model(name, exporter, bn), "FA", 0.5, init="keep", seed=1)
    assert compare_with_onnxruntime(runtime, pruned, seed=2) <= TOLERANCE


def tiny_trained(tmp_path: Path) -> tuple[Path, Path]:
    """A pruned tiny CNN trained one epoch by `onnxprune train`, and its calibration data."""
    pytest.importorskip("torch")
    from trainers.testing import folded_cnn, write_cifar_pickles

    data = write_cifar_pickles(tmp_path / "data", per_batch=8)
    source = tmp_path / "float.onnx"
    onnx.save(folded_cnn(size=32), source)
    pruned = tmp_path / "pruned.onnx"
    onnx.save(shrink(source, "FA", 0.6)[0], pruned)
    trained = tmp_path / "trained.onnx"
    assert (
        main(
            [
                "train",
                str(pruned),
                "-o",
                str(trained),
                "--data",
                f"cifar10={data}",
                "--epochs",
                "1",
                "--no-guard",
                "--quiet",
                "--device",
                "cpu",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    return trained, data


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """One `train` run shared by the runtimes' tests (it is the slow part)."""
    folder = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ONNXPRUNE_CACHE", str(folder / "cache"))
        return tiny_trained(folder)


@pytest.mark.parametrize("runtime", EVERY_RUNTIME)
def test_trained_model_runs_in_other_runtime(runtime, trained):
    assert compare_with_onnxruntime(runtime, trained[0]) <= TOLERANCE


@needs_openvino
def test_int8_model_runs_in_openvino(trained, tmp_path, capsys):
    model, data = trained
    int8 = tmp_path / "int8.onnx"
    assert main(["quantize", str(model), "-o", str(int8), "--calibrate", f"cifar10={data}"]) == 0
    # int8 kernels round differently in each runtime: the same answer within a few quantization steps
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    got = run_in("openvino", int8, {"input": x})[0]
    import onnxruntime as ort

    want = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert np.abs(got - want).max() <= 0.1 * np.abs(want).max() + 1e-3
    capsys.readouterr()


@pytest.mark.parametrize("runtime", EVERY_RUNTIME)
def test_interop_cli_verdict(runtime, tmp_path, capsys, zoo_model):
    pruned = tmp_path / "pruned.onnx"
    onnx.save(shrink(zoo_model("mobilenetv2_cifar", "legacy", "folded"), "FA", 0.5, init="keep")[0], pruned)
    before = sorted(tmp_path.iterdir())
    assert main(["interop", str(pruned), "--runtime", runtime, "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["agrees"] and verdict["runtime"] == runtime and verdict["max_relative_diff"] <= TOLERANCE
    assert sorted(tmp_path.iterdir()) == before  # a converter's files never land next to the input


def unknown_op_model(path: Path) -> Path:
    node = helper.make_node("Frobnicate", ["x"], ["y"], name="frob_node", domain="example.custom")
    graph = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["x"], name="relu"), node],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("example.custom", 1)]
    )
    onnx.save(model, path)
    return path


@needs_openvino
def test_rejected_graph_is_one_line_naming_runtime_and_node(tmp_path, capsys):
    model = unknown_op_model(tmp_path / "custom.onnx")
    with pytest.raises(UserError) as caught:
        run_in("openvino", model, {"input": np.ones((1, 3, 4, 4), np.float32)})
    message = str(caught.value)
    assert (
        message.startswith("openvino rejects node 'frob_node' (Frobnicate) while reading it: ") and "\n" not in message
    )
    assert (
        "Exception from" not in message and "Frobnicate" in message.split(": ", 1)[1]
    )  # the reason, not a source line
    assert main(["interop", str(model)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "openvino rejects node 'frob_node'" in err


def test_rejection_names_the_node_from_any_runtime_message():
    model = onnx.load_from_string(
        helper.make_model(
            helper.make_graph(
                [helper.make_node("Relu", ["a"], ["b"], name="conv_7/relu")],
                "g",
                [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])],
                [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])],
            )
        ).SerializeToString()
    )
    error = rejection(
        "someruntime", model, RuntimeError("Exception from src/x.cpp:12:\nmore\nnode conv_7/relu: bad"), "compiling it"
    )
    assert str(error) == "someruntime rejects node 'conv_7/relu' (Relu) while compiling it: node conv_7/relu: bad"
    unnamed = rejection("someruntime", model, RuntimeError("out of memory"), "running it")
    assert str(unnamed) == "someruntime rejects the graph while running it: out of memory"


def test_missing_runtime_is_a_one_line_error(monkeypatch, tmp_path, capsys):
    import builtins

    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError("No module named 'openvino'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    assert "install onnxprune[interop]" in runtime_available("openvino")
    assert main(["interop", str(unknown_op_model(tmp_path / "m.onnx"))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "openvino is not installed" in err
