"""The one error type users see. The CLI prints it as one line on stderr and exits 2."""


class UserError(Exception):
    """Bad input or usage: a message naming the file/node/flag and what to do about it."""


class CheckFailed(Exception):
    """A model is over budget (exit 1)."""
