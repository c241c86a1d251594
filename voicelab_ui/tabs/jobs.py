"""Jobs tab: the history with filters (open any job in the job panel), and the worker processes.

Every job runs in a worker process of its lane (training, listening, CPU). The warm listening worker
keeps the last voice, HuBERT and index loaded between requests; "Free GPU memory" stops the idle
workers, which frees everything they hold (the next request starts a fresh one).
"""

from __future__ import annotations

import time

import gradio as gr

from engines.core.jobs import STATES
from voicelab_ui.context import UIContext
from voicelab_ui.i18n import add, t
from voicelab_ui.widgets import submit_job

add({
    "jobs.filter_op": ("Operation starts with", "操作名前缀"),
    "jobs.col.id": ("Id", "ID"),
    "jobs.workers": ("Worker processes", "工作进程"),
    "jobs.workers_info": (
        "Each job runs in a worker process of its lane: training (one job per GPU set), listening (conversions, "
        "A/B, previews, synthesis: served while a training runs) and CPU. An idle listening worker keeps its "
        "models loaded for fast A/B; it stops by itself after a while, or now with the button.",
        "每个任务都在其通道的工作进程中运行：训练（每组显卡一次一个任务）、试听（推理、A/B、预览、合成：训练时也能运行）和 CPU。"
        "空闲的试听进程会保留已加载的模型以加快 A/B 对比；它会在空闲一段时间后自行退出，也可点击按钮立即停止。"),
    "jobs.free_gpu": ("Free GPU memory (stop idle workers)", "释放显存（停止空闲的工作进程）"),
})

COLUMNS = ["id", "state", "operation", "lane", "device", "progress", "message", "started", "duration (s)"]
WORKER_COLUMNS = ["worker", "lane", "device", "pid", "state", "job", "jobs done", "idle (s)"]


def history_rows(ctx: UIContext, state: str | None, op_prefix: str | None) -> list[list]:
    states = None if state in (None, "", "all") else [state]
    rows = []
    for r in ctx.runner.list(states, (op_prefix or "").strip(), limit=300):
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started)) if r.started else ""
        dur = f"{r.duration:.1f}" if r.duration is not None else ""
        device = (r.worker or {}).get("device") or r.device
        rows.append([r.id, r.state, r.op, r.lane, device, f"{r.progress * 100:.0f}%", r.message, started, dur])
    return rows


def worker_rows(ctx: UIContext) -> list[list]:
    return [[w["id"], w["lane"], w["slot"], w["pid"], w["state"], w["job"], w["jobs_done"], w["idle_seconds"]]
            for w in ctx.runner.workers()]


def build(ctx: UIContext) -> None:
    with gr.Row():
        state = gr.Dropdown(["all", *STATES], value="all", label=t("jobs.state"), scale=1)
        op_prefix = gr.Textbox(label=t("jobs.filter_op"), placeholder="rvc.", scale=2)
        refresh = gr.Button(t("jobs.refresh"), scale=0)
    table = gr.Dataframe(headers=COLUMNS, value=[], interactive=False, wrap=True, label=t("jobs.list"),
                         elem_id="vl-jobs-table")
    with gr.Row():
        job_id = gr.Textbox(label=t("jobs.open_id"), scale=3, elem_id="vl-jobs-open-id")
        open_btn = gr.Button(t("jobs.open"), scale=0, elem_id="vl-jobs-open")
        retry_btn = gr.Button(t("jobs.retry"), scale=0)

    def load(s: str, p: str) -> list[list]:
        return history_rows(ctx, s, p)

    for ev in (refresh.click, state.change, op_prefix.submit):
        ev(load, [state, op_prefix], table)
    ctx.job_finished.change(load, [state, op_prefix], table)

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
            raise gr.Error("Choose a job first.")
        return submit_job(ctx, rec.op, rec.params, title=rec.title)

    retry_btn.click(retry, [job_id], ctx.job_id)
    ctx.extras["jobs_reload"] = (load, [state, op_prefix], table)

    with gr.Accordion(t("jobs.workers"), open=False, elem_id="vl-jobs-workers-box"):
        gr.Markdown(t("jobs.workers_info"))
        workers = gr.Dataframe(headers=WORKER_COLUMNS, value=[], interactive=False, elem_id="vl-jobs-workers")
        with gr.Row():
            workers_refresh = gr.Button(t("jobs.refresh"), scale=0)
            free_btn = gr.Button(t("jobs.free_gpu"), scale=0, elem_id="vl-jobs-free")

    def free() -> list[list]:
        n = ctx.runner.free_workers(None)
        gr.Info(f"{n} idle worker(s) stopped." if n else "No idle worker to stop.")
        return worker_rows(ctx)

    workers_refresh.click(lambda: worker_rows(ctx), None, workers)
    free_btn.click(free, None, workers)
    ctx.job_finished.change(lambda: worker_rows(ctx), None, workers)
