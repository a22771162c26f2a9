"""The converter finds the batch wherever it is (issue 25, item 5): a CRNN's sequence-first
`[T, N, C]` reshape computed from `Shape`, its LSTM zero state, and a `[T * N, C]` merge run at
any batch, against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from trainers.convert import convert, export_onnx  # noqa: E402
from trainers.convert.batch_axis import reshape_position  # noqa: E402
from trainers.testing import assert_close, export_torch, run_ort  # noqa: E402


class SequenceFirstCRNN(nn.Module):
    """Conv features -> [T, N, C] (shape from Shape) -> bidirectional LSTM -> [T * N, H] -> linear -> [T, N, K]."""

    def __init__(self, zero_state: bool):
        super().__init__()
        self.zero_state = zero_state
        self.cnn = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d((2, 1)),
        )
        self.rnn = nn.LSTM(16 * 4, 32, bidirectional=True)
        self.fc = nn.Linear(64, 11)

    def forward(self, x):
        f = self.cnn(x)
        n, c, h, w = f.shape
        f = f.permute(3, 0, 1, 2).reshape(w, n, c * h)  # sequence first: the batch on axis 1
        if self.zero_state:
            h0 = torch.zeros(2, n, 32)
            y, _ = self.rnn(f, (h0, h0))
        else:
            y, _ = self.rnn(f)
        t, b, k = y.shape
        return self.fc(y.reshape(t * b, k)).reshape(t, b, -1).log_softmax(2)


@pytest.mark.parametrize("exporter,zero_state", [("legacy", False), ("legacy", True), ("dynamo", True)])
def test_sequence_first_reshape_runs_at_any_batch(exporter, zero_state, tmp_path):
    torch.manual_seed(0)
    model = export_torch(SequenceFirstCRNN(zero_state), exporter, shape=(2, 1, 16, 20), dynamic_batch=True)
    module = convert(model).eval()
    exported = export_onnx(module, None, tmp_path / "crnn.onnx")
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 1, 16, 20)).astype(np.float32)
        expected = run_ort(model, x)
        with torch.no_grad():
            got = module(torch.from_numpy(x)).numpy()
        assert got.shape == (10, batch, 11)
        assert_close(got, expected)
        assert_close(run_ort(exported, x), expected)


def test_reshape_position_finds_the_batch_axis():
    # [T, N, C, H] -> [T, N, C*H]: the batch stays on axis 1
    assert reshape_position([10, 2, 16, 4], (1, 1), [10, 2, 64], 2) == (1, 1)
    # [T, N, K] -> [T*N, K]: merged with the sequence, inner stride 1 row
    assert reshape_position([10, 2, 64], (1, 1), [20, 64], 2) == (0, 1)
    # and back: [T*N, K] -> [T, N, K]
    assert reshape_position([20, 11], (0, 1), [10, 2, 11], 2) == (1, 1)
    # batch-first flatten
    assert reshape_position([2, 8, 4, 4], (0, 1), [2, 128], 2) == (0, 1)
    # a reshape that splits the batch itself has no batch axis
    assert reshape_position([4, 6], (0, 1), [2, 12], 4) is None
    # batch 1: only an axis that is exactly the batch counts
    assert reshape_position([1, 8, 4, 4], (0, 1), [1, 128], 1) == (0, 1)
    assert reshape_position([1, 10, 64], (0, 1), [10, 64], 1) is None
