"""CosyVoice synthesis through upstream's ``AutoModel``.

The model is loaded once from the configured checkout and kept (one at a
time, keyed by the model dir and the mtimes of its weight files). On top of
upstream we add: sentence splitting with progress and cancel between
sentences, CosyVoice3 prompt handling (the ``<|endofprompt|>`` marker it
asserts on, with instruction presets), hot-loading an ``epoch_N_whole.pt``
(stripped of ``epoch``/``step``) into the llm or flow for listening during
training, seeds, atomic output files and a compare grid.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from engines.core.atomic import atomic_path, write_json
from engines.core.errors import (
    InvalidInputError,
    InvalidModelError,
    MissingAssetError,
    VoiceLabError,
)
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.params import param
from engines.cosyvoice import upstream
from engines.cosyvoice.average import load_checkpoint_state
from engines.cosyvoice.model_dir import list_speakers

EOP = "<|endofprompt|>"
NEUTRAL_PRESET = "You are a helpful assistant."
BUILTIN_PRESETS: dict[str, str] = {"neutral": NEUTRAL_PRESET}
PRESETS_FILE = "prompt_presets.json"
MODES = ("sft", "zero_shot", "instruct")


@dataclass
class SynthParams:
    """Synthesis options shared by the tab and `voicelab cosyvoice synth`."""

    model_dir: str = param("", help="CosyVoice model dir (an assembled one for a fine-tuned speaker)")
    text: str = param("", help="Text to speak")
    speaker: str = param("", help="Speaker id from spk2info.pt (sft/instruct v1 modes)")
    mode: str = param("sft", choices=MODES, help="sft: fine-tuned speaker; zero_shot: prompt audio; instruct")
    speed: float = param(1.0, min=0.5, max=2.0, step=0.05, help="Speaking speed")
    seed: int = param(0, min=0, max=2**31 - 1, help="Random seed (same seed, same output)")
    preset: str = param("neutral", help="CosyVoice3 instruction preset name")
    instruct: str = param("", help="Instruction text (overrides the preset; CosyVoice3 / instruct mode)")
    prompt_wav: str = param("", help="Prompt audio for zero_shot / instruct (v2, v3)")
    prompt_text: str = param("", help="Transcript of the prompt audio (zero_shot)")
    checkpoint: str = param("", help="epoch_N_whole.pt to hot-load (llm or flow) instead of the dir's weights")


# -- text handling (no upstream needed) ---------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?;…])\s+|(?<=[。！？；])|\n+")
_SOFT_BREAK = re.compile(r"(?<=[,，、:：])\s*")


def split_sentences(text: str, max_chars: int = 160, min_chars: int = 12) -> list[str]:
    """Split text into sentences for one-by-one synthesis.

    Breaks after sentence punctuation (Latin and CJK) and newlines; merges
    fragments shorter than ``min_chars`` into the next; cuts anything longer
    than ``max_chars`` at commas, then spaces, then hard.
    """
    pieces = [p.strip() for p in _SENTENCE_END.split(text or "") if p and p.strip()]
    merged: list[str] = []
    carry = ""
    for piece in pieces:
        joined = _join(carry, piece)
        if len(joined) < min_chars:
            carry = joined
            continue
        merged.append(joined)
        carry = ""
    if carry:
        if merged and len(merged[-1]) + len(carry) <= max_chars:
            merged[-1] = _join(merged[-1], carry)
        else:
            merged.append(carry)
    out: list[str] = []
    for s in merged:
        out.extend(_cut_long(s, max_chars))
    return out


def _join(a: str, b: str) -> str:
    if not a:
        return b
    if re.search(r"[\u3000-\u9fff\uff00-\uffef]$", a):
        return a + b
    return a + " " + b


def _cut_long(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    parts: list[str] = []
    cur = ""
    for chunk in _SOFT_BREAK.split(sentence):
        if not chunk:
            continue
        if len(cur) + len(chunk) <= max_chars:
            cur = cur + chunk if cur else chunk
            continue
        if cur:
            parts.append(cur.strip())
        while len(chunk) > max_chars:
            cut = chunk.rfind(" ", 0, max_chars)
            cut = cut if cut > max_chars // 3 else max_chars
            parts.append(chunk[:cut].strip())
            chunk = chunk[cut:].strip()
        cur = chunk
    if cur.strip():
        parts.append(cur.strip())
    return [p for p in parts if p]


def load_presets(ws: Any | None = None) -> dict[str, str]:
    """Built-in presets plus the user's (``<workspace>/cosyvoice/prompt_presets.json``)."""
    presets = dict(BUILTIN_PRESETS)
    if ws is not None:
        path = Path(ws.cosyvoice) / PRESETS_FILE
        if path.is_file():
            try:
                user = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"{path} is not valid JSON: {exc}") from exc
            presets.update({str(k): str(v) for k, v in user.items()})
    return presets


