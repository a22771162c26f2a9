"""Load ONNX models with one clear error per failure, and save them atomically.

onnx and numpy are imported where they are used: the CLI imports this module to check output
paths before any work, and `--help` must not pay for them.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Union

from onnxprune.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import onnx

ModelLike = Union[str, os.PathLike, "onnx.ModelProto"]

# Every file an invocation wrote, in order (the CLI clears it per run: an internal error removes them).
WRITTEN: list[Path] = []

# protobuf cannot serialise a single message over 2 GiB: larger models keep weights outside.
PROTOBUF_LIMIT = 2**31 - 1
EXTERNAL_DATA_THRESHOLD = 1024  # bytes; tensors above this go to the side file of a big model


def _external_locations(model: onnx.ModelProto) -> list[tuple[str, str]]:
    """(tensor name, location) for every tensor whose bytes live in an external file."""
    import onnx

    found = []
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            info = {entry.key: entry.value for entry in tensor.external_data}
            found.append((tensor.name, info.get("location", "")))
    return found


def _confine_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Refuse external data outside the model's folder (path traversal) or missing files.
    (A lazy load's own references point at the model file itself, by its absolute path.)"""
    base = path.parent.resolve()
    itself = str(path.resolve())
    for tensor_name, location in _external_locations(model):
        if location == itself:
            continue
        target = (base / location).resolve()
        if os.path.isabs(location) or not target.is_relative_to(base):
            raise UserError(
                f"{path}: tensor {tensor_name!r} points its external data at {location!r}, outside the "
                f"model's folder; refusing (move the data file next to the model)"
            )
        if not target.is_file():
            raise UserError(
                f"{path}: external data file {location!r} for tensor {tensor_name!r} is missing; "
                f"put it next to the model"
            )


def load_model(source: ModelLike, *, check: bool = True, lazy: bool = False) -> onnx.ModelProto:
    """Load a model from a path (or pass a ModelProto through), raising UserError on bad input.

    `lazy`: large weights stay in the file (lazy_weights), read when something needs their
    values; the analysis needs only their shapes. Such a model must be materialized
    (`lazy_weights.materialize`) before onnxruntime or a user sees it; `save_model` streams them.
    """
    import onnx

    if isinstance(source, onnx.ModelProto):
        return source
    path = Path(source)
    if not path.exists():
        raise UserError(f"{path}: no such file; give the path of an .onnx model")
    if path.is_dir():
        raise UserError(f"{path}: is a directory; give the path of an .onnx model file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the file is empty; give the path of an .onnx model")
    model = _parse(path, lazy)
    if not model.graph.node and not model.graph.output:
        raise UserError(f"{path}: not an ONNX model (no graph); is the file truncated or of another format?")
    _require_utf8_names(model, path)
    _confine_external_data(model, path)
    try:
        _load_external_data(model, path, lazy)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read its external data ({exc}); is the data file complete?") from None
    if check:
        check_model(model, where=str(path))
    return model


def _parse(path: Path, lazy: bool) -> onnx.ModelProto:
    import onnx
    from google.protobuf.message import DecodeError

    from onnxprune.read import lazy_weights

    try:
        if lazy:
            try:
                return lazy_weights.scan(path)
            except (lazy_weights.NotScannable, ValueError, OSError):
                pass  # not a well-formed message: the ordinary parse below says what is wrong
        return onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeWarning, ValueError, TypeError, UnicodeDecodeError, OSError) as exc:
        raise UserError(
            f"{path}: not a readable ONNX model ({type(exc).__name__}); is the file truncated or of another format?"
        ) from None
    except Exception as exc:  # protobuf raises a variety of internal errors on junk
        raise UserError(
            f"{path}: not a readable ONNX model ({type(exc).__name__}); is the file truncated or of another format?"
        ) from None


