"""Settings / Assets panel: which model files are here, what can run, import and download.

``build(ctx)`` is called from the Settings tab. Checks run in the page
request (sizes plus remembered hashes, so they are quick); import and
download run as jobs that the shared job panel follows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from engines.assets.check import (
    AssetStatus,
    check_assets,
    feature_readiness,
    human_size,
)
from engines.assets.manifest import load_manifest
from engines.core.errors import InvalidInputError, VoiceLabError
from engines.core.paths import IMPORT_SOURCE, confine
from voicelab_ui import import_form
from voicelab_ui.context import UIContext
from voicelab_ui.i18n import add, t, ui_text
from voicelab_ui.i18n import table as i18n_table
from voicelab_ui.widgets import submit_job, user_error

add({
    "assets.title": ("Model files", "模型文件"),
    "assets.intro": (
        "Weights the studio uses: HuBERT, RMVPE, RVC pretrained base models, CosyVoice and Whisper models. "
        "Missing ones can be imported from an existing RVC WebUI / Applio / CosyVoice folder or downloaded. "
        "Command line: `voicelab assets check | import --from DIR | download NAME`.",
        "工作室使用的模型文件：HuBERT、RMVPE、RVC 底模、CosyVoice 与 Whisper 模型。"
        "缺失的文件可从已有的 RVC WebUI / Applio / CosyVoice 文件夹导入，或直接下载。"
        "命令行：`voicelab assets check | import --from DIR | download 名称`。",
    ),
    "assets.legend": (
        "Status: ✅ present · ❌ missing · ⚠️ incomplete / wrong-size / wrong-hash (a damaged or different file: "
        "download it again). Hashes (sha256) are remembered; “Verify” re-computes them.",
        "状态：✅ 已就绪 · ❌ 缺失 · ⚠️ 不完整 / 大小不符 / 校验不符（文件损坏或不是同一个文件：请重新下载）。"
        "sha256 校验结果会被缓存；“重新校验”会重新计算。",
    ),
    "assets.table": ("Model files on this machine", "本机模型文件"),
    "assets.col_name": ("Name", "名称"),
    "assets.col_status": ("Status", "状态"),
    "assets.col_path": ("Path", "路径"),
    "assets.col_size": ("Size", "大小"),
    "assets.col_features": ("Used by", "用于"),
    "assets.features": ("What can run now", "当前可用功能"),
    "assets.col_feature": ("Feature", "功能"),
    "assets.col_ready": ("Ready", "可用"),
    "assets.col_needs": ("Missing model files", "缺失的模型文件"),
    "assets.refresh": ("Check again", "重新检查"),
    "assets.verify": ("Verify (sha256)", "重新校验 (sha256)"),
    "assets.import": ("Import from folder", "从文件夹导入"),
    "assets.import_folder": ("Folder of an RVC WebUI, Applio or CosyVoice install", "RVC WebUI、Applio 或 CosyVoice 的安装文件夹"),
    "assets.import_info_local": (
        "Any folder on this machine. Files are checked (size / sha256) and linked; existing different files are never overwritten.",
        "本机任意文件夹。文件会先校验（大小 / sha256）再链接；已存在的不同文件不会被覆盖。",
    ),
    "assets.import_info_lan": (
        "LAN mode: only folders inside the workspace or an allowed import root.",
        "局域网模式：只允许工作区或允许的导入目录内的文件夹。",
    ),
    "assets.copy": ("Copy instead of linking", "复制而不是链接"),
    "assets.import_run": ("Import", "导入"),
    "assets.download": ("Download", "下载"),
    "assets.download_names": ("Model files to download", "要下载的模型文件"),
    "assets.download_info": (
        "From Hugging Face (set HF_ENDPOINT for a mirror, e.g. https://hf-mirror.com) or ModelScope; verified before use.",
        "从 Hugging Face（可设置 HF_ENDPOINT 使用镜像，如 https://hf-mirror.com）或 ModelScope（魔搭）下载；使用前先校验。",
    ),
    "assets.source": ("Source", "下载源"),
    "assets.download_run": ("Download selected", "下载所选"),
    "assets.download_missing": ("Download all missing", "下载全部缺失文件"),
})

TABLE_KEYS = ("assets.col_name", "assets.col_status", "assets.col_path", "assets.col_size", "assets.col_features")
FEATURE_KEYS = ("assets.col_feature", "assets.col_ready", "assets.col_needs")
ICONS = {"present": "✅", "missing": "❌"}
PACKAGE_NOTE = "(Python package)"


def status_rows(statuses: list[AssetStatus]) -> list[list[str]]:
    rows = []
    for s in statuses:
        icon = ICONS.get(s.status, "⚠️")
        status = f"{icon} {s.status}" + (f" ({s.detail})" if s.detail and not s.ok else "")
        size = human_size(s.size) if s.size else ""
        path = s.path + (f" → {s.linked_to}" if s.linked_to else "")
        rows.append([s.name, status, path, size, ", ".join(s.features)])
    return rows


def readiness_rows(statuses: list[AssetStatus]) -> list[list[str]]:
    return [[name, "✅" if ok else "❌", ", ".join(missing)]
            for name, (ok, missing) in feature_readiness(statuses).items()]


def downloadable(statuses: list[AssetStatus]) -> tuple[list[str], list[str]]:
    """(every downloadable asset name, those not usable: an unofficial hubert/rmvpe the user chose stays)."""
    manifest = load_manifest()
    names = [s.name for s in statuses if manifest.assets[s.name].kind != "package"]
    return names, [s.name for s in statuses if s.name in names and not s.usable]


def current_tables(ctx: UIContext, verify: bool = False, hash_files: bool = False) -> tuple[list, list, Any]:
    """Asset rows, feature rows and a dropdown update listing what can be downloaded."""
    statuses = check_assets(ctx.ws.settings, verify=verify, hash_files=hash_files or verify)
    names, missing = downloadable(statuses)
    return status_rows(statuses), readiness_rows(statuses), gr.update(choices=names, value=missing)


def import_folder(ctx: UIContext, folder: str) -> Path:
    """The folder to import from: any folder on a local studio, a confined one in LAN mode (never uploads)."""
    folder = (folder or "").strip() if isinstance(folder, str) else ""
    if not folder:
        raise InvalidInputError("Give the folder of an RVC WebUI, Applio or CosyVoice install.")
    path = confine(ctx.ws, folder, "folder", IMPORT_SOURCE)
    if not path.is_dir():
        raise InvalidInputError(f"{path} is not a folder on the server.")
    return path


def build(ctx: UIContext) -> None:
    with gr.Accordion(t("assets.title"), open=True, elem_id="vl-assets"):
        gr.Markdown(t("assets.intro"))
        gr.Markdown(t("assets.legend"))
        table = gr.Dataframe(headers=[t("assets.col_name"), t("assets.col_status"), t("assets.col_path"),
                                      t("assets.col_size"), t("assets.col_features")],
                             value=[], interactive=False, wrap=True, label=t("assets.table"), elem_id="vl-assets-table")
        features = gr.Dataframe(headers=[t("assets.col_feature"), t("assets.col_ready"), t("assets.col_needs")],
                                value=[], interactive=False, wrap=True, label=t("assets.features"),
                                elem_id="vl-assets-features")
        with gr.Row():
            refresh = gr.Button(t("assets.refresh"), size="sm", elem_id="vl-assets-refresh")
            verify = gr.Button(t("assets.verify"), size="sm", elem_id="vl-assets-verify")
        with gr.Accordion(t("assets.import"), open=False):
            folder = gr.Textbox(label=t("assets.import_folder"),
                                info=t("assets.import_info_lan" if ctx.ws.settings.lan else "assets.import_info_local"),
                                elem_id="vl-assets-import-folder")
            copy = gr.Checkbox(value=False, label=t("assets.copy"))
            run_import = gr.Button(t("assets.import_run"), elem_id="vl-assets-import")
        import_form.build(ctx, "vl-assets", pretrained=True, runs=True)
        with gr.Accordion(t("assets.download"), open=False):
            names = gr.Dropdown(choices=[], value=[], multiselect=True, label=t("assets.download_names"),
                                info=t("assets.download_info"), elem_id="vl-assets-download-names")
            source = gr.Radio(["hf", "modelscope"], value="hf", label=t("assets.source"))
            with gr.Row():
                run_download = gr.Button(t("assets.download_run"), variant="primary", elem_id="vl-assets-download")
                run_missing = gr.Button(t("assets.download_missing"), elem_id="vl-assets-download-missing")

    outputs = [table, features, names]

    def refresh_tables(verify_hashes: bool = False) -> tuple:
        try:
            rows, feats, choices = current_tables(ctx, verify=verify_hashes)
            return i18n_table(rows, TABLE_KEYS), i18n_table(feats, FEATURE_KEYS), choices
        except VoiceLabError as exc:
            raise user_error(exc) from exc

    if ctx.demo is not None:
        ctx.demo.load(lambda: refresh_tables(False), None, outputs)
    refresh.click(lambda: refresh_tables(False), None, outputs)
    verify.click(lambda: refresh_tables(True), None, outputs)
    if ctx.job_finished is not None:
        ctx.job_finished.change(lambda _: refresh_tables(False), [ctx.job_finished], outputs)

    def start_import(path: str, as_copy: bool) -> str:
        try:
            chosen = import_folder(ctx, path)
        except VoiceLabError as exc:
            raise user_error(exc) from exc
        return submit_job(ctx, "assets.import", {"source_dir": str(chosen), "copy": bool(as_copy)},
                          title=f"Import model files from {chosen}")

    def start_download(selected: list[str] | None, src: str) -> str:
        if not selected:
            raise gr.Error(ui_text("err.select_downloads"))
        return submit_job(ctx, "assets.download", {"names": list(selected), "source": src},
                          title=f"Download {len(selected)} model file(s)")

    def start_missing(src: str) -> str:
        try:
            _, missing = downloadable(check_assets(ctx.ws.settings, hash_files=False))
        except VoiceLabError as exc:
            raise user_error(exc) from exc
        if not missing:
            raise gr.Error(ui_text("err.nothing_missing"))
        return submit_job(ctx, "assets.download", {"names": missing, "source": src},
                          title=f"Download {len(missing)} missing model file(s)")

    run_import.click(start_import, [folder, copy], ctx.job_id, api_name="assets_import")
    run_download.click(start_download, [names, source], ctx.job_id, api_name="assets_download")
    run_missing.click(start_missing, [source], ctx.job_id)
