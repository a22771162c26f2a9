"""Where a pruned model came from: file facts for the report, and `metadata_props` in the model.

A pruned model found later names the tool version, mode, target and seed that made it and the
sha256 of the file it was cut from (`onnxprune.*` keys; `onnx.load(p).metadata_props`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx

PREFIX = "onnxprune."


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_facts(path: str | Path) -> dict:
    """{"path", "bytes", "sha256"} of a file (the .onnx file itself, not its external data)."""
    path = Path(path)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": sha256_of(path)}


def file_facts_meanwhile(path: str | Path):
    """Start hashing a file on a daemon thread (hashlib lets go of the GIL: the hash of a 500 MB
    model costs no time while the analysis runs on the other core); call the result for the facts."""
    import threading

    found: dict = {}

    def work():
        try:
            found["facts"] = file_facts(path)
        except OSError as exc:  # read again, and raised, by the caller
            found["error"] = exc

    thread = threading.Thread(target=work, daemon=True)  # an error or Ctrl-C elsewhere need not wait for it
    thread.start()

    def result() -> dict:
        thread.join()
        return found["facts"] if "facts" in found else file_facts(path)

    return result


def stamp(model: onnx.ModelProto, record: dict) -> onnx.ModelProto:
    """Set `onnxprune.<key>` metadata_props from `record` (replacing an earlier run's)."""
    from onnxprune import __version__

    values = {f"{PREFIX}version": __version__, **{f"{PREFIX}{k}": str(v) for k, v in record.items() if v is not None}}
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    for key, value in kept + sorted(values.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model


def read_stamp(model: onnx.ModelProto) -> dict:
    """The `onnxprune.*` metadata of a model, without the prefix."""
    return {p.key[len(PREFIX) :]: p.value for p in model.metadata_props if p.key.startswith(PREFIX)}


def shrink_record(source_facts: dict, report: dict) -> dict:
    """What a shrunk model records about its making."""
    return {
        "mode": report["mode"],
        "target": report["target"],
        "seed": report["seed"],
        "init": report["init"],
        "source_sha256": source_facts["sha256"],
        "source": Path(source_facts["path"]).name,
    }
