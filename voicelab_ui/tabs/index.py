"""Index tab: build an experiment's faiss retrieval index as a job; list the workspace's indexes."""

from __future__ import annotations

from typing import Any

import gradio as gr

from engines.core.errors import VoiceLabError
from engines.core.messages import msg
from engines.rvc.index import IndexParams
from engines.rvc.ops.catalog import feature_versions, list_experiments, list_indexes
from voicelab_ui.context import UIContext
from voicelab_ui.i18n import add, t, ui_text
from voicelab_ui.i18n import table as i18n_table
from voicelab_ui.widgets import error_text, outcome_line, param_widgets, submit_job, values_to_params

add({
    "ix.experiment": ("Experiment", "实验"),
    "ix.experiment_info": ("An experiment with extracted features (RVC Train tab)", "已提取特征的实验（RVC 训练页）"),
    "ix.refresh": ("Refresh", "刷新"),
    "ix.build": ("Build index", "训练索引"),
    "ix.result": ("Result", "结果"),
    "ix.existing": ("Indexes in the workspace", "工作区中的索引"),
    "param.max_train_frames": ("Frames for training", "训练用帧数上限"),
    "help.max_train_frames": ("At most this many random frames train the quantizer / the k-means reduction",
                              "最多用这么多随机帧训练量化器 / k-means 聚类压缩"),
    "param.version": ("Model version", "模型版本"),
    "help.version": ("RVC v1 (256-d features) or v2 (768-d)", "RVC v1（256 维特征）或 v2（768 维）"),
    "param.seed": ("Seed", "随机种子"),
    "help.seed": ("Noise seed for repeatable output (-1 = random)", "噪声种子，相同种子输出相同（-1 = 随机）"),
    "help.index_seed": ("Seed of the shuffle and the k-means (same seed, same index)", "打乱与 k-means 的随机种子（相同种子得到相同索引）"),
})


def features_note(ctx: UIContext, exp: str) -> tuple[str, Any]:
    """What features the experiment has, and the version to preselect."""
    if not exp:
        return "", gr.update()
    try:
        versions = feature_versions(ctx.ws, exp)
    except VoiceLabError as exc:
        return error_text(exc), gr.update()
    if not versions:
        return f"✘ `{exp}`: no extracted features yet (3_feature256/ or 3_feature768/).", gr.update()
    return f"`{exp}`: features for {', '.join(versions)}", gr.update(value=versions[-1])


def index_rows(ctx: UIContext) -> list[list]:
    return [[r["name"], round(r["size"] / 1e6, 2), r["modified"], r["path"]] for r in list_indexes(ctx.ws)]


def result_rows(res: dict) -> list[list]:
    return [
        ["frames", res.get("frames")],
        ["vectors kept", res.get("kept_vectors")],
        ["n_ivf", res.get("n_ivf")],
        ["dim / version", f"{res.get('dim')} / {res.get('version')}"],
        ["k-means reduced", res.get("reduced")],
        ["time (s)", round(float(res.get("seconds") or 0), 2)],
        ["file size (MB)", round(float(res.get("file_size") or 0) / 1e6, 3)],
        ["index", res.get("index")],
        ["upstream name", res.get("upstream_index")],
    ]


RESULT_KEYS = ("ix.col.field", "ix.col.value")
EXISTING_KEYS = ("ix.col.name", "ix.col.mb", "ix.col.modified", "ix.col.path")
RESULT_HEADERS = ["", "value"]
EXISTING_HEADERS = ["name", "MB", "modified", "path"]
add({
    "ix.col.field": ("item", "项目"),
    "ix.col.value": ("value", "值"),
    "ix.col.name": ("name", "名称"),
    "ix.col.mb": ("MB", "MB"),
    "ix.col.modified": ("modified", "修改时间"),
    "ix.col.path": ("path", "路径"),
})


def build(ctx: UIContext) -> None:
    with gr.Row():
        exp = gr.Dropdown(choices=list_experiments(ctx.ws), value=None, allow_custom_value=True,
                          label=t("ix.experiment"), info=t("ix.experiment_info"), elem_id="vl-ix-exp", scale=3)
        refresh = gr.Button(t("ix.refresh"), scale=0, min_width=80)
    note = gr.Markdown(elem_id="vl-ix-note")
    with gr.Row():
        overrides: dict[str, dict] = {k: {"min_width": 200} for k in ("version", "max_train_frames", "seed")}
        overrides["seed"]["info"] = t("help.index_seed")
        widgets = param_widgets(IndexParams, overrides=overrides)
    run = gr.Button(t("ix.build"), variant="primary", elem_id="vl-ix-build")
    with gr.Accordion(t("ix.result"), open=True):
        result_md = gr.Markdown(elem_id="vl-ix-result")
        result = gr.Dataframe(headers=RESULT_HEADERS, value=[], interactive=False, wrap=True, elem_id="vl-ix-table")
    with gr.Accordion(t("ix.existing"), open=True):
        existing = gr.Dataframe(headers=EXISTING_HEADERS, value=index_rows(ctx), interactive=False,
                                wrap=True, elem_id="vl-ix-list")

    names = list(widgets)

    def start(e: str, *values: Any) -> str:
        if not e or not e.strip():
            raise gr.Error(ui_text("err.pick_experiment"))
        params = values_to_params(IndexParams, names, values)
        params["exp_name"] = e.strip()
        return submit_job(ctx, "rvc.index", params, title=msg("title.index", exp=e.strip()))

    run.click(start, [exp, *widgets.values()], ctx.job_id, api_name="build_index")
    exp.change(lambda e: features_note(ctx, e), [exp], [note, widgets["version"]])

    def reload(e: str) -> tuple:
        return gr.update(choices=list_experiments(ctx.ws), value=e), i18n_table(index_rows(ctx), EXISTING_KEYS)

    refresh.click(reload, [exp], [exp, existing])
    ctx.demo.load(lambda e: reload(e)[1], [exp], existing)

    def after_job(marker: str, e: str) -> dict:
        job_id = (marker or "").split(":", 1)[0]
        rec = ctx.runner.get(job_id) if job_id else None
        if rec is None:
            return {result_md: gr.update()}
        if rec.op.startswith("rvc.") and rec.op != "rvc.index":  # new features/weights: refresh the lists only
            return {exp: gr.update(choices=list_experiments(ctx.ws), value=e)}
        if rec.op != "rvc.index":
            return {result_md: gr.update()}  # (an empty dict would read as one value for all outputs)
        if rec.state != "done":
            return {result_md: outcome_line(rec), result: i18n_table([], RESULT_KEYS)}
        res = rec.result or {}
        return {result_md: f"✔ {rec.message}", result: i18n_table(result_rows(res), RESULT_KEYS),
                existing: i18n_table(index_rows(ctx), EXISTING_KEYS)}

    ctx.job_finished.change(after_job, [ctx.job_finished, exp], [result_md, result, existing, exp])
