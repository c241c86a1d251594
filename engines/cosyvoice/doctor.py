"""`voicelab cosyvoice doctor`: is everything CosyVoice needs in place?

It checks what it says by doing it: the upstream checkout (present, commit
vs. our pins, the Matcha-TTS submodule), then it starts a process with the
environment our launcher and synthesis worker give upstream and imports
there what upstream imports (``engines.cosyvoice.runtime_probe``:
``torchaudio`` or our stand-in, ``torch._dynamo``, ``matcha``,
``cosyvoice.cli.cosyvoice``, ``cosyvoice.flow.flow_matching``, ...). A
model dir is checked for every file the chosen steps open (the
``*.batch.onnx`` tokenizer only for training on data without speech
tokens, the one case where upstream loads it). Also onnxruntime's
execution providers (a CUDA EP that is listed but cannot load is reported
and the CPU EP used instead) and free disk. The report is plain data so
the CLI (text or ``--json``) and the tab show the same.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from engines.cosyvoice import upstream

STEPS = ("prepare", "train", "synth")
SETUP_COMMAND = "bash scripts/setup.sh studio"
PROBE_TIMEOUT_S = 300


@dataclass
class DoctorReport:
    checkout: dict = field(default_factory=dict)
    runtime: dict = field(default_factory=dict)
    model: dict | None = None
    onnxruntime: dict = field(default_factory=dict)
    disk: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        data = asdict(self)
        data["ok"] = self.ok
        return data

    def to_text(self) -> str:
        c = self.checkout
        lines = ["CosyVoice doctor", ""]
        if c.get("present"):
            pin = "matches the pinned commit" if c.get("matches_pin") else f"pinned: {upstream.PINNED_COMMIT[:12]}"
            lines.append(f"Checkout:    {c['path']} at {str(c.get('commit') or 'unknown')[:12]} ({pin})")
            matcha = c.get("matcha_commit")
            lines.append(f"Matcha-TTS:  {matcha[:12] if matcha else ('present' if c.get('matcha') else 'MISSING')}")
        else:
            lines.append(f"Checkout:    MISSING at {c.get('path')} -> run: {upstream.SYNC_COMMAND}")
        r = self.runtime
        if r.get("modules"):
            failed = [m for m, v in r["modules"].items() if not v.get("ok")]
            lines.append(f"Runtime:     torch {r.get('torch', '?')}, torchaudio: {r.get('torchaudio') or 'none'}"
                         + (", CUDA" if r.get("cuda") else ", CPU"))
            lines.append("Imports:     " + ("all upstream imports work" if not failed else "FAILING " + ", ".join(failed)))
            for name in failed:
                lines.append(f"             {name}: {r['modules'][name].get('error', '')}")
        elif r.get("error"):
            lines.append(f"Runtime:     could not start an upstream process: {r['error']}")
        if self.model is not None:
            md = self.model
            if not md.get("present"):
                lines.append(f"Model dir:   MISSING {md['path']}")
            else:
                lines.append(f"Model dir:   {md['path']} ({md.get('version') or 'unknown version'}; "
                             f"checked for: {', '.join(md.get('steps', []))})")
                for step, names in (md.get("missing") or {}).items():
                    lines.append(f"             {step}: missing {', '.join(names)}")
                if md.get("speakers") is not None:
                    lines.append(f"             speakers in spk2info.pt: {len(md['speakers'])}")
        o = self.onnxruntime
        if o.get("installed"):
            lines.append(f"onnxruntime: {o.get('version')} using {o.get('use')} (available: {', '.join(o.get('available', []))})")
        elif o:
            lines.append("onnxruntime: NOT INSTALLED")
        d = self.disk
        if d:
            lines.append(f"Disk:        {d['free_gb']:.1f} GB free at {d['path']}")
        for note in self.notes:
            lines.append(f"Note:        {note}")
        lines.append("")
        lines.append("OK" if self.ok else "Problems:\n" + "\n".join(f"  - {p}" for p in self.problems))
        return "\n".join(lines)


_PROBES: dict[tuple, dict] = {}
_PROBE_LOCK = threading.Lock()


def probe_runtime(checkout: Path, fresh: bool = False) -> dict:
    """Import upstream's modules in an upstream process (cached per checkout commit unless ``fresh``)."""
    key = (str(checkout.resolve()), upstream.checkout_commit(checkout), sys.executable)
    with _PROBE_LOCK:
        if not fresh and key in _PROBES:
            return _PROBES[key]
        env = upstream.upstream_env(checkout)
        try:
            out = subprocess.run([sys.executable, "-m", "engines.cosyvoice.runtime_probe"], capture_output=True,
                                 text=True, env=env, cwd=str(checkout), timeout=PROBE_TIMEOUT_S)
            result = json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else {
                "error": (out.stderr.strip().splitlines() or ["no output"])[-1][:300]}
        except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
            result = {"error": str(exc)[:300]}
        _PROBES[key] = result
        return result


