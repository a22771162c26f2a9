"""The CLI, a thin shell over the Python API: `main()` runs a verb and maps errors to exit codes; every
verb is a module in onnxprune/cli/commands/, registered on the typer app in `app.py`.

Start-up is part of the product: a run imports only its own verb's module (and that module imports
onnx, onnxruntime or torch inside the function that needs them), so `--version`, `--help` and a
usage error never load the model stack. `tests/cli/test_startup.py` checks what each imports."""

from __future__ import annotations

import gc
import importlib
import pkgutil
import signal
import sys
import threading

import typer

try:  # typer >= 0.20 vendors click; older typer depends on it
    from typer._click import exceptions as click_exceptions  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions

from onnxprune.cli import app as app_module
from onnxprune.cli import commands
from onnxprune.cli.app import app
from onnxprune.errors import INTERNAL_ERROR_EXIT, CheckFailed, UserError


def verb_names() -> list[str]:
    """Every verb: one module per verb in onnxprune/cli/commands/ (a new verb is a new file)."""
    return [info.name for info in pkgutil.iter_modules(commands.__path__)]


def _register_commands(argv: list[str] | None = None) -> None:
    """Importing a command module registers its verb on `app`. Given the arguments, only the verb
    they name is imported; `--help`, no verb or an unknown one import them all (the help lists
    every verb, and the modules are light at import)."""
    names = verb_names()
    verb = next((arg for arg in argv or () if not arg.startswith("-")), None)
    for name in [verb] if verb in names else names:
        importlib.import_module(f"{commands.__name__}.{name}")


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


class Interrupted(BaseException):
    """SIGINT/SIGTERM, raised as a BaseException so no `except Exception` and no typer handler
    swallows it; `finally` blocks (temp-file cleanup in io.save_model) still run."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.exit_code = 128 + signum


def _raise_interrupted(signum, frame):  # noqa: ARG001
    raise Interrupted(signum)


_AS_PROCESS = False  # set by entry(): main() is the whole process, not a call inside one

INTERRUPTED_MESSAGE = "onnxprune: interrupted; no partial output left behind (outputs are complete or absent)"


def main(argv: list[str] | None = None) -> int:
    """Run the CLI: 0 success, 1 a check failed, 2 bad input or usage, 70 an internal error (a bug of
    ours), 130 interrupted. Never a traceback."""
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            handlers[signum] = signal.signal(signum, _raise_interrupted)
    try:
        return _main(argv)
    except Interrupted as exc:
        print(INTERRUPTED_MESSAGE, file=sys.stderr)
        return exc.exit_code
    finally:
        for signum, handler in handlers.items():
            # As the process's entry point the work is done: a signal now (e.g. during the
            # interpreter's slow shutdown) must not kill it with a misleading status.
            signal.signal(signum, signal.SIG_IGN if _AS_PROCESS else handler)


def _written_files(clear: bool = False) -> list:
    """The files onnxprune.read.save wrote in this run (none if no verb imported it: a `--version`
    stays free of onnx)."""
    save_module = sys.modules.get("onnxprune.read.save")
    written = list(save_module.WRITTEN) if save_module else []
    if save_module and clear:
        save_module.WRITTEN.clear()
    return written


def _main(argv: list[str] | None) -> int:
    _register_commands(sys.argv[1:] if argv is None else argv)
    _written_files(clear=True)  # a new run: the journal of files this run wrote starts empty
    try:
        rc = app(args=argv, prog_name="onnxprune", standalone_mode=False)
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
        print(INTERRUPTED_MESSAGE, file=sys.stderr)
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
    except Exception as exc:  # noqa: BLE001  (a bug of ours: one line and its own exit code, never a traceback)
        from onnxprune.cli.internal_errors import internal_error_line

        line = internal_error_line(exc, sys.argv[1:] if argv is None else argv, _written_files())
        print(line, file=sys.stderr)
        return INTERNAL_ERROR_EXIT
    # standalone_mode=False: typer *returns* the code of a typer.Exit, and turns a
    # KeyboardInterrupt into Exit(130); it raises neither.
    if isinstance(rc, int) and not isinstance(rc, bool):
        if rc == 130:
            print(INTERRUPTED_MESSAGE, file=sys.stderr)
        return rc
    return 0


def entry() -> None:
    global _AS_PROCESS
    _AS_PROCESS = True
    app_module.WHOLE_PROCESS = True
    rc = main()
    # The work is done and every output written: leave every object that lives to the end out of the
    # interpreter's last cycle collection, a pass over all of them (onnx, numpy, the model's graph)
    # that cost a `profile` a tenth of its run (35 ms of 0.26 s on ResNet-50). Shutdown still runs
    # atexit handlers and flushes and closes the standard streams.
    gc.freeze()
    sys.exit(rc)
