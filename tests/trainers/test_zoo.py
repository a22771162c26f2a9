"""The converter on the project's zoo (models/zoo.py) and on pruned zoo graphs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from trainers.convert import convert  # noqa: E402
from trainers.testing import assert_close, only_bn_buffers, round_trip, run_ort  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

# ------------------------------------------------------------------------------ the project's zoo

# which variant of each model also makes the full round trip back to ONNX
EXPORT_BACK = {
    "vgg16_cifar": ("legacy", "kept"),
    "alexnet_cifar": ("dynamo", "folded"),
    "mobilenetv2_cifar": ("dynamo", "kept"),
    "resnet50_cifar": ("legacy", "folded"),
}

HAVE_ZOO = importlib.util.find_spec("models.zoo") is not None and importlib.util.find_spec("models.export") is not None
ZOO_CASES = []
if HAVE_ZOO:
    from models.zoo import BN_VARIANTS, CIFAR_MODELS, EXPORTERS

    ZOO_CASES = [
        pytest.param(n, e, b, marks=[pytest.mark.slow] if n.startswith("resnet50") else [], id=f"{n}.{e}.{b}")
        for n in CIFAR_MODELS
        for e in EXPORTERS
        for b in BN_VARIANTS
    ]


@pytest.mark.skipif(not HAVE_ZOO, reason="models.zoo is not there yet")
@pytest.mark.parametrize("name,exporter,bn", ZOO_CASES)
def test_round_trip_zoo(name, exporter, bn, tmp_path):
    """Every CIFAR zoo variant: torch == onnxruntime and trains at batch 2; one variant per model
    (a different exporter/BN pairing each) also goes back to ONNX (the export is the slow part)."""
    from models.export import ensure_zoo

    path = ensure_zoo(REPO / "build" / "zoo", names=[name], exporters=[exporter], bns=[bn])[0]
    model = onnx.load(str(path))
    if EXPORT_BACK.get(name, ("legacy", "kept")) == (exporter, bn):
        module = round_trip(model, tmp_path)
    else:
        x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
        module = convert(model).eval()
        with torch.no_grad():
            assert_close(module(torch.from_numpy(x)).numpy(), run_ort(model, x))
    only_bn_buffers(module)
    module.train()
    assert module(torch.randn(2, 3, 32, 32)).shape == (2, 10)


HAVE_SHRINK = False
try:
    from onnxprune import shrink as _shrink  # noqa: F401

    HAVE_SHRINK = callable(_shrink)
except ImportError:
    pass


@pytest.mark.skipif(not (HAVE_ZOO and HAVE_SHRINK), reason="needs models.zoo and onnxprune.shrink")
@pytest.mark.parametrize("variant", ["vgg16_cifar.legacy.kept", "mobilenetv2_cifar.dynamo.folded"])
def test_round_trip_after_pruning(variant, tmp_path):
    from models.export import ensure_zoo
    from onnxprune import shrink

    name, exporter, bn = variant.split(".")
    path = ensure_zoo(REPO / "build" / "zoo", names=[name], exporters=[exporter], bns=[bn])[0]
    pruned, report = shrink(str(path), mode="PA", target=0.3, seed=0, init="keep", criterion="l1")
    assert report["after"]["params"] < report["before"]["params"]
    round_trip(pruned, tmp_path)
