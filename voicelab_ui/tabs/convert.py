"""Convert tab: batch voice conversion as a job, checkpoint tools, and the synchronous ``/convert`` API.

Conversions run as ``rvc.convert`` jobs (the shared job panel follows them);
when the job ends, the result section shows players, download links,
per-file errors and stage timings read from the job record. The checkpoint
tools (info / extract / merge) sit in an accordion; extract and merge are
light jobs, info is read directly.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import gradio as gr

from engines.core.errors import VoiceLabError
from engines.core.settings import safe_name
from engines.rvc.convert import ConvertParams
from engines.rvc.ops_convert import ExtractJob, MergeJob, list_indexes, list_models, resolve_index, resolve_model
from voicelab_ui.api import client_json
from voicelab_ui.context import UIContext
from voicelab_ui.i18n import add, t
from voicelab_ui.paths import confine
from voicelab_ui.widgets import param_widgets, submit_job, user_error, values_to_params

MAX_PLAYERS = 6
F0_PREFERENCE = ("rmvpe", "fcpe", "crepe-tiny", "swift", "harvest", "pm")

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
    "param.transpose": ("Transpose (semitones)", "变调（半音）"),
    "help.transpose": ("Pitch shift in semitones: +12 = one octave up (male → female ≈ +12, female → male ≈ -12)",
                       "以半音为单位变调：+12 = 升高一个八度（男转女约 +12，女转男约 -12）"),
    "param.f0_method": ("Pitch extraction method", "音高提取算法"),
    "help.f0_method": ("rmvpe is the usual best; pm is fastest; crepe/fcpe are network-based",
                       "rmvpe 通常效果最好；pm 最快；crepe/fcpe 基于神经网络"),
    "param.index_rate": ("Index rate", "检索特征占比"),
    "help.index_rate": ("How much of the index's voice features to blend in (0 = index unused)",
                        "混入索引中音色特征的比例（0 = 不使用索引）"),
    "param.filter_radius": ("Median filter radius", "中值滤波半径"),
    "help.filter_radius": ("harvest only: >= 3 median-filters the pitch curve (less muffled breathing)",
                           "仅 harvest：>= 3 时对音高曲线做中值滤波，可减轻哑音"),
    "param.resample_sr": ("Resample output to (Hz)", "输出重采样 (Hz)"),
    "help.resample_sr": ("0 = the model's own rate; otherwise 16000..48000", "0 = 使用模型自身采样率；否则为 16000..48000"),
    "param.rms_mix_rate": ("Volume envelope mix", "响度因子"),
    "help.rms_mix_rate": ("0 = follow the input's loudness envelope, 1 = keep the model's output",
                          "0 = 跟随输入的响度包络，1 = 保持模型输出的响度"),
    "param.protect": ("Protect consonants", "保护清辅音"),
    "help.protect": ("Protect breaths and voiceless consonants from the index (0.5 = off)",
                     "保护清辅音和呼吸声不受索引影响（0.5 = 关闭）"),
    "param.speaker_id": ("Speaker ID", "说话人 ID"),
    "help.speaker_id": ("Speaker of multi-speaker models (0 for most models)", "多说话人模型的说话人（多数模型为 0）"),
    "param.output_format": ("Output format", "输出格式"),
    "help.output_format": ("File format of the converted audio", "转换结果的文件格式"),
    "help.convert_normalize": ("Peak-normalise the output to -0.1 dBFS (off keeps the model's levels)",
                               "将输出峰值归一化到 -0.1 dBFS（关闭则保持模型原电平）"),
    "param.seed": ("Seed", "随机种子"),
    "help.seed": ("Noise seed for repeatable output (-1 = random)", "噪声种子，相同种子输出相同（-1 = 随机）"),
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


def f0_method_choices(probe: Any, rmvpe: str | None = None) -> tuple[list[tuple[str, str]], str, str]:
    avail = probe(rmvpe)
    choices = [(m if ok else f"{m} ✗", m) for m, (ok, _) in avail.items()]
    default = next((m for m in F0_PREFERENCE if avail.get(m, (False, ""))[0]), "pm")
    why = "\n".join(f"- **{m}**: {reason}" for m, (ok, reason) in avail.items() if not ok)
    return choices, default, why


def form_overrides(cls: type, min_width: int) -> dict[str, dict]:
    """Widget overrides for a ConvertParams form: narrow-screen width, and normalize's conversion help."""
    import dataclasses

    out: dict[str, dict] = {f.name: {"min_width": min_width} for f in dataclasses.fields(cls)}
    out["normalize"]["info"] = t("help.convert_normalize")
    return out


