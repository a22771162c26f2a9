"""benchmarks/results_file.py: sections of RESULTS.md are replaced or extended in place, never
misplaced after another benchmark's section."""

from __future__ import annotations

from benchmarks.results_file import append_to_section, write_section

DOC = "# Benchmark results\n\n## A\n\nold a\n\n## B\n\nb\n"


def test_write_section_replaces_in_place(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text(DOC)
    write_section(path, "## A\n\nnew a\n", "## A")
    assert path.read_text() == "# Benchmark results\n\n## A\n\nnew a\n\n## B\n\nb\n"


def test_append_to_section_lands_inside_its_section(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text(DOC)
    append_to_section(path, "## A", ["", "### run 2", "", "more a"])
    text = path.read_text()
    assert text.index("more a") < text.index("## B")
    assert "old a" in text and text.endswith("## B\n\nb\n")


def test_append_to_section_creates_a_missing_section_at_the_end(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text(DOC)
    append_to_section(path, "## C", ["", "c"])
    assert path.read_text().rstrip().endswith("## C\n\nc")
