"""Entry point: a thin shell over the Python API. Every verb is a module in onnxprune/commands/."""
from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

try:  # typer >= 0.20 vendors click; older typer depends on it
    from typer._click import exceptions as click_exceptions  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions

from . import commands
from .cli_app import app
from .errors import CheckFailed, UserError


def _register_commands() -> None:
    # Importing a command module registers its verb on `app`; a new verb is a new file.
    for info in pkgutil.iter_modules(commands.__path__):
        importlib.import_module(f"{commands.__name__}.{info.name}")


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def main(argv: list[str] | None = None) -> int:
    """Run the CLI: 0 success, 1 a check failed, 2 bad input or usage. Never a traceback."""
    _register_commands()
    try:
        app(args=argv, prog_name="onnxprune", standalone_mode=False)
    except UserError as exc:
        print(f"onnxprune: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except CheckFailed as exc:
        if str(exc):
            print(f"onnxprune: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("onnxprune: interrupted; nothing was written", file=sys.stderr)
        return 130
    except click_exceptions.NoArgsIsHelpError as exc:
        print(exc.format_message(), file=sys.stderr)
        return 2
    except click_exceptions.ClickException as exc:
        # Usage errors (unknown flag, bad choice, missing argument): one line, exit 2.
        hint = " (see onnxprune --help)"
        print(f"onnxprune: error: {_one_line(exc.format_message())}{hint}", file=sys.stderr)
        return 2
    except MemoryError:
        print("onnxprune: error: out of memory while processing the model", file=sys.stderr)
        return 2
    return 0


def entry() -> None:
    sys.exit(main())