def save_preset(ws: Any, name: str, text: str) -> Path:
    """Add or change a user preset (the built-in 'neutral' can be overridden too)."""
    if not name.strip() or not text.strip():
        raise InvalidInputError("A preset needs a name and an instruction text.")
    path = Path(ws.cosyvoice) / PRESETS_FILE
    user = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    user[name.strip()] = text.strip()
    return write_json(path, user)


def resolve_instruct(preset: str | None, instruct: str | None, presets: dict[str, str] | None = None) -> str:
    """The instruction text: explicit ``instruct`` wins, else the named preset."""
    if instruct and instruct.strip():
        return instruct.strip()
    presets = presets or BUILTIN_PRESETS
    name = preset or "neutral"
    if name not in presets:
        raise InvalidInputError(f"Unknown prompt preset '{name}'.", f"Known presets: {', '.join(presets)}.")
    return presets[name]


def with_endofprompt(prefix: str, text: str = "") -> str:
    """``prefix<|endofprompt|>text`` unless the marker is already there (CosyVoice3 asserts on it)."""
    if EOP in prefix or EOP in text:
        return prefix + text if EOP in prefix else text
    return f"{prefix.strip()}{EOP}{text}"


# -- loading through upstream ---------------------------------------------------------------

@dataclass
class LoadedModel:
    model: Any
    model_dir: Path
    version: str
    sample_rate: int
    key: tuple
    overrides: dict[str, Path | None] = field(default_factory=lambda: {"llm": None, "flow": None})


_CACHE: dict[str, LoadedModel] = {}
_LOCK = threading.RLock()


def _cache_key(model_dir: Path) -> tuple:
    parts: list[Any] = [str(model_dir.resolve())]
    for name in ("cosyvoice.yaml", "cosyvoice2.yaml", "cosyvoice3.yaml", "llm.pt", "flow.pt", "hift.pt",
                 "spk2info.pt"):
        p = model_dir / name
        parts.append(p.stat().st_mtime_ns if p.exists() else None)
    return tuple(parts)


def clear_cache() -> None:
    """Drop the loaded model (frees its memory, GPU memory included)."""
    with _LOCK:
        had = bool(_CACHE)
        _CACHE.clear()
    if had:
        _release_memory()


