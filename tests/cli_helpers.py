"""Running the CLI in-process from tests, and the one-line error contract (exit 2, one line, no traceback)."""

from __future__ import annotations

from onnxprune.cli import main


def run(argv, capsys):
    """(exit code, stdout, stderr) of `onnxprune ARGV`."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc, err, *needles):
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
