"""`bench --json` names the machine: arch, CPU, cores, vector extensions, onnxruntime version,
threads, and whether the CPU is emulated, so ARM and x86 figures are never mixed."""

from __future__ import annotations

import json
import platform

import onnxruntime

from onnxprune.cli import main
from onnxprune.measure import machine as machine_module
from tests import tiny_models

X86_CPUINFO = {
    "processor": "0",
    "vendor_id": "AuthenticAMD",
    "model name": "AMD EPYC 9B14",
    "flags": "fpu sse sse2 avx avx2 fma avx512f",
}
ARM_CPUINFO = {"processor": "0", "Features": "fp asimd evtstrm crc32 asimddp", "CPU implementer": "0x41"}


def test_bench_json_names_the_machine_and_threads(tmp_path, capsys):
    model = tiny_models.conv_model(tmp_path / "m.onnx")
    code = main(["bench", str(model), "--runs", "2", "--warmup", "0", "--threads", "2", "--in-process", "--json"])
    assert code == 0
    machine = json.loads(capsys.readouterr().out)["machine"]
    assert machine["arch"] == platform.machine()
    assert machine["threads"] == 2
    assert machine["onnxruntime"] == onnxruntime.__version__
    assert machine["cores"] >= 1 and machine["cpu"]
    assert machine["emulated"] is False


def test_machine_info_reads_isa_of_the_cpu(monkeypatch):
    monkeypatch.setattr(machine_module, "_cpuinfo", lambda: dict(X86_CPUINFO))
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    info = machine_module.machine_info()
    assert info["cpu"] == "AMD EPYC 9B14" and info["emulated"] is False
    assert info["isa"] == ["avx2", "avx512f", "fma"]


def test_machine_info_on_a_real_arm_board(monkeypatch):
    monkeypatch.setattr(machine_module, "_cpuinfo", lambda: dict(ARM_CPUINFO))
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    info = machine_module.machine_info()
    assert info["emulated"] is False and info["isa"] == ["asimd", "asimddp"]


def test_machine_info_flags_qemu_emulation(monkeypatch):
    # qemu-user shows the host's /proc/cpuinfo to the emulated aarch64 Python
    monkeypatch.setattr(machine_module, "_cpuinfo", lambda: dict(X86_CPUINFO))
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    info = machine_module.machine_info()
    assert info["emulated"] is True
    assert info["cpu"] == "emulated (qemu-user) on AMD EPYC 9B14" and info["isa"] == []
