"""Property sweep (issue 3): the random-architecture generator of tests/analysis/test_property_graphs.py,
with many more examples than `make test` runs.

    .venv/bin/python benchmarks/property_sweep.py --examples 1000 [--seed 0] [--dynamo-share 10]

Each example: build a random net, export it, analyse, prune with a random keep set for every
prunable group, check the full checker, the output shape and the zero-mask oracle. Prints
pass/fail counts and timing, lists the failing specs, and appends a result block to
benchmarks/RESULTS.md under "## Property sweep (issue 3)".
"""

from __future__ import annotations

import argparse
import collections
import datetime
import os
import platform
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

import torch  # noqa: E402

from benchmarks.results_file import append_to_section  # noqa: E402
from tests.analysis.test_property_graphs import RandomDraw, check_spec, draw_spec  # noqa: E402

SECTION = "## Property sweep (issue 3)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="example i uses seed SEED*1000003 + i")
    parser.add_argument("--dynamo-share", type=int, default=10, help="percent of examples exported with dynamo")
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "RESULTS.md"))
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    counts: collections.Counter = collections.Counter()
    by_exporter: collections.Counter = collections.Counter()
    failures: list[tuple[str, str]] = []
    prunable_total = strict = with_prunable = 0
    slowest = (0.0, -1)
    start = time.perf_counter()
    for i in range(args.examples):
        spec = draw_spec(RandomDraw(args.seed * 1000003 + i), args.dynamo_share)
        by_exporter[spec.exporter] += 1
        if os.environ.get("SWEEP_VERBOSE"):
            print(f"{i}: {spec}", flush=True)
        t0 = time.perf_counter()
        try:
            figures = check_spec(spec)
        except Exception as exc:  # noqa: BLE001 - every failure is reported
            counts["fail"] += 1
            failures.append((str(spec), f"{type(exc).__name__}: {exc}".splitlines()[0][:300]))
            if os.environ.get("SWEEP_TRACEBACK"):
                traceback.print_exc()
            print(f"FAIL {i}: {spec}\n     {failures[-1][1]}", flush=True)
            continue
        counts["pass"] += 1
        slowest = max(slowest, (time.perf_counter() - t0, i))
        prunable_total += figures["prunable"]
        with_prunable += bool(figures["prunable"])
        strict += figures["strict"]
        if (i + 1) % 50 == 0:
            print(
                f"{i + 1}/{args.examples}: {counts['pass']} pass, {counts['fail']} fail, "
                f"{time.perf_counter() - start:.0f} s",
                flush=True,
            )
    seconds = time.perf_counter() - start
    n = max(args.examples, 1)
    summary = (
        f"{args.examples} examples: {counts['pass']} pass, {counts['fail']} fail; "
        f"{seconds:.1f} s ({seconds / n * 1000:.0f} ms/example); exporters "
        + ", ".join(f"{k} {v}" for k, v in sorted(by_exporter.items()))
        + f"; {with_prunable} nets with a prunable group, {prunable_total} prunable groups in all, "
        f"{strict} strict keep sets; slowest example #{slowest[1]} {slowest[0]:.1f} s"
    )
    print(summary)
    for spec, error in failures:
        print(f"  {error}\n    {spec}")
    if not args.no_record:
        record(Path(args.results), argv if argv is not None else sys.argv[1:], summary, failures)
    return 1 if failures else 0


def record(path: Path, argv, summary: str, failures) -> None:
    machine = f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__})"
    lines = [
        "",
        f"### {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"- command: `.venv/bin/python benchmarks/property_sweep.py {' '.join(argv)}`",
        f"- machine: {machine}",
        f"- result: {summary}",
    ]
    for spec, error in failures[:20]:
        lines.append(f"- failure: {error} -- `{spec}`")
    append_to_section(path, SECTION, lines)  # other sections belong to other benchmarks


if __name__ == "__main__":
    sys.exit(main())
