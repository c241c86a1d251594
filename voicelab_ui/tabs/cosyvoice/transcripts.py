"""CosyVoice tab, step 1: a dataset's clips with their transcripts (Whisper, edit, drop, import)."""

from __future__ import annotations

import dataclasses
from typing import Any

import gradio as gr

from engines.core.errors import VoiceLabError
from engines.core.paths import confine
from engines.dataset.asr import AsrParams
from engines.dataset.stats import list_datasets
from voicelab_ui.api import client_json
from voicelab_ui.i18n import t, ui_text
from voicelab_ui.i18n import table as i18n_table
from voicelab_ui.widgets import submit_job, user_error, values_to_params

from .parts import Parts, result_markdown
from .strings import form


def transcript_rows(ws: Any, dataset: str) -> list[dict]:
    from engines.dataset.transcripts import transcript_table

    if not dataset:
        return []
    try:
        rows = transcript_table(ws.dataset_dir(dataset))
    except VoiceLabError:
        return []
    return [dataclasses.asdict(r) for r in rows]


TABLE_KEYS = ("cv.col.clip", "cv.col.seconds", "cv.col.text", "cv.col.state")


def table_value(rows: list[dict]) -> list[list]:
    def state(r: dict) -> str:
        if r["dropped"]:
            return "dropped"
        if not r["text"]:
            return "no text"
        return "edited" if r["edited"] else (r["source"] or "asr")

    return [[r["clip_id"], round(r["duration"], 2) if r["duration"] else "", r["text"], state(r)] for r in rows]


