"""Where upstream CosyVoice lives, how to run it, and how to fetch it.

Upstream is not a pip package: the studio runs it from a git checkout
(``Settings.cosyvoice_repo``, default ``vendor/CosyVoice``) pinned to the
commit our engine was checked against. This module finds that checkout,
builds the environment upstream processes run in (the checkout, its
Matcha-TTS submodule, our torchaudio stand-in where needed) and recognises
model dirs (v1/v2/v3 by their yaml name). ``engines.cosyvoice.vendor``
fetches the checkout (``voicelab vendor sync``).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Mapping

from engines.core.errors import InvalidInputError, MissingAssetError
from engines.core.settings import PROJECT_ROOT

# The commit whose formats, arguments and log lines this engine was checked against.
PINNED_COMMIT = "ace7c47f41bbd303aa6bf1ea80e6f9fbd595cd40"
MATCHA_COMMIT = "dd9105b34bf2be2230f4aa1e4769fb586a3c824e"
MATCHA_SUBDIR = Path("third_party") / "Matcha-TTS"
SYNC_COMMAND = "voicelab vendor sync"

# yaml name -> version tag; AutoModel picks the class the same way (in this order).
VERSION_YAMLS = (("cosyvoice.yaml", "v1"), ("cosyvoice2.yaml", "v2"), ("cosyvoice3.yaml", "v3"))
TOKENIZER_ONNX = {"v1": "speech_tokenizer_v1.onnx", "v2": "speech_tokenizer_v2.onnx", "v3": "speech_tokenizer_v3.onnx"}
QWEN_DIR = "CosyVoice-BlankEN"


def checkout_path(settings: object | None = None) -> Path:
    """The configured upstream checkout (``Settings.cosyvoice_repo``)."""
    if settings is None:
        from engines.core.settings import load_settings

        settings = load_settings()
    return Path(getattr(settings, "cosyvoice_repo")).expanduser()


def python_path_entries(checkout: str | os.PathLike) -> list[str]:
    """Directories upstream imports from: the checkout and its Matcha-TTS submodule."""
    root = Path(checkout).resolve()
    return [str(root), str(root / MATCHA_SUBDIR)]


SHIMS_DIR = Path(__file__).resolve().parent / "shims"
# Importing is not enough: torchaudio >= 2.9 imports, then needs TorchCodec for every load().
_TORCHAUDIO_CHECK = (
    "import io, wave\n"
    "import torchaudio, torchaudio.compliance.kaldi, torchaudio.transforms\n"
    "buf = io.BytesIO()\n"
    "with wave.open(buf, 'wb') as w:\n"
    "    w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000); w.writeframes(bytes(3200))\n"
    "buf.seek(0)\n"
    "torchaudio.load(buf)\n"
)


@functools.lru_cache(maxsize=8)
def torchaudio_works(python: str = sys.executable) -> bool:
    """Whether a real torchaudio imports and loads a wav in ``python`` (checked in a subprocess, never here).

    torchaudio has no build for every torch (none for 2.13; 2.11's CUDA wheel
    fails to load with a CPU torch), and newer ones need TorchCodec to load.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    try:
        out = subprocess.run([python, "-c", _TORCHAUDIO_CHECK], capture_output=True, env=env, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


def upstream_env(checkout: str | os.PathLike, base: Mapping[str, str] | None = None,
                 extra_paths: list[str] | None = None) -> dict[str, str]:
    """The environment of a process that runs upstream code.

    PYTHONPATH: the checkout, Matcha-TTS, this project (our launcher and
    worker modules), and our torchaudio stand-in only when the real
    torchaudio cannot be imported. Unbuffered output; no tokenizer threads
    fighting the training threads.
    """
    env = dict(os.environ if base is None else base)
    parts = python_path_entries(checkout) + [str(PROJECT_ROOT)] + list(extra_paths or [])
    if not torchaudio_works():
        parts.append(str(SHIMS_DIR))
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def is_checkout(path: str | os.PathLike) -> bool:
    """True when ``path`` looks like an upstream CosyVoice source tree."""
    p = Path(path)
    return (p / "cosyvoice" / "cli" / "cosyvoice.py").is_file() and (p / "cosyvoice" / "bin" / "train.py").is_file()


def require_checkout(checkout: str | os.PathLike) -> Path:
    """The checkout path, or a MissingAssetError telling how to get it."""
    p = Path(checkout)
    if not is_checkout(p):
        raise MissingAssetError("CosyVoice source checkout", str(p), SYNC_COMMAND,
                                "CosyVoice training and synthesis")
    if not (p / MATCHA_SUBDIR / "matcha").is_dir():
        raise MissingAssetError("Matcha-TTS submodule of the CosyVoice checkout", str(p / MATCHA_SUBDIR),
                                SYNC_COMMAND, "CosyVoice (its flow and audio code import matcha)")
    return p


def train_script(checkout: str | os.PathLike) -> Path:
    return Path(checkout) / "cosyvoice" / "bin" / "train.py"


def checkout_commit(checkout: str | os.PathLike) -> str | None:
    """The full commit hash HEAD points at, or None when not a git checkout."""
    try:
        out = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def detect_version(model_dir: str | os.PathLike) -> str | None:
    """'v1' / 'v2' / 'v3' from the model dir's yaml name (as AutoModel decides), else None."""
    d = Path(model_dir)
    for name, version in VERSION_YAMLS:
        if (d / name).is_file():
            return version
    return None


def detect_version_from_tokenizer(model_dir: str | os.PathLike) -> str | None:
    """The version of a folder without yaml (e.g. only the ONNX front-ends), from its one tokenizer file."""
    present = [v for v, f in TOKENIZER_ONNX.items() if (Path(model_dir) / f).is_file()]
    return present[0] if len(present) == 1 else None


def model_yaml(model_dir: str | os.PathLike) -> Path:
    """The model dir's cosyvoice*.yaml, or an InvalidInputError."""
    d = Path(model_dir)
    for name, _ in VERSION_YAMLS:
        if (d / name).is_file():
            return d / name
    raise InvalidInputError(
        f"{d} is not a CosyVoice model dir (no cosyvoice.yaml, cosyvoice2.yaml or cosyvoice3.yaml).",
        "Point to the folder of a downloaded CosyVoice model, e.g. pretrained_models/CosyVoice2-0.5B.")


def required_model_files(version: str) -> list[str]:
    """Files AutoModel opens for a model dir of ``version`` (a trailing '/' marks a folder)."""
    yaml_name = {v: n for n, v in VERSION_YAMLS}[version]
    files = [yaml_name, "llm.pt", "flow.pt", "hift.pt", "campplus.onnx", TOKENIZER_ONNX[version]]
    if version in ("v2", "v3"):
        files.append(QWEN_DIR + "/")
    return files


def missing_model_files(model_dir: str | os.PathLike, version: str | None = None) -> list[str]:
    d = Path(model_dir)
    version = version or detect_version(d)
    if version is None:
        return ["cosyvoice2.yaml (or cosyvoice.yaml / cosyvoice3.yaml)"]
    missing = []
    for name in required_model_files(version):
        p = d / name.rstrip("/")
        if not (p.is_dir() if name.endswith("/") else p.is_file()):
            missing.append(name)
    return missing