def _release_memory() -> None:
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _import_automodel(checkout: Path) -> Any:
    entries = upstream.python_path_entries(checkout)
    loaded = sys.modules.get("cosyvoice")
    if loaded is not None and not str(getattr(loaded, "__file__", "") or "").startswith(entries[0]):
        for name in [n for n in sys.modules if n == "cosyvoice" or n.startswith("cosyvoice.")]:
            del sys.modules[name]
    for p in reversed(entries):
        if p not in sys.path:
            sys.path.insert(0, p)
    try:
        from cosyvoice.cli.cosyvoice import AutoModel  # type: ignore[import-not-found]
    except ModuleNotFoundError as exc:
        from engines.cosyvoice.doctor import OPTIONAL_MODULES, UPSTREAM_MODULES

        known = {m: pip for m, pip, _ in UPSTREAM_MODULES + OPTIONAL_MODULES}
        name = (exc.name or "").split(".")[0]
        if name == "matcha":
            raise MissingAssetError("Matcha-TTS submodule", str(checkout / upstream.MATCHA_SUBDIR),
                                    upstream.SYNC_COMMAND, "CosyVoice synthesis") from exc
        pip = known.get(name, name)
        raise VoiceLabError(f"Upstream CosyVoice needs the Python module '{name}', which is not installed.",
                            f"Install it with: {sys.executable} -m pip install '{pip}' "
                            "(`voicelab cosyvoice doctor` lists everything missing).") from exc
    return AutoModel


def load_model(model_dir: str | os.PathLike, checkout: str | os.PathLike | None = None,
               hooks: Hooks | None = None) -> LoadedModel:
    """The model dir loaded through upstream AutoModel, reusing the cached one when unchanged."""
    hooks = ensure_hooks(hooks)
    d = Path(model_dir)
    if not d.is_dir():
        raise InvalidInputError(f"Model dir {d} does not exist.")
    version = upstream.detect_version(d)
    if version is None:
        upstream.model_yaml(d)  # raises
    assert version is not None
    missing = upstream.missing_model_files(d, version)
    if missing:
        raise MissingAssetError(missing[0], str(d / missing[0].rstrip("/")), "",
                                f"CosyVoice {version} synthesis; also missing: {', '.join(missing[1:])}"
                                if len(missing) > 1 else f"CosyVoice {version} synthesis")
    co = upstream.require_checkout(Path(checkout) if checkout is not None else upstream.checkout_path())
    key = _cache_key(d)
    with _LOCK:
        cached = _CACHE.get("model")
        if cached is not None and cached.key == key:
            return cached
        if _CACHE:
            _CACHE.clear()
            _release_memory()
        AutoModel = _import_automodel(co)
        hooks.progress(0.0, f"Loading {d.name} ({version})")
        t0 = time.time()
        try:
            model = AutoModel(model_dir=str(d))
        except (MissingAssetError, VoiceLabError):
            raise
        except Exception as exc:  # noqa: BLE001 - upstream raises plain errors for bad dirs
            raise InvalidModelError(f"CosyVoice could not load {d}: {exc}",
                                    "Check the model dir with `voicelab cosyvoice doctor --model-dir ...`.") from exc
        hooks.log(f"Loaded {d} ({version}) in {time.time() - t0:.1f} s")
        loaded = LoadedModel(model, d, version, int(getattr(model, "sample_rate", 24000)), key)
        _CACHE["model"] = loaded
        return loaded


def apply_checkpoint(loaded: LoadedModel, checkpoint: str | os.PathLike | None, hooks: Hooks | None = None) -> str | None:
    """Hot-load a training checkpoint into the llm or flow (picked by its keys); None restores the dir's own.

    Returns the module name it went into.
    """
    hooks = ensure_hooks(hooks)
    inner = getattr(loaded.model, "model", None)
    if inner is None:
        raise InvalidModelError("This CosyVoice object has no .model to load weights into.")
    if checkpoint is None or str(checkpoint) == "":
        for name, current in list(loaded.overrides.items()):
            if current is not None:
                state = load_checkpoint_state(loaded.model_dir / f"{name}.pt")
                getattr(inner, name).load_state_dict(state, strict=True)
                loaded.overrides[name] = None
                hooks.log(f"Restored {name}.pt of {loaded.model_dir.name}")
        return None
    path = Path(checkpoint)
    state = load_checkpoint_state(path)
    keys = set(state)
    for name in ("llm", "flow"):
        module = getattr(inner, name, None)
        if module is not None and set(module.state_dict().keys()) == keys:
            if loaded.overrides.get(name) != path:
                module.load_state_dict(state, strict=True)
                loaded.overrides[name] = path
                hooks.log(f"Hot-loaded {path.name} into the {name}")
            return name
    raise InvalidModelError(f"{path.name} matches neither the llm nor the flow of {loaded.model_dir.name}.",
                            "Pick a checkpoint trained from this base model.")


