"""`make demo` (onnxprune/cli/demo.py) runs end to end and shows the side-by-side profile."""

from __future__ import annotations

from onnxprune.cli import demo


def test_demo_shows_the_model_before_and_after_side_by_side(zoo_model, tmp_path, capsys):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "vgg16_cifar.legacy.kept.onnx").symlink_to(zoo_model("vgg16_cifar", "legacy", "kept"))
    assert demo.run(zoo) == 0
    out = " ".join(capsys.readouterr().out.split())  # the demo's own lines wrap at the terminal width
    pruned = tmp_path / "demo" / "vgg16_cifar.PA-0.2.onnx"
    assert pruned.exists()
    assert "What did the shrink change? Both models side by side" in out
    assert "params A → B" in out and "1x64x32x32 →" in out
