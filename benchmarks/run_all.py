#!/usr/bin/env python3
"""`make bench`: run every benchmark script in benchmarks/ that takes a `--quick` flag.

    python benchmarks/run_all.py [--full] [--results benchmarks/RESULTS.md]

perf_core.py always runs (in --quick mode unless --full). Any other benchmarks/*.py whose source
mentions "--quick" is run as `python SCRIPT --quick`. Scripts without --quick (e.g. bench_speed.py,
which needs model paths) are skipped. Prints where each script's results went.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def takes_quick(script: Path) -> bool:
    try:
        return '"--quick"' in script.read_text() or "'--quick'" in script.read_text()
    except OSError:
        return False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="run perf_core without --quick (all variants, 5 reps)")
    ap.add_argument("--results", default=str(HERE / "RESULTS.md"), help="results file for perf_core")
    a = ap.parse_args(argv)

    scripts = [HERE / "perf_core.py"]
    scripts += sorted(
        p
        for p in HERE.glob("*.py")
        if p.name not in ("perf_core.py", "run_all.py") and not p.name.startswith("_") and takes_quick(p)
    )
    failed = []
    for script in scripts:
        cmd = [sys.executable, str(script)]
        if script.name == "perf_core.py":
            cmd += ([] if a.full else ["--quick"]) + ["--results", a.results]
        else:
            cmd += ["--quick"]
        print(f"==> {' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, cwd=ROOT).returncode
        print(f"<== {script.name}: exit {rc} in {time.perf_counter() - t0:.0f}s", flush=True)
        if rc:
            failed.append(script.name)
    print(f"\nresults: {a.results} (perf_core; other scripts print their own destination above)")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