def runtime_problems(runtime: dict) -> list[str]:
    """What in the probe means CosyVoice cannot run, each with what to do."""
    from engines.cosyvoice.runtime_probe import MODULES

    if runtime.get("error"):
        return [f"No upstream process could be started ({runtime['error']})."]
    problems = []
    why = {name: (what, pip) for name, what, pip in MODULES}
    for name, res in runtime.get("modules", {}).items():
        if res.get("ok"):
            continue
        what, pip = why.get(name, ("", ""))
        if name == "matcha":
            fix = f"run `{upstream.SYNC_COMMAND}` (with --matcha-source when offline)"
        elif name == "torch._dynamo" and runtime.get("triton") and not runtime.get("cuda_build"):
            fix = f"{sys.executable} -m pip uninstall -y triton (whisper pulls an old one in; CPU torch needs none)"
        else:
            fix = f"run `{SETUP_COMMAND}` again, it installs upstream's runtime" + (f" ({pip})" if pip else "")
        problems.append(f"`import {name}` fails in upstream's environment ({what}): {res.get('error', '')} -> {fix}.")
    return problems


def model_files_for(version: str, steps: Sequence[str], online_features: bool = False) -> dict[str, list[str]]:
    """Files each step opens in a model dir of ``version`` (a trailing '/' marks a folder)."""
    yaml_name = {v: n for n, v in upstream.VERSION_YAMLS}[version]
    tokenizer = upstream.TOKENIZER_ONNX[version]
    qwen = [f"{upstream.QWEN_DIR}/", f"{upstream.QWEN_DIR}/config.json"] if version != "v1" else []
    needs = {
        "prepare": ["campplus.onnx", tokenizer],
        "train": [yaml_name, "llm.pt", "flow.pt", *qwen],
        "synth": [yaml_name, "llm.pt", "flow.pt", "hift.pt", "campplus.onnx", tokenizer, *qwen],
    }
    if online_features and version != "v1":
        needs["train"] += ["campplus.onnx", tokenizer.replace(".onnx", ".batch.onnx")]
    return {step: needs[step] for step in steps if step in needs}


def inspect_model_dir(model_dir: str | os.PathLike, steps: Sequence[str] = STEPS,
                      online_features: bool = False) -> dict:
    d = Path(model_dir)
    info: dict = {"path": str(d), "present": d.is_dir(), "version": None, "missing": {}, "files": [],
                  "speakers": None, "steps": list(steps)}
    if not d.is_dir():
        return info
    info["version"] = upstream.detect_version(d)
    info["files"] = sorted(p.name + ("/" if p.is_dir() else "") for p in d.iterdir())
    version = info["version"] or upstream.detect_version_from_tokenizer(d)
    if version is None:
        info["missing"] = {"all": ["cosyvoice2.yaml (or cosyvoice.yaml / cosyvoice3.yaml)"]}
        return info
    for step, names in model_files_for(version, steps, online_features).items():
        missing = [n for n in names if not ((d / n.rstrip("/")).is_dir() if n.endswith("/") else (d / n).is_file())]
        if missing:
            info["missing"][step] = missing
    if (d / "spk2info.pt").is_file():
        try:
            from engines.cosyvoice.model_dir import list_speakers

            info["speakers"] = list_speakers(d)
        except Exception as exc:  # noqa: BLE001 - shown as a note
            info["speakers_error"] = str(exc)
    return info


