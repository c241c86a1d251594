"""Jobs tab: the history with filters; open any job in the job panel."""

from __future__ import annotations

import time

import gradio as gr

from engines.core.jobs import STATES
from voicelab_ui.context import UIContext
from voicelab_ui.i18n import add, t, text, ui_language
from voicelab_ui.i18n import table as i18n_table
from voicelab_ui.widgets import submit_job

add({
    "jobs.filter_op": ("Operation starts with", "操作名前缀"),
    "jobs.col.id": ("Id", "ID"),
    "jobs.col.state": ("state", "状态"),
    "jobs.col.operation": ("operation", "操作"),
    "jobs.col.progress": ("progress", "进度"),
    "jobs.col.message": ("message", "消息"),
    "jobs.col.started": ("started", "开始时间"),
    "jobs.col.duration": ("duration (s)", "耗时（秒）"),
})

COLUMN_KEYS = ["jobs.col.id", "jobs.col.state", "jobs.col.operation", "jobs.col.progress", "jobs.col.message",
               "jobs.col.started", "jobs.col.duration"]
COLUMNS = [text(k) for k in COLUMN_KEYS]


def history_rows(ctx: UIContext, state: str | None, op_prefix: str | None, lang: str = "en") -> list[list]:
    states = None if state in (None, "", "all") else [state]
    rows = []
    for r in ctx.runner.list(states, (op_prefix or "").strip(), limit=300):
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started)) if r.started else ""
        dur = f"{r.duration:.1f}" if r.duration is not None else ""
        rows.append([r.id, r.state_in(lang), r.op, f"{r.progress * 100:.0f}%", r.message_in(lang), started, dur])
    return rows


def build(ctx: UIContext) -> None:
    with gr.Row():
        state = gr.Dropdown(["all", *STATES], value="all", label=t("jobs.state"), scale=1)
        op_prefix = gr.Textbox(label=t("jobs.filter_op"), placeholder="rvc.", scale=2)
        refresh = gr.Button(t("jobs.refresh"), scale=0)
    # headers as plain text (an endpoint's API description cannot hold translation objects); every load
    # (page load included) sends them in the page's language with the rows
    table = gr.Dataframe(headers=COLUMNS, value=[], interactive=False, wrap=True, label=t("jobs.list"),
                         elem_id="vl-jobs-table")
    with gr.Row():
        job_id = gr.Textbox(label=t("jobs.open_id"), scale=3, elem_id="vl-jobs-open-id")
        open_btn = gr.Button(t("jobs.open"), scale=0, elem_id="vl-jobs-open")
        retry_btn = gr.Button(t("jobs.retry"), scale=0)

    def load(s: str, p: str) -> dict:
        lang = ui_language()
        return i18n_table(history_rows(ctx, s, p, lang), COLUMN_KEYS, lang)

    for ev in (refresh.click, state.change, op_prefix.submit):
        ev(load, [state, op_prefix], table)
    ctx.job_finished.change(load, [state, op_prefix], table)
    ctx.demo.load(load, [state, op_prefix], table)

    def pick(evt: gr.SelectData, rows) -> str:
        try:
            return str(rows.iloc[evt.index[0], 0])
        except Exception:
            return ""

    table.select(pick, [table], job_id)
    open_btn.click(lambda j: (j or "").strip(), [job_id], ctx.job_id)

    def retry(j: str | None) -> str:
        rec = ctx.runner.get((j or "").strip())
        if rec is None:
            raise gr.Error(text("jobs.choose_first", ui_language()))
        return submit_job(ctx, rec.op, rec.params, title=rec.title)

    retry_btn.click(retry, [job_id], ctx.job_id)
    ctx.extras["jobs_reload"] = (load, [state, op_prefix], table)
