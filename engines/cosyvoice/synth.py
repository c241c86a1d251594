"""CosyVoice synthesis: requests to upstream's ``AutoModel`` in a synthesis worker.

Upstream runs in a worker process of ours (``engines.cosyvoice.worker``),
one per model dir, loaded once. This side checks the request (model files,
speaker, prompt audio, checkpoint) so mistakes get a clear message before
anything loads, and adds: sentence splitting with progress and cancel
between sentences, CosyVoice3 prompt handling (the ``<|endofprompt|>``
marker it asserts on, with instruction presets), hot-loading an
``epoch_N_whole.pt`` into the llm or flow for listening during training,
seeds, atomic output files and a compare grid.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from engines.core.atomic import write_json
from engines.core.errors import InvalidInputError, MissingAssetError
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.messages import msg
from engines.core.params import param
from engines.cosyvoice import upstream
from engines.cosyvoice.model_dir import list_speakers

EOP = "<|endofprompt|>"
NEUTRAL_PRESET = "You are a helpful assistant."
BUILTIN_PRESETS: dict[str, str] = {"neutral": NEUTRAL_PRESET}
PRESETS_FILE = "prompt_presets.json"
MODES = ("sft", "zero_shot", "instruct")
MAX_PROMPT_SECONDS = 30.0  # upstream asserts on longer prompts


@dataclass
class SynthParams:
    """Synthesis options shared by the tab and `voicelab cosyvoice synth`."""

    model_dir: str = param("", path="model_dir", help="CosyVoice model dir (an assembled one for a fine-tuned speaker)")
    text: str = param("", help="Text to speak")
    speaker: str = param("", help="Speaker id from spk2info.pt (sft/instruct v1 modes)")
    mode: str = param("sft", choices=MODES, help="sft: fine-tuned speaker; zero_shot: prompt audio; instruct")
    speed: float = param(1.0, min=0.5, max=2.0, step=0.05, help="Speaking speed")
    seed: int = param(0, min=0, max=2**31 - 1, help="Random seed (same seed, same output)")
    preset: str = param("neutral", help="CosyVoice3 instruction preset name")
    instruct: str = param("", help="Instruction text (overrides the preset; CosyVoice3 / instruct mode)")
    prompt_wav: str = param("", path="read", help="Prompt audio for zero_shot / instruct (v2, v3)")
    prompt_text: str = param("", help="Transcript of the prompt audio (zero_shot)")
    checkpoint: str = param("", path="read", help="epoch_N_whole.pt to hot-load (llm or flow) instead of the dir's weights")


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


def default_output_path(model_dir: str | os.PathLike, speaker: str | None) -> Path:
    from engines.core.settings import resolve_workspace

    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{Path(model_dir).name}_{speaker or 'zero_shot'}_{stamp}.wav".replace("/", "_")
    return resolve_workspace() / "outputs" / "cosyvoice" / name


def build_calls(version: str, sentences: list[str], mode: str, speaker: str | None, speed: float,
                instruct_text: str, prompt_wav: str | None, prompt_text: str | None) -> list[list]:
    """[label, AutoModel method, kwargs] per sentence for the mode and model version (JSON for the worker)."""
    v3 = version == "v3"
    out: list[list] = []
    for s in sentences:
        if mode == "sft":
            text = with_endofprompt(instruct_text, s) if v3 else s
            out.append([s, "inference_sft", dict(tts_text=text, spk_id=speaker, stream=False, speed=speed)])
        elif mode == "zero_shot":
            ptext = with_endofprompt(instruct_text, prompt_text or "") if v3 else (prompt_text or "")
            out.append([s, "inference_zero_shot", dict(tts_text=s, prompt_text=ptext, prompt_wav=prompt_wav,
                                                       stream=False, speed=speed)])
        elif version == "v1":
            out.append([s, "inference_instruct", dict(tts_text=s, spk_id=speaker,
                                                      instruct_text=with_endofprompt(instruct_text),
                                                      stream=False, speed=speed)])
        else:
            out.append([s, "inference_instruct2", dict(tts_text=s, instruct_text=with_endofprompt(instruct_text),
                                                       prompt_wav=prompt_wav, stream=False, speed=speed)])
    return out


def _check_prompt(prompt_wav: str | os.PathLike | None, mode: str) -> str:
    from engines.core.audio import probe_audio

    if not prompt_wav or not Path(prompt_wav).is_file():
        raise InvalidInputError(f"Mode '{mode}' needs a prompt audio file.", "Upload a short clip of the voice.")
    info = probe_audio(prompt_wav)  # raises a clear error for audio it cannot read
    if info.duration > MAX_PROMPT_SECONDS:
        raise InvalidInputError(f"The prompt audio is {info.duration:.1f} s long; CosyVoice takes at most "
                                f"{MAX_PROMPT_SECONDS:.0f} s.", "Use a 3-10 s clip of the voice.")
    if info.sample_rate < 16000:
        raise InvalidInputError(f"The prompt audio has {info.sample_rate} Hz; CosyVoice needs at least 16 kHz.",
                                "Use a recording made at 16 kHz or more.")
    return str(Path(prompt_wav).resolve())


def synthesize(model_dir: str | os.PathLike, text: str, speaker: str | None = None, speed: float = 1.0,
               seed: int = 0, mode: str = "sft", prompt_wav: str | os.PathLike | None = None,
               prompt_text: str | None = None, instruct: str | None = None,
               checkpoint: str | os.PathLike | None = None, out_path: str | os.PathLike | None = None,
               hooks: Hooks | None = None, preset: str = "neutral", presets: dict[str, str] | None = None,
               checkout: str | os.PathLike | None = None, device: str = "auto") -> Path:
    """Speak ``text`` with a CosyVoice model dir (in its synthesis worker); returns the written wav path."""
    from engines.cosyvoice.worker import run_request

    hooks = ensure_hooks(hooks)
    if mode not in MODES:
        raise InvalidInputError(f"Unknown mode '{mode}'.", f"Use one of: {', '.join(MODES)}.")
    if not 0.5 <= float(speed) <= 2.0:
        raise InvalidInputError(f"speed must be between 0.5 and 2.0 (got {speed}).")
    sentences = split_sentences(text)
    if not sentences:
        raise InvalidInputError("There is no text to speak.")
    d = Path(model_dir)
    if not d.is_dir():
        raise InvalidInputError(f"Model dir {d} does not exist.")
    version = upstream.detect_version(d)
    if version is None:
        upstream.model_yaml(d)  # raises with the explanation
    assert version is not None
    missing = upstream.missing_model_files(d, version)
    if missing:
        raise MissingAssetError(missing[0], str(d / missing[0].rstrip("/")), "",
                                f"CosyVoice {version} synthesis; also missing: {', '.join(missing[1:])}"
                                if len(missing) > 1 else f"CosyVoice {version} synthesis")
    if mode == "sft" or (mode == "instruct" and version == "v1"):
        speakers = list_speakers(d)
        if not speakers:
            raise InvalidInputError(f"{d} has no spk2info.pt speakers.",
                                    "Assemble a model dir for your fine-tuned speaker, or use zero_shot mode.")
        if not speaker or speaker not in speakers:
            raise InvalidInputError(f"Speaker '{speaker}' is not in this model ({', '.join(speakers[:10])}).",
                                    "Pick one of the listed speakers.")
    wav = None
    if mode == "zero_shot" or (mode == "instruct" and version != "v1"):
        wav = _check_prompt(prompt_wav, mode)
        if mode == "zero_shot" and not (prompt_text or "").strip():
            raise InvalidInputError("zero_shot mode needs the transcript of the prompt audio.")
    if checkpoint and not Path(checkpoint).is_file():
        raise InvalidInputError(f"Checkpoint {checkpoint} does not exist.", "Pick a finished epoch_N_whole.pt.")
    instruct_text = resolve_instruct(preset, instruct, presets)
    co = upstream.require_checkout(Path(checkout) if checkout is not None else upstream.checkout_path())
    target = Path(out_path) if out_path is not None else default_output_path(d, speaker)
    calls = build_calls(version, sentences, mode, speaker, float(speed), instruct_text, wav, prompt_text)
    request = {"calls": calls, "out": str(target.resolve()), "seed": int(seed),
               "checkpoint": str(Path(checkpoint).resolve()) if checkpoint else None}
    result = run_request(d, co, request, hooks, device)
    hooks.progress(1.0, msg("progress.synth_wrote", name=target.name, seconds=float(result.get("seconds", 0))))
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
                 checkout: str | os.PathLike | None = None, device: str = "auto") -> list[GridItem]:
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
                          presets=preset_texts, checkout=checkout, device=device)
        items.append(GridItem(str(ckpt) if ckpt else None, preset, float(speed), path))
    return items