def _load_external_data(model: onnx.ModelProto, path: Path, lazy: bool) -> None:
    """Weights in side files: read (eager), or left there with an absolute location (lazy; only
    the main graph's initializers: tensors in subgraphs and attributes are always read)."""
    import onnx

    from onnxprune.read import lazy_weights

    if not lazy:
        onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
        return
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL or lazy_weights.is_lazy(tensor):
            continue
        lazy_weights.make_absolute(tensor, path.parent)
        location, offset, length = lazy_weights.source(tensor)
        if offset + length > os.path.getsize(location):
            raise OSError(f"{Path(location).name} ends before the {length} bytes of {tensor.name!r} at offset {offset}")
        if length < lazy_weights.LAZY_MIN_BYTES:  # small ones in memory, as from the model file itself
            lazy_weights.materialize_tensor(tensor)
    for tensor in onnx.external_data_helper._get_all_tensors(model):  # subgraphs and attributes
        if tensor.data_location == onnx.TensorProto.EXTERNAL and not lazy_weights.is_lazy(tensor):
            onnx.external_data_helper.load_external_data_for_tensor(tensor, str(path.parent))
            tensor.data_location = onnx.TensorProto.DEFAULT
            del tensor.external_data[:]


def _require_utf8_names(model: onnx.ModelProto, path: Path) -> None:
    """protobuf reads proto2 strings unchecked: a corrupted name comes back as bytes and fails
    where it is used. Check every name of the main graph once, here, so
    it is one clear error instead of a traceback later."""
    graph = model.graph
    try:
        names = [o.domain for o in model.opset_import]
        for node in graph.node:
            names += [
                node.name,
                node.op_type,
                node.domain,
                *node.input,
                *node.output,
                *(a.name for a in node.attribute),
            ]
        for value in (*graph.input, *graph.output, *graph.value_info):
            names += [value.name, *(d.dim_param for d in value.type.tensor_type.shape.dim)]
        names += [init.name for init in graph.initializer]
        for name in names:
            if not isinstance(name, str):  # protobuf hands undecodable strings back as bytes
                raise UnicodeError(name)
            name.encode("utf-8")
    except UnicodeError:
        raise UserError(f"{path}: a name in the graph is not valid UTF-8; is the file corrupted?") from None


def check_model(model: onnx.ModelProto, *, where: str = "model", full: bool = False) -> None:
    """onnx.checker on the weightless skeleton (fast on big models), plus a payload size check.

    Type and shape inference always runs strictly (as `full_check`): the plain checker lets
    through graphs no runtime accepts (an int8 weight on a float Conv, a declared output or
    value_info shape the graph cannot produce), which later stages would trip over with an
    internal error instead of a clear message naming the file. `full` is kept for callers.
    """
    import onnx

    from onnxprune.read.initializer_inputs import mismatched_initializer_inputs
    from onnxprune.read.shapes import skeleton

    _check_initializer_sizes(model, where)
    mismatched = mismatched_initializer_inputs(model)
    if mismatched:
        raise UserError(f"{where}: {mismatched[0]}; fix or re-export the model")
    light = skeleton(model, keep_output_shapes=True)
    light.graph.value_info.extend(model.graph.value_info)
    try:
        onnx.checker.check_model(light, full_check=True)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid graph"
        raise UserError(f"{where}: fails the ONNX checker: {first}") from None
    except onnx.shape_inference.InferenceError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"{where}: fails ONNX type/shape inference: {first}; fix or re-export the model") from None
    except UnicodeDecodeError:  # the checker's message quotes a name that is not UTF-8
        raise UserError(
            f"{where}: fails the ONNX checker: a name or string in the graph is not valid UTF-8; is the file corrupted?"
        ) from None


def _check_initializer_sizes(model: onnx.ModelProto, where: str) -> None:
    """Raw weight bytes must match their declared shape (the skeleton check cannot see them);
    weights left in the file (lazy) are checked by their recorded length, without reading them."""
    import onnx

    from onnxprune.read import lazy_weights

    for init in model.graph.initializer:
        lazy = lazy_weights.is_lazy(init)
        if not lazy and not init.HasField("raw_data"):
            continue
        expected = lazy_weights.expected_bytes(init)
        if expected is None:
            raise UserError(f"{where}: initializer {init.name!r} has an unknown data type {init.data_type}")
        if init.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
            continue  # packed types: two values per byte
        held = lazy_weights.source(init)[2] if lazy else len(init.raw_data)
        if held != expected:
            raise UserError(
                f"{where}: initializer {init.name!r} holds {held} bytes but its shape "
                f"{list(init.dims)} needs {expected}; is the file truncated or corrupted?"
            )


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
