"""`onnxprune sweep --executor ray`: same runs and files as local, resume, failed runs, two nodes.

Ray stays on loopback (docs/cluster.md, DESIGN.md): the single-node Ray is started by RayExecutor
itself (which forces 127.0.0.1); the two-node cluster lives in a network namespace of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")
ray = pytest.importorskip("ray")

from onnxprune.cli import main  # noqa: E402
from onnxprune.sweep.executors import RayExecutor  # noqa: E402
from onnxprune.sweep.grid import write_outputs  # noqa: E402
from tests.sweep.test_sweep import needs_cifar  # noqa: E402  (the same data guard)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local_ray():
    """The Ray RayExecutor starts without --address, with 2 CPUs; sweeps in this module join it."""
    executor = RayExecutor(num_cpus=2)
    before = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    with executor:
        addresses = {node["NodeManagerAddress"] for node in ray.nodes()}
        assert addresses == {"127.0.0.1"}, addresses  # never the machine's external address
        yield
    assert not ray.is_initialized()  # the executor that started Ray stops it
    assert os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == before  # ... and leaves no switch behind


def _args(model: Path, out: Path, *extra: str, targets: str = "0.5") -> list[str]:
    return [
        "sweep",
        str(model),
        "--modes",
        "PA,FA",
        "--targets",
        targets,
        "--epochs",
        "1",
        "--limit-train",
        "256",
        "--limit-test",
        "256",
        "--bench-runs",
        "3",
        "--threads",
        "1",
        "-o",
        str(out),
        *extra,
    ]


def _files(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}


def _results(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/result.json")}


@needs_cifar
def test_ray_sweep_matches_local_resumes_and_reports_failed_runs(tiny_cnn, tmp_path, capsys, local_ray):
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert main(_args(tiny_cnn, local, "-q")) == 0
    assert main(_args(tiny_cnn, remote, "-q", "--executor", "ray", "--cpus-per-run", "1")) == 0
    capsys.readouterr()
    assert _files(remote) == _files(local)
    assert {
        "baseline/trained.onnx",
        "PA-0.5/pruned.onnx",
        "FA-0.5/result.json",
        "results.csv",
        "tradeoffs.png",
    } <= _files(remote)
    ours, theirs = _results(remote), _results(local)
    assert sorted(ours) == sorted(theirs) == ["FA-0.5", "PA-0.5", "baseline"]
    for name in ours:
        for key in ("params", "flops", "memory_bytes", "settings"):
            assert ours[name][key] == theirs[name][key], (name, key)
        assert theirs[name]["executor"] == "local" and ours[name]["executor"] == "ray"
        assert ours[name]["machine"]["node_id"] and ours[name]["machine"]["hostname"]
    csv_names = [line.split(",")[0] for line in (remote / "results.csv").read_text().splitlines()[1:]]
    assert csv_names == ["baseline", "PA-0.5", "FA-0.5"]

    # resume after a run was killed half-way (its files but no result.json): only that run is redone
    (remote / "FA-0.5" / "result.json").unlink()
    kept = {n: (remote / n / "result.json").stat().st_mtime_ns for n in ("baseline", "PA-0.5")}
    assert main(_args(tiny_cnn, remote, "--executor", "ray")) == 0
    err = capsys.readouterr().err
    assert err.count("skipped") == 2 and "FA-0.5: accuracy" in err
    assert {n: (remote / n / "result.json").stat().st_mtime_ns for n in kept} == kept
    assert _results(remote)["FA-0.5"]["executor"] == "ray"

    # unreachable targets fail, reported with their error; the run next to them still completes
    (remote / "PA-0.5" / "result.json").unlink()
    rc = main(_args(tiny_cnn, remote, "-q", "--json", "--executor", "ray", targets="0.5,0.001"))
    captured = capsys.readouterr()
    assert rc == 1
    payload = json.loads(captured.out)
    assert sorted(f["name"] for f in payload["failed"]) == ["FA-0.001", "PA-0.001"]
    assert all("target unreachable" in f["error"] for f in payload["failed"])
    assert [r["name"] for r in payload["runs"]] == ["baseline", "PA-0.5", "FA-0.5"]
    assert (remote / "PA-0.5" / "result.json").is_file()
    assert not (remote / "PA-0.001" / "result.json").exists()
    last = captured.err.strip().splitlines()[-1]
    assert "2 run(s) failed" in last and "Traceback" not in captured.err


@needs_cifar
def test_local_executor_reports_a_failed_run_too(tiny_cnn, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(
        [
            "sweep",
            str(tiny_cnn),
            "--modes",
            "PA",
            "--targets",
            "0.001",
            "--epochs",
            "1",
            "--limit-train",
            "64",
            "--limit-test",
            "64",
            "--bench-runs",
            "1",
            "--threads",
            "1",
            "-q",
            "-o",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "PA-0.001" in err and "target unreachable" in err
    assert (out / "baseline" / "result.json").is_file() and (out / "results.csv").is_file()


def test_without_ray_one_line_exit_2(tiny_cnn, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["sweep", str(tiny_cnn), "-o", str(tmp_path / "run"), "--executor", "ray"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'onnxprune[ray]'" in err and len(err.strip().splitlines()) == 1
    assert main(["sweep", str(tiny_cnn), "-o", str(tmp_path / "run"), "--address", "127.0.0.1:1"]) == 2
    assert "only with --executor ray" in capsys.readouterr().err
    assert main(["sweep", str(tiny_cnn), "-o", str(tmp_path / "run"), "--executor", "ray", "--device", "cuda"]) == 2
    assert "--gpus-per-run" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_plot_legend_warns_when_latency_comes_from_several_machines(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    legends: list[str] = []
    original = Figure.savefig

    def savefig(fig, *args, **kwargs):
        legends.extend(t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts())
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    row = {
        "mode": None,
        "target": None,
        "accuracy": 0.5,
        "params": 10,
        "flops": 10,
        "memory_bytes": 10,
        "latency_ms": 1.0,
        "energy_uj_per_image": 1.0,
        "name": "baseline",
        "machine": {"hostname": "a"},
    }
    rows = [row, dict(row, mode="PA", target=0.5, name="PA-0.5", machine={"hostname": "b"})]
    write_outputs(rows, tmp_path)
    assert any("benched on 2 machines" in text for text in legends)
    legends.clear()
    write_outputs([row, dict(rows[1], machine={"hostname": "a"})], tmp_path)
    assert legends and not any("machines" in text for text in legends)


def _netns_available() -> str | None:
    if os.geteuid() != 0 or not shutil.which("ip"):
        return "needs root and iproute2 to make a network namespace (keeps Ray off the external address)"
    probe = f"onnxprune-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode == 0
    if made:
        subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return None if made else "cannot create a network namespace here (no CAP_SYS_ADMIN)"


@needs_cifar
def test_two_nodes_both_run_sweep_runs(tiny_cnn, tmp_path):
    reason = _netns_available()
    if reason:
        pytest.skip(reason)
    ray_bin = str(Path(sys.executable).with_name("ray"))
    netns = f"onnxprune-{uuid.uuid4().hex[:8]}"
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = dict(
        os.environ,
        RAY_AUTH_MODE="disabled",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)  # it refuses a second node; the namespace isolates
    inside = ["ip", "netns", "exec", netns]
    nodes: list[subprocess.Popen] = []
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(inside + ["ip", "link", "set", "lo", "up"], check=True)
        common = ["--num-cpus", "1", "--block", "--disable-usage-stats"]
        for argv, log in (
            (
                [ray_bin, "start", "--head", "--port", "6379", "--temp-dir", temp, "--include-dashboard", "false"],
                "head.log",
            ),
            ([ray_bin, "start", "--address", "127.0.0.1:6379", "--resources", '{"second_node": 1}'], "worker.log"),
        ):
            with open(tmp_path / log, "w") as handle:
                nodes.append(
                    subprocess.Popen(
                        inside + argv + common, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )
            for _ in range(120):  # each node announces itself; the worker needs the head up first
                if "Ray runtime started" in (tmp_path / log).read_text() or nodes[-1].poll() is not None:
                    break
                time.sleep(0.5)
            assert "Ray runtime started" in (tmp_path / log).read_text(), (tmp_path / log).read_text()[-2000:]
        out = tmp_path / "run"
        done = subprocess.run(
            inside
            + [sys.executable, "-m", "onnxprune"]
            + _args(
                tiny_cnn,
                out,
                "-q",
                "--json",
                "--executor",
                "ray",
                "--modes",
                "PA",
                "--limit-test",
                "64",
                "--bench-runs",
                "1",  # where, not how well
                "--address",
                "127.0.0.1:6379",
                "--cpus-per-run",
                "1",
            ),
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        runs = json.loads(done.stdout)["runs"]
        assert [r["name"] for r in runs] == ["baseline", "PA-0.5"]
        # two 1-CPU runs submitted at once on two 1-CPU nodes: one lands on each
        assert len({r["machine"]["node_id"] for r in runs}) == 2
        assert all(r["executor"] == "ray" for r in runs)
    finally:
        for node in nodes:
            for sig in (signal.SIGTERM, signal.SIGKILL):  # only the process groups this test started
                try:
                    os.killpg(node.pid, sig)
                    node.wait(timeout=5)
                    break
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    continue
        subprocess.run(["ip", "netns", "delete", netns], capture_output=True)
        shutil.rmtree(temp, ignore_errors=True)
