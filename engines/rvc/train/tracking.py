"""Tracking around an RVC training: machine samples, TensorBoard system scalars, optional MLflow run.

:class:`TrainingTracker` wraps stage 4 in the launcher process (the job's
worker, which is also rank 0 for one-process training, or torchrun's parent):
a :class:`SystemSampler` appends ``kind: "system"`` records to the
experiment's ``metrics.jsonl`` and scalars to ``tensorboard/system``. When the
``mlflow`` package imports (and settings ``mlflow`` is on), one MLflow run per
training records the parameters, the step/epoch metrics (read from the
metrics file as the ranks write it, so the ranks need no MLflow of their own),
the system samples, and the small models as artifacts; the tracking URI is
settings ``mlflow_uri`` or ``<workspace>/mlruns``. Nothing here is required:
any failure of a tracker is logged once and training goes on.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Callable

from engines.core.sysmon import SystemSampler, flat_metrics, jsonl_sink

LOSS_KINDS = ("step", "epoch")


def mlflow_available() -> bool:
    try:
        import mlflow  # noqa: F401
    except Exception:  # noqa: BLE001 - not installed, or broken: no MLflow
        return False
    return True


def tracking_uri(ws: Any) -> str:
    """The configured tracking URI, or the workspace's local ``mlruns/`` folder."""
    uri = (ws.settings.mlflow_uri or "").strip() or (Path(ws.root) / "mlruns").resolve().as_uri()
    if uri.startswith("file:") or "://" not in uri:
        # MLflow 3 wants a database for new stores unless told that a local folder is what the user wants
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri


def _flat_params(values: dict[str, Any]) -> dict[str, str]:
    return {k: (json.dumps(v) if isinstance(v, (list, dict)) else str(v))[:500] for k, v in values.items()}


class MlflowRun:
    """One MLflow run: params at the start, metrics as they come, small models at the end."""

    def __init__(self, ws: Any, exp_name: str, params: dict[str, Any], metrics_file: Path) -> None:
        import mlflow

        self.mlflow = mlflow
        self.client = mlflow.MlflowClient(tracking_uri=tracking_uri(ws))
        name = f"voicelab/rvc/{exp_name}"
        found = self.client.get_experiment_by_name(name)
        exp_id = found.experiment_id if found else self.client.create_experiment(name)
        self.run_id = self.client.create_run(exp_id, tags={"mlflow.runName": exp_name, "voicelab.engine": "rvc",
                                                           "voicelab.experiment": exp_name}).info.run_id
        self.client.log_batch(self.run_id, params=[mlflow.entities.Param(k, v)
                                                   for k, v in _flat_params(params).items()])
        self.metrics_file = metrics_file
        self.offset = metrics_file.stat().st_size if metrics_file.is_file() else 0
        self.samples = 0
        self.lock = threading.Lock()

    def _log(self, values: dict[str, float], step: int, when: float) -> None:
        from mlflow.entities import Metric

        stamp = int(when * 1000)
        metrics = [Metric(k, float(v), stamp, step) for k, v in values.items() if v == v and abs(v) != float("inf")]
        for i in range(0, len(metrics), 900):  # MLflow's batch limit is 1000 metrics
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 900])

    def follow(self) -> None:
        """Log the step/epoch records the ranks appended since the last call."""
        if not self.metrics_file.is_file():
            return
        with open(self.metrics_file, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1  # only whole lines; a line being written waits for the next call
        self.offset += end
        for line in data[:end].splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if rec.get("kind") not in LOSS_KINDS:
                continue
            prefix = "" if rec["kind"] == "step" else "epoch/"
            values = {f"{prefix}{k}": v for k, v in rec.items()
                      if k not in ("kind", "epoch", "step", "time") and isinstance(v, (int, float))}
            self._log(values, int(rec.get("step", 0)), float(rec.get("time", 0)))

    def system(self, rec: dict[str, Any]) -> None:
        with self.lock:
            self._log(flat_metrics(rec), self.samples, float(rec["time"]))
            self.samples += 1
            self.follow()

    def finish(self, artifacts: list[Path], status: str) -> None:
        with self.lock:
            self.follow()
            for path in artifacts:
                if path.is_file():
                    self.client.log_artifact(self.run_id, str(path), artifact_path="models")
            self.client.set_terminated(self.run_id, status=status)


class TrainingTracker:
    """Context manager around a training: ``with TrainingTracker(...) as tr: ...; tr.artifacts = [...]``."""

    def __init__(self, ws: Any, paths: Any, exp_name: str, params: dict[str, Any], node_rank: int = 0,
                 log: Callable[[str], None] = print) -> None:
        self.ws, self.paths, self.exp_name, self.params = ws, paths, exp_name, params
        self.node_rank, self.log = node_rank, log
        self.sampler: SystemSampler | None = None
        self.tb: Any = None
        self.run: MlflowRun | None = None
        self.artifacts: list[Path] = []

    def __enter__(self) -> "TrainingTracker":
        interval = float(self.ws.settings.system_sample_seconds or 0)
        sinks: list[Callable[[dict[str, Any]], None]] = [jsonl_sink(self.paths.metrics)]
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(Path(self.paths.tensorboard) / "system"))
            sinks.append(self._to_tensorboard)
        except Exception:  # noqa: BLE001 - TensorBoard is optional
            self.tb = None
        if self.node_rank == 0 and self.ws.settings.mlflow and mlflow_available():
            try:
                self.run = MlflowRun(self.ws, self.exp_name, self.params, Path(self.paths.metrics))
                sinks.append(self.run.system)
                self.log(f"MLflow: run {self.run.run_id} in {tracking_uri(self.ws)}")
            except Exception as exc:  # noqa: BLE001 - a bad URI or an unreachable server: train without it
                self.log(f"MLflow logging is off for this run: {type(exc).__name__}: {exc}")
                self.run = None
        if interval > 0:
            self.sampler = SystemSampler(sinks, interval, extra={"node": self.node_rank}).start()
        return self

    def _to_tensorboard(self, rec: dict[str, Any]) -> None:
        count = self.sampler.samples if self.sampler else 0
        for tag, value in flat_metrics(rec).items():
            self.tb.add_scalar(tag, value, count, walltime=rec["time"])
        self.tb.flush()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        from engines.core.errors import Cancelled

        if self.sampler is not None:
            self.sampler.stop()
        if self.tb is not None:
            self.tb.close()
        if self.run is not None:
            status = "FINISHED" if exc_type is None else "KILLED" if exc_type is Cancelled else "FAILED"
            try:
                self.run.finish(self.artifacts, status)
            except Exception as err:  # noqa: BLE001
                self.log(f"MLflow: could not finish run {self.run.run_id}: {err}")
