"""`voicelab cosyvoice doctor`: is everything CosyVoice needs in place?

Checks the upstream checkout (present, commit vs. our pin), the Python
modules upstream imports, a model dir (version and missing files),
onnxruntime's execution providers (a CUDA EP that is listed but cannot
load is reported and the CPU EP used instead) and free disk. The report
is plain data so the CLI (text or ``--json``) and the tab show the same.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engines.cosyvoice import upstream

# (import name, pip requirement, what needs it). Matcha comes from the checkout's submodule.
UPSTREAM_MODULES: tuple[tuple[str, str, str], ...] = (
    ("hyperpyyaml", "HyperPyYAML==1.2.3", "reading model yaml files"),
    ("conformer", "conformer==0.3.2", "flow encoder"),
    ("diffusers", "diffusers==0.29.0", "flow decoder"),
    ("lightning", "lightning==2.2.4", "Matcha-TTS modules"),
    ("hydra", "hydra-core==1.3.2", "Matcha-TTS modules"),
    ("omegaconf", "omegaconf==2.3.0", "flow matching config"),
    ("x_transformers", "x-transformers==2.11.24", "CosyVoice3 DiT flow"),
    ("inflect", "inflect==7.3.1", "English text frontend"),
    ("wget", "wget==3.2", "imported by upstream utilities"),
    ("gdown", "gdown==5.1.0", "imported by Matcha-TTS"),
    ("whisper", "openai-whisper==20231117", "whisper mel features and v1 tokenizer"),
    ("modelscope", "modelscope", "imported by the inference frontend"),
    ("torchaudio", "torchaudio", "upstream audio loading (match your torch version)"),
    ("transformers", "transformers", "Qwen2 language model"),
    ("pyarrow", "pyarrow", "parquet training data"),
    ("onnxruntime", "onnxruntime", "campplus and speech tokenizer"),
    ("librosa", "librosa", "mel filters"),
    ("tensorboard", "tensorboard", "training summaries"),
    ("pyworld", "pyworld", "f0 for hifigan data"),
    ("yaml", "pyyaml", "checkpoint info files"),
)
OPTIONAL_MODULES: tuple[tuple[str, str, str], ...] = (
    ("deepspeed", "deepspeed", "train_engine deepspeed (torch_ddp works without it)"),
    ("wetext", "wetext==0.0.4", "text normalisation (skipped when missing)"),
)


@dataclass
class DoctorReport:
    checkout: dict = field(default_factory=dict)
    modules: dict = field(default_factory=dict)
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
            lines.append(f"Matcha-TTS:  {'present' if c.get('matcha') else 'MISSING'}")
        else:
            lines.append(f"Checkout:    MISSING at {c.get('path')} -> run: {upstream.SYNC_COMMAND}")
        m = self.modules
        if m.get("missing"):
            lines.append(f"Modules:     missing {', '.join(x['module'] for x in m['missing'])}")
            lines.append(f"             install: {m['pip_command']}")
        else:
            lines.append("Modules:     all upstream modules importable")
        if m.get("optional_missing"):
            lines.append(f"Optional:    not installed: {', '.join(x['module'] for x in m['optional_missing'])}")
        if self.model is not None:
            md = self.model
            if not md.get("present"):
                lines.append(f"Model dir:   MISSING {md['path']}")
            else:
                lines.append(f"Model dir:   {md['path']} ({md.get('version') or 'unknown version'})")
                if md.get("missing"):
                    lines.append(f"             missing: {', '.join(md['missing'])}")
                if md.get("speakers") is not None:
                    lines.append(f"             speakers in spk2info.pt: {len(md['speakers'])}")
        o = self.onnxruntime
        if o.get("installed"):
            lines.append(f"onnxruntime: {o.get('version')} using {o.get('use')} (available: {', '.join(o.get('available', []))})")
        else:
            lines.append("onnxruntime: NOT INSTALLED")
        d = self.disk
        if d:
            lines.append(f"Disk:        {d['free_gb']:.1f} GB free at {d['path']}")
        for note in self.notes:
            lines.append(f"Note:        {note}")
        lines.append("")
        lines.append("OK" if self.ok else "Problems:\n" + "\n".join(f"  - {p}" for p in self.problems))
        return "\n".join(lines)


def find_missing_modules(extra_paths: list[str] | None = None,
                         modules: tuple[tuple[str, str, str], ...] = UPSTREAM_MODULES) -> list[dict]:
    """Modules from ``modules`` that cannot be found (``extra_paths`` searched too)."""
    added = [p for p in (extra_paths or []) if p not in sys.path]
    sys.path[:0] = added
    try:
        missing = []
        for name, pip, why in modules:
            try:
                found = importlib.util.find_spec(name) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                missing.append({"module": name, "pip": pip, "why": why})
        return missing
    finally:
        for p in added:
            if p in sys.path:
                sys.path.remove(p)


def pip_command(missing: list[dict]) -> str:
    reqs = [m["pip"] for m in missing if m["module"] != "matcha"]
    return f"{sys.executable} -m pip install " + " ".join(f"'{r}'" if any(c in r for c in "<>=") else r for r in reqs) if reqs else ""


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


def inspect_model_dir(model_dir: str | os.PathLike) -> dict:
    d = Path(model_dir)
    info: dict = {"path": str(d), "present": d.is_dir(), "version": None, "missing": [], "files": [],
                  "speakers": None}
    if not d.is_dir():
        return info
    info["version"] = upstream.detect_version(d)
    info["files"] = sorted(p.name + ("/" if p.is_dir() else "") for p in d.iterdir())
    info["missing"] = upstream.missing_model_files(d, info["version"])
    if (d / "spk2info.pt").is_file():
        try:
            from engines.cosyvoice.model_dir import list_speakers

            info["speakers"] = list_speakers(d)
        except Exception as exc:  # noqa: BLE001 - shown as a note
            info["speakers_error"] = str(exc)
    return info


def doctor(settings: object | None = None, model_dir: str | os.PathLike | None = None,
           disk_path: str | os.PathLike | None = None, probe_onnx: bool = True) -> DoctorReport:
    """Check the CosyVoice setup; never raises for a missing piece (it is reported)."""
    checkout = upstream.checkout_path(settings)
    rep = DoctorReport()
    present = upstream.is_checkout(checkout)
    matcha = (checkout / upstream.MATCHA_SUBDIR / "matcha").is_dir()
    commit = upstream.checkout_commit(checkout) if present else None
    rep.checkout = {"path": str(checkout), "present": present, "commit": commit, "matcha": matcha,
                    "pinned": upstream.PINNED_COMMIT, "matches_pin": commit == upstream.PINNED_COMMIT}
    if not present:
        rep.problems.append(f"CosyVoice checkout missing at {checkout}: run `{upstream.SYNC_COMMAND}`.")
    else:
        if not matcha:
            rep.problems.append(f"Matcha-TTS submodule missing in {checkout}: run `{upstream.SYNC_COMMAND}`.")
        if commit != upstream.PINNED_COMMIT:
            rep.notes.append(f"checkout is at {str(commit)[:12]}, the engine was checked against "
                             f"{upstream.PINNED_COMMIT[:12]} (`{upstream.SYNC_COMMAND}` moves it there).")

    extra = upstream.python_path_entries(checkout) if present else []
    modules = UPSTREAM_MODULES + ((("matcha", "(git submodule)", "flow and audio code"),) if present else ())
    missing = find_missing_modules(extra, modules)
    optional_missing = find_missing_modules(extra, OPTIONAL_MODULES)
    rep.modules = {"missing": missing, "optional_missing": optional_missing, "pip_command": pip_command(missing)}
    if missing:
        names = ", ".join(m["module"] for m in missing)
        hint = f" Install with: {rep.modules['pip_command']}" if rep.modules["pip_command"] else ""
        rep.problems.append(f"Python modules upstream needs are missing: {names}.{hint}")

    if model_dir is not None:
        rep.model = inspect_model_dir(model_dir)
        if not rep.model["present"]:
            rep.problems.append(f"Model dir {model_dir} does not exist.")
        elif rep.model["missing"]:
            rep.problems.append(f"Model dir {model_dir} is missing: {', '.join(rep.model['missing'])}.")
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
