#!/usr/bin/env python3
"""Start-up, profile and shrink against their peers, and cost against model size (issue 27).

    python benchmarks/startup_and_scale.py [--quick] [--reps N] [--big] [--keep-big]
        [--label TEXT] [--results benchmarks/RESULTS.md] [--no-results]

Whole processes, as users run them, in pairs (A B A B ...: a busy spell hits both alike); each
figure is the median; peak RSS is each process's own (`os.wait4`). Models are built offline into
build/bench_models/ (benchmarks/bench_models.py: the ONNX Model Zoo's classic CNNs from the onnx
wheel's structure-only copies, and with --big a 5 GiB synthetic CNN with external data, deleted
after the run unless --keep-big).

1. `onnxprune --version` / `--help` against `python -c "import numpy"` (goal <= 3x);
2. `onnxprune profile --json` against onnx-tool's CLI on ResNet-50 and VGG-19 (goal >= 2x faster,
   peak RSS <= 1.3x the file);
3. `onnxprune shrink --mode FA --target 0.5 --init keep` of VGG-19 (goal: peak RSS <= 2.5x the
   file, <= 10 s);
4. in process, `onnxprune.shrink(path, "FA", 0.5, init="keep")` (loading included) against
   Torch-Pruning 1.6.1 on the zoo's ResNet-50 to the same MACs (goal >= 3x faster; not in --quick);
5. profile, groups and shrink from 5 MB to 548 MB (and 5 GiB with --big): time and peak RSS per MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_models import BIG_NAME, DEFAULT_OUT, build_all  # noqa: E402
from benchmarks.perf_core_report import cpu_model, loadavg  # noqa: E402
from benchmarks.results_file import write_section  # noqa: E402

PY = sys.executable
HEADING = "## Start-up, peers and scaling (issue 27)"
MIB = 2**20


def run(cmd: list[str], cwd: Path = ROOT) -> dict:
    """One whole process: wall seconds, its own peak RSS (MiB), exit status."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err.read().decode()[-2000:]}")
    return {"wall": wall, "rss": usage.ru_maxrss / 1024}


def paired(commands: dict[str, list[str]], reps: int) -> dict[str, dict]:
    """Run the commands in turn, `reps` rounds; the median wall and peak RSS of each."""
    runs: dict[str, list[dict]] = {label: [] for label in commands}
    for _ in range(reps):
        for label, cmd in commands.items():
            runs[label].append(run(cmd))
    return {label: {k: statistics.median(r[k] for r in rs) for k in ("wall", "rss")} for label, rs in runs.items()}


def onnxprune(*args) -> list[str]:
    return [PY, "-m", "onnxprune", *map(str, args)]


def size_mib(path: Path) -> float:
    side = [p for p in path.parent.glob(path.name + ".data")]
    return (path.stat().st_size + sum(p.stat().st_size for p in side)) / MIB


def startup(reps: int) -> list[str]:
    commands = {
        'python -c "import numpy"': [PY, "-c", "import numpy"],
        "onnxprune --version": onnxprune("--version"),
        "onnxprune --help": onnxprune("--help"),
        'python -c "import onnx"': [PY, "-c", "import onnx"],  # what a verb that reads a model pays first
        # profile's floor: the libraries it cannot run without (typer: the CLI; onnx-graphsurgeon: the analysis)
        'python -c "import onnx, onnx_graphsurgeon, typer"': [PY, "-c", "import onnx, onnx_graphsurgeon, typer"],
    }
    found = paired(commands, reps)
    base = found['python -c "import numpy"']["wall"]
    lines = ["| command | wall s | x `import numpy` | peak RSS MiB | goal <= 3x |", "|---|---:|---:|---:|---|"]
    for label, figures in found.items():
        ratio = figures["wall"] / base
        verdict = ("PASS" if ratio <= 3 else "MISS") if label.startswith("onnxprune") else ""
        lines.append(f"| `{label}` | {figures['wall']:.3f} | {ratio:.2f} | {figures['rss']:.0f} | {verdict} |")
    return lines