def confined_index(ws: Any, idx: str, model_path: Path) -> str | None:
    """The index to use ("auto"/"none"/a path), refusing paths outside the readable folders."""
    found = resolve_index(ws, idx, model_path)
    if found:
        confine(ws, found, "index")
    return found


def index_choices(ws: Any) -> list[tuple[str, str]]:
    return [("auto", "auto"), ("none", "none")] + [(r["name"], r["path"]) for r in list_indexes(ws)]


def finished_record(ctx: UIContext, marker: str) -> Any:
    job_id = (marker or "").split(":", 1)[0]
    return ctx.runner.get(job_id) if job_id else None


def result_line(rec: Any) -> str:
    if rec.state == "done":
        return f"✔ {rec.message}"
    return f"✘ **{rec.state}**: {rec.error or rec.message}"


def info_rows(info: dict) -> list[list[str]]:
    rows = []
    for k, v in info.items():
        if k == "config":
            v = ", ".join(map(str, v))
        elif k == "extra":
            v = ", ".join(f"{a}={b}" for a, b in v.items())
        rows.append([k, str(v)])
    return rows


def generator_files(ws: Any) -> list[str]:
    return [str(p) for p in sorted(ws.experiments.glob("*/G_*.pth"))]


def build(ctx: UIContext) -> None:
    ws = ctx.ws
    from engines.rvc.f0 import available_f0_methods

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
            ex_w = param_widgets(ExtractJob, skip=("checkpoint",),
                                 overrides={k: {"min_width": 160} for k in ("name", "sr", "version", "info", "overwrite")})
        extract_btn = gr.Button(t("vc.extract"), elem_id="vl-vc-extract")
        gr.Markdown(t("vc.merge_title"))
        with gr.Row():
            merge_a = gr.Dropdown(choices=models, value=None, allow_custom_value=True, label=t("vc.merge_a"),
                                  min_width=200, elem_id="vl-vc-merge-a")
            merge_b = gr.Dropdown(choices=models, value=None, allow_custom_value=True, label=t("vc.merge_b"),
                                  min_width=200, elem_id="vl-vc-merge-b")
        with gr.Row():
            mg_w = param_widgets(MergeJob, skip=("model_a", "model_b"),
                                 overrides={k: {"min_width": 160} for k in ("alpha", "name", "info", "overwrite")})
        merge_btn = gr.Button(t("vc.merge"), elem_id="vl-vc-merge")
        tools_md = gr.Markdown(elem_id="vl-vc-tools-result")

    names = list(widgets)

    # -- model list, upload, index guess
    def index_note_for(m: str, idx: str) -> str:
        if not m or (idx or "auto") != "auto":
            return ""
        try:
            found = resolve_index(ws, "auto", resolve_model(ws, m))
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
            gr.Warning(f"{exc.message} {exc.hint}".strip(), duration=None)
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
                raise gr.Error("Add audio files or a folder to convert.")
            model_path = resolve_model(ws, m or "")
            confine(ws, model_path, "model")
            index_path = confined_index(ws, idx or "auto", model_path)
        except VoiceLabError as exc:
            raise user_error(exc) from exc
        params = values_to_params(ConvertParams, names, values)
        params.update(model=str(model_path), inputs=inputs, index=index_path or "none")
        return submit_job(ctx, "rvc.convert", params, title=f"Convert {len(inputs)} input(s) with {model_path.name}")

    run.click(start, [files, folder, model, index, *widgets.values()], ctx.job_id, api_name="convert_job")

    # -- checkpoint tools
    def show_info(m: str) -> list:
        from engines.rvc.checkpoints import model_info

        try:
            p = resolve_model(ws, m or "")
            confine(ws, p, "model")
            return info_rows(model_info(p))
        except VoiceLabError as exc:
            raise user_error(exc) from exc

    info_btn.click(show_info, [info_model], info_table, api_name="model_info")

    ex_names = list(ex_w)

    def start_extract(g: str, *values: Any) -> str:
        if not g:
            raise gr.Error("Pick a G_*.pth training checkpoint.")
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
            pa, pb = resolve_model(ws, a or ""), resolve_model(ws, b or "")
            confine(ws, pa, "model")
            confine(ws, pb, "model")
        except VoiceLabError as exc:
            raise user_error(exc) from exc
        params = values_to_params(MergeJob, mg_names, values)
        params.update(model_a=str(pa), model_b=str(pb))
        return submit_job(ctx, "rvc.ckpt_merge", params, title=f"Merge {pa.name} and {pb.name}")

    merge_btn.click(start_merge, [merge_a, merge_b, *mg_w.values()], ctx.job_id)

    # -- job results
    result_outputs = [result_md, *players, out_files, errors, timings, tools_md, info_table, *list_outputs]

    def after_job(marker: str, m: str, a: str, b: str, im: str, g: str) -> dict:
        rec = finished_record(ctx, marker)
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
            out[errors] = [[Path(e["input"]).name, e.get("error") or "", e.get("hint") or ""]
                           for e in res.get("errors", [])]
            totals = res.get("stage_totals") or {}
            out[timings] = [[k, round(float(v), 3)] for k, v in totals.items()]
            return out
        out[tools_md] = result_line(rec)
        if rec.state == "done" and res.get("info"):
            out[info_table] = info_rows(res["info"])
        out.update(zip(list_outputs, reload_lists(m, a, b, im, g)))
        return out

    ctx.job_finished.change(after_job, [ctx.job_finished, *list_inputs], result_outputs)

    register_api(ctx)


