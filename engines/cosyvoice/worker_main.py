"""The CosyVoice synthesis worker: a process of ours that holds one upstream ``AutoModel``.

Started by ``engines.cosyvoice.worker`` as
``python -m engines.cosyvoice.worker_main <model_dir>`` with the upstream
environment (checkout, Matcha-TTS, our torchaudio stand-in where needed).
It loads the model once, then answers requests until its stdin closes:

* stdin: one JSON object per line: ``{"cmd": "synth", "id", "calls": [[label,
  method, kwargs], ...], "out", "seed", "checkpoint"}``, ``{"cmd": "cancel",
  "id"}`` or ``{"cmd": "quit"}``;
* fd 1 (kept for the protocol; upstream's own prints go to stderr):
  ``{"event": "ready" | "progress" | "done" | "cancelled" | "error", ...}``;
* stderr: upstream's log, streamed into the job log by the client.

An upstream exception becomes an ``error`` event naming the stage and the
likely cause; its traceback goes to stderr (the log) only.
"""

from __future__ import annotations

import json
import os
import queue
import random
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

# (text that identifies an upstream failure, what it usually means)
KNOWN_CAUSES: tuple[tuple[str, str], ...] = (
    ("<|endofprompt|>", "CosyVoice3 needs '<|endofprompt|>' in the instruction or prompt text; "
                        "VoiceLab adds it, so check a custom instruction that contains it half-typed."),
    ("longer than 30s", "The prompt audio is longer than 30 s; upstream's speech tokenizer cannot take it: "
                        "use a shorter clip (3-10 s works best)."),
    ("out of memory", "The GPU is out of memory: stop other CosyVoice workers or training, or run on the CPU."),
    ("size mismatch", "The weights do not fit this model's yaml: use a checkpoint trained from this base model."),
    ("Missing key(s)", "The weights do not fit this model's yaml: use a checkpoint trained from this base model."),
    ("Unexpected key(s)", "The weights do not fit this model's yaml: use a checkpoint trained from this base model."),
    ("No such file", "A file of the model dir is missing: check it with `voicelab cosyvoice doctor --model-dir ...`."),
    ("No module named", "A Python package upstream needs is missing: run `bash scripts/setup.sh studio` again "
                        "(`voicelab cosyvoice doctor` lists what is missing)."),
    ("CUDA", "CUDA failed: check the driver and the torch build, or run on the CPU (--device cpu)."),
)


def describe_failure(stage: str, exc: BaseException) -> dict[str, str]:
    """A short message and a hint for an upstream exception (never the traceback)."""
    text = f"{type(exc).__name__}: {exc}".strip()
    first = text.splitlines()[0][:400] if text else type(exc).__name__
    hint = next((why for needle, why in KNOWN_CAUSES if needle in text), "")
    if isinstance(exc, KeyError) and stage == "synthesising":
        hint = hint or "The speaker id is not in this model's spk2info.pt: pick one of the listed speakers."
    return {"stage": stage, "message": first,
            "hint": hint or "The job log holds upstream's full traceback."}


class _Channel:
    """The protocol channel: JSON lines on the original stdout, one writer at a time."""

    def __init__(self) -> None:
        self._out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
        os.dup2(2, 1)  # from here on, anything printed to fd 1 goes to the log
        self._lock = threading.Lock()

    def send(self, **event: Any) -> None:
        with self._lock:
            self._out.write(json.dumps(event) + "\n")
            self._out.flush()


def set_seed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


