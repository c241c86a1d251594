"""The TTS -> RVC operation: the CosyVoice tab's "then convert with…" and ``voicelab cosyvoice synth-rvc``.

It runs in the listening lane (synthesis and conversion are both listening
work), so it is served while a training runs, on the warm worker that keeps
the last RVC voice and HuBERT loaded; the CosyVoice model stays loaded in its
own synthesis worker between jobs.
"""

from __future__ import annotations

from pathlib import Path

from engines.chain.tts_rvc import TtsRvcParams
from engines.core.hooks import Hooks
from engines.core.ops import Command, operation
from engines.core.settings import Workspace


@operation("chain.tts_rvc", params=TtsRvcParams, kind="listening", title="CosyVoice speech converted with RVC",
           cli=Command("cosyvoice synth-rvc", "Synthesise text with CosyVoice, then convert it through an RVC voice"),
           render=lambda res: res["audio"])
def tts_rvc_op(p: TtsRvcParams, hooks: Hooks, ws: Workspace) -> dict:
    from engines.chain.tts_rvc import synthesize_and_convert
    from engines.cosyvoice.ops import model_dir_of
    from engines.cosyvoice.synth import load_presets
    from engines.rvc.ops.catalog import resolve_index, resolve_model

    model_dir = model_dir_of(ws, p.tts_model, p.model_dir)
    voice = resolve_model(ws, p.voice)
    index = resolve_index(ws, p.index, voice)
    res = synthesize_and_convert(ws, p, model_dir, voice, index, hooks, presets=load_presets(ws))
    return {"summary": f"wrote {res.output.name} ({Path(model_dir).name} -> {voice.stem}, {res.seconds:.1f} s)",
            "audio": str(res.output), "speech": str(res.speech) if res.speech else None, "model_dir": model_dir,
            "voice": str(voice), "index": index}