def register_api(ctx: UIContext) -> None:
    """``/convert``: one audio file in, the converted file and a report dict out (waits for the result)."""
    ws = ctx.ws
    defaults = ConvertParams()
    with gr.Group(visible=False):
        a_audio = gr.File(type="filepath", label="audio")
        a_model = gr.Textbox(label="model")
        a_index = gr.Textbox(label="index")
        a_values = {
            "transpose": gr.Number(value=defaults.transpose, precision=0, label="transpose"),
            "f0_method": gr.Textbox(value=defaults.f0_method, label="f0_method"),
            "index_rate": gr.Number(value=defaults.index_rate, label="index_rate"),
            "filter_radius": gr.Number(value=defaults.filter_radius, precision=0, label="filter_radius"),
            "resample_sr": gr.Number(value=defaults.resample_sr, precision=0, label="resample_sr"),
            "rms_mix_rate": gr.Number(value=defaults.rms_mix_rate, label="rms_mix_rate"),
            "protect": gr.Number(value=defaults.protect, label="protect"),
            "speaker_id": gr.Number(value=defaults.speaker_id, precision=0, label="speaker_id"),
            "output_format": gr.Textbox(value=defaults.output_format, label="output_format"),
            "normalize": gr.Checkbox(value=defaults.normalize, label="normalize"),
            "seed": gr.Number(value=defaults.seed, precision=0, label="seed"),
        }
        a_out = gr.File(label="converted")
        a_info = gr.JSON(label="info")
        a_btn = gr.Button("convert")

    def convert(audio: str, model: str, index: str = "", transpose: float = 0, f0_method: str = "rmvpe",
                index_rate: float = 0.75, filter_radius: float = 3, resample_sr: float = 0,
                rms_mix_rate: float = 0.25, protect: float = 0.33, speaker_id: float = 0,
                output_format: str = "wav", normalize: bool = True, seed: float = -1) -> tuple[str, dict]:
        """Convert one audio file with an RVC model (a name in weights/ or a server path).

        index: an .index path or name, "auto" (the model's own index) or "" (none).
        Returns the converted file and a report (timings, parameters, model, index).
        """
        from engines.rvc.convert import api_convert

        if not audio:
            raise gr.Error("No audio file given.")
        try:
            src = confine(ws, audio, "audio file")
            model_path = resolve_model(ws, model)
            confine(ws, model_path, "model")
            idx = confined_index(ws, index or "", model_path)
            out, info = api_convert(ws, str(src), str(model_path), idx, transpose=int(transpose), f0_method=f0_method,
                                    index_rate=float(index_rate), filter_radius=int(filter_radius),
                                    resample_sr=int(resample_sr), rms_mix_rate=float(rms_mix_rate),
                                    protect=float(protect), speaker_id=int(speaker_id), output_format=output_format,
                                    normalize=bool(normalize), seed=int(seed))
        except VoiceLabError as exc:
            raise user_error(exc) from exc
        return out, client_json(info)

    a_btn.click(convert, [a_audio, a_model, a_index, *a_values.values()], [a_out, a_info], api_name="convert")
