"""The sweeps' tiny model, shared by the local and the Ray executor tests."""

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def tiny_cnn(tmp_path_factory) -> Path:
    import onnx
    import torch

    from trainers.testing import export_torch, tiny_classifier

    torch.manual_seed(0)
    model = export_torch(tiny_classifier(bn=True, width=8), "legacy", shape=(1, 3, 32, 32))
    path = tmp_path_factory.mktemp("sweep_model") / "tiny.onnx"
    onnx.save(model, str(path))
    return path
