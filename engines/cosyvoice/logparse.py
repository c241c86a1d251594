"""Turn upstream ``train.py`` log lines into metric records.

The formats (see shared COSYVOICE.md) are fixed by upstream's
``log_per_step`` / ``log_per_save`` / executor; examples::

    ... DEBUG TRAIN Batch 0/2 loss 9.003472 acc 0.000000 lr 0.00010000 grad_norm 3.209061 rank 0
    ... DEBUG CV Batch 0/1 loss 8.703972 acc 0.000000  rank 0
    ... INFO Epoch 0 Step 4 CV info lr 0.0001 0 rank loss 8.751295725504557 acc 0.0
    ... INFO [Rank 0] Checkpoint: save to checkpoint /x/epoch_0_whole.pt

In ``Batch E/N`` E is the epoch and N is batch_idx + 1. TRAIN lines carry
no step: we count it from the epoch's first step and ``accum_grad`` (read
from upstream's "using accumulate grad" line when present). Only rank 0 is
recorded. Lines from torchrun may carry a ``[rank0]:`` prefix.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

_BATCH = re.compile(r"\b(?P<tag>TRAIN|CV) Batch (?P<epoch>\d+)/(?P<n>\d+) (?P<body>.*?)\s*rank (?P<rank>\d+)\s*$")
_CV_INFO = re.compile(r"\bEpoch (?P<epoch>\d+) Step (?P<step>\d+) CV info lr (?P<lr>\S+) (?P<rank>\d+) rank ?(?P<body>.*)$")
_EPOCH_START = re.compile(r"\bEpoch (?P<epoch>\d+) TRAIN info lr (?P<lr>\S+) rank (?P<rank>\d+)")
_CV_START = re.compile(r"\bEpoch (?P<epoch>\d+) Step (?P<step>\d+) on_batch_end (?P<end>\w+) CV rank (?P<rank>\d+)")
_START = re.compile(r"start step (?P<step>-?\d+) start epoch (?P<epoch>-?\d+)")
_ACCUM = re.compile(r"using accumulate grad, new batch size is (?P<n>\d+) times")
_SAVED = re.compile(r"\[Rank (?P<rank>\d+)\] Checkpoint: save to checkpoint (?P<path>\S+)")


def _pairs(body: str) -> dict[str, float]:
    """``name value name value ...`` -> dict of floats (non-numbers skipped)."""
    out: dict[str, float] = {}
    toks = body.split()
    for i in range(0, len(toks) - 1, 2):
        try:
            out[toks[i]] = float(toks[i + 1])
        except ValueError:
            continue
    return out


@dataclass
class LogParser:
    """Stateful parser for one ``train.py`` run (one model)."""

    model: str = "llm"
    accum_grad: int = 1
    max_epoch: int | None = None
    epoch_start_step: int = 0
    epoch: int = 0
    batches_per_epoch: int | None = None
    last_batch: int = 0
    checkpoints: list[str] = field(default_factory=list)

    def feed(self, line: str) -> list[dict[str, Any]]:
        """Events from one log line: metric records (``kind`` 'metric') or 'epoch'/'checkpoint'."""
        events: list[dict[str, Any]] = []
        m = _BATCH.search(line)
        if m:
            if int(m.group("rank")) != 0:
                return events
            epoch, n = int(m.group("epoch")), int(m.group("n"))
            values = _pairs(m.group("body"))
            split = "train" if m.group("tag") == "TRAIN" else "cv"
            if split == "train":
                self.epoch = epoch
                self.last_batch = n
                step = self.epoch_start_step + n // max(1, self.accum_grad)
                rec = self._record(split, epoch, step, n, values)
                rec["kind"] = "batch"
                events.append(rec)
            return events
        m = _CV_INFO.search(line)
        if m:
            if int(m.group("rank")) != 0:
                return events
            values = _pairs(m.group("body"))
            values.setdefault("lr", float(m.group("lr")))
            epoch, step = int(m.group("epoch")), int(m.group("step")) - 1
            rec = self._record("cv", epoch, step, None, values)
            rec["kind"] = "cv"
            events.append(rec)
            return events
        m = _CV_START.search(line)
        if m:
            if m.group("end") == "True":
                # end of an epoch: upstream prints step + 1 = steps done + 1
                self.epoch_start_step = int(m.group("step")) - 1
                self.batches_per_epoch = max(self.batches_per_epoch or 0, self.last_batch) or None
            return events
        m = _EPOCH_START.search(line)
        if m:
            if int(m.group("rank")) == 0:
                self.epoch = int(m.group("epoch"))
                self.last_batch = 0
                events.append({"kind": "epoch", "model": self.model, "epoch": self.epoch,
                               "lr": float(m.group("lr"))})
            return events
        m = _START.search(line)
        if m:
            self.epoch_start_step = max(0, int(m.group("step")))
            self.epoch = int(m.group("epoch")) + 1
            return events
        m = _ACCUM.search(line)
        if m:
            self.accum_grad = max(1, int(m.group("n")))
            return events
        m = _SAVED.search(line)
        if m and int(m.group("rank")) == 0:
            self.checkpoints.append(m.group("path"))
            events.append({"kind": "checkpoint", "model": self.model, "path": m.group("path")})
        return events

    def _record(self, split: str, epoch: int, step: int, batch: int | None, values: dict[str, float]) -> dict[str, Any]:
        rec: dict[str, Any] = {"model": self.model, "split": split, "epoch": epoch, "step": step, "batch": batch,
                               "loss": values.get("loss"), "acc": values.get("acc"), "lr": values.get("lr"),
                               "grad_norm": values.get("grad_norm"), "time": round(time.time(), 3)}
        extra = {k: v for k, v in values.items() if k not in ("loss", "acc", "lr", "grad_norm")}
        if extra:
            rec["extra"] = extra
        return rec

    def progress(self) -> float:
        """Fraction of this model's training done, from the epoch and batch seen so far."""
        if not self.max_epoch:
            return 0.0
        within = 0.0
        if self.batches_per_epoch:
            within = min(1.0, self.last_batch / self.batches_per_epoch)
        return max(0.0, min(1.0, (self.epoch + within) / self.max_epoch))


def metric_record(event: dict[str, Any]) -> dict[str, Any] | None:
    """The metrics.jsonl row for an event (None for non-metric events)."""
    if event.get("kind") not in ("batch", "cv"):
        return None
    return {k: v for k, v in event.items() if k != "kind"}
