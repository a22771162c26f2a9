"""The docs quote benchmarks/RESULTS.md, not figures of their own (benchmarks/doc_figures.py), name
no placeholder, and show `check` output as it renders."""

from __future__ import annotations

import shutil

from benchmarks.doc_figures import ROOT, doc_files, misattributed, run_accuracies, stray_figures
from onnxprune.cli import main
from tests.tiny_models import conv_model


def test_every_figure_the_docs_quote_is_in_results():
    assert stray_figures() == []
    assert misattributed() == []


def _fake_repo(tmp_path, readme: str):
    (tmp_path / "benchmarks").mkdir(parents=True)
    shutil.copy(ROOT / "benchmarks" / "RESULTS.md", tmp_path / "benchmarks" / "RESULTS.md")
    (tmp_path / "trainers").mkdir()
    (tmp_path / "trainers" / "README.md").write_text("")
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(readme)
    return tmp_path


def test_checker_catches_the_old_claim(tmp_path):
    old = (
        "`--recipe cpu` trains VGG-16 pruned to 20 % of its parameters to 63.9 %\n"
        "CIFAR-10 accuracy in 12.5 minutes on 2 cores\n"
    )
    root = _fake_repo(tmp_path, old)
    assert stray_figures(root) == ["README.md:2: 12.5minutes"]
    assert misattributed(root) == ["README.md:1: 63.9% for pa02 (RESULTS.md: 63.8%)"]
    assert misattributed(_fake_repo(tmp_path / "b", "pruned ones 63.9 % (PA 0.2), 63.8 % (FA 0.5)\n")) == [
        "README.md:1: 63.9% for pa02 (RESULTS.md: 63.8%)",
        "README.md:1: 63.8% for fa05 (RESULTS.md: 63.9%)",
    ]
    fixed = _fake_repo(tmp_path / "c", "pruned to 20 % of its parameters to 63.8 % in 1000 s, `12.5 min` in code\n")
    assert stray_figures(fixed) == [] and misattributed(fixed) == []
    assert run_accuracies((ROOT / "benchmarks" / "RESULTS.md").read_text())["pa02"] == "63.8%"


def test_no_placeholder_in_install_instructions():
    for path in [*doc_files(), ROOT / "docs" / "github-actions-check.yml"]:
        assert "YOUR-ORG" not in path.read_text(), path


def test_check_md_budget_label_is_what_check_prints(tmp_path, capsys, monkeypatch):
    documented = "budgets.toml [[budget]] #2 (microcontroller)"
    assert documented in (ROOT / "docs" / "check.md").read_text()
    conv_model(tmp_path / "m.onnx")
    (tmp_path / "budgets.toml").write_text(
        '[[budget]]\nname = "edge"\nmodels = ["*.onnx"]\nmax_params = "1M"\n\n'
        '[[budget]]\nname = "microcontroller"\nmodels = ["m.onnx"]\n'
        "max_params = 100\n"
    )
    monkeypatch.chdir(tmp_path)  # the label names the file as given: budgets.toml
    assert main(["check", "--budgets", "budgets.toml"]) == 1
    assert documented in " ".join(capsys.readouterr().out.split())
