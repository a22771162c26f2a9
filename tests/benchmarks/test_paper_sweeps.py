"""benchmarks/paper_sweeps.py: the queue behind docs/paper.md, one at a time or --jobs N."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")  # benchmarks.paper_figures draws

from benchmarks import paper_sweeps as ps  # noqa: E402
from benchmarks.paper_figures import PAPER  # noqa: E402
from benchmarks.paper_stats import grid_targets, nearest_target  # noqa: E402


def _option(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_the_table_runs_are_the_ones_the_side_by_side_table_reads():
    for net, modes in PAPER.items():
        expected = {(mode, str(nearest_target(reduction, grid_targets(net)))) for mode, (_, reduction) in modes.items()}
        assert set(ps.NETWORKS[net]["table"]) == expected, net


def test_split_grid_covers_the_grid_once_table_runs_first(tmp_path):
    for net, spec in ps.NETWORKS.items():
        jobs = ps.split_grid_jobs(tmp_path, net)
        runs = [(_option(argv, "--modes"), _option(argv, "--targets")) for _, argv in jobs]
        modes, targets = (part.split(",") for part in spec["grid"])
        assert sorted(runs) == sorted((m, t) for m in modes for t in targets)
        assert runs[: len(spec["table"])] == list(spec["table"])
        assert {_option(argv, "-o") for _, argv in jobs} == {str(tmp_path / f"{net}-s0")}
        assert all(_option(argv, "--seed") == "0" for _, argv in jobs)


def test_parallel_phases_finish_every_baseline_before_any_other_run(tmp_path):
    bands, grid, table_seeds, summaries = ps.phases(tmp_path, list(ps.NETWORKS))
    band_folders = [_option(argv, "-o") for _, argv in bands]
    assert len(band_folders) == len(set(band_folders)), "two band runs side by side would train one baseline twice"
    assert {_option(argv, "-o") for _, argv in grid + table_seeds} <= set(band_folders)
    assert [argv for _, argv in summaries] == [ps.grid_job(tmp_path, net)[1] for net in ps.NETWORKS]


def _runs(jobs) -> set[tuple[int, str, str]]:
    return {
        (int(_option(argv, "--seed")), m, t)
        for _, argv in jobs
        for m in _option(argv, "--modes").split(",")
        for t in _option(argv, "--targets").split(",")
    }


def test_both_ways_queue_exactly_the_planned_runs_and_every_table_row_gets_three_seeds(tmp_path):
    for net, spec in ps.NETWORKS.items():
        planned = ps.planned_runs(net)
        pruned = {run for run in planned if run[1] is not None}
        assert {run for run in planned if run[1] is None} == {(seed, None, None) for seed in ps.BAND_SEEDS}
        assert _runs(ps.queue(tmp_path, [net])) == pruned
        assert _runs(job for phase in ps.phases(tmp_path, [net]) for job in phase) == pruned
        for mode, target in spec["table"]:
            assert {seed for seed, m, t in planned if (m, t) == (mode, target)} == set(ps.BAND_SEEDS), (net, mode)


def test_dry_run_prints_every_invocation_and_runs_none(tmp_path, capsys):
    assert ps.main(["--out", str(tmp_path), "--only", "vgg16", "--jobs", "2", "--dry-run"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == sum(len(phase) for phase in ps.phases(tmp_path, ["vgg16"]))
    assert not list(tmp_path.glob("vgg16-s*"))


def test_the_runs_start_only_from_the_zoo_files_of_the_committed_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ps, "ZOO", tmp_path)
    assert ps.main(["--out", str(tmp_path / "runs"), "--only", "vgg16"]) == 2
    assert "make paper-zoo" in capsys.readouterr().err  # missing: says how to make it
    (tmp_path / ps.NETWORKS["vgg16"]["model"]).write_bytes(b"another export")
    assert ps.main(["--out", str(tmp_path / "runs"), "--only", "vgg16", "--check-zoo"]) == 2
    assert ps.NETWORKS["vgg16"]["sha"] in capsys.readouterr().err  # another file: refused, naming both
    assert not (tmp_path / "runs").exists()  # nothing run
