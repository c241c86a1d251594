"""CosyVoice tab, step 2: training data (Kaldi dirs, embeddings, speech tokens, parquet) from a dataset."""

from __future__ import annotations

from typing import Any

import gradio as gr

from engines.core.messages import msg
from engines.cosyvoice.dataprep import default_model_dir, iter_prepared
from engines.cosyvoice.params import PrepareParams
from voicelab_ui.i18n import t, ui_text
from voicelab_ui.widgets import submit_job, values_to_params

from .parts import Parts, result_markdown
from .strings import form


def build(ctx: Any, parts: Parts) -> None:
    ws = ctx.ws
    with gr.Accordion(t("cv.s2"), open=False, elem_id="vl-cv-prepare-box"):
        out_name = gr.Textbox(label=t("cv.out_name"), info=t("cv.out_name_info"), elem_id="vl-cv-out-name")
        prep_w = form(PrepareParams, "prep")
        prep_w["model_dir"].value = str(default_model_dir(ws))
        prepare_btn = gr.Button(t("cv.prepare"), variant="primary", elem_id="vl-cv-prepare")
        prep_msg = gr.Markdown(elem_id="vl-cv-prepare-msg")
    prep_names = list(prep_w)

    def start_prepare(ds: str, name: str, *values) -> str:
        if not ds:
            raise gr.Error(ui_text("err.pick_dataset_step1"))
        params = values_to_params(PrepareParams, prep_names, values)
        params.update(dataset=ds, out_name=(name or "").strip() or ds)
        return submit_job(ctx, "cosyvoice.prepare", params, title=msg("title.cv_prepare", dataset=ds))

    prepare_btn.click(start_prepare, [parts.c["dataset"], out_name, *prep_w.values()], ctx.job_id,
                      api_name="cosyvoice_prepare")

    def after_prepare(rec: Any, v: dict) -> dict:
        out: dict = {prep_msg: result_markdown(rec),
                     parts.c["data"]: gr.update(choices=list(iter_prepared(ws)), value=(rec.result or {}).get("data"))}
        if rec.state == "done" and rec.params.get("model_dir"):
            out[parts.c["train_model_dir"]] = rec.params["model_dir"]  # train the model the data was made for
        return out

    parts.on_job("cosyvoice.prepare", [prep_msg, "data", "train_model_dir"], after_prepare)
