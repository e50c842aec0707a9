"""Host facts for /debug/system."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import psutil


def _gpus() -> list[dict[str, str]]:
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return []
    try:
        out = subprocess.run(
            [nvidia_smi, "--query-gpu=name,memory.used,memory.total,utilization.gpu",
             "--format=csv,noheader"],
            capture_output=True, text=True, timeout=2, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    keys = ("name", "memory_used", "memory_total", "utilization")
    return [dict(zip(keys, (v.strip() for v in line.split(",")), strict=False))
            for line in out.splitlines() if line.strip()]


def system_info() -> dict[str, Any]:
    vm = psutil.virtual_memory()
    disk = psutil.disk_usage(os.getcwd())
    proc = psutil.Process()
    return {
        "cpu": {"count": psutil.cpu_count(), "percent": psutil.cpu_percent(interval=None),
                "load_avg": list(os.getloadavg())},
        "memory": {"total": vm.total, "available": vm.available, "percent": vm.percent},
        "disk": {"total": disk.total, "free": disk.free, "percent": disk.percent},
        "process": {"pid": proc.pid, "rss": proc.memory_info().rss,
                    "threads": proc.num_threads()},
        "gpus": _gpus(),
    }
