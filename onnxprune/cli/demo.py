"""`make demo`: profile a zoo model, shrink it the paper's way, compare it with the original side by side,
check the result against a budget."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console

from onnxprune.cli import main as cli

console = Console()


def step(title: str, argv: list[str]) -> int:
    console.rule(f"[bold]{title}")
    console.print(f"$ onnxprune {' '.join(argv)}", style="cyan")
    return cli(argv)


def run(zoo: Path) -> int:
    model = zoo / "vgg16_cifar.legacy.kept.onnx"
    out_dir = zoo.parent / "demo"
    out_dir.mkdir(parents=True, exist_ok=True)
    pruned = out_dir / "vgg16_cifar.PA-0.2.onnx"
    rc = step(
        "1. What does VGG-16 (CIFAR-10, BatchNorm kept) cost, layer by layer? (top 8 by FLOPs)",
        ["profile", str(model), "--sort", "flops", "--top", "8"],
    )
    rc = rc or step("2. Which output channels can be removed together?", ["groups", str(model)])
    rc = rc or step(
        "3. Shrink to 20% of its parameters: draw layers by parameter share, drop 10% of a "
        "drawn layer's channels at random, repeat (Zawish et al., PA mode)",
        [
            "shrink",
            str(model),
            "--mode",
            "PA",
            "--target",
            "0.2",
            "--seed",
            "0",
            "-o",
            str(pruned),
            "--report",
            str(out_dir / "report.json"),
        ],
    )
    rc = rc or step(
        "4. What did the shrink change? Both models side by side, layers matched by node name "
        "(before → after, and the ratio)",
        ["profile", str(model), str(pruned)],
    )
    rc = rc or step(
        "5. A CI gate: is the pruned model within 3.5M params? (exit 0 yes, 1 no)",
        ["check", str(pruned), "--max-params", "3.5M"],
    )
    if rc == 0:
        console.rule("[bold green]done")
        console.print(
            f"The pruned model is {pruned}; train it from scratch with\n"
            f"  .venv/bin/onnxprune train {pruned} --data cifar10 --recipe cpu -o {out_dir}/trained.onnx"
        )
    return rc


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1] if len(sys.argv) > 1 else "build/zoo")))
