"""Settings / Assets tab: where things are, and a machine speed check."""

from __future__ import annotations

import dataclasses

import gradio as gr

from engines.core.system_ops import BenchmarkParams
from voicelab_ui.context import UIContext
from voicelab_ui.i18n import LANG_STORAGE_KEY, LANGUAGES, add, t
from voicelab_ui.tabs.settings import assets as assets_panel
from voicelab_ui.widgets import param_widgets, submit_job, values_to_params

add({
    "settings.current": ("Current settings", "当前设置"),
    "settings.how": (
        "Change them with app.py flags, VOICELAB_* environment variables or `WORKSPACE/settings.toml`, then restart.",
        "可通过 app.py 参数、VOICELAB_* 环境变量或 `工作区/settings.toml` 修改，然后重启。",
    ),
    "settings.language": ("Language / 语言", "语言 / Language"),
    "settings.language_info": ("auto follows the browser; the choice is kept in this browser", "auto 跟随浏览器；选择保存在本浏览器中"),
    "settings.bench": ("Machine speed check", "机器速度测试"),
    "settings.bench_run": ("Measure", "开始测量"),
    "param.seconds": ("Seconds", "秒数"),
    "param.size": ("Matrix size", "矩阵大小"),
    "param.device": ("Device", "设备"),
    "help.seconds": ("How long to measure", "测量时长"),
    "help.size": ("Matrix size", "矩阵大小"),
    "help.device": ("auto, cpu, cuda or cuda:N", "auto、cpu、cuda 或 cuda:N"),
})


def settings_table(ctx: UIContext) -> list[list[str]]:
    s = ctx.ws.settings
    rows = [["workspace", str(ctx.ws.root)]]
    for f in dataclasses.fields(s):
        value = getattr(s, f.name)
        if f.name == "auth":
            value = "(set)" if value else "(none)"
        rows.append([f.name, str(value)])
    return rows


def build(ctx: UIContext) -> None:
    lang = gr.Dropdown(["auto", *LANGUAGES], value="auto", label=t("settings.language"),
                       info=t("settings.language_info"), elem_id="vl-language")
    lang.input(None, [lang], None,
               js=f"(v) => {{ localStorage.setItem('{LANG_STORAGE_KEY}', v); window.location.reload(); }}")
    ctx.demo.load(None, None, lang, js=f"() => localStorage.getItem('{LANG_STORAGE_KEY}') || 'auto'")
    assets_panel.build(ctx)
    gr.Dataframe(value=settings_table(ctx), headers=["setting", "value"], interactive=False,
                 label=t("settings.current"))
    gr.Markdown(t("settings.how"))
    with gr.Accordion(t("settings.bench"), open=False):
        widgets = param_widgets(BenchmarkParams, overrides={"seconds": {"elem_id": "vl-bench-seconds"}})
        run = gr.Button(t("settings.bench_run"), elem_id="vl-bench-run")
    names = list(widgets)

    def start(*values):
        return submit_job(ctx, "system.benchmark", values_to_params(BenchmarkParams, names, values))

    run.click(start, list(widgets.values()), ctx.job_id)
