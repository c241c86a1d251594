"""index tab (being built)."""

import gradio as gr

from voicelab_ui.context import UIContext


def build(ctx: UIContext) -> None:
    gr.Markdown("This tab's engine is still being built.")