def onnx_providers_status() -> dict:
    """Which onnxruntime EP the studio will use; a CUDA EP is tried with a 1-node model."""
    try:
        import onnxruntime as ort
    except Exception as exc:  # noqa: BLE001 - a broken install is reported, not raised
        return {"installed": False, "error": str(exc), "available": [], "cuda_listed": False,
                "cuda_usable": False, "use": None}
    available = list(ort.get_available_providers())
    status = {"installed": True, "version": getattr(ort, "__version__", "?"), "available": available,
              "cuda_listed": "CUDAExecutionProvider" in available, "cuda_usable": False,
              "use": "CPUExecutionProvider", "note": ""}
    if status["cuda_listed"]:
        try:
            sess = ort.InferenceSession(_identity_model_bytes(),
                                        providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
            status["cuda_usable"] = "CUDAExecutionProvider" in sess.get_providers()
        except Exception as exc:  # noqa: BLE001
            status["note"] = f"CUDA EP failed to load: {str(exc).splitlines()[0][:200]}"
        if status["cuda_usable"]:
            status["use"] = "CUDAExecutionProvider"
        elif not status["note"]:
            status["note"] = "CUDA EP is listed but could not load (CUDA/cuDNN libraries missing?)"
    return status


def preferred_onnx_providers() -> list[str]:
    """Providers for ``onnxruntime.InferenceSession``: CUDA only when it really loads."""
    status = onnx_providers_status()
    if status.get("cuda_usable"):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _identity_model_bytes() -> bytes:
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def doctor(settings: object | None = None, model_dir: str | os.PathLike | None = None,
           disk_path: str | os.PathLike | None = None, probe_onnx: bool = True, steps: Sequence[str] = STEPS,
           online_features: bool = False, fresh: bool = False, probe: bool = True) -> DoctorReport:
    """Check the CosyVoice setup; never raises for a missing piece (it is reported)."""
    checkout = upstream.checkout_path(settings)
    rep = DoctorReport()
    present = upstream.is_checkout(checkout)
    matcha = (checkout / upstream.MATCHA_SUBDIR / "matcha").is_dir()
    commit = upstream.checkout_commit(checkout) if present else None
    matcha_commit = upstream.checkout_commit(checkout / upstream.MATCHA_SUBDIR) if matcha else None
    rep.checkout = {"path": str(checkout), "present": present, "commit": commit, "matcha": matcha,
                    "matcha_commit": matcha_commit, "pinned": upstream.PINNED_COMMIT,
                    "matches_pin": commit == upstream.PINNED_COMMIT}
    if not present:
        rep.problems.append(f"CosyVoice checkout missing at {checkout}: run `{upstream.SYNC_COMMAND}` "
                            "(offline: --source/--matcha-source with a mirror or bundle).")
    else:
        if not matcha:
            rep.problems.append(f"Matcha-TTS submodule missing in {checkout}: run `{upstream.SYNC_COMMAND}` "
                                "(offline: with --matcha-source).")
        if commit != upstream.PINNED_COMMIT:
            rep.notes.append(f"checkout is at {str(commit)[:12]}, the engine was checked against "
                             f"{upstream.PINNED_COMMIT[:12]} (`{upstream.SYNC_COMMAND}` moves it there).")
        if matcha and matcha_commit not in (None, upstream.MATCHA_COMMIT):
            rep.notes.append(f"Matcha-TTS is at {str(matcha_commit)[:12]}, pinned is {upstream.MATCHA_COMMIT[:12]}.")
        if probe:
            rep.runtime = probe_runtime(checkout, fresh)
            rep.problems.extend(runtime_problems(rep.runtime))
            if rep.runtime.get("torchaudio") == "voicelab stand-in":
                rep.notes.append("torchaudio is absent or cannot load audio here: upstream gets VoiceLab's stand-in "
                                 "(load, save, info, Resample, MelSpectrogram, kaldi.fbank).")

    if model_dir is not None:
        rep.model = inspect_model_dir(model_dir, steps, online_features)
        if not rep.model["present"]:
            rep.problems.append(f"Model dir {model_dir} does not exist: download one "
                                "(`voicelab assets download cosyvoice/CosyVoice2-0.5B`).")
        for step, names in rep.model["missing"].items():
            rep.problems.append(f"Model dir {model_dir} is missing, for {step}: {', '.join(names)}.")
        if rep.model.get("present") and rep.model.get("version") in ("v2", "v3") and not rep.model.get("speakers"):
            rep.notes.append("this model ships no SFT speakers: fine-tune one (or use zero-shot mode).")

    if probe_onnx:
        rep.onnxruntime = onnx_providers_status()
        if not rep.onnxruntime.get("installed"):
            rep.problems.append("onnxruntime is not importable: pip install onnxruntime (or onnxruntime-gpu).")
        elif rep.onnxruntime.get("cuda_listed") and not rep.onnxruntime.get("cuda_usable"):
            rep.notes.append(f"{rep.onnxruntime.get('note')}; falling back to the CPU execution provider.")

    where = Path(disk_path) if disk_path is not None else (checkout if checkout.exists() else Path.cwd())
    while not where.exists() and where != where.parent:
        where = where.parent
    usage = shutil.disk_usage(where)
    rep.disk = {"path": str(where), "free_bytes": usage.free, "free_gb": usage.free / 1e9}
    if usage.free < 5e9:
        rep.notes.append(f"only {usage.free / 1e9:.1f} GB free; CosyVoice checkpoints take ~2 GB each.")
    return rep