def set_seed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def default_output_path(model_dir: str | os.PathLike, speaker: str | None) -> Path:
    from engines.core.settings import resolve_workspace

    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{Path(model_dir).name}_{speaker or 'zero_shot'}_{stamp}.wav".replace("/", "_")
    return resolve_workspace() / "outputs" / "cosyvoice" / name


def _calls(loaded: LoadedModel, sentences: list[str], mode: str, speaker: str | None, speed: float,
           instruct_text: str, prompt_wav: str | None, prompt_text: str | None) -> list[tuple[str, Any, dict]]:
    """(label, bound method, kwargs) per sentence for the chosen mode and model version."""
    m, v3 = loaded.model, loaded.version == "v3"
    out = []
    for s in sentences:
        if mode == "sft":
            text = with_endofprompt(instruct_text, s) if v3 else s
            out.append((s, m.inference_sft, dict(tts_text=text, spk_id=speaker, stream=False, speed=speed)))
        elif mode == "zero_shot":
            ptext = with_endofprompt(instruct_text, prompt_text or "") if v3 else (prompt_text or "")
            out.append((s, m.inference_zero_shot, dict(tts_text=s, prompt_text=ptext, prompt_wav=prompt_wav,
                                                       stream=False, speed=speed)))
        elif loaded.version == "v1":
            out.append((s, m.inference_instruct, dict(tts_text=s, spk_id=speaker,
                                                      instruct_text=with_endofprompt(instruct_text),
                                                      stream=False, speed=speed)))
        else:
            out.append((s, m.inference_instruct2, dict(tts_text=s, instruct_text=with_endofprompt(instruct_text),
                                                       prompt_wav=prompt_wav, stream=False, speed=speed)))
    return out


def synthesize(model_dir: str | os.PathLike, text: str, speaker: str | None = None, speed: float = 1.0,
               seed: int = 0, mode: str = "sft", prompt_wav: str | os.PathLike | None = None,
               prompt_text: str | None = None, instruct: str | None = None,
               checkpoint: str | os.PathLike | None = None, out_path: str | os.PathLike | None = None,
               hooks: Hooks | None = None, preset: str = "neutral", presets: dict[str, str] | None = None,
               checkout: str | os.PathLike | None = None) -> Path:
    """Speak ``text`` with a CosyVoice model dir; returns the written wav path."""
    import numpy as np
    import soundfile as sf
    import torch

    hooks = ensure_hooks(hooks)
    if mode not in MODES:
        raise InvalidInputError(f"Unknown mode '{mode}'.", f"Use one of: {', '.join(MODES)}.")
    if not 0.5 <= float(speed) <= 2.0:
        raise InvalidInputError(f"speed must be between 0.5 and 2.0 (got {speed}).")
    sentences = split_sentences(text)
    if not sentences:
        raise InvalidInputError("There is no text to speak.")
    version = upstream.detect_version(model_dir)
    if mode == "sft" or (mode == "instruct" and version == "v1"):
        speakers = list_speakers(model_dir)
        if not speakers:
            raise InvalidInputError(f"{model_dir} has no spk2info.pt speakers.",
                                    "Assemble a model dir for your fine-tuned speaker, or use zero_shot mode.")
        if not speaker or speaker not in speakers:
            raise InvalidInputError(f"Speaker '{speaker}' is not in this model ({', '.join(speakers[:10])}).",
                                    "Pick one of the listed speakers.")
    if mode == "zero_shot" or (mode == "instruct" and version != "v1"):
        if not prompt_wav or not Path(prompt_wav).is_file():
            raise InvalidInputError(f"Mode '{mode}' needs a prompt audio file.", "Upload a short clip of the voice.")
        if mode == "zero_shot" and not (prompt_text or "").strip():
            raise InvalidInputError("zero_shot mode needs the transcript of the prompt audio.")
    instruct_text = resolve_instruct(preset, instruct, presets)

    loaded = load_model(model_dir, checkout, hooks)
    apply_checkpoint(loaded, checkpoint, hooks)
    set_seed(int(seed))
    calls = _calls(loaded, sentences, mode, speaker, float(speed), instruct_text,
                   str(prompt_wav) if prompt_wav else None, prompt_text)
    chunks: list[np.ndarray] = []
    for i, (label, fn, kwargs) in enumerate(calls):
        hooks.check_cancel()
        hooks.progress(i / len(calls), f"Sentence {i + 1}/{len(calls)}: {label[:60]}")
        with torch.inference_mode():
            for out in fn(**kwargs):
                hooks.check_cancel()
                speech = out["tts_speech"]
                chunks.append(speech.detach().float().cpu().reshape(-1).numpy())
    if not chunks:
        raise VoiceLabError("CosyVoice produced no audio.", "Try a different text or seed.")
    audio = np.concatenate(chunks).astype(np.float32)
    target = Path(out_path) if out_path is not None else default_output_path(model_dir, speaker)
    with atomic_path(target, suffix=".wav") as tmp:
        sf.write(str(tmp), audio, loaded.sample_rate, subtype="PCM_16", format="WAV")
    hooks.progress(1.0, f"Wrote {target.name} ({len(audio) / loaded.sample_rate:.1f} s)")
    return target


