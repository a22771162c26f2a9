"""The error types users see. The CLI prints each as one line on stderr: UserError exits 2,
CheckFailed 1, InternalError (and any other exception escaping a verb) INTERNAL_ERROR_EXIT."""

INTERNAL_ERROR_EXIT = 70  # sysexits.h EX_SOFTWARE: distinct from 1 (over budget) and 2 (bad input)


class UserError(Exception):
    """Bad input or usage: a message naming the file/node/flag and what to do about it."""


class CheckFailed(Exception):
    """A model is over budget (exit 1)."""


class InternalError(RuntimeError):
    """A bug of ours, caught by a self-check (e.g. surgery produced a graph the ONNX checker
    rejects): the message names the check and the node or tensor that failed."""
