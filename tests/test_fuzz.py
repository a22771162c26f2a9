"""Issue 7: seeded fuzzing of every verb with mutants of small valid models.

Each case (benchmarks/fuzz.py: byte flips, deleted nodes, wrong shapes, dangling inputs, renamed
outputs, truncated initializers, wrong attribute types, wrong dtypes, wrong op types/opsets) runs
profile, groups, shrink, check --max-params and bench --runs 2 in-process. Any exception escaping
`onnxprune.cli.main`, an exit code outside {0, 1, 2}, a traceback on stderr, an exit 2 without
exactly one stderr line, or a modified input file is a failure. `benchmarks/fuzz.py --cases 1000`
runs the same at scale.
"""
from __future__ import annotations

import pytest

from benchmarks.fuzz import MUTATIONS, SEEDS, mutant, run_case

CASES = 50
BATCH = 10
KNOWN_BUGS: dict[int, str] = {}  # case -> reason, for bugs found but not yet fixed


def _check(outcomes):
    failures = [f"case {o['case']} {o['mutant']} {o['verb']}: {o['failure']}" for o in outcomes if o["failure"]]
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("start", range(0, CASES, BATCH))
def test_fuzz_cases(start, tmp_path):
    outcomes = []
    for case in range(start, start + BATCH):
        if case in KNOWN_BUGS:
            continue
        outcomes += run_case(case, seed=0, workdir=str(tmp_path))
    _check(outcomes)
    assert {o["rc"] for o in outcomes} <= {0, 1, 2}


@pytest.mark.parametrize("case", sorted(KNOWN_BUGS))
def test_known_fuzz_bugs(case, tmp_path):
    if any(o["failure"] for o in run_case(case, 0, str(tmp_path))):
        pytest.xfail(KNOWN_BUGS[case])
    pytest.fail(f"case {case} passes now: remove it from KNOWN_BUGS")


def test_mutants_are_deterministic():
    assert mutant(7, seed=3) == mutant(7, seed=3)
    assert mutant(7, seed=3) != mutant(8, seed=3)


def test_every_mutation_applies():
    import random

    for base in SEEDS.values():
        for mutation in MUTATIONS:
            assert mutation(base(), random.Random(1)) is not None
