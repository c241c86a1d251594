"""CosyVoice tab, step 3: fine-tuning (llm, optionally flow) with live loss curves, the machine view, checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from engines.core.errors import InvalidInputError
from engines.core.messages import msg
from engines.cosyvoice.catalog import checkpoint_rows, list_experiments
from engines.cosyvoice.dataprep import default_model_dir, iter_prepared
from engines.cosyvoice.params import CosyTrainParams
from engines.cosyvoice.train import read_metrics
from voicelab_ui.i18n import t, text, ui_language, ui_text
from voicelab_ui.i18n import table as i18n_table
from voicelab_ui.machine_view import build_machine, build_tensorboard, machine_values, wire_tensorboard
from voicelab_ui.widgets import submit_job, values_to_params

from .parts import Parts, result_markdown
from .strings import PLOT_SECONDS, form

MAIN_FIELDS = ["exp_name", "model_dir", "models", "max_epoch", "lr", "accum_grad", "max_frames_in_batch",
               "save_per_step"]


CKPT_KEYS = ("cv.col.model", "cv.col.checkpoint", "cv.col.cv_loss", "cv.col.path")


def _plots(loss: Any, acc: Any) -> tuple[Any, Any]:
    """The two curves with axis titles in the page's language."""
    lang = ui_language()
    batch = text("plot.batch", lang)
    return (gr.LinePlot(value=loss, x_title=batch, y_title=text("plot.loss", lang)),
            gr.LinePlot(value=acc, x_title=batch, y_title=text("plot.acc", lang)))


def metrics_frames(ws: Any, exp: str) -> tuple[Any, Any]:
    """(loss frame, accuracy frame) for the plots from <exp>/metrics.jsonl."""
    import pandas as pd

    from engines.cosyvoice.train import read_metrics

    rows = read_metrics(ws.cosyvoice_experiment_dir(exp) / "metrics.jsonl") if exp else []
    # x = logged training batches so far (several batches share an optimizer step; cv sits where it ran)
    loss, acc, seen = [], [], 0
    for r in rows:
        if r.get("split") == "train":
            seen += 1
        series = f"{r.get('model', '?')} {r.get('split', '?')}"
        if isinstance(r.get("loss"), (int, float)):
            loss.append({"batch": seen, "loss": r["loss"], "series": series})
        if isinstance(r.get("acc"), (int, float)):
            acc.append({"batch": seen, "acc": r["acc"], "series": series})
    return (pd.DataFrame(loss, columns=["batch", "loss", "series"]),
            pd.DataFrame(acc, columns=["batch", "acc", "series"]))


