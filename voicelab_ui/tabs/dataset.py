"""Dataset tab: create/extend a dataset from uploads or a server folder; stats and clip players."""

from __future__ import annotations

import dataclasses

import gradio as gr

from engines.core.errors import VoiceLabError
from engines.core.messages import msg
from engines.core.paths import confine
from engines.dataset.importer import DatasetParams
from engines.dataset.stats import dataset_stats, delete_clip, list_clips, list_datasets
from voicelab_ui.api import client_json
from voicelab_ui.context import UIContext
from voicelab_ui.i18n import add, t, ui_text
from voicelab_ui.i18n import table as i18n_table
from voicelab_ui.widgets import error_text, param_widgets, submit_job, user_error, values_to_params

PAGE_SIZE = 6
MAX_PAGE = 10**6

add({
    "ds.name": ("Dataset", "数据集"),
    "ds.name_info": ("Pick one, or type a new name", "选择已有数据集，或输入新名称"),
    "ds.refresh": ("Refresh", "刷新"),
    "ds.add": ("Add audio", "添加音频"),
    "ds.files": ("Audio files or zip archives", "音频文件或 zip 压缩包"),
    "ds.folder": ("Or a folder on the server", "或服务器上的文件夹"),
    "ds.folder_info": ("Inside the workspace or an allowed import root", "须位于工作区或允许的导入目录内"),
    "ds.processing": ("Processing", "处理选项"),
    "ds.import": ("Import", "导入"),
    "ds.stats": ("Statistics", "统计"),
    "ds.rates": ("Sample rates", "采样率分布"),
    "ds.skipped": ("Skipped files", "跳过的文件"),
    "ds.col.rate": ("rate", "采样率"),
    "ds.col.clips": ("clips", "切片数"),
    "ds.col.file": ("file", "文件"),
    "ds.col.reason": ("reason", "原因"),
    "ds.clips": ("Clips", "切片"),
    "ds.page": ("Page", "页码"),
    "ds.prev": ("◀ Previous", "◀ 上一页"),
    "ds.next": ("Next ▶", "下一页 ▶"),
    "ds.clip_id": ("Clip id", "切片 ID"),
    "ds.delete": ("Delete clip", "删除切片"),
    "param.target_sr": ("Sample rate", "采样率"),
    "help.target_sr": ("Output sample rate (0 = keep each file's rate)", "输出采样率（0 = 保持原采样率）"),
    "param.slice": ("Slice on silence", "按静音切片"),
    "help.slice": ("Slice on silence (RVC slicer)", "按静音切分（RVC 切片器）"),
    "param.threshold_db": ("Silence threshold (dB)", "静音阈值 (dB)"),
    "help.threshold_db": ("Slicer: silence threshold (dBFS RMS)", "切片器：静音阈值（dBFS RMS）"),
    "param.min_length_ms": ("Minimum length (ms)", "最短长度 (ms)"),
    "help.min_length_ms": ("Slicer: minimum piece length before a cut (ms)", "切片器：切分前的最短片段长度 (ms)"),
    "param.min_interval_ms": ("Minimum silence (ms)", "最短静音 (ms)"),
    "help.min_interval_ms": ("Slicer: minimum silence that makes a cut (ms)", "切片器：触发切分的最短静音 (ms)"),
    "param.hop_ms": ("Hop (ms)", "帧移 (ms)"),
    "help.hop_ms": ("Slicer: RMS hop (ms)", "切片器：RMS 帧移 (ms)"),
    "param.max_sil_kept_ms": ("Silence kept (ms)", "保留静音 (ms)"),
    "help.max_sil_kept_ms": ("Slicer: longest silence kept around a piece (ms)", "切片器：片段两侧保留的最长静音 (ms)"),
    "param.normalize": ("Normalise loudness", "响度归一化"),
    "help.normalize": ("Normalise each clip's loudness", "对每个切片做响度归一化"),
    "param.norm_mode": ("Normalise by", "归一化方式"),
    "help.norm_mode": ("Normalise RMS level or sample peak", "按 RMS 电平或采样峰值归一化"),
    "param.target_db": ("Target level (dBFS)", "目标电平 (dBFS)"),
    "help.target_db": ("Target level (dBFS) for the normalisation", "归一化的目标电平 (dBFS)"),
    "param.peak_ceiling_db": ("Peak ceiling (dBFS)", "峰值上限 (dBFS)"),
    "help.peak_ceiling_db": ("Peak never exceeds this after normalisation (dBFS)", "归一化后峰值不超过此值 (dBFS)"),
    "param.highpass": ("High-pass 48 Hz", "48 Hz 高通"),
    "help.highpass": ("5th-order Butterworth high-pass at 48 Hz (removes rumble/DC)", "48 Hz 五阶巴特沃斯高通（去除低频隆隆声/直流）"),
    "param.min_clip_seconds": ("Shortest clip (s)", "最短切片 (秒)"),
    "help.min_clip_seconds": ("Drop clips shorter than this (s)", "丢弃短于此时长的切片 (秒)"),
    "param.max_clip_seconds": ("Longest clip (s)", "最长切片 (秒)"),
    "help.max_clip_seconds": ("Split longer pieces into parts of at most this (s)", "将更长的片段切成不超过此时长的部分 (秒)"),
})


RATE_KEYS = ("ds.col.rate", "ds.col.clips")
SKIPPED_KEYS = ("ds.col.file", "ds.col.reason")


