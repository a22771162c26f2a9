"""Save outputs atomically and check where they go before any work is done.

Every output (a model, a JSON report) is staged in a synced temp file beside its target and renamed
into place, so a reader sees the old file or the whole new one; several outputs are written all or
none. Output paths are refused up front: `-`, an input, a missing or read-only folder, one path
for two outputs. onnx is imported where it is used, as in onnxprune.read.io.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from onnxprune.errors import UserError
from onnxprune.read.io import ModelLike

if TYPE_CHECKING:  # pragma: no cover
    import onnx

# Every file an invocation wrote, in order (the CLI clears it per run: an internal error removes them).
WRITTEN: list[Path] = []

# protobuf cannot serialise a single message over 2 GiB: larger models keep weights outside.
PROTOBUF_LIMIT = 2**31 - 1
EXTERNAL_DATA_THRESHOLD = 1024  # bytes; tensors above this go to the side file of a big model


def _refuse_overwrite(output: Path, inputs: tuple[ModelLike, ...], flag: str = "-o") -> None:
    for source in inputs:
        if isinstance(source, (str, os.PathLike)) and Path(source).resolve() == output.resolve():
            raise UserError(
                f"{flag} {output}: is the input model; choose another output path (the input is never overwritten)"
            )


def validate_output_path(output: ModelLike, *inputs: ModelLike, flag: str = "-o") -> Path:
    """Refuse `-`, an output equal to an input, a missing or unwritable folder, before any work is done."""
    if str(output) == "-":
        raise UserError(
            f"{flag} -: writing to stdout is not supported; give a file name (--json prints machine output on stdout)"
        )
    out = Path(output)  # type: ignore[arg-type]
    _refuse_overwrite(out, inputs, flag)
    folder = out.parent
    if not folder.resolve().is_dir():
        what = "is not a folder" if folder.exists() else "does not exist; create it first"
        raise UserError(f"{flag} {out}: folder {folder} {what}")
    if out.is_dir():
        raise UserError(f"{flag} {out}: is a directory; give a file name")
    _probe_writable(out, flag)
    return out


def _probe_writable(out: Path, flag: str) -> None:
    """Refuse a folder this process may not write to (permissions, read-only mount) or a file it
    may not replace, without creating anything there."""
    folder = out.parent
    reason = None
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            reason = "read-only file system"
    except (OSError, AttributeError):  # no statvfs (Windows): the permission test still runs
        pass
    if reason is None and not os.access(folder, os.W_OK | os.X_OK):
        reason = f"folder {folder} is not writable"
    if reason is None and out.exists() and not os.access(out, os.W_OK):
        reason = "the file is read-only"
    if reason:
        raise UserError(f"{flag} {out}: cannot write there ({reason}); choose a writable location")


def check_outputs_writable(paths, *inputs: ModelLike) -> list[Path]:
    """Check every output location before any work: `paths` holds paths, (flag, path) pairs, or is
    a {flag: path} mapping; None paths are skipped. Refuses `-`, an input, a missing or read-only
    folder, and two outputs with one path (one line, exit 2). Returns the paths, in order."""
    items = paths.items() if isinstance(paths, dict) else paths
    pairs = [item if isinstance(item, tuple) else ("-o", item) for item in items]
    checked: list[Path] = []
    for flag, path in pairs:
        if path is None:
            continue
        out = validate_output_path(path, *inputs, flag=flag)
        if any(out.resolve() == other.resolve() for other in checked):
            raise UserError(f"{flag} {out}: already used for another output; give each output its own path")
        checked.append(out)
    return checked


def _new_file_mode(target: Path) -> int:
    """The mode a plain open() would give (0666 less the umask), or the mode of the file replaced."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _stage_bytes(data: bytes, out: Path) -> Path:
    """Write `data` to a synced temp file next to `out` with the mode `out` should get."""
    return _stage(out, lambda handle: handle.write(data))


def atomic_write(path: ModelLike, write, mode: str = "w") -> Path:
    """Write a file atomically through `write(handle)` (text mode "w" or binary "wb"): a synced temp
    file renamed into place, with the mode a plain open() would give (umask) or the replaced file's."""
    out = Path(path)  # type: ignore[arg-type]
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.chmod(tmp_name, _new_file_mode(out))
            os.fsync(handle.fileno())
        os.replace(tmp_name, out)
        WRITTEN.append(out)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return out


def json_bytes(payload) -> bytes:
    import json

    return (json.dumps(payload, indent=2) + "\n").encode()


def save_json(payload, output: ModelLike, *inputs: ModelLike, flag: str = "-o") -> Path:
    """Write a JSON file atomically, with the mode a normal write would give it."""
    return save_outputs([(output, payload)], *inputs, flags=[flag])[0]


