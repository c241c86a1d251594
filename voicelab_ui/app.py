"""Assemble the studio page: tabs plus the shared job panel."""

from __future__ import annotations

import importlib

import gradio as gr

from voicelab_ui import api
from voicelab_ui.guard import guard_endpoints
from voicelab_ui.context import UIContext
from voicelab_ui.i18n import t
from voicelab_ui.widgets import job_panel

# (translation key of the tab title, module with build(ctx), elem_id)
TABS = (
    ("tab.dataset", "voicelab_ui.tabs.dataset", "tab-dataset"),
    ("tab.rvc_train", "voicelab_ui.tabs.rvc_train", "tab-rvc-train"),
    ("tab.index", "voicelab_ui.tabs.index", "tab-index"),
    ("tab.convert", "voicelab_ui.tabs.convert", "tab-convert"),
    ("tab.ab", "voicelab_ui.tabs.ab", "tab-ab"),
    ("tab.cosyvoice", "voicelab_ui.tabs.cosyvoice", "tab-cosyvoice"),
    ("tab.jobs", "voicelab_ui.tabs.jobs", "tab-jobs"),
    ("tab.settings", "voicelab_ui.tabs.settings", "tab-settings"),
)

CSS = """
#vl-job-log textarea { font-family: var(--font-mono); font-size: 12px; }
@media (max-width: 640px) { .gradio-container { padding: 4px !important; } }
"""


def build_app(ctx: UIContext) -> gr.Blocks:
    with gr.Blocks(title="VoiceLab", fill_width=True) as demo:
        ctx.demo = demo
        gr.Markdown("## VoiceLab")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=320):
                # The job panel is created first (other tabs attach to its state), shown in a sidebar column.
                tabs_col = gr.Column()
            with gr.Column(scale=2, min_width=300):
                job_panel(ctx)
        with tabs_col:
            with gr.Tabs() as tabs:
                ctx.extras["tabs"] = tabs  # a tab may switch to another (the Train tab opens A/B Listen)
                for key, module, elem_id in TABS:
                    with gr.Tab(t(key), id=elem_id, elem_id=elem_id):
                        importlib.import_module(module).build(ctx)
        api.register(ctx)
    guard_endpoints(demo)
    return demo