@dataclass
class GridItem:
    checkpoint: str | None
    preset: str
    speed: float
    path: Path


def compare_grid(model_dir: str | os.PathLike, text: str, speaker: str | None, out_dir: str | os.PathLike,
                 presets: Sequence[str] = ("neutral",), speeds: Sequence[float] = (1.0,),
                 checkpoints: Sequence[str | os.PathLike | None] = (None,), seed: int = 0, mode: str = "sft",
                 prompt_wav: str | os.PathLike | None = None, prompt_text: str | None = None,
                 preset_texts: dict[str, str] | None = None, hooks: Hooks | None = None,
                 checkout: str | os.PathLike | None = None) -> list[GridItem]:
    """Synthesise ``text`` for every checkpoint x preset x speed (same seed) into ``out_dir``.

    Presets only change CosyVoice3 output (and instruct mode); for other
    models in sft/zero_shot mode the first preset is used alone.
    """
    hooks = ensure_hooks(hooks)
    version = upstream.detect_version(model_dir)
    used_presets = list(presets) or ["neutral"]
    if version != "v3" and mode != "instruct" and len(used_presets) > 1:
        hooks.log(f"Presets have no effect on {version} in {mode} mode; using '{used_presets[0]}' only.")
        used_presets = used_presets[:1]
    combos = [(c, p, s) for c in checkpoints for p in used_presets for s in speeds]
    out_dir = Path(out_dir)
    items: list[GridItem] = []
    for i, (ckpt, preset, speed) in enumerate(combos):
        hooks.check_cancel()
        tag = Path(ckpt).stem if ckpt else "model"
        name = re.sub(r"[^\w.\-]+", "_", f"{tag}_{preset}_x{float(speed):.2f}") + ".wav"
        path = synthesize(model_dir, text, speaker, speed=speed, seed=seed, mode=mode, prompt_wav=prompt_wav,
                          prompt_text=prompt_text, checkpoint=ckpt, out_path=out_dir / name,
                          hooks=hooks.scaled(i / len(combos), (i + 1) / len(combos)), preset=preset,
                          presets=preset_texts, checkout=checkout)
        items.append(GridItem(str(ckpt) if ckpt else None, preset, float(speed), path))
    return items
