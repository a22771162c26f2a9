"""Fuzz every onnxprune verb with seeded mutants of small valid models (issues 7, 16 and 25).

    python benchmarks/fuzz.py --cases 1000 [--seed 0] [--no-append]

Each case takes a seed model (plain, BN/residual, 37 channels, symbolic N/H/W, rich markup in node
names, unnamed nodes with Constant-node weights, a storage-shared bias, IR 3 with every initializer
listed as an input) and mutates it (byte flips, deleted nodes, wrong shapes, dangling inputs,
renamed outputs, truncated initializers, wrong attribute types...); one case in 8 keeps the seed
model unmutated. About one case in 6 plants a bug in our own code (an invalid surgery result, a
rule or a cost that raises): an internal-error path. It varies the options: outputs in a plain,
read-only, missing, file-as-folder place or `-o -`; `--seed` 0, 7 or -1; for symbolic models a
`--input-shape` in each accepted form. Then it runs profile, groups, shrink (with --report), check,
bench and latency in-process. A failure is: an exception escaping `onnxprune.cli.main`, an exit
code outside {0, 1, 2, 70}, exit 2 without exactly one stderr line, exit 0 after writing to an
unusable place, shrink's exit 2 leaving some outputs, a modified input, an unmutated model refused
or miscounted, exit 70 without a planted bug, or exit 70 without exactly one "internal error" line
naming the model and asking for `onnxprune version --json`, or leaving files. The result block is
appended to benchmarks/RESULTS.md under "## Fuzzing (issue 7)". The mutations are in
benchmarks/fuzz_mutations.py, the seed models in fuzz_models.py, the planted bugs in fuzz_faults.py.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import io
import os
import platform
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

if str(REPO) not in sys.path:  # run as a script: the repository's packages come first
    sys.path.insert(0, str(REPO))

from benchmarks.fuzz_faults import FAULTS, _internal_error_failure, fault_for, planted  # noqa: E402,F401
from benchmarks.fuzz_models import SEEDS, bn_net, conv_net, markup_net, shared_net, symbolic_net, unnamed_net  # noqa: E402,F401
from benchmarks.fuzz_mutations import mutant  # noqa: E402

# what every case's options vary over (issue 16): where outputs go, the seed, the input shape
OUTPUT_PLACES = ("plain", "plain", "plain", "read-only", "missing-folder", "dash", "file-as-folder")
SYMBOLIC_SEEDS = {"symbolic"}


def _read_only_folder(tmp: str) -> str:
    """A folder this process cannot write to: chmod 0555 (an ordinary user), or a read-only
    pseudo-filesystem folder when root ignores the mode bits."""
    folder = os.path.join(tmp, "read-only")
    os.makedirs(folder, exist_ok=True)
    os.chmod(folder, 0o555)
    if os.access(folder, os.W_OK) and os.path.isdir("/sys/kernel"):
        return "/sys/kernel"  # root: chmod does not stop it; sysfs refuses new files
    return folder


def options_for(case: int, seed: int, base_name: str, tmp: str) -> dict:
    """Deterministic per-case choices: output place, --seed, --input-shape."""
    rng = random.Random(f"options:{seed}:{case}")  # independent of the mutant's draws
    place = rng.choice(OUTPUT_PLACES)
    out_dir = {
        "plain": tmp,
        "read-only": _read_only_folder(tmp) if place == "read-only" else tmp,
        "missing-folder": os.path.join(tmp, "no", "such"),
        "file-as-folder": os.path.join(tmp, "afile"),
        "dash": tmp,
    }[place]
    if place == "file-as-folder":
        with open(out_dir, "w") as handle:
            handle.write("x")
    shape = []
    if base_name in SYMBOLIC_SEEDS and rng.random() < 0.8:
        shape = ["--input-shape", rng.choice(["1x3x8x8", "input=1x3x12x12", "input:2x3x8x8"])]
    return {"place": place, "out_dir": out_dir, "seed": rng.choice([0, 0, 0, 7, -1]), "shape": shape}


def verbs(path: str, out_dir: str, options: dict | None = None) -> list[tuple[str, list[str]]]:
    options = options or {"place": "plain", "out_dir": out_dir, "seed": 0, "shape": []}
    where = options["out_dir"]
    out = "-" if options["place"] == "dash" else os.path.join(where, "pruned.onnx")
    report = os.path.join(where, "report.json")
    seed, shape = ["--seed", str(options["seed"])], options["shape"]
    return [
        ("profile", ["profile", path, "--json", *shape]),
        ("groups", ["groups", path, "--json", *shape]),
        (
            "shrink",
            ["shrink", path, "--mode", "FA", "--target", "0.5", "-o", out, "--report", report, "--json", *seed, *shape],
        ),
        ("check", ["check", path, "--max-params", "1k", *shape]),
        ("bench", ["bench", path, "--runs", "2", "--warmup", "0", "--in-process", "--json", *seed, *shape]),
        (
            "latency",
            [
                "latency",
                path,
                "--runs",
                "2",
                "-o",
                "-" if options["place"] == "dash" else os.path.join(where, "latency.json"),
                "--json",
                *seed,
                *shape,
            ],
        ),
    ]


def _clean_case_failure(verb: str, rc, options: dict, stdout: str) -> str | None:
    """For an unmutated seed model with usable options, the verb must do its job."""
    if (
        options["place"] != "plain"
        or options["seed"] < 0
        or (options["base"] in SYMBOLIC_SEEDS and not options["shape"])
    ):
        return None
    expected = (0, 1) if verb == "check" else (0,)
    if rc not in expected:
        return f"clean model: exit {rc}, expected {expected}"
    if verb == "profile":
        import json

        params = json.loads(stdout)["totals"]["params"]
        if params != CLEAN_PARAMS.get(options["base"], params):
            return f"clean model: profile counts {params} params, expected {CLEAN_PARAMS[options['base']]}"
    return None


CLEAN_PARAMS = {
    "unnamed": 1562,
    "markup": 1562,
    "symbolic": 1562,
    "conv": 1562,
    "ir3": 1562,
}  # conv_net(): 8*27+8+16*72+16+170


def run_case(case: int, seed: int = 0, workdir: str | None = None) -> list[dict]:
    """Run every verb on one mutant; each entry: verb, rc, failure text (None when fine)."""
    import shutil

    from onnxprune.cli import main

    description, data = mutant(case, seed)
    base_name = description.split(":")[0]
    own = workdir is None
    tmp = tempfile.mkdtemp(prefix="fuzz-") if own else tempfile.mkdtemp(prefix=f"case{case}-", dir=workdir)
    try:
        path = os.path.join(tmp, f"case{case}.onnx")
        with open(path, "wb") as handle:
            handle.write(data)
        options = dict(options_for(case, seed, base_name, tmp), base=base_name)
        clean = description.endswith(":clean")
        fault = fault_for(case, seed)
        outcomes = []
        for verb, argv in verbs(path, tmp, options):
            stdout, stderr = io.StringIO(), io.StringIO()
            failure = None
            rc = None
            before = set(os.listdir(options["out_dir"])) if os.path.isdir(options["out_dir"]) else set()
            try:
                with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), planted(fault):
                    rc = main(argv)
            except SystemExit as exc:  # a verb calling sys.exit is still a bug here
                rc = exc.code
                failure = f"SystemExit({exc.code}) escaped main()"
            except BaseException as exc:  # noqa: BLE001 - this is what fuzzing looks for
                if isinstance(exc, KeyboardInterrupt):
                    raise
                failure = "".join(traceback.format_exception(exc)).strip()
            err = stderr.getvalue()
            after = set(os.listdir(options["out_dir"])) if os.path.isdir(options["out_dir"]) else set()
            if failure is None and rc == 70 and fault is not None:
                failure = _internal_error_failure(err, path, after - before)
            elif failure is None and rc == 70:
                failure = "internal error (exit 70) without a planted fault: a bug\n" + err
            if failure is None and rc not in (0, 1, 2, 70):
                failure = f"exit code {rc!r}"
            if failure is None and "Traceback" in err:
                failure = "traceback on stderr:\n" + err
            if failure is None and rc == 2 and len([line for line in err.splitlines() if line.strip()]) != 1:
                failure = "exit 2 without exactly one line on stderr:\n" + err
            if failure is None and options["place"] != "plain" and rc == 0 and verb in ("shrink", "latency"):
                failure = f"wrote to a {options['place']} output location and exited 0"
            if failure is None and rc == 2 and verb == "shrink" and os.path.isdir(options["out_dir"]):
                left = set(os.listdir(options["out_dir"])) - before
                if left:
                    failure = f"exit 2 but left {sorted(left)} behind (all outputs or none)"
            if failure is None and clean and rc != 70:
                failure = _clean_case_failure(verb, rc, options, stdout.getvalue())
            with open(path, "rb") as handle:
                if handle.read() != data:
                    failure = (failure or "") + " input file was modified"
            outcomes.append(
                {
                    "case": case,
                    "mutant": description,
                    "verb": verb,
                    "rc": rc,
                    "failure": failure,
                    "stderr": err.strip()[:300],
                    "place": options["place"],
                    "seed": options["seed"],
                    "fault": fault,
                }
            )
        return outcomes
    finally:
        ro = os.path.join(tmp, "read-only")
        if os.path.isdir(ro):
            os.chmod(ro, 0o755)
        shutil.rmtree(tmp, ignore_errors=True)


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--no-append", action="store_true", help="do not append to benchmarks/RESULTS.md")
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "RESULTS.md"))
    args = parser.parse_args(argv)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    started = time.perf_counter()
    per_verb: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    per_rc: collections.Counter = collections.Counter()
    failures: list[dict] = []
    mutations: collections.Counter = collections.Counter()
    bases: collections.Counter = collections.Counter()
    places: collections.Counter = collections.Counter()
    clean_cases = negative = 0
    faults: collections.Counter = collections.Counter()
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        for case in range(args.start, args.start + args.cases):
            for outcome in run_case(case, args.seed, tmp):
                per_verb[outcome["verb"]][outcome["rc"]] += 1
                per_rc[outcome["rc"]] += 1
                if outcome["failure"]:
                    failures.append(outcome)
                    print(
                        f"FAIL case {case} {outcome['mutant']} {outcome['verb']}: "
                        f"{outcome['failure'].splitlines()[-1]}",
                        file=sys.stderr,
                    )
            description = mutant(case, args.seed)[0]
            mutations[description.split(":")[1]] += 1
            bases[description.split(":")[0]] += 1
            clean_cases += description.endswith(":clean")
            places[outcome["place"]] += 1
            negative += outcome["seed"] < 0
            faults[outcome["fault"] or "none"] += 1
            if (case - args.start + 1) % 50 == 0:
                print(
                    f"{case - args.start + 1}/{args.cases} cases, {len(failures)} failures, "
                    f"{time.perf_counter() - started:.0f} s",
                    file=sys.stderr,
                )
    elapsed = time.perf_counter() - started
    command = "python benchmarks/fuzz.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "",
        f"### fuzz run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        "",
        f"- command: `{command.strip()}`",
        f"- machine: {_machine()}",
        f"- cases: {args.cases} (seed {args.seed}, cases {args.start}..{args.start + args.cases - 1}), "
        f"{sum(per_rc.values())} verb runs ({len(per_verb)} verbs: {', '.join(per_verb)}), {elapsed:.0f} s",
        "- seed models: "
        + ", ".join(f"{k} {n}" for k, n in sorted(bases.items()))
        + f"; clean (unmutated) cases: {clean_cases}; output places: "
        + ", ".join(f"{k} {n}" for k, n in sorted(places.items()))
        + f"; negative --seed cases: {negative}; planted faults (internal-error paths, issue 25): "
        + ", ".join(f"{k} {n}" for k, n in sorted(faults.items())),
        "- exit codes (all verbs): " + ", ".join(f"{rc}: {n}" for rc, n in sorted(per_rc.items(), key=str)),
        "- per verb: "
        + "; ".join(
            f"{verb} " + ", ".join(f"{rc}:{n}" for rc, n in sorted(c.items(), key=str)) for verb, c in per_verb.items()
        ),
        f"- failures (exception escaping, exit code outside 0/1/2/70, exit 2 without one line, an output written to "
        f"an unusable place, a partial output set, a clean model refused or miscounted, exit 70 without a planted "
        f"fault, or with one but not one line naming the model, or leaving files): {len(failures)}",
    ]
    for failure in failures[:20]:
        lines.append(
            f"  - case {failure['case']} `{failure['mutant']}` {failure['verb']}: "
            f"{failure['failure'].strip().splitlines()[-1][:200]}"
        )
    block = "\n".join(lines) + "\n"
    print(block)
    if not args.no_append:
        results = Path(args.results)
        existing = results.read_text() if results.exists() else "# Benchmark results\n"
        with open(results, "a") as handle:
            if "## Fuzzing (issue 7)" not in existing:
                handle.write("\n## Fuzzing (issue 7)\n")
            handle.write(block)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
