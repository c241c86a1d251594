"""The machine view during a training: CPU/RAM and, where present, GPU load, memory, temperature, power.

A :class:`SystemSampler` thread takes a sample every few seconds and hands it
to its sinks (the experiment's metrics file as ``kind: "system"`` records, so
the loss readers, which select "step"/"epoch", are untouched; TensorBoard;
MLflow). psutil is a core dependency; NVML (``nvidia-ml-py``) is used only
when it imports and finds a GPU, so no GPU and no NVML is never an error.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

SYSTEM_KIND = "system"
Sink = Callable[[dict[str, Any]], None]


class _Nvml:
    """NVML handles, or nothing (no package, no driver, no GPU)."""

    def __init__(self) -> None:
        self.lib: Any = None
        self.handles: list[Any] = []
        try:
            import pynvml  # the nvidia-ml-py package

            pynvml.nvmlInit()
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            self.lib = pynvml if self.handles else None
        except Exception:  # noqa: BLE001 - ImportError, NVMLError (no driver / no GPU): no GPU view
            self.lib, self.handles = None, []

    def sample(self) -> list[dict[str, Any]]:
        out = []
        for i, h in enumerate(self.handles):
            gpu: dict[str, Any] = {"index": i}
            for key, read in (("util_percent", lambda: self.lib.nvmlDeviceGetUtilizationRates(h).gpu),
                              ("mem_used_mb", lambda: self.lib.nvmlDeviceGetMemoryInfo(h).used / 2**20),
                              ("mem_total_mb", lambda: self.lib.nvmlDeviceGetMemoryInfo(h).total / 2**20),
                              ("temp_c", lambda: self.lib.nvmlDeviceGetTemperature(h, 0)),  # 0 = GPU sensor
                              ("power_w", lambda: self.lib.nvmlDeviceGetPowerUsage(h) / 1000.0)):
                try:
                    gpu[key] = round(float(read()), 1)
                except Exception:  # noqa: BLE001 - a reading this GPU does not support
                    pass
            out.append(gpu)
        return out

    def close(self) -> None:
        if self.lib is not None:
            try:
                self.lib.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass


def process_tree_rss(pid: int) -> float:
    """Resident memory (MB) of a process and its children (the training ranks under a launcher)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return round(total / 2**20, 1)


class SystemSampler:
    """Samples the machine every ``interval`` seconds in a daemon thread until :meth:`stop`."""

    def __init__(self, sinks: list[Sink], interval: float = 5.0, extra: dict[str, Any] | None = None) -> None:
        self.sinks = sinks
        self.interval = max(0.2, float(interval))
        self.extra = dict(extra or {})
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nvml: _Nvml | None = None
        self.samples = 0

    def sample(self) -> dict[str, Any]:
        import psutil

        vm = psutil.virtual_memory()
        rec: dict[str, Any] = {"kind": SYSTEM_KIND, "time": time.time(), "host": socket.gethostname(),
                               "cpu_percent": psutil.cpu_percent(interval=None),
                               "ram_used_mb": round((vm.total - vm.available) / 2**20, 1),
                               "ram_percent": vm.percent, "proc_rss_mb": process_tree_rss(os.getpid()),
                               **self.extra}
        if self._nvml is None:
            self._nvml = _Nvml()
        gpus = self._nvml.sample()
        if gpus:
            rec["gpus"] = gpus
        return rec

    def _emit(self) -> None:
        rec = self.sample()
        self.samples += 1
        for sink in self.sinks:
            try:
                sink(rec)
            except Exception:  # noqa: BLE001 - a failing sink (full disk, MLflow server gone) must not stop training
                pass

    def _loop(self) -> None:
        import psutil

        psutil.cpu_percent(interval=None)  # the first reading only starts the measurement
        while not self._stop.wait(self.interval):
            self._emit()

    def start(self) -> "SystemSampler":
        self._thread = threading.Thread(target=self._loop, name="voicelab-sysmon", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread, with one last sample so even a short run has one."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
            self._emit()
        if self._nvml is not None:
            self._nvml.close()

    def __enter__(self) -> "SystemSampler":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def jsonl_sink(path: str | os.PathLike) -> Sink:
    """Append each sample as one line; a single O_APPEND write, so lines of the training ranks never interleave."""
    target = Path(path)

    def write(rec: dict[str, Any]) -> None:
        data = (json.dumps(rec) + "\n").encode("utf-8")
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    return write


def flat_metrics(rec: dict[str, Any]) -> dict[str, float]:
    """A sample as flat scalar names (``system/cpu_percent``, ``system/gpu0/temp_c``) for TensorBoard/MLflow."""
    out = {f"system/{k}": float(v) for k, v in rec.items()
           if k not in ("kind", "time", "gpus", "node") and isinstance(v, (int, float)) and not isinstance(v, bool)}
    for gpu in rec.get("gpus", []):
        for k, v in gpu.items():
            if k != "index":
                out[f"system/gpu{gpu['index']}/{k}"] = float(v)
    return out
