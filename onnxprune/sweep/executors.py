"""Where a sweep's runs execute: one after another in this process, or as Ray tasks on a cluster.

An executor's `map(specs)` yields `(spec, row, error)` for every run spec as runs finish (any order):
`row` is the run's result (files in spec["run_dir"] on the driver), `error` a one-line message when
the run failed; one failed run never stops the others.

Ray runs each run as one plain task (`ray.remote(num_cpus=C, num_gpus=G)`), not a Tune trial: a sweep
is a fixed grid whose every point must finish (the paper's curves need all of them), so Tune's
search and early stopping have nothing to decide, and a task is all the scheduling a run needs. A task
works in a temporary folder on its node and returns its files' bytes, so the run folder need not be
on a shared filesystem. The driver writes them, then result.json, so a run killed anywhere leaves no
result.json and is redone on resume.

Workers find the data as a local run does (trainers/datapath.py, trainers/cache.py), in their own
environment: the one `ray start` ran with on their node (a private Ray inherits this process's). Each
worker process decodes the data set once and keeps it for its next runs; point $ONNXPRUNE_CACHE of every
node at one shared folder and the JPEG archive is decoded once for the whole cluster.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Optional

from onnxprune.errors import CheckFailed, UserError
from onnxprune.sweep.run import machine, run_one

__all__ = ["LocalExecutor", "RayExecutor", "RunsFailed", "make_executor", "EXECUTORS"]

EXECUTORS = ("local", "ray")


class RunsFailed(CheckFailed):
    """Some runs failed (exit 1); `rows` are the finished runs, `failed` (name, one-line error) pairs."""

    def __init__(self, rows: list[dict], failed: list[tuple[str, str]]):
        self.rows, self.failed = rows, failed
        shown = "; ".join(f"{name}: {error}" for name, error in failed)
        super().__init__(
            f"{len(failed)} run(s) failed, {len(rows)} finished: {shown}; re-run the same command to retry them"
        )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".rstrip(": ")


class LocalExecutor:
    name = "local"

    def __init__(self, console=None):
        self.console = console  # training's epoch lines (--train-progress)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def map(self, specs: list[dict]) -> Iterator[tuple[dict, Optional[dict], Optional[str]]]:
        for spec in specs:
            try:
                row = run_one(spec, console=self.console)
            except (Exception, SystemExit) as exc:  # noqa: BLE001  (reported; the other runs go on)
                yield spec, None, _one_line(exc)
                continue
            row["executor"] = self.name
            yield spec, row, None


def _ray_task(spec: dict) -> tuple[dict, dict[str, bytes]]:
    """Runs on a Ray worker: the run in a private temporary folder, its files returned as bytes."""
    work = Path(tempfile.mkdtemp(prefix="onnxprune-run-"))
    try:
        local = dict(spec, run_dir=str(work / spec["name"]))
        row = run_one(local)
        files = {p.name: p.read_bytes() for p in Path(local["run_dir"]).iterdir() if p.is_file()}
        row["machine"] = machine()
        return row, files
    finally:
        shutil.rmtree(work, ignore_errors=True)


class RayExecutor:
    """Each run is one Ray task with its CPUs/GPUs declared. Joins `address`, or starts a loopback-only
    local Ray (stopped at the end). An already initialised Ray (tests, notebooks) is used as it is."""

    name = "ray"

    def __init__(
        self,
        address: Optional[str] = None,
        cpus_per_run: float = 1,
        gpus_per_run: float = 0,
        num_cpus: Optional[int] = None,
    ):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install 'onnxprune[ray]'") from None
        if cpus_per_run is None or cpus_per_run <= 0:
            raise UserError(f"--cpus-per-run {cpus_per_run}: must be > 0")
        if gpus_per_run is None or gpus_per_run < 0:
            raise UserError(f"--gpus-per-run {gpus_per_run}: must be >= 0")
        self.address, self.cpus, self.gpus = address, cpus_per_run, gpus_per_run
        self.num_cpus = num_cpus  # of a Ray this executor starts (default: all cores)
        self._started = False
        self._restore = None

    def __enter__(self):
        import ray

        if ray.is_initialized():
            return self
        try:
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                self._restore = _loopback_only()
                ray.init(num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(
                f"--executor ray: cannot start or join Ray"
                f"{' at ' + self.address if self.address else ''}: {_one_line(exc)}"
            ) from None
        self._started = True
        return self

    def __exit__(self, *exc) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False
        if self._restore:
            self._restore()
            self._restore = None

    def map(self, specs: list[dict]) -> Iterator[tuple[dict, Optional[dict], Optional[str]]]:
        import ray

        task = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)(_ray_task)
        waiting = {task.remote(spec): spec for spec in specs}
        while waiting:
            ready, _ = ray.wait(list(waiting), num_returns=1)
            spec = waiting.pop(ready[0])
            try:
                row, files = ray.get(ready[0])
            except Exception as exc:  # noqa: BLE001  (RayTaskError wraps the run's own error)
                yield spec, None, _one_line(getattr(exc, "cause", None) or exc)
                continue
            run_dir = Path(spec["run_dir"])
            run_dir.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                _write_bytes(run_dir / name, data)
            row["executor"] = self.name
            yield spec, row, None


def _loopback_only():
    """A private single-node Ray binds 127.0.0.1 only, never the machine's external address. Ray reads
    this switch into a constant when first imported, and its processes read the variable: set both.
    Returns what puts both back (a later `ray start` of this process's children must not inherit it)."""
    import ray._private.ray_constants as ray_constants

    name = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR
    old_env, old_flag = os.environ.get(name), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[name] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False

    def restore() -> None:
        ray_constants.ENABLE_RAY_CLUSTER = old_flag
        if old_env is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old_env

    return restore


def _write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def make_executor(
    kind: str = "local", address: Optional[str] = None, cpus_per_run: float = 1, gpus_per_run: float = 0, console=None
):
    if kind == "local":
        if address:
            raise UserError("--address: only with --executor ray")
        return LocalExecutor(console=console)
    if kind == "ray":
        return RayExecutor(address=address, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run)
    raise UserError(f"--executor {kind!r}: choose local or ray")
