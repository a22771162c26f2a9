"""The typer app and the shared CLI plumbing; each verb lives in onnxprune/cli/commands/<verb>.py."""

from __future__ import annotations

import gc
import json
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Complexity-driven structured pruning of CNNs, directly on ONNX graphs.",
)


def __getattr__(name: str) -> Any:
    """`console` and `err_console`, made on first use: rich costs a run that prints no table (`--json`)
    about 15 ms of start-up, so a verb that can skip it imports them where it prints.

    People read tables on stderr-free stdout; machine output (--json) goes to stdout alone.
    Off a terminal (pipes, CI logs) rich would wrap tables at 80 columns; give them room."""
    if name not in ("console", "err_console"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from rich.console import Console

    made = Console(width=None if sys.stdout.isatty() else 160) if name == "console" else Console(stderr=True)
    globals()[name] = made  # made once; later lookups skip this hook
    return made


WHOLE_PROCESS = False  # set by cli.entry(): this run is the process (not main() called in a test or a script)


@contextmanager
def importing() -> Iterator[None]:
    """Around a verb's import of the model stack (numpy, onnx, onnx-graphsurgeon: some 100k objects
    that live to the end of a CLI process): the cycle collector pauses, then leaves them out of its
    later passes (gc.freeze), which would otherwise walk them again and again while the verb works.
    Only when the run is the whole process: a caller of main() keeps its collector as it was."""
    if not WHOLE_PROCESS:
        yield
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def emit_json(payload: Any) -> None:
    """Print machine output on stdout, nothing else."""
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


INPUT_SHAPE_HELP = (
    "Shape of a model input, e.g. images=1x3x320x320 (NAME:DIMS also works; a bare 1x3x224x224 "
    "for a single-input model); fills symbolic dimensions. Repeatable."
)


def input_shape_option() -> Any:
    """The one `--input-shape` option every verb that reads a model uses (parse with parse_input_shapes)."""
    return typer.Option(None, "--input-shape", metavar="NAME=1x3xHxW", show_default=False, help=INPUT_SHAPE_HELP)


def seed_option(help: str = "Random seed, a non-negative integer.") -> Any:  # noqa: A002
    """`--seed`: negative seeds are a usage error (exit 2, one line), not a numpy traceback."""
    return typer.Option(0, "--seed", min=0, help=help)


def _parse_dims(text: str) -> list[int] | None:
    try:
        dims = [int(d) for d in text.lower().split("x")]
    except ValueError:
        return None
    return dims if dims and all(d > 0 for d in dims) else None


def _model_input_names(model: str | None) -> list[str] | None:
    """The graph inputs (not initializers) of a model file, read without its weights' side files."""
    if model is None:
        return None
    from onnxprune.read.io import load_model

    proto = load_model(model, check=False)
    initializers = {i.name for i in proto.graph.initializer}
    return [v.name for v in proto.graph.input if v.name not in initializers]


def parse_input_shapes(specs: list[str] | None, model: str | None = None) -> dict[str, list[int]] | None:
    """`--input-shape` values -> {"NAME": [1, 3, 32, 32]}.

    Accepts NAME=1x3x32x32, NAME:1x3x32x32 (the name may itself hold ':', as tf2onnx's `x:0`) and,
    for a model with a single input, a bare 1x3x32x32 (`model` is then read for the input's name).
    """
    from onnxprune.errors import UserError

    if not specs:
        return None
    shapes: dict[str, list[int]] = {}
    for spec in specs:
        name, sep, text = spec.partition("=")
        if not sep:
            name, sep, text = spec.rpartition(":")
        dims = _parse_dims(text if sep else spec)
        if dims is None or (sep and not name):
            raise UserError(
                f"--input-shape {spec!r}: expected NAME=DxDx... (or a bare DxDx... for a single-input "
                f"model) with positive integers, e.g. input=1x3x32x32"
            )
        if not sep:
            names = _model_input_names(model)
            if names is None or len(names) != 1:
                listing = f"; its inputs are {names}" if names else ""
                raise UserError(
                    f"--input-shape {spec}: a shape without a name needs a model with exactly one "
                    f"input{listing}; write NAME={spec}"
                )
            name = names[0]
        if name in shapes and shapes[name] != dims:
            raise UserError(f"--input-shape: input {name!r} given twice with different shapes")
        shapes[name] = dims
    return shapes


def _print_version(value: bool) -> None:
    if value:
        from onnxprune.cli.app import console
        from onnxprune.cli.versions import version_line

        console.print(version_line(), markup=False, highlight=False)
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        is_eager=True,
        callback=_print_version,
        help="Print the onnxprune, onnx and onnxruntime versions and exit.",
    ),
) -> None:
    """Complexity-driven structured pruning of CNNs, directly on ONNX graphs."""


_TYPE_NAMES = {
    "int": "INTEGER",
    "float": "NUMBER",
    "str": "TEXT",
    "list[str]": "TEXT",
    "list[int]": "INTEGER",
    "list[float]": "NUMBER",
    "bool": "",
}


def _display_type(self: Any, ctx: Any) -> str | None:
    """What the help shows after an option: its metavar, or a plain word (INTEGER, NUMBER, TEXT);
    nothing for a flag or an argument (its name is already there), never a Python type tag."""
    if getattr(self, "param_type_name", "") == "argument" or getattr(self, "is_flag", False):
        return None
    if self.metavar is not None:
        return self.metavar
    try:
        bare = str(self.bare_type())
    except Exception:  # noqa: BLE001 - help must print whatever typer's internals look like
        return None
    return _TYPE_NAMES.get(bare, bare.upper()) or None


def _plain_help_types() -> None:
    """typer >= 0.20 prints each parameter's Python type (`<bool>`, `<str>`, `<list[str]>`) in the
    help; one override here gives every verb, present and future, plain words instead."""
    core = getattr(typer, "core", None)
    patched = False
    for name in ("TyperOption", "TyperArgument"):
        cls = getattr(core, name, None)
        if cls is not None and hasattr(cls, "display_type_rich"):
            cls.display_type_rich = _display_type
            patched = True
    if not patched:
        _plain_metavars(core)


_WORDS = {"int": "INTEGER", "int range": "INTEGER", "float": "NUMBER", "float range": "NUMBER", "str": "TEXT"}


def _plain_metavars(core: Any) -> None:
    """typer 0.26-0.28 (before 0.29's `display_type_rich`): the help takes an argument's type and an
    option's metavar from the click type's `get_metavar`, `<name>` when it has none."""
    try:
        from typer._click.types import ParamType  # type: ignore[attr-defined]
    except ImportError:  # typer < 0.26 uses click's own help
        return
    argument, option = getattr(core, "TyperArgument", None), getattr(core, "TyperOption", None)
    original = ParamType.get_metavar

    def get_metavar(self, param, ctx):  # noqa: ANN001
        found = original(self, param, ctx)
        if found is not None or param is None:
            return found
        if argument is not None and isinstance(param, argument):
            return ""  # the argument's name is already there
        if option is not None and isinstance(param, option):
            return _WORDS.get(self.name, "")
        return None

    ParamType.get_metavar = get_metavar


_plain_help_types()
