"""Shared widgets: parameter forms built from engine dataclasses, and the job panel."""

from __future__ import annotations

import dataclasses
import functools
import html
import inspect
import time
import typing
from typing import Any, Callable, Sequence

import gradio as gr

from engines.core.errors import VoiceLabError
from engines.core.jobs import FINAL_STATES, JobRecord
from engines.core.ops import request_params
from engines.core.params import choices_of, info_of, value_type
from voicelab_ui.context import UIContext
from voicelab_ui.i18n import t, text, ui_language

LOG_TAIL_LINES = 400


def param_widgets(cls: type, skip: Sequence[str] = (), overrides: dict[str, dict] | None = None) -> dict[str, Any]:
    """One Gradio input per dataclass field, with the field's range, choices and help.

    Labels use the translation key ``param.<field>``.
    """
    widgets: dict[str, Any] = {}
    overrides = overrides or {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        info = info_of(f)
        tp = value_type(cls, f)
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        kw: dict[str, Any] = {"label": t(f"param.{f.name}"), "info": t(f"help.{f.name}") if info.help else None}
        kw.update(overrides.get(f.name, {}))
        if tp is bool:
            w = gr.Checkbox(value=bool(default), **kw)
        elif choices_of(cls, f) is not None:
            w = gr.Dropdown(choices=list(choices_of(cls, f)), value=default, **kw)
        elif tp in (int, float) and info.min is not None and info.max is not None:
            step = info.step or (1 if tp is int else 0.01)
            w = gr.Slider(minimum=info.min, maximum=info.max, step=step, value=default, **kw)
        elif tp in (int, float):
            w = gr.Number(value=default, precision=0 if tp is int else None, **kw)
        elif typing.get_origin(tp) in (list, tuple):
            w = gr.Textbox(value=", ".join(map(str, default or [])), **kw)
        else:
            w = gr.Textbox(value="" if default is None else str(default), **kw)
        widgets[f.name] = w
    return widgets


def values_to_params(cls: type, names: Sequence[str], values: Sequence[Any]) -> dict[str, Any]:
    """Turn widget values back into a params dict (lists from comma-separated text)."""
    out: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name, value in zip(names, values):
        tp = value_type(cls, fields[name])
        if typing.get_origin(tp) in (list, tuple) and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        out[name] = value
    return out


def api_signature(fn: Callable[..., Any], cls: type, leading: Sequence[str] = ()) -> Callable[..., Any]:
    """``fn(*leading, *fields)`` with a signature naming each field of ``cls`` (its default and type).

    Gradio names an endpoint's parameters after the function's signature, so an API built from a
    params dataclass takes the same keyword arguments, with the same defaults, as the CLI and the form.
    """
    params = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str) for name in leading]
    hints: dict[str, Any] = {name: str for name in leading}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else inspect.Parameter.empty)
        hints[f.name] = value_type(cls, f)
        params.append(inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default,
                                        annotation=hints[f.name]))

    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        return fn(*args)

    wrapper.__signature__ = inspect.Signature(params, return_annotation=inspect.signature(fn).return_annotation)
    wrapper.__annotations__ = {**hints, "return": fn.__annotations__.get("return", Any)}
    return wrapper


def user_error(exc: Exception, lang: str | None = None) -> gr.Error:
    """A gr.Error showing what happened and what to do (VoiceLabError, in the page's language) or the bare error."""
    if isinstance(exc, VoiceLabError):
        message, hint = exc.render(lang or ui_language())
        return gr.Error(f"{message} {hint}".strip(), duration=None)
    return gr.Error(f"{type(exc).__name__}: {exc}", duration=None)


def error_text(exc: VoiceLabError, lang: str | None = None) -> str:
    """'message hint' of a VoiceLabError in the page's language."""
    return " ".join(part for part in exc.render(lang or ui_language()) if part)


def outcome_line(rec: JobRecord, ok: str = "✔", bad: str = "✘", lang: str | None = None) -> str:
    """One line for a finished job: its summary, or its state with the error and hint, in the page's language."""
    lang = lang or ui_language()
    if rec.state == "done":
        return f"{ok} {rec.message_in(lang)}"
    error = " ".join(part for part in rec.error_in(lang) if part) or rec.message_in(lang)
    return f"{bad} **{rec.state_in(lang)}**: {error}"


def submit_job(ctx: UIContext, op: str, params: dict, title: str = "") -> str:
    """Submit a job and return its id; bad parameters and unconfined paths become a visible gr.Error."""
    try:
        return ctx.runner.submit(op, request_params(ctx.ws, op, params), title=title)
    except Exception as exc:
        raise user_error(exc) from exc


def finished_job(ctx: UIContext, marker: str) -> JobRecord | None:
    """The job record named by a ``ctx.job_finished`` value ("<id>:<state>:<time>")."""
    job_id = (marker or "").split(":", 1)[0]
    return ctx.runner.get(job_id) if job_id else None