def build(ctx: Any, parts: Parts) -> None:
    ws = ctx.ws
    with gr.Accordion(t("cv.s3"), open=False, elem_id="vl-cv-train-box") as train_box:
        with gr.Row():
            data_dd = gr.Dropdown(choices=list(iter_prepared(ws)), value=None, allow_custom_value=True,
                                  label=t("cv.data"), info=t("cv.data_info"), elem_id="vl-cv-data", scale=3)
            data_refresh = gr.Button(t("cv.refresh"), scale=0)
        train_main = form(CosyTrainParams, "train", only=MAIN_FIELDS)
        train_main["model_dir"].value = str(default_model_dir(ws))
        with gr.Accordion(t("cv.train_options"), open=False):
            train_more = form(CosyTrainParams, "train", skip=tuple(MAIN_FIELDS))
        train_w = {**train_main, **train_more}
        train_btn = gr.Button(t("cv.train"), variant="primary", elem_id="vl-cv-train")
        train_msg = gr.Markdown(elem_id="vl-cv-train-msg")
        with gr.Row():
            loss_plot = gr.LinePlot(x="batch", y="loss", color="series", label=t("cv.loss"), elem_id="vl-cv-plot-loss")
            acc_plot = gr.LinePlot(x="batch", y="acc", color="series", label=t("cv.acc"), elem_id="vl-cv-plot-acc")
        with gr.Row(equal_height=False):
            with gr.Column(min_width=320):
                machine_plot, machine_md = build_machine("vl-cv")
            with gr.Column(min_width=280):
                tb_btn, tb_md = build_tensorboard("vl-cv")
        ckpt_table = gr.Dataframe(headers=["model", "checkpoint", "cv loss", "path"], value=[], interactive=False,
                                  label=t("cv.checkpoints"), elem_id="vl-cv-checkpoints")
    plot_timer = gr.Timer(PLOT_SECONDS, active=False)
    plot_stamp = gr.State("")
    parts.c.update(data=data_dd, train_model_dir=train_w["model_dir"], ckpt_table=ckpt_table)
    train_names = list(train_w)

    def start_train(data: str | None, *values) -> str:
        params = values_to_params(CosyTrainParams, train_names, values)
        params["data"] = (data or "").strip()
        if not params["data"] and not params.get("train_data"):
            raise gr.Error(ui_text("err.pick_data"))
        return submit_job(ctx, "cosyvoice.train", params, title=msg("title.cv_train", exp=str(params.get("exp_name"))))

    train_btn.click(start_train, [data_dd, *train_w.values()], ctx.job_id, api_name="cosyvoice_train")
    data_refresh.click(lambda d: gr.update(choices=list(iter_prepared(ws)), value=d), [data_dd], data_dd)

    def plots(exp: str, stamp: str) -> tuple:
        path = ws.cosyvoice_experiment_dir(exp) / "metrics.jsonl" if exp else None
        try:
            st = path.stat() if path is not None else None
        except OSError:
            st = None
        new_stamp = f"{exp}:{st.st_mtime_ns}:{st.st_size}" if st else f"{exp}:none"
        if new_stamp == stamp:
            return gr.update(), gr.update(), gr.update(), stamp, gr.update(), gr.update()
        loss, acc = metrics_frames(ws, exp)
        return (*_plots(loss, acc), i18n_table(checkpoint_rows(ws, exp), CKPT_KEYS), new_stamp,
                *machine_values(read_metrics(path, system=True) if path is not None else []))

    exp_name_w = train_w["exp_name"]
    plot_outputs = [loss_plot, acc_plot, ckpt_table, plot_stamp, machine_plot, machine_md]
    plot_timer.tick(plots, [exp_name_w, plot_stamp], plot_outputs, show_progress="hidden", queue=False)
    exp_name_w.change(plots, [exp_name_w, gr.State("")], plot_outputs, show_progress="hidden")
    train_box.expand(lambda: gr.Timer(active=True), None, plot_timer)
    train_box.collapse(lambda: gr.Timer(active=False), None, plot_timer)

    def after_train(rec: Any, v: dict) -> dict:
        exp = rec.params.get("exp_name", "")
        loss, acc = _plots(*metrics_frames(ws, exp))
        return {train_msg: result_markdown(rec), ckpt_table: i18n_table(checkpoint_rows(ws, exp), CKPT_KEYS),
                loss_plot: loss, acc_plot: acc,
                parts.c["exp"]: gr.update(choices=list_experiments(ws), value=exp)}

    parts.on_job("cosyvoice.train", [train_msg, ckpt_table, loss_plot, acc_plot, "exp"], after_train)

    def experiment_logdir(name: str) -> Path:
        """Upstream's TensorBoard folders of the experiment (tensorboard/llm, tensorboard/flow)."""
        if not name or not ws.cosyvoice_experiment_dir(name).is_dir():
            raise InvalidInputError("Pick a trained experiment first (its name above).")
        return ws.cosyvoice_experiment_dir(name) / "tensorboard"

    wire_tensorboard(ws, exp_name_w, tb_btn, tb_md, experiment_logdir, "cosyvoice_tensorboard")

    def metrics_api(exp: str) -> list:
        """Rows of an experiment's metrics.jsonl (loss/acc per logged batch and per validation)."""
        from engines.cosyvoice.train import read_metrics

        return read_metrics(ws.cosyvoice_experiment_dir(exp) / "metrics.jsonl")

    gr.api(metrics_api, api_name="cosyvoice_metrics")