def stats_markdown(ctx: UIContext, name: str) -> tuple[str, list[list], list[list]]:
    if not name:
        return "", [], []
    try:
        s = dataset_stats(ctx.ws, name)
    except VoiceLabError as exc:
        return error_text(exc), [], []
    md = (
        f"**{s.name}** — {s.clips} clips, {s.total_seconds / 60:.1f} min in all "
        f"(shortest {s.min_seconds:.2f} s, longest {s.max_seconds:.2f} s, mean {s.mean_seconds:.2f} s); "
        f"{s.clipped_clips} clipped, {s.silent_clips} silent; {s.sources} source files, {s.skipped_files} skipped."
    )
    rates = [[f"{sr} Hz", n] for sr, n in s.rate_histogram.items()]
    skipped = [[x.get("source", ""), x.get("reason", "")] for x in s.skipped]
    return md, rates, skipped


def build(ctx: UIContext) -> None:
    with gr.Row():
        name = gr.Dropdown(choices=list_datasets(ctx.ws), value=None, allow_custom_value=True, label=t("ds.name"),
                           info=t("ds.name_info"), elem_id="vl-ds-name", scale=3)
        refresh = gr.Button(t("ds.refresh"), scale=0)
    with gr.Accordion(t("ds.add"), open=True):
        files = gr.File(file_count="multiple", label=t("ds.files"), elem_id="vl-ds-files")
        folder = gr.Textbox(label=t("ds.folder"), info=t("ds.folder_info"), elem_id="vl-ds-folder")
        with gr.Accordion(t("ds.processing"), open=False):
            widgets = param_widgets(DatasetParams)
        run = gr.Button(t("ds.import"), variant="primary", elem_id="vl-ds-import")
    with gr.Accordion(t("ds.stats"), open=True):
        summary = gr.Markdown(elem_id="vl-ds-summary")
        with gr.Row():
            rates = gr.Dataframe(headers=["rate", "clips"], value=[], interactive=False, label=t("ds.rates"))
            skipped = gr.Dataframe(headers=["file", "reason"], value=[], interactive=False, label=t("ds.skipped"),
                                   wrap=True, elem_id="vl-ds-skipped")
    with gr.Accordion(t("ds.clips"), open=True):
        with gr.Row():
            prev_btn = gr.Button(t("ds.prev"), size="sm")
            page = gr.Number(value=1, precision=0, minimum=1, label=t("ds.page"), elem_id="vl-ds-page")
            next_btn = gr.Button(t("ds.next"), size="sm")
        players = []
        with gr.Row():
            for i in range(PAGE_SIZE):
                players.append(gr.Audio(type="filepath", interactive=False, visible=False, min_width=220,
                                        elem_classes=["vl-ds-clip"]))
        with gr.Row():
            clip_id = gr.Textbox(label=t("ds.clip_id"), scale=2)
            delete = gr.Button(t("ds.delete"), variant="stop", scale=0)

    names = list(widgets)

    def start(ds: str, uploads: list | None, server_folder: str, *values):
        sources = [str(confine(ctx.ws, f, "uploaded file")) for f in (uploads or [])]
        if server_folder and server_folder.strip():
            try:
                sources.append(str(confine(ctx.ws, server_folder.strip(), "folder")))
            except VoiceLabError as exc:
                raise user_error(exc) from exc
        params = values_to_params(DatasetParams, names, values)
        params.update(name=(ds or "").strip(), sources=sources)
        if not params["name"]:
            raise gr.Error(ui_text("err.dataset_name"))
        return submit_job(ctx, "dataset.import", params, title=msg("title.dataset_import", name=params["name"]))

    run.click(start, [name, files, folder, *widgets.values()], ctx.job_id, api_name="dataset_import")

    def show_page(ds: str, p: float) -> list:
        updates: list = []
        rows, total = ([], 0)
        if ds:
            try:
                rows, total = list_clips(ctx.ws, ds, max(1, int(p or 1)), PAGE_SIZE)
            except VoiceLabError:
                rows, total = [], 0
        for i in range(PAGE_SIZE):
            if i < len(rows):
                c = rows[i]
                label = f"{c['id']} · {c['duration']:.2f} s · {c['sample_rate']} Hz" + (" · clipped" if c.get("clipped") else "")
                updates.append(gr.update(value=c["path"], label=label, visible=True))
            else:
                updates.append(gr.update(value=None, visible=False))
        return updates

    def show_all(ds: str, p: float) -> list:
        md, r, sk = stats_markdown(ctx, ds)
        return [md, i18n_table(r, RATE_KEYS), i18n_table(sk, SKIPPED_KEYS), *show_page(ds, p)]

    view_outputs = [summary, rates, skipped, *players]
    name.change(lambda ds: show_all(ds, 1), [name], view_outputs).then(lambda: 1, None, page)
    page.submit(show_page, [name, page], players)
    def step_page(p: float, step: int) -> int:
        return max(1, min(MAX_PAGE, int(p or 1) + step))

    prev_btn.click(lambda p: step_page(p, -1), [page], page).then(show_page, [name, page], players)
    next_btn.click(lambda p: step_page(p, 1), [page], page).then(show_page, [name, page], players)

    def reload_names(ds: str):
        return gr.update(choices=list_datasets(ctx.ws), value=ds)

    refresh.click(reload_names, [name], name).then(show_all, [name, page], view_outputs)
    ctx.job_finished.change(reload_names, [name], name).then(show_all, [name, page], view_outputs)

    def remove(ds: str, cid: str, p: float) -> list:
        try:
            delete_clip(ctx.ws, ds, cid.strip())
        except VoiceLabError as exc:
            raise user_error(exc) from exc
        return show_all(ds, p)

    delete.click(remove, [name, clip_id, page], view_outputs)
    def stats_api(dataset: str) -> dict:
        """Numbers of one dataset: clips, durations, rate histogram, clipped/silent, skipped files."""
        try:
            return client_json(dataclasses.asdict(dataset_stats(ctx.ws, dataset)))
        except VoiceLabError as exc:
            raise user_error(exc) from exc

    gr.api(stats_api, api_name="dataset_stats")