def progress_html(rec: JobRecord | None, lang: str = "en") -> str:
    if rec is None:
        return ""
    pct = rec.progress * 100
    colour = {"failed": "#c0392b", "cancelled": "#7f8c8d", "interrupted": "#7f8c8d", "done": "#27ae60"}.get(rec.state, "#2980b9")
    msg = html.escape(rec.message_in(lang) or "")
    return (
        f'<div class="vl-progress" data-state="{rec.state}" data-progress="{pct:.1f}">'
        f'<div style="background:#ddd;border-radius:4px;height:14px;overflow:hidden">'
        f'<div style="width:{pct:.1f}%;background:{colour};height:14px"></div></div>'
        f'<div style="font-size:0.85em;margin-top:2px">{pct:.0f}% · {msg}</div></div>'
    )


def where_it_runs(rec: JobRecord, lang: str = "en") -> str:
    """"listening lane · cuda:0" (and why it fell back to the CPU, when it did), in ``lang``."""
    worker = rec.worker or {}
    device = worker.get("device") or rec.device
    where = text("job.lane", lang, lane=text(f"lane.{rec.lane}", lang)) + (f" · {device}" if device and device != "*" else "")
    if worker.get("warm"):
        where += " · " + text("job.warm", lang)
    note = worker.get("device_note") or ""
    if device == "cpu" and "runs on the CPU" in note:
        where += f" ({note})"
    return where


def job_status_md(rec: JobRecord | None, lang: str = "en") -> str:
    """Title, id, state, duration and lane; for a failed job its error and hint, all in ``lang``."""
    if rec is None:
        return ""
    dur = f" · {rec.duration:.0f} s" if rec.duration is not None else ""
    line = (f"**{html.escape(rec.title_in(lang))}** · `{rec.id}` · **{html.escape(rec.state_in(lang))}**{dur}"
            f" · {html.escape(where_it_runs(rec, lang))}")
    if rec.error:
        message, hint = rec.error_in(lang)
        line += f'\n\n<div class="vl-job-error">{html.escape(message)}</div>'
        if hint:
            line += f'\n\n<div class="vl-job-hint">{html.escape(text("job.hint", lang))}: {html.escape(hint)}</div>'
    return line


def job_panel(ctx: UIContext) -> None:
    """The shared panel: status, progress, live log tail and Cancel; follows one job.

    The followed job id lives in the browser (localStorage), so a reload reopens it;
    with none stored, the page follows whatever job is running.
    """
    ctx.job_id = gr.BrowserState("", storage_key="voicelab_job_id")
    ctx.job_finished = gr.Textbox(visible=False, elem_id="vl-job-finished")
    last_state = gr.State("")
    with gr.Accordion(t("job.panel"), open=True, elem_id="vl-job-panel"):
        status = gr.Markdown(text("job.none"), elem_id="vl-job-status")
        bar = gr.HTML("", elem_id="vl-job-progress")
        log = gr.Textbox(label=t("job.log"), lines=12, max_lines=12, autoscroll=True, interactive=False,
                         elem_id="vl-job-log")
        cancel = gr.Button(t("job.cancel"), variant="stop", size="sm", elem_id="vl-job-cancel")
    timer = gr.Timer(0.5)

    def refresh(job_id: str, prev: str) -> tuple:
        # ``prev`` is "<id>|<state>" as of the last tick ("" before the first tick after page load).
        lang = ui_language()
        rec = ctx.runner.get(job_id) if job_id else None
        if rec is None:
            rec = ctx.runner.active_job()
        if rec is None:
            return job_id, text("job.none", lang), "", "", gr.update(interactive=False), "|", gr.update()
        prev_id, _, prev_state = prev.partition("|")
        finished = gr.update()
        if prev and rec.state in FINAL_STATES and (rec.id != prev_id or prev_state not in FINAL_STATES):
            finished = f"{rec.id}:{rec.state}:{time.time():.3f}"
        # Write the followed id only when it changes: a tick that read the old id must not undo a click
        # that has just started (and stored) a new job while the tick was running.
        return (
            rec.id if rec.id != job_id else gr.update(), job_status_md(rec, lang), progress_html(rec, lang),
            ctx.runner.read_log(rec.id, LOG_TAIL_LINES),
            gr.update(interactive=rec.active), f"{rec.id}|{rec.state}", finished,
        )

    outputs = [ctx.job_id, status, bar, log, cancel, last_state, ctx.job_finished]
    timer.tick(refresh, [ctx.job_id, last_state], outputs, show_progress="hidden", queue=False)

    def do_cancel(job_id: str) -> None:
        if job_id:
            ctx.runner.cancel(job_id)
            gr.Info(text("job.cancelling", ui_language()))

    cancel.click(do_cancel, [ctx.job_id], None, queue=False)

