"""`onnxprune quantize`: int8 models that run and agree with float, profile/bench read them, and
every bad input refused in one line (exit 2) with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

pytest.importorskip("torch")

from onnxprune.cli import main  # noqa: E402
from onnxprune.measure.quantize import MIN_CALIBRATION_IMAGES, QUANTIZED_OPS  # noqa: E402
from trainers.testing import folded_cnn, write_cifar_pickles  # noqa: E402


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ONNXPRUNE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def float_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("float") / "float.onnx"
    onnx.save(folded_cnn(size=32), path)
    return path


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> Path:
    """30 training images (5 batches of 6) in the pickled CIFAR-10 format."""
    return write_cifar_pickles(tmp_path_factory.mktemp("data"), per_batch=6)


@pytest.fixture(scope="module")
def int8_models(tmp_path_factory, float_model, cifar) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("int8")
    paths = {}
    for fmt in ("qdq", "qoperator"):
        paths[fmt] = out / f"{fmt}.onnx"
        assert (
            main(
                [
                    "quantize",
                    str(float_model),
                    "-o",
                    str(paths[fmt]),
                    "--calibrate",
                    f"cifar10={cifar}",
                    "--format",
                    fmt,
                    "--per-channel",
                ]
            )
            == 0
        )
    return paths


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def outputs(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_int8_models_are_integer_and_agree_with_float(int8_models, float_model):
    ops = {fmt: {n.op_type for n in onnx.load(p).graph.node} for fmt, p in int8_models.items()}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops["qdq"]
    assert "QLinearConv" in ops["qoperator"] and "Conv" not in ops["qoperator"]
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    expected = outputs(float_model, x)
    for path in int8_models.values():
        onnx.checker.check_model(onnx.load(path), full_check=True)
        got = outputs(path, x)
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= 0.1 * np.abs(expected).max() + 0.05  # int8 rounding, not garbage
        assert any(p.key == "onnxprune.quantized" for p in onnx.load(path).metadata_props)


def test_json_summary(capsys, float_model, cifar, tmp_path):
    code, out, err = run(
        capsys,
        "quantize",
        float_model,
        "-o",
        tmp_path / "q.onnx",
        "--calibrate",
        f"cifar10={cifar}",
        "--calibration-images",
        20,
        "--json",
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["calibration_images"] == 20 and summary["format"] == "qdq"
    assert summary["int8_bytes"] == (tmp_path / "q.onnx").stat().st_size
    assert 0 <= summary["top1_agreement"] <= 1


def test_npy_calibration_needs_no_dataset(capsys, float_model, tmp_path):
    images = tmp_path / "images.npy"
    np.save(images, np.random.default_rng(1).standard_normal((MIN_CALIBRATION_IMAGES, 3, 32, 32)).astype(np.float32))
    code, _, err = run(capsys, "quantize", float_model, "-o", tmp_path / "q.onnx", "--calibrate", images)
    assert code == 0, err
    assert {"QuantizeLinear"} <= {n.op_type for n in onnx.load(tmp_path / "q.onnx").graph.node}


def test_profile_counts_int8_weights(capsys, int8_models, float_model):
    def profile(path):
        code, out, err = run(capsys, "profile", path, "--json")
        assert code == 0, err
        return json.loads(out)

    base = profile(float_model)
    qdq, qop = profile(int8_models["qdq"]), profile(int8_models["qoperator"])
    # QDQ: the same float layers, counted with int8 weight bytes; QOperator: int8 layers and activations.
    # Per-channel scales and zero points count as parameters (stored constants), scalars do not.
    for quantized in (qdq, qop):
        assert base["totals"]["params"] < quantized["totals"]["params"] < 1.2 * base["totals"]["params"]
    assert qdq["totals"]["flops"] == qop["totals"]["flops"] == base["totals"]["flops"]
    assert qdq["totals"]["memory_bytes"] < base["totals"]["memory_bytes"]
    assert qop["totals"]["memory_bytes"] < base["totals"]["memory_bytes"] / 3
    assert {layer["op"] for layer in qop["layers"]} <= {"QLinearConv", "QGemm"}
    assert len(qop["layers"]) == len(base["layers"]) and not qop["uncounted"]


def test_bench_float_and_int8_side_by_side(capsys, int8_models, float_model):
    code, out, err = run(
        capsys,
        "bench",
        float_model,
        int8_models["qdq"],
        int8_models["qoperator"],
        "--runs",
        3,
        "--warmup",
        1,
        "--in-process",
        "--json",
    )
    assert code == 0, err
    results = json.loads(out)
    rows = results if isinstance(results, list) else results.get("models", results.get("results"))
    assert len(rows) == 3


# -------------------------------------------------------------------------------- bad inputs, exit 2


def refused(capsys, tmp_path, *args, expect: str) -> None:
    out = tmp_path / "refused.onnx"
    code, stdout, err = run(capsys, "quantize", *args, "-o", out)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and expect in err, err
    assert not out.exists() and not list(out.parent.glob(".refused*"))


def test_missing_calibration_option(capsys, tmp_path, float_model):
    refused(capsys, tmp_path, float_model, expect="--calibrate DATA is required")


def test_missing_calibration_data(capsys, tmp_path, float_model):
    refused(capsys, tmp_path, float_model, "--calibrate", f"cifar10={tmp_path / 'nowhere'}", expect="does not exist")
    refused(capsys, tmp_path, float_model, "--calibrate", tmp_path / "nowhere.npy", expect="no such file")


def test_non_float_model(capsys, tmp_path, float_model, cifar):
    half = tmp_path / "half.onnx"
    model = onnx.load(float_model)
    for tensor in model.graph.initializer:
        if tensor.data_type == onnx.TensorProto.FLOAT:
            array = onnx.numpy_helper.to_array(tensor).astype(np.float16)
            tensor.CopyFrom(onnx.numpy_helper.from_array(array, tensor.name))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    del model.graph.value_info[:]
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, half)
    refused(capsys, tmp_path, half, "--calibrate", f"cifar10={cifar}", expect="float16, not float32")
    uint8_input = tmp_path / "uint8.onnx"
    model = onnx.load(float_model)  # raw pixels in, cast to float inside: calibration images cannot feed it
    first = model.graph.input[0]
    for node in model.graph.node:
        node.input[:] = ["cast_pixels" if name == first.name else name for name in node.input]
    model.graph.node.insert(
        0, onnx.helper.make_node("Cast", [first.name], ["cast_pixels"], name="cast", to=onnx.TensorProto.FLOAT)
    )
    first.type.tensor_type.elem_type = onnx.TensorProto.UINT8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, uint8_input)
    refused(capsys, tmp_path, uint8_input, "--calibrate", f"cifar10={cifar}", expect="uint8, not float32")


def test_already_quantized(capsys, tmp_path, int8_models, cifar):
    for path in int8_models.values():
        refused(capsys, tmp_path, path, "--calibrate", f"cifar10={cifar}", expect="already quantized")
    assert {"QLinearConv", "QuantizeLinear", "ConvInteger"} <= QUANTIZED_OPS


def test_too_few_calibration_images(capsys, tmp_path, float_model, cifar):
    refused(
        capsys,
        tmp_path,
        float_model,
        "--calibrate",
        f"cifar10={cifar}",
        "--calibration-images",
        MIN_CALIBRATION_IMAGES - 1,
        expect=f"at least {MIN_CALIBRATION_IMAGES}",
    )
    small = write_cifar_pickles(tmp_path / "small", per_batch=2)  # 10 training images in all
    refused(capsys, tmp_path, float_model, "--calibrate", f"cifar10={small}", expect="only 10 images")


def test_unwritable_output_and_input_as_output(capsys, tmp_path, float_model, cifar):
    code, _, err = run(
        capsys, "quantize", float_model, "-o", tmp_path / "missing" / "q.onnx", "--calibrate", f"cifar10={cifar}"
    )
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(float_model.read_bytes())
    code, _, err = run(capsys, "quantize", copy, "-o", copy, "--calibrate", f"cifar10={cifar}")
    assert code == 2 and "is the input model" in err
    assert copy.read_bytes() == float_model.read_bytes()


def test_unknown_format(capsys, tmp_path, float_model, cifar):
    refused(capsys, tmp_path, float_model, "--calibrate", f"cifar10={cifar}", "--format", "int4", expect="--format")


def test_check_budgets_the_int8_bytes(capsys, int8_models, float_model):
    code, out, _ = run(capsys, "profile", int8_models["qoperator"], "--json")
    budget = str(2 * json.loads(out)["totals"]["memory_bytes"])  # int8 fits, float (about 4x) does not
    assert run(capsys, "check", int8_models["qoperator"], "--max-memory", budget)[0] == 0
    assert run(capsys, "check", float_model, "--max-memory", budget)[0] == 1


def test_symbolic_input_needs_and_takes_input_shape(capsys, tmp_path):
    from tests import tiny_models

    model = tiny_models.conv_model(tmp_path / "sym.onnx", 8, batch="N", size="S")
    images = tmp_path / "images.npy"
    np.save(images, np.random.default_rng(2).standard_normal((MIN_CALIBRATION_IMAGES, 3, 16, 16)).astype(np.float32))
    refused(capsys, tmp_path, model, "--calibrate", images, expect="give --input-shape input=1xCxHxW")
    code, _, err = run(
        capsys, "quantize", model, "-o", tmp_path / "q.onnx", "--calibrate", images, "--input-shape", "input=1x3x16x16"
    )
    assert code == 0, err
    x = np.random.default_rng(3).standard_normal((1, 3, 16, 16)).astype(np.float32)
    expected, got = outputs(model, x), outputs(tmp_path / "q.onnx", x)
    assert np.abs(got - expected).max() <= 0.05 * np.abs(expected).max()
