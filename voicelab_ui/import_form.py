"""The "Import a model" section shared by the Convert tab and the Settings/Assets panel.

It submits ``rvc.import`` as a job (the shared job panel follows it). A
file comes as an upload; a typed source is a server folder or file (which
must pass the path policy, ``engines.core.paths.confine``), an http(s) URL
or a Hugging Face repo id (neither is a path). When the job ends, the
section that started it shows what was installed, or the voices whose index
is the user's choice, with the choice lines filled in to edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from engines.core.errors import VoiceLabError
from engines.core.paths import confine
from engines.rvc.model_import.sources import source_kind
from voicelab_ui.context import UIContext
from voicelab_ui.i18n import add, t, ui_text
from voicelab_ui.widgets import finished_job, outcome_line, submit_job, user_error

add({
    "imp.title": ("Import a model (zip / folder / URL / repo id)", "导入模型（zip / 文件夹 / 网址 / 仓库 ID）"),
    "imp.intro": (
        "Voices from a zip, a folder, an http(s) link or a Hugging Face repo; each .pth is checked (a file that "
        "would run code is refused and nothing is installed) and paired with its .index by feature dimension and "
        "name. RVC WebUI and Applio folders work too. Command line: `voicelab rvc import SOURCE`.",
        "可从 zip、文件夹、http(s) 链接或 Hugging Face 仓库导入音色；每个 .pth 都会先检查（含可执行代码的文件会被拒绝，"
        "且不会安装任何文件），并按特征维度和名称与 .index 配对。也支持 RVC WebUI 和 Applio 的文件夹。"
        "命令行：`voicelab rvc import 来源`。"),
    "imp.file": ("Upload a .zip, .pth or .index file", "上传 .zip、.pth 或 .index 文件"),
    "imp.source": ("Or a server folder / file, an http(s) URL, or a repo id (owner/name)",
                   "或服务器上的文件夹/文件、http(s) 网址，或仓库 ID（owner/name）"),
    "imp.source_info": ("Server paths must be inside the workspace or an allowed import root",
                        "服务器路径须位于工作区或允许的导入目录内"),
    "imp.name": ("Name (optional)", "名称（可选）"),
    "imp.name_info": ("For a single voice, a training run or a pretrained set", "用于单个音色、单个训练或一组底模"),
    "imp.choose": ("Index choices (when several fit)", "索引选择（有多个可用时）"),
    "imp.choose_info": ("One line per voice: voice.pth=index.index, or voice.pth=none",
                        "每行一个音色：音色.pth=索引.index，或 音色.pth=none"),
    "imp.runs": ("Training runs to import (RVC WebUI / Applio logs/<name>; comma-separated, or all)",
                 "要导入的训练（RVC WebUI / Applio 的 logs/<名称>；逗号分隔，或 all）"),
    "imp.as": ("Import as", "导入为"),
    "imp.run": ("Import", "导入"),
})


@dataclass
class ImportForm:
    result: Any  # gr.Markdown with the last import's outcome
    job: Any  # gr.State: the id of the import this section started


def result_markdown(rec: Any) -> tuple[str, str | None]:
    """The outcome of a finished import job, and the choice lines to prefill when it asks for a choice."""
    if rec.state != "done":
        return outcome_line(rec), None
    res = rec.result or {}
    lines = [f"✔ {res.get('summary', rec.message)}"]
    lines += [f"- `{v['name']}` ({v['version']} {v['sr']}, {v['encoder']})"
              + (f" + `{v['index'].rsplit('/', 1)[-1]}`" if v.get("index") else "")
              + (f" — {v['note']}" if v.get("note") else "") for v in res.get("voices", [])]
    lines += [f"- run `{e['name']}`: `{e['resume']}`" for e in res.get("experiments", [])]
    lines += [f"- `{p['path'].rsplit('/', 1)[-1]}`: {p['what']}" for p in res.get("pretrained", [])]
    for a in res.get("needs_choice", []):
        lines.append(f"- **{a['voice']}** ({a['version']}): " + " · ".join(f"`{c}`" for c in a["candidates"]))
    if res.get("experiments_available"):
        lines.append("- runs here: " + ", ".join(f"`{n}`" for n in res["experiments_available"]))
    lines += [f"- skipped `{s['file']}`: {s['reason']}" for s in res.get("skipped", [])[:20]]
    prefill = "\n".join(f"{a['voice']}={a['candidates'][0]}" for a in res.get("needs_choice", []))
    return "\n".join(lines), prefill or None


def imported_voices(rec: Any) -> list[str]:
    """File names in weights/ of the voices a finished import installed."""
    if rec is None or rec.op != "rvc.import" or rec.state != "done":
        return []
    return [v["name"] for v in (rec.result or {}).get("voices", [])]


def build(ctx: UIContext, prefix: str, *, pretrained: bool = False, runs: bool = False) -> ImportForm:
    """The section; ``pretrained`` offers importing G/D sets, ``runs`` the training runs of an install."""
    ws = ctx.ws
    with gr.Accordion(t("imp.title"), open=False, elem_id=f"{prefix}-import"):
        gr.Markdown(t("imp.intro"))
        upload = gr.File(file_types=[".zip", ".pth", ".index"], label=t("imp.file"), elem_id=f"{prefix}-import-file")
        source = gr.Textbox(label=t("imp.source"), info=t("imp.source_info"), elem_id=f"{prefix}-import-source")
        with gr.Row():
            name = gr.Textbox(label=t("imp.name"), info=t("imp.name_info"), elem_id=f"{prefix}-import-name")
            target = gr.Radio(["voices", "pretrained"], value="voices", label=t("imp.as"), visible=pretrained)
        experiments = gr.Textbox(label=t("imp.runs"), visible=runs, elem_id=f"{prefix}-import-runs")
        choose = gr.Textbox(label=t("imp.choose"), info=t("imp.choose_info"), lines=2, elem_id=f"{prefix}-import-choose")
        run = gr.Button(t("imp.run"), elem_id=f"{prefix}-import-run")
        result = gr.Markdown(elem_id=f"{prefix}-import-result")
    job = gr.State("")

    def start(file: Any, typed: str, label: str, as_what: str, run_names: str, choices: str) -> tuple[str, str]:
        typed = (typed or "").strip()
        try:
            if file:
                src = str(confine(ws, file, "uploaded file"))
            elif typed and source_kind(typed) in ("folder", "zip", "file"):
                src = str(confine(ws, typed, "folder"))
            elif typed:
                src = typed  # a URL or a repo id: not a path on this machine
            else:
                raise gr.Error(ui_text("err.import_source"))
        except VoiceLabError as exc:
            raise user_error(exc) from exc
        params = {"source": src, "name": (label or "").strip(), "target": as_what or "voices",
                  "choose": [c.strip() for c in (choices or "").splitlines() if c.strip()],
                  "experiments": [r.strip() for r in (run_names or "").split(",") if r.strip()]}
        job_id = submit_job(ctx, "rvc.import", params, title=f"Import models from {src.rsplit('/', 1)[-1]}")
        return job_id, job_id

    run.click(start, [upload, source, name, target, experiments, choose], [ctx.job_id, job],
              api_name=f"{prefix.replace('-', '_').removeprefix('vl_')}_model_import")

    def after_job(marker: str, mine: str) -> tuple:
        rec = finished_job(ctx, marker)
        if rec is None or rec.id != mine:
            return gr.update(), gr.update()
        text, prefill = result_markdown(rec)
        return text, (prefill if prefill is not None else gr.update())

    if ctx.job_finished is not None:  # (a panel built alone, without the job panel, has none)
        ctx.job_finished.change(after_job, [ctx.job_finished, job], [result, choose])
    return ImportForm(result, job)
