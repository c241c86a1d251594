"""What upstream CosyVoice's processes can import, asked of such a process (``python -m ...``).

The doctor starts this with the same environment as our training launcher
and synthesis worker (``upstream.upstream_env``) and reads one JSON line:
for each module upstream imports on the paths we run, whether it imports
(and the first line of the error when not), which torchaudio upstream gets
(a real one or VoiceLab's stand-in), torch's version and devices, and
whether triton is installed (whisper pulls in an old one that breaks
``torch._dynamo`` on CPU-only torch). Importing them here never touches
the studio process.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys

# (module, what needs it, pip requirement that provides it; "" = the checkout)
MODULES: tuple[tuple[str, str, str], ...] = (
    ("torch._dynamo", "transformers' Qwen2 (a broken triton makes this fail)", ""),
    ("torchaudio", "upstream's audio loading (a real torchaudio or VoiceLab's stand-in)", ""),
    ("hyperpyyaml", "reading model yaml files", "HyperPyYAML"),
    ("whisper", "whisper mel features and the v1 tokenizer", "openai-whisper"),
    ("transformers", "the Qwen2 language model", "transformers"),
    ("matplotlib", "imported by Matcha-TTS when a model dir loads", "matplotlib"),
    ("matcha", "flow and vocoder building blocks (the checkout's Matcha-TTS submodule)", ""),
    ("cosyvoice.flow.flow_matching", "the flow model (diffusers, conformer, lightning, hydra)", ""),
    ("cosyvoice.cli.cosyvoice", "AutoModel: loading and synthesis (modelscope, inflect, onnxruntime)", ""),
    ("cosyvoice.dataset.processor", "the training data pipeline (pyworld, pyarrow)", ""),
    ("cosyvoice.flow.DiT.dit", "the CosyVoice3 flow (x-transformers)", "x-transformers"),
)


def probe() -> dict:
    report: dict = {"python": sys.executable, "modules": {}}
    for name, _, _ in MODULES:
        try:
            importlib.import_module(name)
            report["modules"][name] = {"ok": True}
        except BaseException as exc:  # noqa: BLE001 - any failure is the answer
            text = f"{type(exc).__name__}: {exc}".strip()
            report["modules"][name] = {"ok": False, "error": text.splitlines()[0][:300],
                                       "missing": getattr(exc, "name", None) if isinstance(exc, ImportError) else None}
    ta = sys.modules.get("torchaudio")
    report["torchaudio"] = ("voicelab stand-in" if getattr(ta, "VOICELAB_SHIM", False)
                            else f"torchaudio {getattr(ta, '__version__', '?')}" if ta else None)
    torch = sys.modules.get("torch")
    if torch is not None:
        report["torch"] = torch.__version__
        report["cuda"] = bool(torch.cuda.is_available())
        report["cuda_build"] = torch.version.cuda
    report["triton"] = importlib.util.find_spec("triton") is not None
    return report


if __name__ == "__main__":
    import os

    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything upstream prints while importing stays out of the answer
    out.write(json.dumps(probe()) + "\n")
    out.flush()