def build(ctx: Any, parts: Parts) -> None:
    ws = ctx.ws
    with gr.Accordion(t("cv.s1"), open=True, elem_id="vl-cv-transcripts"):
        with gr.Row():
            dataset = gr.Dropdown(choices=list_datasets(ws), value=None, allow_custom_value=True,
                                  label=t("cv.dataset"), elem_id="vl-cv-dataset", scale=3)
            ds_refresh = gr.Button(t("cv.refresh"), scale=0)
        with gr.Accordion(t("cv.asr_options"), open=False):
            asr_w = form(AsrParams, "asr")
        transcribe_btn = gr.Button(t("cv.transcribe"), variant="primary", elem_id="vl-cv-transcribe")
        table = gr.Dataframe(headers=["clip", "seconds", "text", "state"], value=[], interactive=False,
                             wrap=True, label=t("cv.table"), elem_id="vl-cv-table", max_height=360)
        rows_state = gr.State([])
        with gr.Row():
            clip_id = gr.Textbox(label=t("cv.clip"), interactive=False, scale=1, elem_id="vl-cv-clip-id")
            clip_text = gr.Textbox(label=t("cv.clip_text"), scale=4, elem_id="vl-cv-clip-text")
        with gr.Row():
            player = gr.Audio(type="filepath", interactive=False, label=t("cv.player"), elem_id="vl-cv-clip-audio")
            with gr.Column(min_width=160):
                save_text = gr.Button(t("cv.save_text"), elem_id="vl-cv-save-text")
                drop_btn = gr.Button(t("cv.drop"), variant="stop", elem_id="vl-cv-drop")
                undrop_btn = gr.Button(t("cv.undrop"), elem_id="vl-cv-undrop")
        with gr.Accordion(t("cv.import"), open=False):
            import_file = gr.File(file_count="single", label=t("cv.import_file"), elem_id="vl-cv-import-file")
            with gr.Row():
                import_btn = gr.Button(t("cv.import_run"), elem_id="vl-cv-import")
                import_beside = gr.Button(t("cv.import_beside"))
        transcripts_msg = gr.Markdown(elem_id="vl-cv-transcripts-msg")
    parts.c["dataset"] = dataset

    def load_table(ds: str) -> tuple:
        rows = transcript_rows(ws, ds)
        return i18n_table(table_value(rows), TABLE_KEYS), rows

    def reload_datasets(ds: str | None):
        return gr.update(choices=list_datasets(ws), value=ds)

    dataset.change(load_table, [dataset], [table, rows_state]).then(
        lambda: ("", "", None), None, [clip_id, clip_text, player])
    ds_refresh.click(reload_datasets, [dataset], dataset).then(load_table, [dataset], [table, rows_state])

    asr_names = list(asr_w)

    def start_transcribe(ds: str, *values) -> str:
        if not ds:
            raise gr.Error(ui_text("err.pick_dataset"))
        params = values_to_params(AsrParams, asr_names, values)
        params["dataset"] = ds
        return submit_job(ctx, "dataset.transcribe", params, title=f"Transcribe dataset '{ds}'")

    transcribe_btn.click(start_transcribe, [dataset, *asr_w.values()], ctx.job_id, api_name="cosyvoice_transcribe")

    def pick_row(rows: list[dict], evt: gr.SelectData) -> tuple:
        index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if not rows or index is None or index >= len(rows):
            return "", "", None
        r = rows[index]
        return r["clip_id"], r["text"], r["path"]

    table.select(pick_row, [rows_state], [clip_id, clip_text, player])

    def edit(ds: str, cid: str, text_value: str, action: str) -> tuple:
        from engines.dataset.transcripts import drop_clip, set_text

        if not ds or not cid:
            raise gr.Error(ui_text("err.click_clip"))
        try:
            if action == "text":
                set_text(ws.dataset_dir(ds), cid, text_value)
            else:
                drop_clip(ws.dataset_dir(ds), cid, action == "drop")
        except VoiceLabError as exc:
            raise user_error(exc) from exc
        return load_table(ds)

    save_text.click(lambda d, c, x: edit(d, c, x, "text"), [dataset, clip_id, clip_text], [table, rows_state])
    drop_btn.click(lambda d, c, x: edit(d, c, x, "drop"), [dataset, clip_id, clip_text], [table, rows_state])
    undrop_btn.click(lambda d, c, x: edit(d, c, x, "keep"), [dataset, clip_id, clip_text], [table, rows_state])

    def do_import(ds: str, upload: str | None, beside: bool) -> tuple:
        from engines.dataset.transcripts import import_transcripts

        if not ds:
            raise gr.Error(ui_text("err.pick_dataset"))
        try:
            source = None
            if not beside:
                if not upload:
                    raise gr.Error(ui_text("err.upload_list"))
                source = confine(ws, upload, "uploaded file")
            rep = import_transcripts(ws.dataset_dir(ds), source)
        except VoiceLabError as exc:
            raise user_error(exc) from exc
        msg = f"Imported {rep.matched} transcript(s); {len(rep.unmatched)} line(s) matched no clip; " \
              f"{len(rep.missing)} clip(s) still without text."
        if rep.unmatched:
            msg += " Unmatched: " + ", ".join(rep.unmatched[:10])
        return (msg, *load_table(ds))

    import_btn.click(lambda d, u: do_import(d, u, False), [dataset, import_file], [transcripts_msg, table, rows_state])
    import_beside.click(lambda d: do_import(d, None, True), [dataset], [transcripts_msg, table, rows_state])

    def after_import(rec: Any, v: dict) -> dict:  # a new or grown dataset to transcribe
        out: dict = {dataset: gr.update(choices=list_datasets(ws), value=v.get("dataset"))}
        if v.get("dataset"):
            out[table], out[rows_state] = load_table(v["dataset"])
        return out

    def after_transcribe(rec: Any, v: dict) -> dict:
        out: dict = {transcripts_msg: result_markdown(rec)}
        if v.get("dataset") and rec.params.get("dataset") == v["dataset"]:
            out[table], out[rows_state] = load_table(v["dataset"])
        return out

    parts.on_job("dataset.import", [dataset, table, rows_state], after_import)
    parts.on_job("dataset.transcribe", [transcripts_msg, table, rows_state], after_transcribe)

    def transcripts_api(dataset_name: str) -> list:
        """Every clip of a dataset with its transcript, edited/dropped flags."""
        return client_json(transcript_rows(ws, dataset_name))

    def set_text_api(dataset_name: str, clip: str, text_value: str) -> dict:
        """Set a clip's transcript (kept by later ASR runs)."""
        from engines.dataset.transcripts import set_text

        try:
            return set_text(ws.dataset_dir(dataset_name), clip, text_value)
        except VoiceLabError as exc:
            raise user_error(exc) from exc

    gr.api(transcripts_api, api_name="cosyvoice_transcripts")
    gr.api(set_text_api, api_name="cosyvoice_set_text")