def save_outputs(outputs, *inputs: ModelLike, flags=None) -> list[Path]:
    """Write several outputs all or none: `outputs` is [(path, ModelProto | JSON-able payload)].

    Every file is staged (temp file in its folder, synced) before any is renamed into place, so
    a failure while writing (disk full, interrupt) leaves none of them behind.
    """
    flags = flags or ["-o"] * len(outputs)
    paths = check_outputs_writable([(flag, path) for flag, (path, _) in zip(flags, outputs)], *inputs)
    staged: list[tuple[Path, Path]] = []  # (temp, final); model side files come first
    current, renamed = paths[0] if paths else None, []
    try:
        for out, (_, payload) in zip(paths, outputs):
            current = out
            if type(payload).__name__ == "ModelProto":  # (not importing onnx for a JSON report)
                staged += _stage_model(payload, out)
            else:
                staged.append((_stage_bytes(json_bytes(payload), out), out))
        for tmp, final in staged:
            current = final
            os.replace(tmp, final)
            renamed.append(final)
            WRITTEN.append(final)
    except OSError as exc:  # checked beforehand, so rare: a full disk, a folder changed meanwhile
        done = f"only {', '.join(map(str, renamed))} was written" if renamed else "nothing was written"
        raise UserError(f"cannot write {current}: {exc.strerror or exc}; {done}") from None
    finally:
        for tmp, _ in staged:
            if tmp.exists():
                tmp.unlink()
    return paths


def save_model(model: onnx.ModelProto, output: ModelLike, *inputs: ModelLike) -> Path:
    """Write atomically: a temp file in the same folder, fsync, then rename over the target.

    A reader sees the old file or the complete new one, never half a model, even if the process
    is killed mid-write. Models over 2 GiB get their weights in `<name>.data` beside them. The
    file gets the mode a normal write would (umask), or keeps the mode of the file it replaces.
    """
    return save_outputs([(output, model)], *inputs)[0]


def _stage_model(model: onnx.ModelProto, out: Path) -> list[tuple[Path, Path]]:
    """Stage the model (and its side file past 2 GiB), written field by field (model_writer):
    never one bytes object of the whole model, weights left in the input file streamed from it."""
    from onnxprune.read import lazy_weights, model_writer

    plan = model_writer.Plan(model)
    if plan.size <= PROTOBUF_LIMIT:
        return [(_stage(out, plan.write), out)]
    if (
        plan.outside_initializers > PROTOBUF_LIMIT
    ):  # too big even without its initializers: onnx converts Constant nodes too
        return _stage_with_onnx_save(lazy_weights.materialized_copy(model), out)
    data_name = out.name + ".data"
    fd, data_name_tmp = tempfile.mkstemp(prefix=f".{data_name}.", suffix=".tmp", dir=out.parent)
    data_tmp, model_tmp = Path(data_name_tmp), None
    try:
        with os.fdopen(fd, "wb") as data:
            model_tmp = _stage(
                out,
                lambda handle: model_writer.write_model(
                    model, handle, data=data, data_name=data_name, threshold=EXTERNAL_DATA_THRESHOLD
                ),
            )
            model_writer.sync(data)
        os.chmod(data_tmp, _new_file_mode(out.parent / data_name))
    except BaseException:
        for leftover in (data_tmp, model_tmp):
            if leftover is not None and leftover.exists():
                leftover.unlink()
        raise
    return [(data_tmp, out.parent / data_name), (model_tmp, out)]


def _stage(out: Path, write) -> Path:
    """A synced temp file next to `out`, filled by `write(handle)`, with the mode `out` should get."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.chmod(tmp_name, _new_file_mode(out))  # mkstemp makes 0600 whatever the umask
            os.fsync(handle.fileno())
    except BaseException:
        os.unlink(tmp_name)
        raise
    return Path(tmp_name)


def _stage_with_onnx_save(model: onnx.ModelProto, out: Path) -> list[tuple[Path, Path]]:
    from onnxprune.read.model_writer import save_with_onnx

    data_name = out.name + ".data"
    tmp_data = out.parent / f".{data_name}.{os.getpid()}.tmp"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        save_with_onnx(model, tmp, tmp_data, data_name, EXTERNAL_DATA_THRESHOLD)
        for path, final in ((tmp, out), (tmp_data, out.parent / data_name)):
            os.chmod(path, _new_file_mode(final))
    except BaseException:
        for leftover in (tmp, tmp_data):
            if leftover.exists():
                leftover.unlink()
        raise
    return [(tmp_data, out.parent / data_name), (tmp, out)]
