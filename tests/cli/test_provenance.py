"""shrink's provenance (provenance.py): file facts in the report, onnxprune.* metadata in the model."""

from __future__ import annotations

import hashlib
import json

import onnx

import onnxprune
from onnxprune.cli import main
from onnxprune.cli.provenance import read_stamp


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_report_and_model_record_where_the_model_came_from(zoo_model, tmp_path, capsys):
    source = tmp_path / "alexnet.onnx"
    source.write_bytes(zoo_model("alexnet_cifar", "legacy", "kept").read_bytes())
    out, report_path = tmp_path / "small.onnx", tmp_path / "report.json"
    assert (
        main(
            [
                "shrink",
                str(source),
                "--mode",
                "FA",
                "--target",
                "0.5",
                "--seed",
                "4",
                "-o",
                str(out),
                "--report",
                str(report_path),
                "--json",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    written = json.loads(report_path.read_text())
    for report in (printed, written):
        facts = report["provenance"]
        assert facts["tool"] == "onnxprune" and facts["version"] == onnxprune.__version__
        assert facts["input"] == {"path": str(source), "bytes": source.stat().st_size, "sha256": _sha(source)}
        assert facts["output"] == {"path": str(out), "bytes": out.stat().st_size, "sha256": _sha(out)}
    stamp = read_stamp(onnx.load(str(out), load_external_data=False))
    assert stamp["version"] == onnxprune.__version__
    assert (stamp["mode"], stamp["target"], stamp["seed"]) == ("FA", "0.5", "4")
    assert stamp["source_sha256"] == _sha(source)


def test_dry_run_has_input_facts_and_no_output(zoo_model, capsys):
    source = zoo_model("alexnet_cifar", "legacy", "kept")
    assert main(["shrink", str(source), "--mode", "PA", "--target", "0.5", "--dry-run", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)["provenance"]
    assert facts["input"]["sha256"] == _sha(source) and facts["output"] is None
