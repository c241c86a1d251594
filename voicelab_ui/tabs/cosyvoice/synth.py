"""CosyVoice tab, step 5: synthesis (sft / zero-shot / instruct, hot-loaded checkpoints), compare grid, A/B."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from engines.ab.ops import send_to_ab
from engines.core.errors import VoiceLabError
from engines.core.messages import msg
from engines.core.paths import MODEL_DIR, READ, confine, confine_value
from engines.cosyvoice.catalog import all_checkpoints, synth_model_dirs
from engines.cosyvoice.synth import SynthParams
from engines.rvc.infer.convert import ConvertParams
from engines.rvc.ops.catalog import list_models
from voicelab_ui.i18n import t, ui_text
from voicelab_ui.rvc_forms import f0_method_choices, form_overrides, index_choices
from voicelab_ui.widgets import param_widgets, submit_job, user_error, values_to_params

from .parts import Parts, result_markdown
from .strings import GRID_MAX, form

FIELDS = ["text", "mode", "speed", "seed", "prompt_text"]


def build(ctx: Any, parts: Parts) -> None:
    from engines.cosyvoice.synth import load_presets

    ws = ctx.ws
    presets = load_presets(ws)
    ckpt_choices = [(t("cv.own_weights"), "")]
    with gr.Accordion(t("cv.s5"), open=True, elem_id="vl-cv-synth-box"):
        with gr.Row():
            models = synth_model_dirs(ws)
            model_dd = gr.Dropdown(choices=models, value=models[0] if models else None, allow_custom_value=True,
                                   label=t("cv.model"), info=t("cv.model_info"), elem_id="vl-cv-model", scale=3)
            speaker_dd = gr.Dropdown(choices=[], value=None, allow_custom_value=True, label=t("cv.speaker"),
                                     info=t("cv.speaker_info"), elem_id="vl-cv-speaker", scale=2)
            model_refresh = gr.Button(t("cv.refresh"), scale=0)
        syn_w = form(SynthParams, "synth", only=FIELDS, extra={"text": {"lines": 3, "elem_id": "vl-cv-text"},
                                                                "mode": {"elem_id": "vl-cv-mode"},
                                                                "prompt_text": {"elem_id": "vl-cv-prompt-text"}})
        prompt_wav = gr.Audio(type="filepath", sources=["upload", "microphone"], label=t("cv.prompt_wav"),
                              elem_id="vl-cv-prompt-wav")
        with gr.Row():
            preset_dd = gr.Dropdown(choices=list(presets), value="neutral", allow_custom_value=True,
                                    label=t("cv.preset"), info=t("cv.preset_info"), elem_id="vl-cv-preset", scale=2)
            preset_text = gr.Textbox(value=presets.get("neutral", ""), label=t("cv.preset_text"), scale=4,
                                     elem_id="vl-cv-preset-text")
            save_preset_btn = gr.Button(t("cv.save_preset"), scale=0, elem_id="vl-cv-save-preset")
        ckpt_dd = gr.Dropdown(choices=ckpt_choices + all_checkpoints(ws), value="", allow_custom_value=True,
                              label=t("cv.checkpoint"), info=t("cv.checkpoint_info"), elem_id="vl-cv-checkpoint")
        synth_btn = gr.Button(t("cv.synthesize"), variant="primary", elem_id="vl-cv-synth")
        with gr.Row():
            out_audio = gr.Audio(type="filepath", interactive=False, label=t("cv.output"), elem_id="vl-cv-out")
            out_file = gr.File(label=t("cv.download"), interactive=False, elem_id="vl-cv-download")
        synth_msg = gr.Markdown(elem_id="vl-cv-synth-msg")
        with gr.Accordion(t("cv.rvc"), open=False, elem_id="vl-cv-rvc-box"):
            rvc = rvc_form(ws)
        with gr.Accordion(t("cv.grid"), open=False):
            with gr.Row():
                grid_speeds = gr.Textbox(value="0.9, 1.0, 1.1", label=t("cv.grid_speeds"), info=t("cv.grid_speeds_info"))
                grid_presets = gr.Dropdown(choices=list(presets), value=["neutral"], multiselect=True,
                                           allow_custom_value=True, label=t("cv.grid_presets"))
                grid_ckpts = gr.Dropdown(choices=ckpt_choices + all_checkpoints(ws), value=[], multiselect=True,
                                         allow_custom_value=True, label=t("cv.grid_checkpoints"))
            grid_btn = gr.Button(t("cv.grid_run"), elem_id="vl-cv-grid")
            grid_players = []
            with gr.Row():
                for _ in range(GRID_MAX):
                    grid_players.append(gr.Audio(type="filepath", interactive=False, visible=False, min_width=220,
                                                 elem_classes=["vl-cv-grid-item"]))
        with gr.Accordion(t("cv.ab"), open=False):
            with gr.Row():
                ab_a = gr.Dropdown(choices=ckpt_choices + all_checkpoints(ws), value="", allow_custom_value=True,
                                   label=t("cv.ab_a"))
                ab_b = gr.Dropdown(choices=ckpt_choices + all_checkpoints(ws), value="", allow_custom_value=True,
                                   label=t("cv.ab_b"))
                ab_btn = gr.Button(t("cv.ab_send"), scale=0, elem_id="vl-cv-send-ab")
    parts.c["model"] = model_dd

    def speakers_of(model_dir: str | None):
        from engines.cosyvoice.model_dir import list_speakers

        try:
            chosen = confine_value(ws, model_dir, "model dir", MODEL_DIR)  # never a folder outside the model roots
            names = list_speakers(chosen) if chosen else []
        except VoiceLabError:
            names = []
        return gr.update(choices=names, value=names[0] if names else None)

    model_dd.change(speakers_of, [model_dd], speaker_dd)
    if ctx.demo is not None:
        ctx.demo.load(speakers_of, [model_dd], speaker_dd)

    ck_outputs = [model_dd, ckpt_dd, grid_ckpts, ab_a, ab_b]

    def reload_models(current: str | None) -> tuple:
        ck = ckpt_choices + all_checkpoints(ws)
        models_now = synth_model_dirs(ws)
        return (gr.update(choices=models_now, value=current or (models_now[0] if models_now else None)),
                gr.update(choices=ck), gr.update(choices=ck), gr.update(choices=ck), gr.update(choices=ck))

    model_refresh.click(reload_models, [model_dd], ck_outputs)

    def pick_preset(name: str) -> Any:
        from engines.cosyvoice.synth import load_presets as current_presets

        return current_presets(ws).get(name, gr.update())

    preset_dd.change(pick_preset, [preset_dd], preset_text)

    def store_preset(name: str, text_value: str) -> tuple:
        from engines.cosyvoice.synth import load_presets as current_presets
        from engines.cosyvoice.synth import save_preset

        try:
            save_preset(ws, name or "", text_value or "")
        except VoiceLabError as exc:
            raise user_error(exc) from exc
        names = list(current_presets(ws))
        gr.Info(f"Preset '{name}' saved.")
        return gr.update(choices=names, value=name), gr.update(choices=names)

    save_preset_btn.click(store_preset, [preset_dd, preset_text], [preset_dd, grid_presets],
                          api_name="cosyvoice_save_preset")
    syn_names = list(syn_w)

    def synth_params(model_dir: str | None, speaker: str | None, wav: str | None, preset: str, instruct: str,
                     checkpoint: str | None, values: tuple) -> dict:
        params = values_to_params(SynthParams, syn_names, values)
        if not model_dir:
            raise gr.Error(ui_text("err.pick_model"))
        if wav:
            try:
                wav = str(confine(ws, wav, "prompt audio"))
            except VoiceLabError as exc:
                raise user_error(exc) from exc
        params.update(model_dir=model_dir, speaker=speaker or "", prompt_wav=wav or "", preset=preset or "neutral",
                      instruct=instruct or "", checkpoint=checkpoint or "")
        return params

    synth_inputs = [model_dd, speaker_dd, prompt_wav, preset_dd, preset_text, ckpt_dd]

    def start_synth(model_dir, speaker, wav, preset, instruct, checkpoint, *values) -> str:
        params = synth_params(model_dir, speaker, wav, preset, instruct, checkpoint, values)
        return submit_job(ctx, "cosyvoice.synth", params, title=msg("title.cv_synth", model=Path(model_dir).name))

    synth_btn.click(start_synth, [*synth_inputs, *syn_w.values()], ctx.job_id, api_name="cosyvoice_synth")

    rvc_names = list(rvc["params"])

    def start_synth_rvc(model_dir, speaker, wav, preset, instruct, checkpoint, voice, index, f0, *values) -> str:
        syn_values, conv_values = values[:len(syn_names)], values[len(syn_names):]
        params = synth_params(model_dir, speaker, wav, preset, instruct, checkpoint, syn_values)
        if not voice:
            raise gr.Error("Pick the RVC voice to convert with.")
        params["tts_seed"], params["tts_preset"] = params.pop("seed", 0), params.pop("preset", "neutral")
        params.update(values_to_params(ConvertParams, rvc_names, conv_values), f0_method=f0, voice=voice,
                      index=index or "auto")
        return submit_job(ctx, "chain.tts_rvc", params,
                          title=f"Synthesize with {Path(model_dir).name}, convert with {Path(voice).stem}")

    rvc["run"].click(start_synth_rvc, [*synth_inputs, rvc["voice"], rvc["index"], rvc["f0"], *syn_w.values(),
                                       *rvc["params"].values()], ctx.job_id, api_name="cosyvoice_synth_rvc")

    def start_grid(model_dir, speaker, wav, preset, instruct, checkpoint, speeds, preset_names, ckpts, *values) -> str:
        params = synth_params(model_dir, speaker, wav, preset, "", checkpoint, values)
        params["speeds"] = [s.strip() for s in (speeds or "").split(",") if s.strip()]
        params["presets"] = list(preset_names or [])
        params["checkpoints"] = [c for c in (ckpts or [])]
        if not (params["speeds"] or params["presets"] or params["checkpoints"]):
            raise gr.Error(ui_text("err.pick_compare"))
        return submit_job(ctx, "cosyvoice.synth", params, title=f"Compare grid with {Path(model_dir).name}")

    grid_btn.click(start_grid, [*synth_inputs, grid_speeds, grid_presets, grid_ckpts, *syn_w.values()], ctx.job_id,
                   api_name="cosyvoice_grid")

    def send_ab(model_dir, a, b, text_value, speaker, mode, seed, speed) -> None:
        try:
            a, b = (confine_value(ws, c or "", "checkpoint", READ) for c in (a, b))
            path = send_to_ab(ws, confine_value(ws, model_dir, "model dir", MODEL_DIR), a, b, str(text_value or ""),
                              str(speaker or ""), str(mode or "sft"), int(seed or 0), float(speed or 1.0))
        except VoiceLabError as exc:
            raise user_error(exc) from exc
        gr.Info(f"Sent to the A/B tab ({path.name}).")

    ab_btn.click(send_ab, [model_dd, ab_a, ab_b, syn_w["text"], speaker_dd, syn_w["mode"], syn_w["seed"],
                           syn_w["speed"]], None, api_name="cosyvoice_send_ab")

    def refresh_models(rec: Any, v: dict) -> dict:
        return dict(zip(ck_outputs, reload_models((rec.result or {}).get("model_dir") or v.get("model"))))

    def after_synth(rec: Any, v: dict) -> dict:
        res = rec.result or {}
        out: dict = {synth_msg: result_markdown(rec)}
        if res.get("audio"):
            out[out_audio], out[out_file] = res["audio"], res["audio"]
        grid = res.get("grid") or []
        for i, player_i in enumerate(grid_players):
            if i < len(grid):
                it = grid[i]
                tag = Path(it["checkpoint"]).stem if it.get("checkpoint") else "model"
                out[player_i] = gr.update(value=it["audio"], visible=True,
                                          label=f"{tag} · {it['preset']} · ×{it['speed']:.2f}")
            elif grid:
                out[player_i] = gr.update(value=None, visible=False)
        return out

    def after_rvc(rec: Any, v: dict) -> dict:
        res = rec.result or {}
        return {synth_msg: result_markdown(rec), rvc["out"]: res.get("audio"), rvc["speech"]: res.get("speech"),
                out_file: res.get("audio") or gr.update()}

    parts.on_job("chain.tts_rvc", [synth_msg, rvc["out"], rvc["speech"], out_file], after_rvc)
    parts.on_job("cosyvoice.train", ck_outputs, lambda rec, v: dict(zip(ck_outputs, reload_models(v.get("model")))))
    parts.on_job("cosyvoice.assemble", ck_outputs, refresh_models)
    parts.on_job("cosyvoice.synth", [synth_msg, out_audio, out_file, *grid_players], after_synth)


def rvc_form(ws: Any) -> dict[str, Any]:
    """The "then convert with…" settings: voice, index, pitch method and the Convert tab's parameters."""
    from engines.rvc.pitch.f0 import available_f0_methods

    f0_opts, f0_default, _ = f0_method_choices(available_f0_methods, str(ws.settings.resolved_rmvpe()))
    gr.Markdown(t("cv.rvc_what"))
    voices = list_models(ws)
    with gr.Row():
        voice = gr.Dropdown(choices=voices, value=voices[0] if voices else None, allow_custom_value=True,
                            label=t("cv.rvc_voice"), elem_id="vl-cv-rvc-voice", min_width=200)
        index = gr.Dropdown(choices=index_choices(ws), value="auto", allow_custom_value=True,
                            label=t("cv.rvc_index"), elem_id="vl-cv-rvc-index", min_width=200)
        f0 = gr.Dropdown(choices=f0_opts, value=f0_default, label=t("param.f0_method"), min_width=200,
                         elem_id="vl-cv-rvc-f0")
    with gr.Row():
        params = param_widgets(ConvertParams, skip=("f0_method", "seed"),
                               overrides=form_overrides(ConvertParams, min_width=200))
    run = gr.Button(t("cv.rvc_run"), variant="primary", elem_id="vl-cv-synth-rvc")
    with gr.Row():
        out = gr.Audio(type="filepath", interactive=False, label=t("cv.rvc_out"), elem_id="vl-cv-rvc-out")
        speech = gr.Audio(type="filepath", interactive=False, label=t("cv.rvc_speech"), elem_id="vl-cv-rvc-speech")
    return {"voice": voice, "index": index, "f0": f0, "params": params, "run": run, "out": out, "speech": speech}
