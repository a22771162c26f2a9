"""Every measured figure the docs quote must be one that benchmarks/RESULTS.md records.

`python benchmarks/doc_figures.py` lists the figures of README.md, trainers/README.md and docs/*.md
(decimal numbers with %, x, s, ms, min or minutes, outside code) that RESULTS.md does not hold, and
exits 1 if there are any. A block after a `<!-- rough figures -->` comment (up to the next
heading) is exempt: order-of-magnitude timings of one machine, said to be so in the text.

A figure can also be in RESULTS.md and still be quoted for the wrong run (63.9 % is FA 0.5's
accuracy, not PA 0.2's): `misattributed` checks each accuracy quoted next to a trained run's name
(`63.8 % (PA 0.2)`, or a line naming one run and one accuracy) against that run's row.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
EXEMPT_MARK = "<!-- rough figures -->"
FIGURE = re.compile(r"(?<![\w.~–-])(\d+\.\d+)\s?(%|x(?![\w])|(?:s|ms|min|minutes)(?![\w/]))")


def doc_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", root / "trainers" / "README.md", *sorted((root / "docs").glob("*.md"))]


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def quoted_figures(text: str) -> list[tuple[int, str]]:
    """(line number, figure) for each figure outside code blocks, inline code and exempt blocks."""
    found, in_code, exempt = [], False, False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if EXEMPT_MARK in line:
            exempt = True
        elif line.startswith("#"):
            exempt = False
        if in_code or exempt:
            continue
        prose = re.sub(r"`[^`]*`", "", line)
        found += [(number, match.group(1) + match.group(2)) for match in FIGURE.finditer(prose)]
    return found


# the trained runs of RESULTS.md's "Training from scratch" tables, and how the docs name them
RUN_NAMES = {
    "pa02": ("PA 0.2", "20 % of its parameters", "pruned to 20 %", "pa20"),
    "fa05": ("FA 0.5",),
    "ma05": ("MA 0.5",),
    "unpruned": ("unpruned VGG-16",),
}
ACCURACY = r"(\d+\.\d)\s?%"


def run_accuracies(results_text: str) -> dict[str, str]:
    """{run: "63.8%"} from the last table row of each trained run (`| pa02 | ... | 63.8% | ...`)."""
    found = {}
    for line in results_text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] in RUN_NAMES:
            accuracies = [c for c in cells[1:] if re.fullmatch(ACCURACY, c)]
            if accuracies:
                found[cells[0]] = _squash(accuracies[0])
    return found


def misattributed(root: Path = ROOT) -> list[str]:
    """`file:line: figure for run (RESULTS.md: figure)` for each accuracy quoted for the wrong run."""
    truth = run_accuracies((root / "benchmarks" / "RESULTS.md").read_text())
    wrong = []
    for path in doc_files(root):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            pairs = [
                (m.group(1) + "%", run)
                for run, names in RUN_NAMES.items()
                for name in names
                for m in re.finditer(ACCURACY + r"\s*\(" + re.escape(name) + r"\)", line)
            ]
            named = {run for run, names in RUN_NAMES.items() if any(name in line for name in names)}
            figures = re.findall(ACCURACY, line)
            if not pairs and len(named) == 1 and len(figures) == 1:
                pairs = [(figures[0] + "%", named.pop())]
            wrong += [
                f"{path.relative_to(root)}:{number}: {figure} for {run} (RESULTS.md: {truth[run]})"
                for figure, run in pairs
                if run in truth and figure != truth[run]
            ]
    return wrong


def stray_figures(root: Path = ROOT) -> list[str]:
    """`file:line: figure` for each quoted figure RESULTS.md does not contain."""
    results = _squash((root / "benchmarks" / "RESULTS.md").read_text())
    stray = []
    for path in doc_files(root):
        for number, figure in quoted_figures(path.read_text()):
            if _squash(figure) not in results:
                stray.append(f"{path.relative_to(root)}:{number}: {figure}")
    return stray


if __name__ == "__main__":
    problems = [f"{p} is not in benchmarks/RESULTS.md" for p in stray_figures()] + misattributed()
    for problem in problems:
        print(problem)
    sys.exit(1 if problems else 0)
