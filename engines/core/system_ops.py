"""Jobs about the machine itself (throughput check)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from engines.core.hooks import Hooks
from engines.core.ops import operation
from engines.core.params import DEVICE_PATTERN, param
from engines.core.settings import Workspace


@dataclass
class BenchmarkParams:
    seconds: float = param(5.0, help="How long to measure", min=1, max=3600)
    size: int = param(1024, help="Matrix size", min=64, max=8192)
    device: str = param("auto", help="auto, cpu, cuda or cuda:N", pattern=DEVICE_PATTERN)


@operation("system.benchmark", params=BenchmarkParams, kind="training", title="Machine throughput check")
def benchmark(params: BenchmarkParams, hooks: Hooks, ws: Workspace) -> dict:
    """Run ``engines.core.machine_check`` in a subprocess and report GFLOP/s."""
    result: dict = {}

    def on_line(line: str) -> None:
        if line.startswith("PROGRESS "):
            _, frac, msg = line.split(" ", 2)
            hooks.progress(float(frac), msg)
        elif line.startswith("RESULT "):
            result.update(json.loads(line[7:]))

    hooks.run(
        [sys.executable, "-m", "engines.core.machine_check", "--seconds", str(params.seconds),
         "--size", str(params.size), "--device", params.device],
        on_line=on_line,
    )
    result["summary"] = f"{result.get('gflops_median', 0):.1f} GFLOP/s (median) on {result.get('device', '?')}"
    return result
