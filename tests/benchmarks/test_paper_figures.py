"""benchmarks/paper_figures.py: bands and verdicts from seeds, partial queues, the paper table, the plots."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from benchmarks import paper_figures as pf  # noqa: E402
from benchmarks.doc_figures import stray_figures  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SETTINGS = {
    "model_sha": "abc",
    "data": "cifar10",
    "recipe": "cpu",
    "epochs": 3,
    "limit_train": 20000,
    "limit_test": 2000,
    "optimizer": "sgd",
    "lr": 0.05,
    "schedule": "onecycle",
    "batch_size": 128,
    "weight_decay": 0.0005,
    "bench_runs": 50,
}
FULL = {"params": 1_000_000, "flops": 100_000_000, "memory_bytes": 4_000_000}


def row(name: str, accuracy: float, kept: float = 1.0) -> dict:
    mode, target = (None, None) if name == "baseline" else (name.split("-")[0], float(name.split("-")[1]))
    return {
        "name": name,
        "mode": mode,
        "target": target,
        "accuracy": accuracy,
        **{k: int(v * kept) for k, v in FULL.items()},
        "latency_ms": 2.0 * kept,
        "energy_uj_per_image": 100 * kept,
        "train_wall_seconds": 60.0,
        "machine": {"hostname": "box"},
    }


def write_runs(root: Path, net: str, seed: int, rows: list[dict], **settings) -> None:
    """One sweep folder as the sweep leaves it: RUNDIR/<run>/result.json (+ the folder's results.json)."""
    folder = root / f"{net}-s{seed}"
    for row_ in rows:
        row_ = {**row_, "settings": {**SETTINGS, "seed": seed, **settings}}
        (folder / row_["name"]).mkdir(parents=True)
        (folder / row_["name"] / "result.json").write_text(json.dumps(row_))
    (folder / "results.json").write_text(json.dumps({"settings": {**SETTINGS, "seed": seed, **settings}, "runs": rows}))


@pytest.fixture
def three_seeds(tmp_path) -> Path:
    """mobilenetv2: baselines 50/52/54 % (mean 52, s.d. 2), PA-0.2 51/52/53 %; seed 0 also FA-0.4 at
    46 % (a loss: band ±4.6), MA-0.4 at 53 % (inside the band) and PA-0.8 at 60 % (a gain)."""
    runs = tmp_path / "runs"
    for seed, (base, pa) in enumerate([(0.50, 0.51), (0.52, 0.52), (0.54, 0.53)]):
        extra = [row("FA-0.4", 0.46, 0.5), row("MA-0.4", 0.53, 0.45), row("PA-0.8", 0.60, 0.8)] if seed == 0 else []
        write_runs(runs, "mobilenetv2", seed, [row("baseline", base), *extra, row("PA-0.2", pa, 0.2)])
    return runs


def test_band_and_verdicts_from_three_seeds(three_seeds):
    net = pf.load(three_seeds)["mobilenetv2"]
    base = net.baseline
    assert base.n == 3 and base.mean == pytest.approx(52.0) and base.std == pytest.approx(2.0)
    low, high = pf.band(base)
    assert high - 52.0 == pytest.approx(2 * 2.0 * math.sqrt(1 + 1 / 3))  # ±4.62 pt for one run
    pa = net.points["PA-0.2"]
    diff, se = pf.delta(base, pa)
    floor = 100 * math.sqrt(0.52 * 0.48 / 2000)  # 1.12 pt: PA-0.2's seeds (s.d. 1.0) agree closer than that
    assert pa.std == pytest.approx(1.0) and pa.spread == pytest.approx(floor) and base.spread == pytest.approx(2.0)
    assert diff == pytest.approx(0.0) and se == pytest.approx(math.sqrt(4 / 3 + floor**2 / 3))
    assert pf.verdict(diff, se) == "no difference"
    verdicts = {p.name: pf.verdict(*pf.delta(base, p)) for p in net.pruned()}
    assert verdicts == {"PA-0.2": "no difference", "FA-0.4": "loss", "MA-0.4": "no difference", "PA-0.8": "gain"}
    # a single-seed point's verdict is exactly "inside the drawn band"
    for name in ("FA-0.4", "MA-0.4", "PA-0.8"):
        inside = low <= net.points[name].mean <= high
        assert (verdicts[name] == "no difference") == inside


def test_verdict_edges():
    assert pf.verdict(3.9, 2.0) == "no difference"
    assert pf.verdict(4.1, 2.0) == "gain"
    assert pf.verdict(-4.1, 2.0) == "loss"
    assert pf.verdict(-0.1, None).startswith("no band")


def test_one_seed_has_no_band_and_says_so(tmp_path):
    runs = tmp_path / "runs"
    write_runs(runs, "vgg16", 0, [row("baseline", 0.60), row("PA-0.2", 0.70, 0.2)])
    networks = pf.load(runs)
    net = networks["vgg16"]
    assert pf.band(net.baseline) is None
    assert pf.delta(net.baseline, net.points["PA-0.2"]) == (pytest.approx(10.0), None)
    assert "no band yet" in pf.baseline_line(net)
    table = "\n".join(pf.point_table(net))
    assert "no band (1 baseline seed)" in table and "gain" not in table
    status = "\n".join(pf.status_lines(networks))
    assert "VGG-16: 2 of 15 planned runs finished (0.0 h of training)" in status
    assert "s1 baseline, PA-0.2" in status and "s0 PA-0.5, FA-0.5, FA-0.2, MA-0.5, MA-0.2" in status
    assert "MobileNetV2: 0 of 21 planned runs finished (0.0 h of training)" in status


def test_seeds_with_other_settings_are_refused(tmp_path):
    runs = tmp_path / "runs"
    write_runs(runs, "vgg16", 0, [row("baseline", 0.60)])
    write_runs(runs, "vgg16", 1, [row("baseline", 0.61)], epochs=2)
    with pytest.raises(pf.BadRuns, match="epochs=2"):
        pf.load(runs)


def test_nearest_target_and_the_side_by_side_table(three_seeds):
    mobilenet = [0.8, 0.6, 0.4, 0.2]
    assert pf.nearest_target(70.03, mobilenet) == 0.2  # keeps 29.97 %: 0.2 is 0.0997 away, 0.4 is 0.1003
    assert pf.nearest_target(50.77, mobilenet) == 0.4
    assert pf.nearest_target(53.5, mobilenet) == 0.4
    assert pf.nearest_target(89.67, [0.5, 0.2]) == 0.2
    rows = {(r["network"], r["mode"]): r for r in pf.comparison(pf.load(three_seeds))}
    assert [rows[("MobileNetV2", m)]["run"] for m in ("PA", "FA", "MA")] == ["PA-0.2", "FA-0.4", "MA-0.4"]
    assert [rows[("VGG-16", m)]["run"] for m in ("PA", "FA", "MA")] == ["PA-0.2", "FA-0.2", "MA-0.2"]
    fa = rows[("MobileNetV2", "FA")]["ours"]
    assert fa["reduction"] == pytest.approx(50.0) and fa["verdict"] == "loss" and fa["seeds"] == 1
    assert rows[("MobileNetV2", "MA")]["ours"]["reduction"] == pytest.approx(55.0)
    assert rows[("VGG-16", "PA")]["ours"] is None
    table = "\n".join(pf.comparison_table(pf.load(three_seeds)))
    assert "| VGG-16 | FA | −3.45 pt @ 89.67 % FLOPs | FA-0.2 | not run yet |" in table
    assert "| MobileNetV2 | PA | +0.07 pt @ 70.03 % params | PA-0.2 | +0.0 ± 2.6 pt @ 80.0 % params | 3 |" in table


def test_main_writes_plots_csv_doc_and_results(three_seeds, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(ROOT / "docs" / "paper.md", docs / "paper.md")
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Other section\n\nkept\n")
    argv = ["--runs", str(three_seeds), "--docs", str(docs), "--results", str(results)]
    assert pf.main(argv) == 0
    png = docs / "paper" / "mobilenetv2_tradeoffs.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert not (docs / "paper" / "vgg16_tradeoffs.png").exists()
    csv_lines = (docs / "paper" / "mobilenetv2_runs.csv").read_text().splitlines()
    assert csv_lines[0].startswith("seed,name,mode,target,accuracy") and len(csv_lines) == 1 + 9
    assert (docs / "paper" / "runs" / "mobilenetv2-s2" / "PA-0.2" / "result.json").is_file()
    doc = (docs / "paper.md").read_text()
    assert "![MobileNetV2 trade-offs](paper/mobilenetv2_tradeoffs.png)" in doc and "not run yet" in doc
    assert "So far 3 of 6 comparisons are run: 2 no difference, 1 loss" in doc
    text = results.read_text()
    assert "kept" in text and text.count(pf.SECTION) == 1 and "| FA-0.4 | 1 | 46.0 % |" in text
    assert "(../docs/paper/mobilenetv2_tradeoffs.png)" in text  # the link from benchmarks/
    assert "| PA-0.2 | 3 | 52.0 % (min–max 51.0–53.0) | +0.0 ± 2.6 pt | no difference |" in text
    # every figure the generated block puts in the doc is in the RESULTS section (benchmarks/doc_figures.py)
    fake = tmp_path / "repo"
    (fake / "benchmarks").mkdir(parents=True)
    shutil.copy(results, fake / "benchmarks" / "RESULTS.md")
    (fake / "docs").mkdir()
    shutil.copy(docs / "paper.md", fake / "docs" / "paper.md")
    (fake / "trainers").mkdir()
    (fake / "trainers" / "README.md").write_text("")
    (fake / "README.md").write_text("")
    assert stray_figures(fake) == []
    # idempotent: a second run replaces the section and the block instead of adding to them
    assert pf.main(argv) == 0
    assert results.read_text().count(pf.SECTION) == 1 and (docs / "paper.md").read_text() == doc


def test_a_doc_without_the_block_is_refused(three_seeds, tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "paper.md").write_text("# no markers\n")
    assert pf.main(["--runs", str(three_seeds), "--docs", str(docs), "--results", str(tmp_path / "R.md")]) == 2
    assert "no generated block" in capsys.readouterr().err


def test_no_runs_yet_still_writes_the_doc(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(ROOT / "docs" / "paper.md", docs / "paper.md")
    (tmp_path / "runs").mkdir()
    assert pf.main(["--runs", str(tmp_path / "runs"), "--docs", str(docs), "--results", str(tmp_path / "R.md")]) == 0
    doc = (docs / "paper.md").read_text()
    assert doc.count("| not run yet |") == 6 and "MobileNetV2: 0 of 21 planned runs finished" in doc
    assert "So far none of the 6 comparisons" in doc and not (docs / "paper" / "vgg16_tradeoffs.png").exists()


def test_points_are_listed_by_mode_then_largest_target(three_seeds):
    net = pf.load(three_seeds)["mobilenetv2"]
    assert [p.name for p in net.pruned()] == ["PA-0.8", "PA-0.2", "FA-0.4", "MA-0.4"]


def test_a_run_removed_since_the_folder_summary_is_not_read(three_seeds, tmp_path):
    """results.json is rewritten only after the next run: a superseded run folder removed meanwhile
    (e.g. re-pruned by newer code) is still listed there, and must not count."""
    shutil.rmtree(three_seeds / "mobilenetv2-s0" / "FA-0.4")
    assert "FA-0.4" in (three_seeds / "mobilenetv2-s0" / "results.json").read_text()
    net = pf.load(three_seeds)["mobilenetv2"]
    assert "FA-0.4" not in net.points and net.points["PA-0.2"].n == 3


def test_a_result_in_the_wrong_seed_folder_is_refused(tmp_path):
    runs = tmp_path / "runs"
    write_runs(runs, "vgg16", 1, [row("baseline", 0.60)])
    (runs / "vgg16-s2").mkdir()
    shutil.copytree(runs / "vgg16-s1" / "baseline", runs / "vgg16-s2" / "baseline")
    with pytest.raises(pf.BadRuns, match="made with seed 1, in the folder of seed 2"):
        pf.load(runs)


def test_committed_copies_reproduce_the_doc(three_seeds, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(ROOT / "docs" / "paper.md", docs / "paper.md")
    results = tmp_path / "R.md"
    assert pf.main(["--runs", str(three_seeds), "--docs", str(docs), "--results", str(results)]) == 0
    first = (docs / "paper.md").read_text()
    assert pf.main(["--runs", str(docs / "paper" / "runs"), "--docs", str(docs), "--results", str(results)]) == 0
    assert (docs / "paper.md").read_text() == first
    assert (docs / "paper" / "runs" / "mobilenetv2-s0" / "FA-0.4" / "result.json").is_file()


def test_two_close_seeds_do_not_make_a_band_narrower_than_the_test_set(tmp_path):
    """VGG-16 at 00:40: baselines 66.1 and 65.6 % (s.d. 0.35 pt), PA-0.2 at 64.2 %. The seeds' s.d.
    alone gives a ±0.8-point band and calls −1.6 a loss; 2,000 test images cannot tell 1.6 points
    apart (binomial s.e. 1.06 pt), so the band uses that floor and the verdict is no difference."""
    runs = tmp_path / "runs"
    write_runs(runs, "vgg16", 0, [row("baseline", 0.661), row("PA-0.2", 0.642, 0.2)])
    write_runs(runs, "vgg16", 1, [row("baseline", 0.656)])
    net = pf.load(runs)["vgg16"]
    base, pa = net.baseline, net.points["PA-0.2"]
    assert base.std == pytest.approx(0.3536, abs=1e-3)
    assert base.test_floor == pytest.approx(100 * math.sqrt(0.6585 * 0.3415 / 2000))
    diff, se = pf.delta(base, pa)
    assert diff == pytest.approx(-1.65) and se == pytest.approx(base.test_floor * math.sqrt(1.5))
    assert pf.verdict(diff, se) == "no difference"
    assert pf.verdict(diff, base.std * math.sqrt(1.5)) == "loss"  # what the seeds alone would have said
    low, high = pf.band(base)
    assert low < pa.mean < high
    assert "below the test set's 1.1 pt, which the band uses" in pf.baseline_line(net)


def test_no_test_size_no_floor(tmp_path):
    runs = tmp_path / "runs"
    for seed, accuracy in enumerate([0.661, 0.656]):
        write_runs(runs, "vgg16", seed, [row("baseline", accuracy)], limit_test=0)
    base = pf.load(runs)["vgg16"].baseline
    assert base.test_floor == 0.0 and base.spread == pytest.approx(base.std)


def test_latency_is_shown_only_as_measured_side_by_side(three_seeds, tmp_path):
    """A run's own latency (taken under whatever load it trained with) is never shown; latency.json's
    side-by-side figures are, and a run it lacks gets "—"."""
    networks = pf.load(three_seeds)
    table = "\n".join(pf.point_table(networks["mobilenetv2"]))
    assert " ms |" not in table and "not yet re-measured side by side" in pf.protocol(networks)
    side_by_side = {"s0/baseline": 3.0, "s1/baseline": 3.2, "s2/baseline": 3.4, "s0/PA-0.8": 2.5}
    (three_seeds / "latency.json").write_text(
        json.dumps(
            {
                "date": "2026-12-04 18:00 UTC",
                "machine": {"cpu": "TestCPU"},
                "settings": {"rounds": 5, "bench_runs": 100, "threads": 1, "batch": 1},
                "networks": {"mobilenetv2": {key: {"latency_ms": ms} for key, ms in side_by_side.items()}},
            }
        )
    )
    networks = pf.load(three_seeds)
    lines = {line.split(" | ")[0]: line for line in pf.point_table(networks["mobilenetv2"])}
    assert "| 3.20 ms |" in lines["| baseline"] and "| 2.50 ms |" in lines["| PA-0.8"]
    assert "| — |" in lines["| FA-0.4"]
    assert networks["mobilenetv2"].points["FA-0.4"].rows[0]["latency_ms_own"] == 1.0  # kept, not shown
    assert "side by side by benchmarks/paper_latency.py on 2026-12-04 18:00 UTC (TestCPU)" in pf.protocol(networks)
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(ROOT / "docs" / "paper.md", docs / "paper.md")
    assert pf.main(["--runs", str(three_seeds), "--docs", str(docs), "--results", str(tmp_path / "R.md")]) == 0
    assert json.loads((docs / "paper" / "runs" / "latency.json").read_text())["networks"]["mobilenetv2"] == {
        key: {"latency_ms": ms} for key, ms in side_by_side.items()
    }


def test_a_broken_latency_file_is_refused(three_seeds):
    (three_seeds / "latency.json").write_text("{not json")
    with pytest.raises(pf.BadRuns, match="latency.json"):
        pf.load(three_seeds)


def test_a_delta_at_the_band_edge_gets_a_second_decimal():
    assert pf.delta_text(-2.65, 1.3) == "−2.65 ± 2.60 pt"  # "−2.6 ± 2.6" would read as a tie, and it is a loss
    assert pf.delta_text(-2.0, 1.3) == "−2.0 ± 2.6 pt"
    assert pf.delta_text(1.5, None) == "+1.5 pt"
