"""The training progress display on stderr: a rich bar when stderr is a terminal, a plain status
line every 30 s otherwise (log files, CI), nothing when disabled."""

from __future__ import annotations

import time


class TrainingProgress:
    """A rich progress bar on stderr (loss, accuracy, images/s, ETA), or nothing.

    When stderr is not a terminal (a log file, CI), a plain status line every 30 s instead.
    """

    PLAIN_EVERY_S = 30.0

    def __init__(self, enabled: bool, console=None):
        self.enabled = enabled
        self.progress = None
        self.console = None
        self.plain: dict = {}
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.console = console or Console(stderr=True)
            if self.console.is_terminal:
                self.progress = Progress(
                    TextColumn("[bold]{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.fields[stats]}"),
                    TimeElapsedColumn(),
                    TextColumn("ETA"),
                    TimeRemainingColumn(),
                    console=self.console,
                    transient=False,
                )

    def __enter__(self):
        if self.progress:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.progress:
            self.progress.__exit__(*exc)

    def task(self, description: str, total: int):
        if self.progress is not None:
            return self.progress.add_task(description, total=total, stats="")
        if self.enabled:
            self.plain = {
                "description": description,
                "total": total,
                "done": 0,
                "start": time.perf_counter(),
                "last": time.perf_counter(),
            }
        return None

    def update(self, task, advance: int = 1, **stats):
        text = "  ".join(f"{k} {v}" for k, v in stats.items())
        if self.progress is not None and task is not None:
            self.progress.update(task, advance=advance, stats=text)
        elif self.enabled and self.plain:
            self.plain["done"] += advance
            now = time.perf_counter()
            if now - self.plain["last"] >= self.PLAIN_EVERY_S:
                self.plain["last"] = now
                done, total = self.plain["done"], self.plain["total"]
                eta = (now - self.plain["start"]) / max(done, 1) * (total - done)
                self.console.print(
                    f"{self.plain['description']}: {done}/{total} batches  {text}  ETA {eta:.0f} s", soft_wrap=True
                )

    def print(self, message: str):
        if self.console is not None:
            self.console.print(message, soft_wrap=True)
