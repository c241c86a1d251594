"""Convert tab: batch voice conversion as a job, checkpoint tools, and the synchronous ``/convert`` API.

Conversions run as ``rvc.convert`` jobs (the shared job panel follows them);
when the job ends, the result section shows players, download links,
per-file errors and stage timings read from the job record. The checkpoint
tools (info / extract / merge) sit in an accordion; extract and merge are
CPU-lane jobs, info is read directly.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import gradio as gr

from engines.core.errors import VoiceLabError
from engines.core.messages import msg, render_ref
from engines.core.paths import confine
from engines.core.settings import safe_name
from engines.rvc.infer.convert import ConvertParams
from engines.rvc.ops.catalog import (
    generator_files,
    list_models,
    resolve_index,
)
from engines.rvc.ops.convert import ExtractJob, MergeJob
from voicelab_ui.api import client_json
from voicelab_ui.context import UIContext
from voicelab_ui import import_form
from voicelab_ui.i18n import add, t, ui_language, ui_text
from voicelab_ui.i18n import table as i18n_table
from voicelab_ui.rvc_forms import (
    confined_index,
    confined_model,
    f0_method_choices,
    form_overrides,
    index_choices,
    link_preset,
)
from voicelab_ui.widgets import (
    api_signature,
    error_text,
    finished_job,
    outcome_line,
    param_widgets,
    submit_job,
    user_error,
    values_to_params,
)

MAX_PLAYERS = 6

add({
    "vc.inputs": ("Input audio", "输入音频"),
    "vc.files": ("Audio files (one or several)", "音频文件（一个或多个）"),
    "vc.folder": ("Or a folder on the server", "或服务器上的文件夹"),
    "vc.folder_info": ("Every audio file inside is converted (workspace or an allowed import root)",
                       "转换其中所有音频文件（须位于工作区或允许的导入目录内）"),
    "vc.model": ("Model (.pth)", "模型 (.pth)"),
    "vc.model_info": ("Models in weights/; or upload one below", "weights/ 中的模型；也可在下方上传"),
    "vc.refresh": ("Refresh", "刷新"),
    "vc.upload_model": ("Upload a community .pth model (copied into weights/)", "上传社区 .pth 模型（复制到 weights/）"),
    "vc.index": ("Index", "索引"),
    "vc.index_info": ("auto = the model's own index if one exists; none = no index",
                      "auto = 自动使用与模型同名的索引；none = 不使用索引"),
    "vc.params": ("Conversion parameters", "推理参数"),
    "vc.f0_unavailable": ("Pitch methods not usable here", "当前不可用的音高提取算法"),
    "vc.convert": ("Convert", "转换"),
    "vc.results": ("Results", "结果"),
    "vc.outputs": ("Converted files", "转换结果文件"),
    "vc.errors": ("Files that failed", "失败的文件"),
    "vc.timings": ("Stage timings (s)", "各阶段耗时 (秒)"),
    "vc.tools": ("Checkpoint tools", "检查点工具"),
    "vc.info_title": ("Model info", "模型信息"),
    "vc.info_model": ("Model (.pth in weights/, G_*.pth, or a path)", "模型（weights/ 中的 .pth、G_*.pth 或路径）"),
    "vc.info_show": ("Show info", "查看信息"),
    "vc.extract_title": ("Extract a small model from a training checkpoint", "从训练检查点提取小模型"),
    "vc.extract_ckpt": ("Training checkpoint (G_*.pth)", "训练检查点 (G_*.pth)"),
    "vc.extract": ("Extract", "提取"),
    "vc.merge_title": ("Merge two models", "模型融合"),
    "vc.merge_a": ("Model A", "模型 A"),
    "vc.merge_b": ("Model B", "模型 B"),
    "vc.merge": ("Merge", "融合"),
    "param.name": ("Output name", "输出名称"),
    "help.name": ("Name of the new model in weights/ (empty = automatic)", "weights/ 中新模型的名称（留空自动命名）"),
    "param.sr": ("Sample rate", "采样率"),
    "help.sr": ("Check against the file (empty = take it from the file)", "与文件核对（留空 = 以文件为准）"),
    "param.version": ("Model version", "模型版本"),
    "help.version": ("RVC v1 (256-d features) or v2 (768-d)", "RVC v1（256 维特征）或 v2（768 维）"),
    "param.info": ("Info text", "模型说明"),
    "help.info": ("Stored in the model's info field", "写入模型的 info 字段"),
    "param.overwrite": ("Overwrite", "覆盖"),
    "help.overwrite": ("Replace a model of the same name in weights/", "覆盖 weights/ 中的同名模型"),
    "param.alpha": ("Weight of model A", "模型 A 权重"),
    "help.alpha": ("1 = only A, 0 = only B", "1 = 只用 A，0 = 只用 B"),
})


def file_error(e: dict, lang: str) -> list[str]:
    """[error, hint] of one failed file in ``lang`` (as stored when it carries no catalogue id)."""
    if e.get("error_ref"):
        return list(render_ref(e["error_ref"], lang, e.get("error") or ""))
    return [e.get("error") or "", e.get("hint") or ""]


def result_line(rec: Any) -> str:
    return outcome_line(rec)


ERROR_KEYS = ("vc.col.file", "vc.col.error", "vc.col.hint")
TIMING_KEYS = ("vc.col.stage", "vc.col.seconds")
INFO_KEYS = ("vc.col.field", "vc.col.value")
add({
    "vc.col.file": ("file", "文件"),
    "vc.col.error": ("error", "错误"),
    "vc.col.hint": ("hint", "提示"),
    "vc.col.stage": ("stage", "阶段"),
    "vc.col.seconds": ("seconds", "秒"),
    "vc.col.field": ("field", "字段"),
    "vc.col.value": ("value", "值"),
})


def info_rows(info: dict) -> list[list[str]]:
    rows = []
    for k, v in info.items():
        if k == "config":
            v = ", ".join(map(str, v))
        elif k == "extra":
            v = ", ".join(f"{a}={b}" for a, b in v.items())
        rows.append([k, str(v)])
    return rows


def build(ctx: UIContext) -> None:
    ws = ctx.ws
    from engines.rvc.pitch.f0 import available_f0_methods

    rmvpe = str(ws.settings.resolved_rmvpe())
    f0_opts, f0_default, f0_why = f0_method_choices(available_f0_methods, rmvpe)
    models = list_models(ws)
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300):
            gr.Markdown(t("vc.inputs"))
            files = gr.File(file_count="multiple", label=t("vc.files"), elem_id="vl-vc-files")
            folder = gr.Textbox(label=t("vc.folder"), info=t("vc.folder_info"), elem_id="vl-vc-folder")
        with gr.Column(scale=1, min_width=300):
            with gr.Row():
                model = gr.Dropdown(choices=models, value=models[0] if models else None, allow_custom_value=True,
                                    label=t("vc.model"), info=t("vc.model_info"), elem_id="vl-vc-model", scale=3)
                refresh = gr.Button(t("vc.refresh"), scale=0, min_width=80)
            upload = gr.File(file_types=[".pth"], label=t("vc.upload_model"), elem_id="vl-vc-upload")
            import_form.build(ctx, "vl-vc")
            index = gr.Dropdown(choices=index_choices(ws), value="auto", allow_custom_value=True, label=t("vc.index"),
                                info=t("vc.index_info"), elem_id="vl-vc-index")
            index_note = gr.Markdown(elem_id="vl-vc-index-note")
    with gr.Accordion(t("vc.params"), open=True):
        f0_method = gr.Dropdown(choices=f0_opts, value=f0_default, label=t("param.f0_method"),
                                info=t("help.f0_method"), elem_id="vl-vc-f0")
        if f0_why:
            with gr.Accordion(t("vc.f0_unavailable"), open=False):
                gr.Markdown(f0_why)
        with gr.Row():
            widgets = param_widgets(ConvertParams, skip=("f0_method",),
                                    overrides=form_overrides(ConvertParams, min_width=220))
            link_preset(widgets)
    widgets = {"f0_method": f0_method, **widgets}
    run = gr.Button(t("vc.convert"), variant="primary", elem_id="vl-vc-run")
    with gr.Accordion(t("vc.results"), open=True):
        result_md = gr.Markdown(elem_id="vl-vc-result")
        players = []
        with gr.Row():
            for _ in range(MAX_PLAYERS):
                players.append(gr.Audio(type="filepath", interactive=False, visible=False, min_width=260,
                                        elem_classes=["vl-vc-output"]))
        out_files = gr.File(file_count="multiple", label=t("vc.outputs"), interactive=False, elem_id="vl-vc-files-out")
        with gr.Row():
            errors = gr.Dataframe(headers=["file", "error", "hint"], value=[], interactive=False, wrap=True,
                                  label=t("vc.errors"), elem_id="vl-vc-errors", min_width=300)
            timings = gr.Dataframe(headers=["stage", "seconds"], value=[], interactive=False,
                                   label=t("vc.timings"), elem_id="vl-vc-timings", min_width=220)

    # -- checkpoint tools
    with gr.Accordion(t("vc.tools"), open=False, elem_id="vl-vc-tools"):
        gr.Markdown(t("vc.info_title"))
        with gr.Row():
            info_model = gr.Dropdown(choices=models + generator_files(ws), value=None, allow_custom_value=True,
                                     label=t("vc.info_model"), scale=3, elem_id="vl-vc-info-model")
            info_btn = gr.Button(t("vc.info_show"), scale=0, min_width=100)
        info_table = gr.Dataframe(headers=["field", "value"], value=[], interactive=False, wrap=True,
                                  elem_id="vl-vc-info")
        gr.Markdown(t("vc.extract_title"))
        g_file = gr.Dropdown(choices=generator_files(ws), value=None, allow_custom_value=True,
                             label=t("vc.extract_ckpt"), elem_id="vl-vc-gfile")
        with gr.Row():
            ex_w = param_widgets(ExtractJob, skip=("checkpoint", "out", "f0"),
                                 overrides={k: {"min_width": 160} for k in ("name", "sr", "version", "info", "overwrite")})
        extract_btn = gr.Button(t("vc.extract"), elem_id="vl-vc-extract")
        gr.Markdown(t("vc.merge_title"))
        with gr.Row():
            merge_a = gr.Dropdown(choices=models, value=None, allow_custom_value=True, label=t("vc.merge_a"),
                                  min_width=200, elem_id="vl-vc-merge-a")
            merge_b = gr.Dropdown(choices=models, value=None, allow_custom_value=True, label=t("vc.merge_b"),
                                  min_width=200, elem_id="vl-vc-merge-b")
        with gr.Row():
            mg_w = param_widgets(MergeJob, skip=("model_a", "model_b", "out"),
                                 overrides={k: {"min_width": 160} for k in ("alpha", "name", "info", "overwrite")})
        merge_btn = gr.Button(t("vc.merge"), elem_id="vl-vc-merge")
        tools_md = gr.Markdown(elem_id="vl-vc-tools-result")

    names = list(widgets)

    # -- model list, upload, index guess
    def index_note_for(m: str, idx: str) -> str:
        if not m or (idx or "auto") != "auto":
            return ""
        try:
            found = resolve_index(ws, "auto", confined_model(ws, m))
        except VoiceLabError:
            return ""
        return f"auto → `{Path(found).name}`" if found else "auto → (no index found for this model)"

    def reload_lists(m: str, a: str, b: str, im: str, g: str) -> tuple:
        ms = list_models(ws)
        gs = generator_files(ws)
        return (gr.update(choices=ms, value=m), gr.update(choices=index_choices(ws)), gr.update(choices=ms, value=a),
                gr.update(choices=ms, value=b), gr.update(choices=ms + gs, value=im), gr.update(choices=gs, value=g))

    list_outputs = [model, index, merge_a, merge_b, info_model, g_file]
    list_inputs = [model, merge_a, merge_b, info_model, g_file]
    refresh.click(reload_lists, list_inputs, list_outputs)
    model.change(index_note_for, [model, index], index_note)
    index.change(index_note_for, [model, index], index_note)
    ctx.demo.load(index_note_for, [model, index], index_note)

    def take_upload(f: Any) -> tuple:
        """Copy an uploaded model into weights/ (after checking it is one) and select it; the upload box empties."""
        from engines.rvc.checkpoints import model_info

        if not f:
            return gr.update(), None
        try:
            src = confine(ws, f, "uploaded file")
            if src.suffix.lower() != ".pth":
                gr.Warning(f"{src.name}: upload an RVC model file ending in .pth.", duration=None)
                return gr.update(), None
            model_info(src)  # refuse anything that is not an RVC generator before copying it
        except VoiceLabError as exc:
            gr.Warning(error_text(exc), duration=None)
            return gr.update(), None
        target = ws.weights / f"{safe_name(src.stem)}.pth"
        n = 1
        while target.exists() and target.read_bytes() != src.read_bytes():
            n += 1
            target = ws.weights / f"{safe_name(src.stem)}_{n}.pth"
        if not target.exists():
            shutil.copyfile(src, target)
        gr.Info(f"{target.name} → weights/")
        return gr.update(choices=list_models(ws), value=target.name), None

    upload.upload(take_upload, [upload], [model, upload])

    # -- convert job
    def start(uploads: list | None, server_folder: str, m: str, idx: str, *values: Any) -> str:
        try:
            inputs = [str(confine(ws, f, "uploaded file")) for f in (uploads or [])]
            if server_folder and server_folder.strip():
                inputs.append(str(confine(ws, server_folder.strip(), "folder")))
            if not inputs:
                raise gr.Error(ui_text("err.convert_inputs"))
            model_path = confined_model(ws, m)
            index_path = confined_index(ws, idx or "auto", model_path)
        except VoiceLabError as exc:
            raise user_error(exc) from exc
        params = values_to_params(ConvertParams, names, values)
        params.update(model=str(model_path), inputs=inputs, index=index_path or "none")
        return submit_job(ctx, "rvc.convert", params, title=msg("title.convert", n=len(inputs), model=model_path.name))

    run.click(start, [files, folder, model, index, *widgets.values()], ctx.job_id, api_name="convert_job")

    # -- checkpoint tools
    def show_info(m: str) -> list:
        from engines.rvc.checkpoints import model_info

        try:
            return i18n_table(info_rows(model_info(confined_model(ws, m))), INFO_KEYS)
        except VoiceLabError as exc:
            raise user_error(exc) from exc

    info_btn.click(show_info, [info_model], info_table, api_name="model_info")

    ex_names = list(ex_w)

    def start_extract(g: str, *values: Any) -> str:
        if not g:
            raise gr.Error(ui_text("err.pick_g"))
        try:
            path = confine(ws, g, "checkpoint")
        except VoiceLabError as exc:
            raise user_error(exc) from exc
        params = values_to_params(ExtractJob, ex_names, values)
        params["checkpoint"] = str(path)
        return submit_job(ctx, "rvc.ckpt_extract", params, title=f"Extract a small model from {path.name}")

    extract_btn.click(start_extract, [g_file, *ex_w.values()], ctx.job_id)

    mg_names = list(mg_w)

    def start_merge(a: str, b: str, *values: Any) -> str:
        try:
            pa, pb = confined_model(ws, a), confined_model(ws, b)
        except VoiceLabError as exc:
            raise user_error(exc) from exc
        params = values_to_params(MergeJob, mg_names, values)
        params.update(model_a=str(pa), model_b=str(pb))
        return submit_job(ctx, "rvc.ckpt_merge", params, title=f"Merge {pa.name} and {pb.name}")

    merge_btn.click(start_merge, [merge_a, merge_b, *mg_w.values()], ctx.job_id)

    # -- job results
    result_outputs = [result_md, *players, out_files, errors, timings, tools_md, info_table, *list_outputs]

    def after_job(marker: str, m: str, a: str, b: str, im: str, g: str) -> dict:
        rec = finished_job(ctx, marker)
        if rec is not None and rec.op == "rvc.import":  # new voices: list them, select the first one
            voices = import_form.imported_voices(rec)
            return dict(zip(list_outputs, reload_lists(voices[0] if voices else m, a, b, im, g)))
        if rec is None or rec.op not in ("rvc.convert", "rvc.ckpt_extract", "rvc.ckpt_merge"):
            return {result_md: gr.update()}  # (an empty dict would read as one value for all outputs)
        out: dict = {}
        res = rec.result or {}
        if rec.op == "rvc.convert":
            out[result_md] = result_line(rec)
            outputs = res.get("outputs") or []
            for i, player in enumerate(players):
                if i < len(outputs):
                    out[player] = gr.update(value=outputs[i], label=Path(outputs[i]).name, visible=True)
                else:
                    out[player] = gr.update(value=None, visible=False)
            out[out_files] = outputs or None
            lang = ui_language()
            out[errors] = i18n_table([[Path(e["input"]).name, *file_error(e, lang)] for e in res.get("errors", [])],
                                     ERROR_KEYS, lang)
            totals = res.get("stage_totals") or {}
            out[timings] = i18n_table([[k, round(float(v), 3)] for k, v in totals.items()], TIMING_KEYS)
            return out
        out[tools_md] = result_line(rec)
        if rec.state == "done" and res.get("info"):
            out[info_table] = i18n_table(info_rows(res["info"]), INFO_KEYS)
        out.update(zip(list_outputs, reload_lists(m, a, b, im, g)))
        return out

    ctx.job_finished.change(after_job, [ctx.job_finished, *list_inputs], result_outputs)

    register_api(ctx)


def register_api(ctx: UIContext) -> None:
    """``/convert``: one audio file in, the converted file and a report dict out (waits for the result).

    The endpoint's keyword parameters are ConvertParams' fields; the conversion runs as an
    ``rvc.convert`` job like the tab's, in the listening lane: calls queue there one at a time per
    device (on its warm worker) and are served while a training runs; none runs beside the queue.
    """
    ws = ctx.ws
    with gr.Group(visible=False):
        a_audio = gr.File(type="filepath", label="audio")
        a_model = gr.Textbox(label="model")
        a_index = gr.Textbox(label="index")
        a_values = param_widgets(ConvertParams)
        a_out = gr.File(label="converted")
        a_info = gr.JSON(label="info")
        a_btn = gr.Button("convert")
    names = list(a_values)

    def convert(audio: str, model: str, index: str, *values: Any) -> tuple[str, dict]:
        """Convert one audio file with an RVC model (a name in weights/ or a server path).

        index: an .index path or name, "auto" (the model's own index) or "" (none).
        Returns the converted file and a report (timings, parameters, model, index).
        """
        if not audio:
            raise gr.Error("No audio file given.")
        try:
            src = confine(ws, audio, "audio file")
            model_path = confined_model(ws, model)
            params = values_to_params(ConvertParams, names, values)
            params.update(model=str(model_path), inputs=[str(src)], index=confined_index(ws, index or "", model_path) or "")
        except VoiceLabError as exc:
            raise user_error(exc) from exc
        rec = ctx.runner.wait(submit_job(ctx, "rvc.convert", params, title=f"Convert {src.name} (API)"),
                              timeout=24 * 3600)
        if rec.state != "done":
            raise gr.Error(" ".join(p for p in rec.error_in(ui_language()) if p) or rec.message_in(ui_language()),
                           duration=None)
        return rec.result["outputs"][0], client_json(rec.result["report"])

    api = api_signature(convert, ConvertParams, leading=("audio", "model", "index"))
    a_btn.click(api, [a_audio, a_model, a_index, *a_values.values()], [a_out, a_info], api_name="convert")
