"""Where benchmark numbers come from: architecture, CPU, cores, vector extensions, onnxruntime, and
whether the CPU is emulated, so ARM, emulated-ARM and x86 figures are never mixed."""

from __future__ import annotations

import os
import platform
from typing import Any


def _cpuinfo() -> dict[str, str]:
    """The first processor's entries of /proc/cpuinfo ({} where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def machine_info() -> dict[str, Any]:
    """Where the numbers come from: architecture, CPU model name, cores, vector extensions,
    onnxruntime version, and whether the CPU is emulated (qemu-user shows the host's /proc/cpuinfo:
    an x86 CPU under an aarch64 Python), so ARM, emulated-ARM and x86 figures are never mixed."""
    fields = _cpuinfo()
    cpu = next((fields[k] for k in ("model name", "Model", "Hardware") if fields.get(k)), platform.processor() or "")
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    x86_cpuinfo = "sse2" in flags
    arch = platform.machine()
    emulated = arch.lower() in ("aarch64", "arm64", "armv7l") and x86_cpuinfo
    info = {
        "arch": arch,
        "cpu": f"emulated (qemu-user) on {cpu}" if emulated else cpu,
        "cores": os.cpu_count(),
        "isa": sorted(
            flags & {"avx2", "avx512f", "avx512_vnni", "avx512vnni", "fma", "asimd", "asimddp", "sve", "neon", "i8mm"}
        )
        if not emulated
        else [],
        "emulated": emulated,
        "system": platform.system(),
        "python": platform.python_version(),
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    return info
