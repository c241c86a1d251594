"""CosyVoice tab, step 4: average an experiment's epochs and assemble a model dir with spk2info.pt."""

from __future__ import annotations

from typing import Any

import gradio as gr

from engines.cosyvoice.catalog import list_experiments
from engines.cosyvoice.ops import AssembleJob
from voicelab_ui.i18n import t, ui_text
from voicelab_ui.widgets import submit_job, values_to_params

from .parts import Parts, result_markdown
from .strings import form

# the tab averages the chosen experiment; explicit files and embeddings are for the CLI
CLI_ONLY = ("exp_name", "embedding", "embedding_key", "llm", "flow", "reuse_averaged")


def build(ctx: Any, parts: Parts) -> None:
    ws = ctx.ws
    with gr.Accordion(t("cv.s4"), open=False, elem_id="vl-cv-assemble-box"):
        with gr.Row():
            exp_dd = gr.Dropdown(choices=list_experiments(ws), value=None, allow_custom_value=True,
                                 label=t("cv.experiment"), elem_id="vl-cv-experiment", scale=3)
            exp_refresh = gr.Button(t("cv.refresh"), scale=0)
        asm_w = form(AssembleJob, "asm", skip=CLI_ONLY)
        assemble_btn = gr.Button(t("cv.assemble"), variant="primary", elem_id="vl-cv-assemble")
        asm_msg = gr.Markdown(elem_id="vl-cv-assemble-msg")
    parts.c["exp"] = exp_dd
    asm_names = list(asm_w)

    def start_assemble(exp: str | None, *values) -> str:
        if not exp:
            raise gr.Error(ui_text("err.pick_average"))
        params = values_to_params(AssembleJob, asm_names, values)
        params["exp_name"] = exp
        return submit_job(ctx, "cosyvoice.assemble", params, title=f"Average and assemble '{exp}'")

    assemble_btn.click(start_assemble, [exp_dd, *asm_w.values()], ctx.job_id, api_name="cosyvoice_assemble")
    exp_refresh.click(lambda e: gr.update(choices=list_experiments(ws), value=e), [exp_dd], exp_dd)
    parts.on_job("cosyvoice.assemble", [asm_msg], lambda rec, v: {asm_msg: result_markdown(rec)})
