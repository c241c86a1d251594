"""Lanes: which queued job may start now, and on which worker.

Every operation names its lane (``kind`` in ``@operation``):

- ``training``: long GPU jobs (training, preprocessing/extraction, ASR, the machine check). One job at a
  time per device set: a job training on GPUs 0-1 waits for another on GPU 1, not for one on GPU 2.
- ``listening``: short jobs a user waits for (conversion, A/B renders, previews, synthesis). They never
  wait behind training: one at a time per device, on a warm worker that keeps the last models loaded.
- ``cpu``: imports, statistics, index builds, model-file tools; a small pool of workers.

The rules here are pure functions over job records so they can be tested without processes; the
runner (``engines.core.jobs``) applies them on every tick of its scheduler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

LANES = ("training", "listening", "cpu")
ALL_DEVICES = "*"  # a job that may use every device of the machine (the default device choice)


@dataclass(frozen=True)
class LanePolicy:
    """How a lane's worker processes live: reused for the next job, and for how long when idle."""

    name: str
    reuse: bool
    idle_seconds: float


def lane_policies(settings: Any) -> dict[str, LanePolicy]:
    return {
        # A fresh process per training job: everything it loaded is freed when it ends.
        "training": LanePolicy("training", reuse=False, idle_seconds=0.0),
        # The warm listening worker keeps the last voice, HuBERT and index loaded between requests.
        "listening": LanePolicy("listening", reuse=True, idle_seconds=float(settings.listen_idle_seconds)),
        "cpu": LanePolicy("cpu", reuse=True, idle_seconds=60.0),
    }


def _device_name(value: str) -> str:
    value = (value or "auto").strip().lower()
    return "cuda:0" if value == "cuda" else value


def training_claim(params: dict[str, Any], settings: Any) -> frozenset[str]:
    """The devices a training-lane job holds while it runs.

    Explicit GPU ids (``gpus`` "0-1") claim those GPUs; a CPU run claims the CPU; otherwise the job may
    use any device, so it claims all of them.
    """
    gpus = str(params.get("gpus") or "").replace(",", "-").replace(" ", "-")
    ids = [g for g in gpus.split("-") if g.strip().isdigit()]
    if ids:
        return frozenset(f"cuda:{int(g)}" for g in ids)
    device = _device_name(str(params.get("device") or "auto"))
    if device == "auto":
        device = _device_name(settings.device)
    if device == "cpu" or device.startswith("cuda:"):
        return frozenset({device})
    return frozenset({ALL_DEVICES})


def listening_slot(settings: Any) -> str:
    """The device a listening job prefers (one job at a time per slot); the worker may still fall back
    to the CPU when that GPU lacks free memory (see ``engines.core.device.listening_device``)."""
    return _device_name(settings.device)


def conflicts(a: Iterable[str], b: Iterable[str]) -> bool:
    a, b = set(a), set(b)
    return bool(a and b) and (ALL_DEVICES in a or ALL_DEVICES in b or bool(a & b))


@dataclass(frozen=True)
class Start:
    """A decision: start ``job_id`` in ``lane``; ``slot`` names the device (claim) it runs under."""

    job_id: str
    lane: str
    slot: str


def plan_starts(queued: Sequence[Any], running: Sequence[Any], settings: Any, cpu_slots: int,
                finishing: Iterable[str] = ()) -> list[Start]:
    """The queued jobs (oldest first) that may start now, given the running ones.

    ``queued``/``running`` are job records (``id``, ``kind``, ``params``, ``device``, ``parent``). A
    training job never overtakes an older queued one that wants an overlapping device set, so none
    starves. In the listening lane a job somebody waits for (a conversion, an A/B render) goes before
    the previews a training queued at its saves (jobs with a ``parent``). ``finishing``: listening slots
    whose warm worker is still handing back a job that just ended (the next job waits for it).
    """
    queued = sorted(queued, key=lambda r: r.kind == "listening" and bool(getattr(r, "parent", "")))
    starts: list[Start] = []
    busy_training = [training_claim(r.params, settings) for r in running if r.kind == "training"]
    busy_listening = {r.device for r in running if r.kind == "listening"} | set(finishing)
    n_cpu = sum(1 for r in running if r.kind == "cpu")
    blocked: list[frozenset[str]] = []
    for rec in queued:
        if rec.kind == "training":
            claim = training_claim(rec.params, settings)
            if any(conflicts(claim, other) for other in busy_training + blocked):
                blocked.append(claim)
                continue
            busy_training.append(claim)
            starts.append(Start(rec.id, "training", ",".join(sorted(claim))))
        elif rec.kind == "listening":
            slot = listening_slot(settings)
            if slot in busy_listening:
                continue
            busy_listening.add(slot)
            starts.append(Start(rec.id, "listening", slot))
        elif rec.kind == "cpu":
            if n_cpu >= cpu_slots:
                continue
            n_cpu += 1
            starts.append(Start(rec.id, "cpu", "cpu"))
    return starts