def peers(models: dict[str, Path], reps: int) -> list[str]:
    lines = [
        "| model | file MiB | onnxprune profile s | onnx-tool s | speed-up (goal >= 2x) | onnxprune peak MiB "
        "(x file, goal <= 1.3) | onnx-tool peak MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, path in models.items():
        found = paired(
            {"ours": onnxprune("profile", path, "--json"), "tool": [PY, "-m", "onnx_tool", "-i", str(path)]}, reps
        )
        mib = size_mib(path)
        speed = found["tool"]["wall"] / found["ours"]["wall"]
        ratio = found["ours"]["rss"] / mib
        lines.append(
            f"| {name} | {mib:.0f} | {found['ours']['wall']:.2f} | {found['tool']['wall']:.2f} | {speed:.2f}x "
            f"{'PASS' if speed >= 2 else 'MISS'} | {found['ours']['rss']:.0f} ({ratio:.2f} "
            f"{'PASS' if ratio <= 1.3 else 'MISS'}) | {found['tool']['rss']:.0f} |"
        )
    return lines


def shrink_cmd(path: Path, out: Path) -> list[str]:
    return onnxprune("shrink", path, "--mode", "FA", "--target", "0.5", "--init", "keep", "-o", out, "--json")


def shrink_goal(path: Path, reps: int) -> list[str]:
    with tempfile.TemporaryDirectory(dir=ROOT / "build") as tmp:
        found = paired({"shrink": shrink_cmd(path, Path(tmp) / "out.onnx")}, reps)["shrink"]
    mib = size_mib(path)
    ratio = found["rss"] / mib
    return [
        "| model | file MiB | wall s (goal <= 10) | peak RSS MiB | x file (goal <= 2.5) |",
        "|---|---:|---:|---:|---:|",
        f"| {path.name} | {mib:.0f} | {found['wall']:.2f} {'PASS' if found['wall'] <= 10 else 'MISS'} | "
        f"{found['rss']:.0f} | {ratio:.2f} {'PASS' if ratio <= 2.5 else 'MISS'} |",
    ]


def work_ours(path: str) -> dict:
    from onnxprune import shrink  # imported before the clock starts, as Torch-Pruning is

    t0, c0 = time.perf_counter(), time.process_time()
    _, report = shrink(path, mode="FA", target=0.5, seed=0, init="keep")  # loads the file itself
    return {"total_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "flops": report["after"]["flops"]}


def spawn(*args: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run([PY, __file__, "--worker", *args], capture_output=True, text=True, cwd=ROOT, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def vs_torch_pruning(model: Path, reps: int) -> list[str]:
    try:
        import torch
        import torch_pruning  # noqa: F401  (the `bench` extra)

        from benchmarks.perf_core_workers import MODEL
        from models.zoo import build
    except ImportError as exc:
        return [f"(skipped: {exc})"]
    first = spawn("ours", str(model))
    # untimed bisection to the same MACs, in its own process: this one stays small (a child's peak
    # RSS as os.wait4 reports it starts from its parent's, copied at fork)
    ratio = spawn("bisect", str(first["flops"]))["ratio"]
    with tempfile.TemporaryDirectory() as tmp:
        state = os.path.join(tmp, "resnet50.pt")
        torch.save(build(MODEL, seed=0), state)
        ours, theirs = [], []
        for _ in range(reps):
            ours.append(spawn("ours", str(model)))
            theirs.append(spawn("theirs", state, str(ratio)))
    med = {k: statistics.median(r[k] for r in ours) for k in ("total_s", "cpu_s")}
    them = {k: statistics.median(r[k] for r in theirs) for k in ("total_s", "cpu_s")}
    speed = them["total_s"] / med["total_s"]
    return [
        "| tool (loading included) | total s | CPU s | MACs after |",
        "|---|---:|---:|---|",
        f"| `onnxprune.shrink({model.name}, 'FA', 0.5, init='keep')` | {med['total_s']:.3f} | {med['cpu_s']:.3f} | "
        f"{ours[0]['flops'] / 1e9:.3f}G |",
        f"| Torch-Pruning 1.6.1, random, ratio {ratio:.4f} (`torch.load` + DepGraph + step) | {them['total_s']:.3f} | "
        f"{them['cpu_s']:.3f} | {theirs[0]['macs'] / 1e9:.3f}G |",
        "",
        f"Speed-up: **{speed:.2f}x** wall, {them['cpu_s'] / med['cpu_s']:.2f}x CPU (goal >= 3x: "
        f"{'PASS' if speed >= 3 else 'MISS'}).",
    ]


def scaling(models: dict[str, Path], reps: int) -> list[str]:
    rows, outputs = [], []
    with tempfile.TemporaryDirectory(dir=ROOT / "build") as tmp:
        for name, path in models.items():
            mib = size_mib(path)
            verbs = {
                "profile": onnxprune("profile", path, "--json"),
                "groups": onnxprune("groups", path, "--json"),
                "shrink": shrink_cmd(path, Path(tmp) / f"{name}.out.onnx"),
            }
            found = paired(verbs, 1 if name == BIG_NAME else reps)
            rows.append((name, mib, found))
            written = Path(tmp) / f"{name}.out.onnx"
            side = written.with_name(written.name + ".data")
            if side.exists():  # over 2 GiB: the output's weights went to a side file
                check = [
                    PY,
                    "-c",
                    "import onnx, sys; onnx.checker.check_model(sys.argv[1], full_check=True)",
                    str(written),
                ]
                subprocess.run(check, cwd=ROOT, check=True, capture_output=True)
                outputs.append(
                    f"- {name}: shrink wrote {written.stat().st_size} bytes + a {side.stat().st_size / MIB:.0f} MiB "
                    "external data file; `onnx.checker.check_model(path, full_check=True)` passes"
                )
            for leftover in Path(tmp).iterdir():
                leftover.unlink()
    lines = [
        "| model | MiB | profile s / MiB peak | groups s / MiB peak | shrink s / MiB peak | shrink ms per MiB | "
        "shrink peak RSS per MiB |",
        "|---|---:|---|---|---|---:|---:|",
    ]
    for name, mib, found in rows:
        cells = [f"{found[v]['wall']:.2f} / {found[v]['rss']:.0f}" for v in ("profile", "groups", "shrink")]
        lines.append(
            f"| {name} | {mib:.0f} | {' | '.join(cells)} | {1000 * found['shrink']['wall'] / mib:.1f} | "
            f"{found['shrink']['rss'] / mib:.2f} |"
        )
    lines += ["", *outputs, *linearity(rows)]
    return lines


FLOOR = {"wall": 0.0002, "rss": 0.05}  # s and MiB per MiB below which a cost does not grow with the model


def linearity(rows) -> list[str]:
    """Marginal cost per MiB above the smallest model (whose figure is mostly start-up): linear when
    the largest model's is at most 1.5x the highest of the others' (or below FLOOR: flat)."""
    if len(rows) < 3:
        return ["(too few models to judge linearity)"]
    base_name, base_mib, base = rows[0]
    out = []
    for verb in ("profile", "groups", "shrink"):
        for key, what, scale in (("wall", "time, ms", 1000), ("rss", "peak RSS, MiB", 1)):
            marginal = {n: (f[verb][key] - base[verb][key]) / (m - base_mib) for n, m, f in rows[1:]}
            *others, (largest, last) = marginal.items()
            bound = 1.5 * max([FLOOR[key]] + [v for _, v in others])
            verdict = "flat" if last <= FLOOR[key] else "linear" if last <= bound else f"NOT linear ({largest})"
            shown = ", ".join(f"{n} {v * scale:.3g}" for n, v in marginal.items())
            out.append(f"- {verb} {what} per MiB above {base_name}: {shown} → {verdict}")
    return out


def _own_rss_mib() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


def versions() -> str:
    from importlib.metadata import version

    found = []
    for dist in ("onnx", "onnxruntime", "numpy", "ml_dtypes", "typer", "onnx-tool"):
        try:
            found.append(f"{dist} {version(dist)}")
        except Exception:  # noqa: BLE001
            found.append(f"{dist} absent")
    return ", ".join(found)


NOTES = [
    "Notes:",
    "- every model is the IR 3 layout of the ONNX Model Zoo's files (weights listed as graph inputs),",
    "  rebuilt with random weights from the onnx wheel's structure-only copies (models/zoo_classics.py).",
    "- onnxprune's modules are compiled to bytecode first (`python -m compileall onnxprune`), as an install",
    "  does: with PYTHONDONTWRITEBYTECODE set, as on this machine, every run would otherwise compile them",
    "  from source (about 10 ms); site-packages, onnx-tool's included, ship compiled.",
    "- profile of ResNet-50 against onnx-tool: both processes first pay python, numpy and onnx (the",
    "  `import onnx` row); profile also needs typer and onnx-graphsurgeon (the `import onnx,",
    "  onnx_graphsurgeon, typer` row: its floor). The model's size costs onnxprune nothing (its weights",
    "  stay in the file), so the gap widens with the model (VGG-19).",
    "- in process against Torch-Pruning: both sides import their package before the clock (for onnxprune",
    "  that includes numpy.random, which prune.shrink imports at the top); numpy.ma, which np.unique",
    "  imports on its first call, is imported inside onnxprune's timed run.",
    "- the scaling table's verdicts compare each model's cost above the smallest one (mostly start-up), per",
    "  MiB: `flat` = no growth with the model; `linear` = the largest model's is at most 1.5x the others'.",
    "",
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="3 rounds, 1 for shrink and the scaling table; no Torch-Pruning"
    )
    ap.add_argument("--reps", type=int, default=None, help="rounds per comparison (default 7, --quick 3)")
    ap.add_argument("--big", action="store_true", help="add the 5 GiB synthetic model (external data) to the table")
    ap.add_argument("--keep-big", action="store_true", help="leave the synthetic model in build/bench_models/")
    ap.add_argument("--label", default="this venv", help="what is special about this environment, for the heading")
    ap.add_argument(
        "--conditions",
        default="**taken under load** (other engineers' jobs on the same cores): the integrator re-runs it quiet",
        help="how busy the machine was, for the machine line",
    )
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    ap.add_argument("--no-results", action="store_true")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        from benchmarks.perf_core_workers import work_torch_pruning
        from benchmarks.vs_torch_pruning import work_theirs

        kind, *args = a.worker
        if kind == "bisect":
            print(json.dumps({"ratio": work_torch_pruning(float(args[0]), None, None)["ratio"]}))
        else:
            print(json.dumps(work_ours(args[0]) if kind == "ours" else work_theirs(args[0], float(args[1]))))
        return 0
    reps = a.reps or (3 if a.quick else 7)
    # bytecode for onnxprune, as pip writes on install (PYTHONDONTWRITEBYTECODE would leave it uncompiled)
    subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "onnxprune")], check=True, capture_output=True)
    heavy_reps = 1 if a.quick else 3
    load_before = loadavg()
    bench = build_all(DEFAULT_OUT)
    zoo_r50 = ROOT / "build" / "zoo" / "resnet50_imagenet.legacy.kept.onnx"
    r50 = zoo_r50 if zoo_r50.exists() else bench["resnet50"]
    sections = [("Start-up", startup(reps))]
    sections.append(("profile against onnx-tool's CLI", peers({"ResNet-50": r50, "VGG-19": bench["vgg19"]}, reps)))
    sections.append(("shrink of VGG-19 (IR 3, as the zoo ships it)", shrink_goal(bench["vgg19"], heavy_reps)))
    table = {name: bench[name] for name in ("squeezenet", "resnet50", "bvlc_alexnet", "vgg19")}
    big = None
    if a.big:
        free = shutil.disk_usage(DEFAULT_OUT).free / 2**30
        if free < 16:
            sections.append(("Scaling", [f"(--big skipped: {free:.0f} GiB free, 16 needed)"]))
        else:
            # built in a child: this process must stay small (a child's peak RSS starts from its parent's)
            subprocess.run([PY, "-m", "benchmarks.bench_models", "--big"], cwd=ROOT, check=True, capture_output=True)
            big = DEFAULT_OUT / f"{BIG_NAME}.onnx"
            table[BIG_NAME] = big
    own = _own_rss_mib()  # before Torch-Pruning's section, which imports torch here
    try:
        sections.append(
            ("Scaling: profile, groups, shrink FA 0.5 --init keep (time s / peak RSS MiB)", scaling(table, heavy_reps))
        )
    finally:
        if big is not None and not a.keep_big:
            for path in (big, big.with_name(big.name + ".data")):
                path.unlink(missing_ok=True)
    if not a.quick and zoo_r50.exists():  # last: this process imports torch for it
        sections.insert(3, ("In process against Torch-Pruning (ResNet-50, zoo)", vs_torch_pruning(zoo_r50, reps)))
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    heading = f"{HEADING} — {a.label}"
    lines = [
        f"{heading} — {stamp}",
        "",
        f"- command: `python benchmarks/startup_and_scale.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        f"- machine: {cpu_model()}, {os.cpu_count()} cores, this run (and every child) pinned to CPU "
        f"{','.join(map(str, sorted(os.sched_getaffinity(0))))}; load average before / after: {load_before} / "
        f"{loadavg()} — {a.conditions}",
        f"- versions: {versions()}",
        f"- whole processes, paired rounds (A B A B ...), medians of {reps} rounds ({heavy_reps} for shrink and the "
        "scaling table, 1 for the synthetic model); peak RSS per process (`os.wait4`; the driver itself held "
        f"{own:.0f} MiB, a floor for every child's figure); threads = 1",
        "",
    ]
    for title, body in sections:
        lines += [f"**{title}**", "", *body, ""]
    lines += NOTES
    print("\n".join(lines))
    if not a.no_results:
        write_section(Path(a.results), "\n".join(lines), heading)
    return 0


if __name__ == "__main__":
    sys.exit(main())
