"""An exception that escapes a verb is a bug of ours: one line on stderr naming the verb, the
model and the check or code that failed, no traceback, nothing left written, and its own exit
code (errors.INTERNAL_ERROR_EXIT, 70), which CI can tell from 1 (over budget) and 2 (bad input)."""

from __future__ import annotations

import os
import traceback
from pathlib import Path

from onnxprune.errors import InternalError

# verbs whose earlier outputs stay after a late failure: a rerun resumes from them
RESUMABLE_VERBS = ("train", "pipeline", "sweep")
REPORT = (
    "this is a bug in onnxprune: please report it with the output of `onnxprune version --json` "
    "(and the model, if you can share it)"
)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _verb_and_models(argv: list[str] | None) -> tuple[str, list[str]]:
    """The verb and its model arguments: positional words naming .onnx files (an option's value,
    such as `-o out.onnx`, is not one)."""
    args = [str(a) for a in (argv or [])]
    words = [a for i, a in enumerate(args) if not a.startswith("-") and (i == 0 or not args[i - 1].startswith("-"))]
    verb = words[0] if words else "onnxprune"
    models = [a for a in words[1:] if a.lower().endswith(".onnx") or os.path.isfile(a)]
    return verb, models


def _where(exc: BaseException) -> str:
    """The innermost frame of our own code (else the last frame): `function (file:line)`."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [
        f for f in frames if f"{os.sep}onnxprune{os.sep}" in f.filename or f"{os.sep}trainers{os.sep}" in f.filename
    ]
    frame = (ours or frames or [None])[-1]
    if frame is None:
        return ""
    parts = Path(frame.filename).parts
    start = max((i for i, p in enumerate(parts) if p in ("onnxprune", "trainers")), default=len(parts) - 1)
    return f" in {frame.name} ({'/'.join(parts[start:])}:{frame.lineno})"


def _remove_written(written: list[Path]) -> str:
    removed = []
    for path in dict.fromkeys(written):
        try:
            Path(path).unlink()
            removed.append(str(path))
        except OSError:
            pass
    return f"removed what it had written ({', '.join(removed)})" if removed else "nothing was written"


def internal_error_line(exc: BaseException, argv: list[str] | None, written: list[Path]) -> str:
    """The one stderr line for an exception that escaped a verb; removes the files the verb wrote
    (kept, and said so, for resumable verbs)."""
    verb, models = _verb_and_models(argv)
    if isinstance(exc, InternalError):
        what = _one_line(exc)
    else:
        what = f"{type(exc).__name__}: {_one_line(exc, 200) or '(no message)'}{_where(exc)}"
    if not written:
        outputs = "nothing was written"
    elif verb in RESUMABLE_VERBS:
        outputs = f"the {len(set(written))} file(s) written before it are kept (a rerun resumes)"
    else:
        outputs = _remove_written(written)
    model = ", ".join(models) or "(no model given)"
    return f"onnxprune: internal error: {verb} {model}: {what}; {outputs}; {REPORT}"
