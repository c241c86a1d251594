"""TTS -> RVC: speak a text with CosyVoice, then convert the take through an RVC voice.

One job does both so a user gets "this text in my RVC voice" in one click;
the CosyVoice take is kept beside the converted file (``keep_speech``) so the
A/B tab can compare the raw speech with the conversion. The parameters reuse
the fields of :class:`SynthParams` and :class:`ConvertParams` (ranges,
defaults and help are defined once, there); only names that clash (seed,
preset) get a ``tts_`` prefix. Nothing here imports torch at import time.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.core.atomic import write_json
from engines.core.errors import InvalidInputError
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.params import info_of, param, subset, to_dict
from engines.core.settings import Workspace, safe_name
from engines.cosyvoice.synth import SynthParams
from engines.rvc.infer.convert import OUTPUT_FORMATS, ConvertParams

OUT_FOLDER = "tts_rvc"  # under <workspace>/outputs
SPEECH_SHARE = 0.6  # of the job's progress bar: synthesis, then conversion


def _reuse(cls: type, name: str, **changes: Any) -> Any:
    """The field ``name`` of ``cls`` again (same default and ParamInfo), with ``changes`` to its info."""
    f = cls.__dataclass_fields__[name]
    info = dataclasses.replace(info_of(f), **changes)
    kwargs = dataclasses.asdict(info)
    if f.default_factory is not dataclasses.MISSING:
        return param(default_factory=f.default_factory, **kwargs)
    return param(f.default, **kwargs)


@dataclass
class TtsRvcParams(ConvertParams):
    """ConvertParams (the RVC side, as in the Convert tab) plus the CosyVoice request and where things go."""

    text: str = _reuse(SynthParams, "text")
    tts_model: str = param("", flag="--model", help="Assembled CosyVoice model name (runtime/cosyvoice/models/<name>) "
                                    "instead of --model-dir")
    model_dir: str = _reuse(SynthParams, "model_dir")
    mode: str = _reuse(SynthParams, "mode")
    speaker: str = _reuse(SynthParams, "speaker")
    speed: float = _reuse(SynthParams, "speed")
    tts_seed: int = _reuse(SynthParams, "seed", help="CosyVoice random seed (same seed, same speech)")
    tts_preset: str = _reuse(SynthParams, "preset")  # (ConvertParams has a preset of its own)
    instruct: str = _reuse(SynthParams, "instruct")
    prompt_wav: str = _reuse(SynthParams, "prompt_wav")
    prompt_text: str = _reuse(SynthParams, "prompt_text")
    checkpoint: str = _reuse(SynthParams, "checkpoint")
    voice: str = param("", path="read", help="RVC voice .pth (a path, or a name in <workspace>/weights)")
    index: str = param("auto", path="read",
                       help="faiss .index file; 'auto' = the voice's workspace index; '' = none")
    hubert: str = param("", path="read", help="Content encoder (default: the configured hubert_base.pt)")
    out: str = param("", path="write", help="Converted file (default: <workspace>/outputs/tts_rvc/...)")
    keep_speech: bool = param(True, help="Keep the CosyVoice take beside the converted file")


@dataclass
class TtsRvcResult:
    output: Path
    speech: Path | None  # the CosyVoice take (None when not kept)
    model_dir: str
    voice: Path
    index: str | None
    seconds: float


def synth_request(p: TtsRvcParams) -> SynthParams:
    """The CosyVoice half of the request (the synthesis worker is asked exactly this)."""
    values = {f.name: getattr(p, f.name) for f in dataclasses.fields(SynthParams) if hasattr(p, f.name)}
    values["seed"], values["preset"] = p.tts_seed, p.tts_preset
    return SynthParams(**values)


def default_output(ws: Workspace, model_dir: str, voice: Path, p: TtsRvcParams) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    who = safe_name(p.speaker or p.mode)
    return ws.outputs / OUT_FOLDER / f"{Path(model_dir).name}_{who}__{voice.stem}_{stamp}.{p.output_format}"


def synthesize_and_convert(ws: Workspace, p: TtsRvcParams, model_dir: str, voice: Path, index: str | None,
                           hooks: Hooks | None = None, presets: dict[str, str] | None = None) -> TtsRvcResult:
    """Speak ``p.text`` with ``model_dir`` (its synthesis worker), convert the take with ``voice``.

    The converted file lands at ``p.out`` (or under outputs/tts_rvc) with a ``.json`` sidecar that
    holds both halves of the request; the CosyVoice take is ``<output stem>.tts.wav``.
    """
    from engines.cosyvoice.synth import synthesize
    from engines.rvc.infer.convert import convert_files

    hooks = ensure_hooks(hooks)
    if not p.text.strip():
        raise InvalidInputError("There is no text to speak.", "Type the text to synthesise.")
    t0 = time.perf_counter()
    target = Path(p.out) if p.out.strip() else default_output(ws, model_dir, voice, p)
    if target.suffix.lower().lstrip(".") != p.output_format:  # the format decides the extension
        known = target.suffix.lower().lstrip(".") in OUTPUT_FORMATS
        target = target.with_suffix(f".{p.output_format}") if known else target.with_name(
            f"{target.name}.{p.output_format}")
    target.parent.mkdir(parents=True, exist_ok=True)
    speech = target.with_name(target.stem + ".tts.wav")
    s = synth_request(p)
    hooks.log(f"1/2 CosyVoice: {Path(model_dir).name} ({s.mode}{', ' + s.speaker if s.speaker else ''})")
    synthesize(model_dir, s.text, s.speaker or None, speed=s.speed, seed=s.seed, mode=s.mode,
               prompt_wav=s.prompt_wav or None, prompt_text=s.prompt_text or None, instruct=s.instruct or None,
               checkpoint=s.checkpoint or None, out_path=speech, hooks=hooks.scaled(0.0, SPEECH_SHARE),
               preset=s.preset, presets=presets, checkout=ws.settings.cosyvoice_repo)
    hooks.check_cancel()
    hooks.log(f"2/2 RVC: {voice.name}" + (f" with {Path(index).name}" if index else " (no index)"))
    conv = subset(p, ConvertParams)
    staging = target.parent / f".{target.stem}.rvc"
    try:
        report = convert_files(ws, voice, [speech], conv, index_path=index, out_dir=staging,
                               hooks=hooks.scaled(SPEECH_SHARE, 1.0), encoder_path=p.hubert or None)
        if not report.converted:
            first = report.failed[0] if report.failed else None
            raise InvalidInputError("The CosyVoice take could not be converted" + (f": {first.error}" if first else "."),
                                    first.hint if first and first.hint else "See the job log.")
        os.replace(report.converted[0].output, target)
    finally:
        for leftover in staging.glob("*"):
            leftover.unlink(missing_ok=True)
        if staging.is_dir():
            staging.rmdir()
    seconds = time.perf_counter() - t0
    write_json(target.with_name(target.name + ".json"), {
        "output": str(target), "speech": str(speech) if p.keep_speech else None, "text": s.text,
        "cosyvoice": {**to_dict(s), "model_dir": model_dir}, "rvc": {"voice": str(voice), "index": index,
                                                                   "params": to_dict(conv)},
        "seconds": round(seconds, 3), "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    if not p.keep_speech:
        speech.unlink(missing_ok=True)
    hooks.progress(1.0, f"Wrote {target.name}")
    return TtsRvcResult(target, speech if p.keep_speech else None, model_dir, voice, index, seconds)


def list_outputs(ws: Workspace, limit: int = 200) -> list[Path]:
    """Converted TTS -> RVC files (newest first), and the CosyVoice takes beside them."""
    folder = ws.outputs / OUT_FOLDER
    if not folder.is_dir():
        return []
    kinds = {f".{fmt}" for fmt in OUTPUT_FORMATS}
    files = [f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in kinds]
    return sorted(files, key=lambda f: f.stat().st_mtime, reverse=True)[:limit]