class Worker:
    """The loaded model, the weights currently hot-loaded into it, and the request loop."""

    def __init__(self, model_dir: Path, channel: _Channel) -> None:
        self.model_dir = model_dir
        self.channel = channel
        self.model: Any = None
        self.overrides: dict[str, str | None] = {"llm": None, "flow": None}
        self.cancel = threading.Event()
        self.current: str | None = None

    def load(self) -> None:
        from engines.cosyvoice.train_launcher import install_onnx_cpu_fallback

        install_onnx_cpu_fallback()
        from cosyvoice.cli.cosyvoice import AutoModel  # type: ignore[import-not-found]

        started = time.time()
        self.model = AutoModel(model_dir=str(self.model_dir))
        spk2info = getattr(getattr(self.model, "frontend", None), "spk2info", {}) or {}
        self.channel.send(event="ready", pid=os.getpid(), sample_rate=int(getattr(self.model, "sample_rate", 24000)),
                          speakers=[str(s) for s in spk2info], seconds=round(time.time() - started, 2))

    def apply_checkpoint(self, checkpoint: str | None) -> None:
        """Hot-load a training checkpoint into the llm or the flow (picked by its keys); None restores the dir's."""
        from engines.cosyvoice.average import load_checkpoint_state

        if not checkpoint and not any(self.overrides.values()):
            return
        inner = self.model.model
        if not checkpoint:
            for name, current in self.overrides.items():
                if current is not None:
                    getattr(inner, name).load_state_dict(load_checkpoint_state(self.model_dir / f"{name}.pt"))
                    self.overrides[name] = None
                    print(f"[voicelab] restored {name}.pt of {self.model_dir.name}", file=sys.stderr, flush=True)
            return
        state = load_checkpoint_state(checkpoint)
        for name in ("llm", "flow"):
            module = getattr(inner, name, None)
            if module is not None and set(module.state_dict()) == set(state):
                if self.overrides[name] != checkpoint:
                    module.load_state_dict(state, strict=True)
                    self.overrides[name] = checkpoint
                    print(f"[voicelab] hot-loaded {Path(checkpoint).name} into the {name}", file=sys.stderr, flush=True)
                return
        raise ValueError(f"{Path(checkpoint).name} matches neither the llm nor the flow of {self.model_dir.name} "
                         "(size mismatch): use a checkpoint trained from this base model.")

    def synthesize(self, req: dict) -> None:
        import numpy as np
        import soundfile as sf
        import torch

        from engines.core.atomic import atomic_path

        rid = req["id"]
        stage = "loading the checkpoint"
        try:
            self.apply_checkpoint(req.get("checkpoint"))
            stage = "synthesising"
            set_seed(int(req.get("seed", 0)))
            calls = req["calls"]
            chunks: list[np.ndarray] = []
            for i, (label, method, kwargs) in enumerate(calls):
                if self.cancel.is_set():
                    self.channel.send(event="cancelled", id=rid)
                    return
                self.channel.send(event="progress", id=rid, fraction=i / len(calls),
                                  message=f"Sentence {i + 1}/{len(calls)}: {label[:60]}")
                fn: Callable = getattr(self.model, method)
                with torch.inference_mode():
                    for out in fn(**kwargs):
                        chunks.append(out["tts_speech"].detach().float().cpu().reshape(-1).numpy())
                        if self.cancel.is_set():
                            self.channel.send(event="cancelled", id=rid)
                            return
            if not chunks:
                raise RuntimeError("CosyVoice produced no audio")
            stage = "writing the output"
            audio = np.concatenate(chunks).astype(np.float32)
            rate = int(getattr(self.model, "sample_rate", 24000))
            target = Path(req["out"])
            with atomic_path(target, suffix=".wav") as tmp:
                sf.write(str(tmp), audio, rate, subtype="PCM_16", format="WAV")
            self.channel.send(event="done", id=rid, path=str(target), seconds=len(audio) / rate,
                              sample_rate=rate, peak=float(np.abs(audio).max()) if audio.size else 0.0)
        except Exception as exc:  # noqa: BLE001 - every upstream failure is reported, the worker keeps serving
            traceback.print_exc(file=sys.stderr)
            self.channel.send(event="error", id=rid, **describe_failure(stage, exc))

    def serve(self) -> None:
        requests: queue.Queue[dict | None] = queue.Queue()

        def read_stdin() -> None:
            for line in sys.stdin:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if msg.get("cmd") == "cancel":
                    if msg.get("id") == self.current:
                        self.cancel.set()
                elif msg.get("cmd") == "quit":
                    break
                else:
                    requests.put(msg)
            requests.put(None)

        threading.Thread(target=read_stdin, daemon=True, name="voicelab-worker-stdin").start()
        while True:
            req = requests.get()
            if req is None:
                return
            self.cancel.clear()
            self.current = req.get("id")
            self.synthesize(req)
            self.current = None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    channel = _Channel()
    worker = Worker(Path(argv[0]), channel)
    try:
        worker.load()
    except Exception as exc:  # noqa: BLE001
        traceback.print_exc(file=sys.stderr)
        channel.send(event="error", id=None, **describe_failure("loading the model", exc))
        return 3
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
