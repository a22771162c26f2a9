"""The package's layering, read from every module's imports (lazy imports inside functions too).

Each step imports only the steps before it: read < analysis < prune < measure < sweep < cli, with
`errors` and `report` under all of them; the core never imports `trainers`, and `trainers` uses
only `onnxprune.errors` and `onnxprune.read` (and `prune.initialize` in its test helpers)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RANK = {"errors": 0, "report": 0, "read": 1, "analysis": 2, "prune": 3, "measure": 4, "sweep": 5, "cli": 6}
FACADE = 3  # `onnxprune` itself: the public API re-exports analysis and prune
TOP_ENTRIES = 12
TRAINERS_MAY_USE = ("onnxprune.errors", "onnxprune.read")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
            found.append((node.lineno, base))
    return found


def rank_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "onnxprune":
        return None
    if len(parts) == 1:
        return FACADE
    return RANK.get(parts[1], FACADE)  # `from onnxprune import __version__` / `shrink`: the facade


def python_files(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


@pytest.mark.parametrize("path", python_files("onnxprune"), ids=lambda p: str(p.relative_to(REPO)))
def test_a_step_imports_only_the_steps_before_it(path):
    own = module_name(path)
    if own in ("onnxprune", "onnxprune.__main__"):
        return  # the public API and `python -m onnxprune` sit above everything
    mine = rank_of(own)
    wrong = []
    for line, target in imports(path):
        if target.split(".")[0] == "trainers" and mine < RANK["sweep"]:
            wrong.append(f"line {line}: the core imports {target}")
        theirs = rank_of(target)
        if theirs is not None and theirs > mine:
            wrong.append(f"line {line}: {target} is a later step than {own}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", python_files("trainers"), ids=lambda p: str(p.relative_to(REPO)))
def test_trainers_use_only_the_cores_documented_helpers(path):
    allowed = TRAINERS_MAY_USE + (("onnxprune.prune.initialize",) if path.name == "testing.py" else ())
    wrong = [
        f"line {line}: {target}"
        for line, target in imports(path)
        if target.startswith("onnxprune") and not target.startswith(allowed) and target != "onnxprune"
    ]
    assert not wrong, "\n".join(wrong)


def test_the_top_of_the_package_is_a_few_steps_each_saying_what_it_is():
    entries = [p for p in (REPO / "onnxprune").iterdir() if p.name != "__pycache__"]
    assert len(entries) <= TOP_ENTRIES, sorted(p.name for p in entries)
    for entry in entries:
        source = entry / "__init__.py" if entry.is_dir() else entry
        assert ast.get_docstring(ast.parse(source.read_text())), f"{source} has no docstring saying its step"


def test_the_checker_sees_a_wrong_way_import(tmp_path, monkeypatch):
    """The rule itself: a read/ module importing prune/ is caught (so the tests above can fail)."""
    fake = REPO / "onnxprune" / "read" / "_layering_probe.py"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: "from onnxprune.prune.shrink import shrink\n")
    with pytest.raises(AssertionError, match="later step"):
        test_a_step_imports_only_the_steps_before_it(fake)
