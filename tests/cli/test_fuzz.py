"""Issue 7: seeded fuzzing of every verb with mutants of small valid models.

Each case (benchmarks/fuzz.py; mutations in benchmarks/fuzz_mutations.py: byte flips, deleted nodes,
wrong shapes, dangling inputs, renamed outputs, truncated initializers, wrong attribute types, wrong
dtypes, wrong op types/opsets; seed models include an IR 3 graph with initializers listed as inputs)
runs profile, groups, shrink, check --max-params and bench --runs 2 in-process. Any exception
escaping `onnxprune.cli.main`, an exit code outside {0, 1, 2, 70}, a traceback on stderr, an exit 2
without exactly one stderr line, or a modified input file is a failure; exit 70 (internal error)
only where a case plants a bug in our code, and then as one line naming the model, with nothing
written (issue 25). `benchmarks/fuzz.py --cases 1000` runs the same at scale.
"""

from __future__ import annotations

import pytest

from benchmarks.fuzz import SEEDS, run_case
from benchmarks.fuzz_mutations import MUTATIONS, mutant

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
    assert {o["rc"] for o in outcomes} <= {0, 1, 2, 70}
    assert all(o["fault"] for o in outcomes if o["rc"] == 70)


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


# Seed models known to fail unmutated (name -> why); a passing entry fails the test, so it is removed.
CLEAN_KNOWN_BUGS: dict[str, str] = {}


def _clean_case(name: str) -> int:
    """A case that runs seed model `name` unmutated, with usable options (plain outputs, seed >= 0)."""
    import tempfile

    from benchmarks.fuzz import SYMBOLIC_SEEDS, fault_for, options_for
    from benchmarks.fuzz_mutations import CLEAN_CASE_EVERY

    with tempfile.TemporaryDirectory() as tmp:
        for case in range(CLEAN_CASE_EVERY - 1, 20_000, CLEAN_CASE_EVERY):
            if mutant(case)[0] != f"{name}:clean" or fault_for(case) is not None:
                continue
            options = options_for(case, 0, name, tmp)
            if (
                options["place"] == "plain"
                and options["seed"] >= 0
                and (name not in SYMBOLIC_SEEDS or options["shape"])
            ):
                return case
    raise AssertionError(f"no clean case for {name}")


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_every_seed_model_unmutated_works(name, tmp_path):
    """Issue 16: symbolic dims, markup in names, unnamed nodes, shared constants: every verb does
    its job on the valid seed model (profile counts the same params as the named model)."""
    outcomes = run_case(_clean_case(name), seed=0, workdir=str(tmp_path))
    assert {o["verb"] for o in outcomes} == {"profile", "groups", "shrink", "check", "bench", "latency"}
    failures = [f"{o['verb']}: {o['failure']}" for o in outcomes if o["failure"]]
    if failures and name in CLEAN_KNOWN_BUGS:
        pytest.xfail(CLEAN_KNOWN_BUGS[name])
    assert not failures, "\n".join(failures)
    assert name not in CLEAN_KNOWN_BUGS, f"{name} passes now: remove it from CLEAN_KNOWN_BUGS"


def test_read_only_and_dash_outputs_are_refused(tmp_path):
    """Issue 16 items 7 and 11 in the fuzzer: outputs to a read-only folder or `-` never exit 0."""
    from benchmarks.fuzz import options_for

    seen = set()
    for case in range(200):
        options = options_for(case, 0, "conv", str(tmp_path))
        if (
            options["place"] in ("read-only", "dash")
            and options["place"] not in seen
            and mutant(case)[0].endswith(":clean")
        ):
            seen.add(options["place"])
            for outcome in run_case(case, seed=0, workdir=str(tmp_path)):
                assert outcome["failure"] is None, outcome
                if outcome["verb"] in ("shrink", "latency"):
                    assert outcome["rc"] == 2
    assert seen, "no clean case with a read-only or dash output in the first 200"


# which verbs reach each planted bug on a valid model
FAULT_VERBS = {
    "surgery-invalid-graph": {"shrink"},
    "rule-raises": {"groups", "shrink"},
    "cost-raises": {"profile", "groups", "shrink", "check", "bench"},
}


@pytest.mark.parametrize("base", ["conv", "ir3"])
@pytest.mark.parametrize("fault", sorted(FAULT_VERBS))
def test_planted_internal_errors_exit_70_in_one_line_and_write_nothing(fault, base, tmp_path):
    """Issue 25 item 2: a bug of ours is one stderr line (internal error, the model, a request for
    `onnxprune version --json`), exit 70 (not 1, which CI reads as over budget), nothing written."""
    import contextlib
    import io
    import os

    from benchmarks.fuzz import FAULTS, SEEDS, _internal_error_failure, planted, verbs
    from onnxprune.cli import main

    assert set(FAULT_VERBS) == set(FAULTS)
    path = str(tmp_path / f"{base}.onnx")
    with open(path, "wb") as handle:
        handle.write(SEEDS[base]().SerializeToString())
    for verb, argv in verbs(path, str(tmp_path)):
        before = set(os.listdir(tmp_path))
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), planted(fault):
            rc = main(argv)
        if verb in FAULT_VERBS[fault]:
            assert rc == 70, (verb, rc, err.getvalue())
            assert _internal_error_failure(err.getvalue(), path, set(os.listdir(tmp_path)) - before) is None
        else:
            assert rc in (0, 1), (verb, rc, err.getvalue())
