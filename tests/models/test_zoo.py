"""The model zoo: architecture figures, and the exported ONNX variants of the CIFAR models."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from models import export as zoo_export
from models.zoo import build
from tests.conftest import BN_VARIANTS, CIFAR_MODELS, EXPORTERS, MODELS, REPO_ROOT

VARIANTS = [(m, e, b) for m in CIFAR_MODELS for e in EXPORTERS for b in BN_VARIANTS]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Batch-1 CIFAR nets gain little from threads, and on a busy 2-core box (pytest -n 2)
    OpenMP spin-waiting makes multi-threaded torch several times slower."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


VARIANT_IDS = [".".join(v) for v in VARIANTS]


# --------------------------------------------------------------------------------------
# Architecture figures (torch side)
# --------------------------------------------------------------------------------------
def count_macs(model: nn.Module, input_shape) -> int:
    """Multiply-accumulates of Conv2d/Linear (bias not counted), from forward hooks."""
    total = 0

    def hook(m, _inputs, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            total += out.numel() * (m.in_channels // m.groups) * kh * kw
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model.eval()(torch.zeros(input_shape))
    for h in handles:
        h.remove()
    return total


@functools.lru_cache(maxsize=None)
def _figures(name: str) -> tuple[int, int]:
    spec = MODELS[name]
    model = spec.factory()  # plain init is enough for counting
    return sum(p.numel() for p in model.parameters()), count_macs(model, spec.input_shape)


@pytest.mark.parametrize("name", list(MODELS))
def test_param_count_matches_reference(name):
    spec = MODELS[name]
    params, _ = _figures(name)
    assert params == pytest.approx(spec.ref_params, rel=0.02), spec.ref_source


@pytest.mark.parametrize("name", list(MODELS))
def test_mac_count_matches_reference(name):
    spec = MODELS[name]
    _, macs = _figures(name)
    assert macs == pytest.approx(spec.ref_macs, rel=0.03), spec.ref_source


@pytest.mark.parametrize(
    "name, params, macs",
    [
        ("vgg16_cifar", 15.0e6, 313e6),
        ("resnet50_imagenet", 25.6e6, 4.1e9),
        ("mobilenetv2_imagenet", 3.5e6, 300e6),
    ],
)
def test_published_figures(name, params, macs):
    """Pinned here too, so that editing a ModelSpec cannot silently move the goalposts."""
    got_params, got_macs = _figures(name)
    assert got_params == pytest.approx(params, rel=0.02)
    assert got_macs == pytest.approx(macs, rel=0.03)


@pytest.mark.parametrize("name", list(MODELS))
def test_output_shape_and_eval_mode(name):
    spec = MODELS[name]
    if spec.dataset != "cifar10":
        pytest.skip("ImageNet models: shape covered by the MAC count forward pass")
    model = build(name)
    assert not model.training
    with torch.no_grad():
        y = model(torch.zeros(spec.input_shape))
    assert tuple(y.shape) == (1, spec.num_classes)


def test_build_is_seeded():
    a, b, c = build("mobilenetv2_cifar", seed=0), build("mobilenetv2_cifar", seed=0), build("mobilenetv2_cifar", seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())


# --------------------------------------------------------------------------------------
# Exported variants (CIFAR models, every exporter x bn)
# --------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _torch_reference(name: str) -> tuple[np.ndarray, np.ndarray]:
    spec = MODELS[name]
    x = torch.randn(spec.input_shape, generator=torch.Generator().manual_seed(1234))
    with torch.no_grad():
        y = build(name, seed=zoo_export.SEED)(x)
    return x.numpy(), y.numpy()


def _load(path: Path) -> onnx.ModelProto:
    return onnx.load(str(path))


@pytest.mark.parametrize("name, exporter, bn", VARIANTS, ids=VARIANT_IDS)
def test_variant(zoo_model, name, exporter, bn):
    path = zoo_model(name, exporter, bn)
    assert path == zoo_export.zoo_path(path.parent, name, exporter, bn)
    assert path.name == f"{name}.{exporter}.{bn}.onnx" and path.is_file()
    proto = _load(path)

    onnx.checker.check_model(proto, full_check=True)

    # Interface: one static-shape input and output, fixed opset.
    spec = MODELS[name]

    def dims(vi):
        return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in vi.type.tensor_type.shape.dim]

    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert dims(proto.graph.input[0]) == list(spec.input_shape)
    assert dims(proto.graph.output[0]) == [1, spec.num_classes]
    assert {o.domain or "ai.onnx": o.version for o in proto.opset_import}["ai.onnx"] == zoo_export.OPSET
    meta = {p.key: p.value for p in proto.metadata_props}
    assert (meta["onnxprune.zoo.model"], meta["onnxprune.zoo.exporter"], meta["onnxprune.zoo.bn"]) == (
        name,
        exporter,
        bn,
    )

    # BatchNorm kept or folded.
    ops = [n.op_type for n in proto.graph.node]
    n_bn = sum(m.__class__.__name__ == "BatchNorm2d" for m in spec.factory().modules())
    if bn == "kept":
        assert ops.count("BatchNormalization") == n_bn
    else:
        assert "BatchNormalization" not in ops
    assert ops.count("Conv") == sum(isinstance(m, nn.Conv2d) for m in spec.factory().modules())

    # Same function as the torch model.
    x, expected = _torch_reference(name)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"input": x})
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


# --------------------------------------------------------------------------------------
# ensure_zoo: staleness, atomicity, locking
# --------------------------------------------------------------------------------------
SMALL = ("mobilenetv2_cifar", "legacy", "folded")


def test_ensure_zoo_exports_only_missing_or_stale(tmp_path):
    name, exporter, bn = SMALL
    (path,) = zoo_export.ensure_zoo(tmp_path, [name], [exporter], [bn])
    assert path == zoo_export.zoo_path(tmp_path, name, exporter, bn) and path.is_file()
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)  # not the mkstemp mode
    stamp = path.stat().st_mtime_ns

    zoo_export.ensure_zoo(tmp_path, [name], [exporter], [bn])
    assert path.stat().st_mtime_ns == stamp, "an up-to-date file was re-exported"

    manifest = tmp_path / zoo_export.MANIFEST
    data = json.loads(manifest.read_text())
    data[path.name] = "stale"
    manifest.write_text(json.dumps(data))
    zoo_export.ensure_zoo(tmp_path, [name], [exporter], [bn])
    assert path.stat().st_mtime_ns != stamp, "a stale file was not re-exported"

    path.unlink()
    zoo_export.ensure_zoo(tmp_path, [name], [exporter], [bn])
    assert path.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")], "temp files left behind"


def test_ensure_zoo_rejects_unknown_names(tmp_path):
    with pytest.raises(ValueError, match="unknown model"):
        zoo_export.ensure_zoo(tmp_path, ["resnet18"])
    with pytest.raises(ValueError, match="unknown exporter"):
        zoo_export.zoo_path(tmp_path, "vgg16_cifar", "jit", "kept")
    with pytest.raises(ValueError, match="unknown bn"):
        zoo_export.zoo_path(tmp_path, "vgg16_cifar", "legacy", "fused")


@pytest.mark.slow
def test_ensure_zoo_concurrent_processes(tmp_path):
    """Two processes asking for the same file: one exports, the other waits and reuses it."""
    name, exporter, bn = SMALL
    code = (
        "import sys; from models.export import ensure_zoo; "
        f"ensure_zoo(sys.argv[1], [{name!r}], [{exporter!r}], [{bn!r}], "
        "report=lambda n, done, s: print('EXPORTED' if done else 'REUSED'))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert sorted(o[0].strip() for o in outs) == ["EXPORTED", "REUSED"]
    onnx.checker.check_model(str(zoo_export.zoo_path(tmp_path, name, exporter, bn)))


@pytest.mark.slow
def test_ensure_zoo_parallel_workers(tmp_path):
    """jobs=2 exports in spawned worker processes and records every file in the manifest."""
    names = ["mobilenetv2_cifar", "alexnet_cifar"]
    seen = []
    paths = zoo_export.ensure_zoo(
        tmp_path, names, ["legacy"], ["folded"], jobs=2, report=lambda n, done, s: seen.append((n, done))
    )
    assert sorted(seen) == sorted((n, ["legacy.folded"]) for n in names)
    manifest = json.loads((tmp_path / zoo_export.MANIFEST).read_text())
    assert sorted(manifest) == sorted(p.name for p in paths)
    for p in paths:
        onnx.checker.check_model(str(p))
