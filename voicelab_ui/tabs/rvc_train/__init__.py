"""RVC Train tab: experiment + dataset, the training options, asset status, jobs, live loss curves,
each save's previews, checkpoints.

"Preprocess + extract" and "Train" submit the ``rvc.preprocess`` / ``rvc.train`` jobs
(``engines.rvc.ops.train``) and hand their id to the shared job panel, which streams the log. While a
training job of the chosen experiment runs, a timer re-reads its ``metrics.jsonl``, previews and saved
files every two seconds (only when they changed); the timer stops itself when no such job is left,
and the views refresh once more when the followed job finishes. Each save's previews play beside the
loss curve and go to A/B Listen from there (``previews.py``). Strings: ``strings.py``; data helpers:
``helpers.py``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gradio as gr

from engines.core.errors import VoiceLabError
from engines.core.messages import msg
from engines.core.paths import confine_value
from engines.core.settings import safe_name
from engines.dataset.stats import list_datasets
from engines.rvc.ops.catalog import (
    experiment_settings,
    list_experiments,
    read_metrics,
    saved_files,
)
from engines.rvc.train.params import TrainParams
from voicelab_ui.api import client_json
from voicelab_ui.context import UIContext
from voicelab_ui.i18n import t, text, ui_language, ui_text
from voicelab_ui.i18n import table as i18n_table
from voicelab_ui.tabs.rvc_train.helpers import (
    asset_rows,
    SCORE_COLUMNS,
    assets_markdown,
    best_markdown,
    default_f0_method,
    f0_choices,
    last_run_params,
    loss_frames,
    pretrained_for,
    pretrained_set_files,
    pretrained_sets,
    result_markdown,
    saved_rows,
    score_frame,
    standard_pretrained,
    training_job_running,
    view_stamp,
)
from voicelab_ui.machine_view import build_machine, build_tensorboard, wire_tensorboard
from voicelab_ui.tabs.rvc_train.machine import experiment_logdir, loss_colors, machine_frame
from voicelab_ui.tabs.rvc_train.previews import build_previews, wire_previews
from voicelab_ui.tabs.rvc_train.strings import OWN_HELP
from voicelab_ui.widgets import error_text, param_widgets, submit_job, values_to_params

REFRESH_SECONDS = 2.0
MAIN_ROWS = (("sr", "version", "f0_method", "f0"), ("total_epoch", "batch_size", "save_every_epoch"),
             ("pretrained_g", "pretrained_d"), ("gpus", "save_every_weights"))
MAIN_FIELDS = tuple(name for row in MAIN_ROWS for name in row)
NOT_SHOWN = ("exp_name", "dataset", "segment_size", "model_config", "preview_clip")
# Settings an experiment must keep between runs (filled in when an experiment is picked).
EXPERIMENT_FIELDS = ("dataset", "sr", "version", "f0", "f0_method")
SAVED_HEADERS = ("kind", "file", "epoch", "step", "size", "saved at", *(c for _, c in SCORE_COLUMNS))
SAVED_KEYS = tuple(f"rvc.tr.col.{i}" for i in range(len(SAVED_HEADERS)))  # (strings.py has both languages)

__all__ = ["asset_rows", "assets_markdown", "build", "default_f0_method", "f0_choices", "loss_frames",
           "pretrained_for", "pretrained_set_files", "pretrained_sets", "saved_rows", "standard_pretrained", "view_stamp"]


def build(ctx: UIContext) -> None:
    ws = ctx.ws
    choices, reasons = f0_choices(ws)
    first_g, first_d = pretrained_for(ws, "40k", "v2", True, "", "")

    gr.Markdown(t("rvc.tr.intro"))
    with gr.Row():
        exp = gr.Dropdown(choices=list_experiments(ws), value=None, allow_custom_value=True, label=t("rvc.tr.exp"),
                          info=t("rvc.tr.exp_info"), elem_id="vl-rvc-exp", scale=2)
        dataset = gr.Dropdown(choices=list_datasets(ws), value=None, allow_custom_value=True,
                              label=t("rvc.tr.dataset"), info=t("rvc.tr.dataset_info"), elem_id="vl-rvc-dataset",
                              scale=3)
        refresh = gr.Button(t("rvc.tr.refresh"), scale=0, elem_id="vl-rvc-refresh")
    with gr.Accordion(t("rvc.tr.options"), open=True, elem_id="vl-rvc-options"):
        overrides = {n: {"elem_id": f"vl-rvc-{n.replace('_', '-')}"} for n in MAIN_FIELDS}
        for n in OWN_HELP:
            overrides.setdefault(n, {})["info"] = t(f"rvc.tr.help.{n}")
        main_w: dict[str, Any] = {}
        for row in MAIN_ROWS:
            with gr.Row():
                main_w.update(param_widgets(TrainParams, skip=tuple(f.name for f in dataclasses.fields(TrainParams)
                                                                    if f.name not in row), overrides=overrides))
        pretrained_set = gr.Dropdown(choices=pretrained_sets(ws, "40k", "v2", True), value=None,
                                     label=t("rvc.tr.pretrained_set"), info=t("rvc.tr.pretrained_set_info"),
                                     elem_id="vl-rvc-pretrained-set")
        with gr.Accordion(t("rvc.tr.advanced"), open=False, elem_id="vl-rvc-advanced"):
            adv_w = param_widgets(TrainParams, skip=NOT_SHOWN + MAIN_FIELDS, overrides=overrides)
    widgets = {**main_w, **adv_w}
    widgets["f0_method"].choices = choices
    widgets["f0_method"].value = default_f0_method(reasons)
    widgets["pretrained_g"].value, widgets["pretrained_d"].value = first_g, first_d

    with gr.Accordion(t("rvc.tr.assets"), open=True, elem_id="vl-rvc-assets-box"):
        gr.Markdown(t("rvc.tr.assets_legend"))
        assets_md = gr.Markdown("…", elem_id="vl-rvc-assets")
        assets_btn = gr.Button(t("rvc.tr.assets_check"), size="sm", elem_id="vl-rvc-assets-check")
    preview_clip = gr.Audio(type="filepath", sources=["upload"], label=t("rvc.tr.preview_clip"),
                            elem_id="vl-rvc-preview-clip")
    with gr.Row():
        preprocess_btn = gr.Button(t("rvc.tr.preprocess"), elem_id="vl-rvc-preprocess")
        train_btn = gr.Button(t("rvc.tr.train"), variant="primary", elem_id="vl-rvc-train")
    result_md = gr.Markdown(elem_id="vl-rvc-result")
    with gr.Accordion(t("rvc.tr.curves"), open=True, elem_id="vl-rvc-curves"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=320):
                loss_plot = gr.LinePlot(x="step", y="loss", color="series", label=t("rvc.tr.loss"),
                                        color_map=loss_colors(), elem_id="vl-rvc-plot-loss")
                lr_plot = gr.LinePlot(x="step", y="lr", label=t("rvc.tr.lr"), elem_id="vl-rvc-plot-lr")
                machine_plot, machine_md = build_machine("vl-rvc")
                tb_btn, tb_md = build_tensorboard("vl-rvc")
                score_plot = gr.LinePlot(x="epoch", y="score", color="series", label=t("rvc.tr.scores"),
                                         elem_id="vl-rvc-plot-scores")
                best_md = gr.Markdown(elem_id="vl-rvc-best")
            with gr.Column(scale=2, min_width=280, elem_id="vl-rvc-previews"):
                gr.Markdown(t("rvc.tr.previews"))
                previews = build_previews()
    with gr.Accordion(t("rvc.tr.saved"), open=True, elem_id="vl-rvc-saved-box"):
        # Plain headers: rows sent by events carry the headers as data, which the page does not translate.
        saved = gr.Dataframe(headers=list(SAVED_HEADERS), value=[], interactive=False, wrap=True,
                             label=t("rvc.tr.saved_table"), elem_id="vl-rvc-saved")
        gr.Markdown(t("rvc.tr.ab_hint"))
    timer = gr.Timer(REFRESH_SECONDS, active=False)
    stamp = gr.State("")

    names = list(widgets)
    status_inputs = [widgets[n] for n in ("sr", "version", "f0", "f0_method", "hubert_path", "rmvpe_path",
                                          "pretrained_g", "pretrained_d")]

    # -- asset status
    def show_assets(sr, version, f0, f0_method, hubert_path, rmvpe_path, pre_g, pre_d) -> str:
        try:  # typed paths are looked at only where the path policy lets the page read
            hubert_path, rmvpe_path, pre_g, pre_d = (confine_value(ws, v, "model file")
                                                     for v in (hubert_path, rmvpe_path, pre_g, pre_d))
            rows = asset_rows(ws, sr, version, bool(f0), f0_method, hubert_path, rmvpe_path, pre_g, pre_d)
            return assets_markdown(rows, f0_choices(ws, rmvpe_path)[1])
        except VoiceLabError as exc:
            return error_text(exc)
        except Exception as exc:  # the status view must never break the page
            return f"Model file check failed: {type(exc).__name__}: {exc}"

    def follow_model(sr, version, f0, f0_method, hubert_path, rmvpe_path, pre_g, pre_d) -> tuple:
        g, d = pretrained_for(ws, sr, version, bool(f0), (pre_g or "").strip(), (pre_d or "").strip())
        return g, d, show_assets(sr, version, f0, f0_method, hubert_path, rmvpe_path, g, d)

    def offer_sets(sr: str, version: str, f0: bool) -> dict:
        return gr.update(choices=pretrained_sets(ws, sr, version, bool(f0)), value=None)

    for w in (widgets["sr"], widgets["version"], widgets["f0"]):
        w.change(follow_model, status_inputs, [widgets["pretrained_g"], widgets["pretrained_d"], assets_md],
                 show_progress="hidden")
        w.change(offer_sets, [widgets["sr"], widgets["version"], widgets["f0"]], pretrained_set,
                 show_progress="hidden")

    def use_set(name, sr, version, f0, f0_method, hubert_path, rmvpe_path, pre_g, pre_d) -> tuple:
        """A chosen pretrained set fills the G/D fields (a set that no longer fits leaves them as they are)."""
        g, d = (pretrained_set_files(ws, name, sr, version, f0) if name else None) or (pre_g, pre_d)
        return g, d, show_assets(sr, version, f0, f0_method, hubert_path, rmvpe_path, g, d)

    pretrained_set.input(use_set, [pretrained_set, *status_inputs],
                         [widgets["pretrained_g"], widgets["pretrained_d"], assets_md], show_progress="hidden")
    widgets["f0_method"].change(show_assets, status_inputs, assets_md, show_progress="hidden")
    for w in (widgets["hubert_path"], widgets["rmvpe_path"], widgets["pretrained_g"], widgets["pretrained_d"]):
        w.blur(show_assets, status_inputs, assets_md, show_progress="hidden")

    def recheck(rmvpe_path, *status_values) -> tuple:
        new_choices, _ = f0_choices(ws, confine_value(ws, rmvpe_path, "rmvpe path"))
        return gr.update(choices=new_choices), show_assets(*status_values)

    assets_btn.click(recheck, [widgets["rmvpe_path"], *status_inputs], [widgets["f0_method"], assets_md],
                     api_name="rvc_train_assets")

    # -- curves, previews and saved files
    def views(name: str | None, old_stamp: str, save: str | None = None, latest: str | None = None) -> list:
        name = (name or "").strip()
        running = bool(name) and training_job_running(ctx, name)
        new_stamp = view_stamp(ws, name)
        timer_update = gr.Timer(active=running)
        if new_stamp == old_stamp:
            return [*[gr.update()] * 5, old_stamp, timer_update, *[gr.update()] * len(previews.outputs),
                    gr.update(), gr.update()]
        loss_df, lr_df = loss_frames(ws, name)
        lang = ui_language()  # axis titles and table headers in the page's language
        return [gr.LinePlot(value=loss_df, x_title=text("plot.step", lang), y_title=text("plot.loss", lang)),
                gr.LinePlot(value=lr_df, x_title=text("plot.step", lang), y_title=text("plot.lr", lang)),
                score_frame(ws, name), best_markdown(ws, name),
                i18n_table(saved_rows(ws, name), SAVED_KEYS, lang), new_stamp, timer_update,
                *previews.values(ws, name, save, latest), *machine_frame(ws, name)]

    view_outputs = [loss_plot, lr_plot, score_plot, best_md, saved, stamp, timer, *previews.outputs,
                    machine_plot, machine_md]

    def fresh_views(name: str | None) -> list:
        return views(name, "")

    view_inputs = [exp, stamp, previews.save, previews.latest]
    timer.tick(views, view_inputs, view_outputs, show_progress="hidden", queue=False)
    wire_previews(ctx, previews, exp)
    wire_tensorboard(ws, exp, tb_btn, tb_md, lambda name: experiment_logdir(ws, name), "rvc_tensorboard")

    exp_fill = [dataset, *(widgets[n] for n in EXPERIMENT_FIELDS if n != "dataset")]

    def pick_experiment(name: str | None) -> list:
        name = (name or "").strip()
        previous = last_run_params(ctx, name) or experiment_settings(ws, name)
        return [previous[n] if n in previous else gr.update() for n in EXPERIMENT_FIELDS]

    exp.change(pick_experiment, [exp], exp_fill).then(fresh_views, [exp], view_outputs,
                                                      show_progress="hidden")

    def reload_lists(name: str | None, ds: str | None) -> tuple:
        return gr.update(choices=list_experiments(ws), value=name), gr.update(choices=list_datasets(ws), value=ds)

    refresh.click(reload_lists, [exp, dataset], [exp, dataset]).then(fresh_views, [exp], view_outputs)

    # -- jobs (submit_job confines the dataset folder, the model paths and the preview clip)
    def job_params(name: str | None, ds: str | None, clip: str | None, values: tuple) -> dict:
        name = (name or "").strip()
        if not name:
            raise gr.Error(ui_text("err.exp_name"))
        safe_name(name)
        params = values_to_params(TrainParams, names, values)
        params.update(exp_name=name, dataset=(ds or "").strip(), preview_clip=(clip or "").strip())
        return params

    def start_preprocess(name, ds, clip, *values) -> str:
        params = job_params(name, ds, clip, values)
        return submit_job(ctx, "rvc.preprocess", params, title=msg("title.rvc_preprocess", exp=params["exp_name"]))

    def start_train(name, ds, clip, *values) -> str:
        params = job_params(name, ds, clip, values)
        return submit_job(ctx, "rvc.train", params, title=msg("title.rvc_train", exp=params["exp_name"]))

    job_inputs = [exp, dataset, preview_clip, *widgets.values()]
    preprocess_btn.click(start_preprocess, job_inputs, ctx.job_id, api_name="rvc_preprocess")
    train_btn.click(start_train, job_inputs, ctx.job_id, api_name="rvc_train").then(
        lambda: gr.Timer(active=True), None, timer)

    # -- when the followed job ends
    def after_job(marker: str, name: str | None, ds: str | None) -> dict:
        job_id = (marker or "").split(":", 1)[0]
        rec = ctx.runner.get(job_id) if job_id else None
        # Gradio reads an empty dict as one value: always name at least one output.
        out: dict = {result_md: gr.update()}
        if rec is None:
            return out
        if rec.op == "dataset.import":
            out[dataset] = gr.update(choices=list_datasets(ws), value=ds)
        elif rec.op in ("rvc.train", "rvc.preprocess"):
            job_exp = rec.params.get("exp_name") or name
            out[result_md] = result_markdown(rec)
            out[exp] = gr.update(choices=list_experiments(ws), value=name or job_exp)
            if (name or job_exp) == job_exp:
                out.update(zip(view_outputs, views(job_exp, "")))
        return out

    ctx.job_finished.change(after_job, [ctx.job_finished, exp, dataset],
                            [dataset, result_md, exp, *view_outputs], show_progress="hidden")
    ctx.job_finished.change(recheck, [widgets["rmvpe_path"], *status_inputs], [widgets["f0_method"], assets_md],
                            show_progress="hidden")  # e.g. after a model download
    def on_load(name: str | None, ds: str | None) -> tuple:
        """Fresh lists; with no experiment chosen, follow the one a running training job trains."""
        if not name:
            active = ctx.runner.list(["running", "queued"], op_prefix="rvc.train", limit=1)
            name = active[0].params.get("exp_name") if active else name
        return reload_lists(name, ds)

    if ctx.demo is not None:
        ctx.demo.load(show_assets, status_inputs, assets_md)
        ctx.demo.load(on_load, [exp, dataset], [exp, dataset]).then(fresh_views, [exp], view_outputs)

    # -- API-only endpoints
    def metrics_api(exp_name: str) -> list:
        """Step and epoch records of an experiment's metrics.jsonl (losses, lr, grad norms, s/step)."""
        return read_metrics(ws, exp_name.strip())

    def saved_api(exp_name: str) -> list:
        """G/D checkpoints and small models of an experiment: kind, location, epoch, step, size."""
        return client_json([{"kind": s.kind, "location": str(s.path), "epoch": s.epoch, "step": s.step,
                             "size": s.size} for s in saved_files(ws, exp_name.strip())])

    gr.api(metrics_api, api_name="rvc_train_metrics")
    gr.api(saved_api, api_name="rvc_train_checkpoints")

    def scores_api(exp_name: str) -> dict:
        """Each save's scores (scores.jsonl) and the best save per score."""
        from engines.ab.scores import best_saves, read_scores

        records = read_scores(ws, exp_name.strip())
        return client_json({"scores": records, "best": best_saves(records)})

    gr.api(scores_api, api_name="rvc_train_scores")
