"""RVC Train tab: experiment + dataset, the training options, asset status, jobs, live loss curves, checkpoints.

"Preprocess + extract" and "Train" submit the ``rvc.preprocess`` / ``rvc.train``
jobs (``engines.rvc.ops.train``) and hand their id to the shared job panel,
which streams the log. While a training job of the chosen experiment runs, a
timer re-reads its ``metrics.jsonl`` and saved files every two seconds (only
when they changed); the timer stops itself when no such job is left, and
the views refresh once more when the followed job finishes.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import gradio as gr

from engines.assets.check import human_size
from engines.core.errors import InvalidInputError, VoiceLabError
from engines.core.paths import confine_value
from engines.core.settings import safe_name
from engines.dataset.stats import list_datasets
from engines.rvc.ops.catalog import (
    experiment_settings,
    list_experiments,
    read_metrics,
    saved_files,
)
from engines.rvc.ops.train import pretrained_asset_names, pretrained_paths
from engines.rvc.train.params import TrainParams
from voicelab_ui.api import client_json
from voicelab_ui.context import UIContext
from voicelab_ui.i18n import STRINGS, add, t, text, ui_language
from voicelab_ui.i18n import table as i18n_table
from voicelab_ui.widgets import error_text, outcome_line, param_widgets, submit_job, values_to_params

REFRESH_SECONDS = 2.0
MAX_PLOT_POINTS = 1500  # per series; longer runs are thinned evenly
LOSS_SERIES = (("loss_gen_all", "G total"), ("loss_mel", "mel"), ("loss_kl", "kl"), ("loss_fm", "fm"),
               ("loss_disc", "D"))
MAIN_ROWS = (("sr", "version", "f0_method", "f0"), ("total_epoch", "batch_size", "save_every_epoch"),
             ("pretrained_g", "pretrained_d"), ("gpus", "save_every_weights"))
MAIN_FIELDS = tuple(name for row in MAIN_ROWS for name in row)
NOT_SHOWN = ("exp_name", "dataset", "segment_size", "model_config")
# Settings an experiment must keep between runs (filled in when an experiment is picked).
EXPERIMENT_FIELDS = ("dataset", "sr", "version", "f0", "f0_method")
PREFERRED_F0 = ("rmvpe", "fcpe", "crepe", "harvest", "pm")
OK, BAD = "✔", "✘"
SAVED_HEADERS = ("kind", "file", "epoch", "step", "size", "saved at")
SAVED_KEYS = tuple(f"rvc.tr.col.{i}" for i in range(len(SAVED_HEADERS)))

add({
    **dict(zip(SAVED_KEYS, (("kind", "类型"), ("file", "文件"), ("epoch", "轮次"), ("step", "步数"), ("size", "大小"),
                            ("saved at", "保存时间")))),
    "rvc.tr.intro": (
        "Train an RVC voice: pick or name an experiment, choose a dataset (from the Dataset tab, or a folder on the "
        "server), then **Train** (runs preprocessing, pitch and HuBERT features first; finished stages are cached "
        "and skipped). Training resumes from the experiment's latest G/D checkpoint. Command line: "
        "`voicelab rvc preprocess | extract | train`.",
        "训练 RVC 音色：选择或输入实验名，选择数据集（数据集页中的数据集，或服务器上的文件夹），然后点击**开始训练**"
        "（会先做预处理、音高提取和 HuBERT 特征提取；已完成的步骤会被缓存并跳过）。训练会从该实验最新的 G/D 检查点继续。"
        "命令行：`voicelab rvc preprocess | extract | train`。",
    ),
    "rvc.tr.exp": ("Experiment name", "实验名"),
    "rvc.tr.exp_info": ("Pick an existing experiment to continue it, or type a new name",
                        "选择已有实验以继续训练，或输入新的实验名"),
    "rvc.tr.dataset": ("Dataset", "数据集"),
    "rvc.tr.dataset_info": ("A dataset from the Dataset tab, or a folder of audio inside the workspace / an allowed "
                            "import root", "数据集页中的数据集，或工作区 / 允许的导入目录内的音频文件夹"),
    "rvc.tr.refresh": ("Refresh", "刷新"),
    "rvc.tr.options": ("Training options", "训练选项"),
    "rvc.tr.advanced": ("Advanced", "高级选项"),
    "rvc.tr.assets": ("Model files for this run", "本次训练所需的模型文件"),
    "rvc.tr.assets_check": ("Check again", "重新检查"),
    "rvc.tr.assets_legend": (
        "✔ present · ✘ missing. Missing files can be imported or downloaded in Settings → Model files, "
        "or with the command shown.",
        "✔ 已就绪 · ✘ 缺失。缺失的文件可在“设置 → 模型文件”中导入或下载，也可运行表中给出的命令。",
    ),
    "rvc.tr.preprocess": ("Preprocess + extract", "预处理 + 特征提取"),
    "rvc.tr.train": ("Train", "开始训练"),
    "rvc.tr.curves": ("Training curves", "训练曲线"),
    "rvc.tr.loss": ("Losses (generator total / mel / kl / fm, discriminator)",
                    "损失（生成器总损失 / mel / kl / fm、判别器）"),
    "rvc.tr.lr": ("Learning rate", "学习率"),
    "rvc.tr.saved": ("Saved checkpoints and models", "已保存的检查点与模型"),
    "rvc.tr.saved_table": ("Checkpoints (G/D) and small models of the experiment", "该实验的检查点（G/D）与小模型"),
    "rvc.tr.ab_hint": (
        "Small models (`<exp>_e<epoch>_s<step>.pth`) are written at every save: compare two of them in the "
        "**A/B Listen** tab, or use one in **Convert**. `G_*.pth` / `D_*.pth` are the full checkpoints training "
        "resumes from.",
        "每次保存都会写出一个小模型（`<实验名>_e<轮数>_s<步数>.pth`）：可在 **A/B 试听**页中对比其中两个，"
        "或在**推理**页中使用。`G_*.pth` / `D_*.pth` 是用于继续训练的完整检查点。",
    ),
})

# Labels and help of the TrainParams fields. The generic param.<field>/help.<field> keys are shared with
# other tabs, so they are only added when nobody defined them; where another tab's help means something
# else (sr, version, seed are conversion options there), this form uses its own help keys.
FIELD_STRINGS: dict[str, tuple[str, str]] = {
    "param.sr": ("Sample rate", "采样率"),
    "param.version": ("Model version", "模型版本"),
    "param.f0": ("Pitch guidance (f0)", "音高引导 (f0)"),
    "help.f0": ("Pitch-guided model (needed for singing and pitch shifting)", "带音高的模型（唱歌和变调需要）"),
    "param.f0_method": ("Pitch extraction method", "音高提取算法"),
    "help.f0_method": ("Pitch extraction method", "音高提取算法"),
    "param.total_epoch": ("Total epochs", "总训练轮数"),
    "help.total_epoch": ("Train until this epoch", "训练到第几轮为止"),
    "param.batch_size": ("Batch size per GPU", "每张显卡的批量大小"),
    "help.batch_size": ("Batch size per GPU (per process)", "每张显卡（每个进程）的批量大小"),
    "param.save_every_epoch": ("Save every N epochs", "保存频率（每 N 轮）"),
    "help.save_every_epoch": ("Save G/D checkpoints every N epochs", "每 N 轮保存一次 G/D 检查点"),
    "param.save_every_weights": ("Save a small model at every save", "每次保存时导出小模型"),
    "help.save_every_weights": ("Also write a small inference model at every save", "每次保存检查点时同时写出推理用小模型"),
    "param.keep_latest_only": ("Keep latest checkpoint only", "仅保留最新检查点"),
    "help.keep_latest_only": ("Keep only the newest G/D checkpoint pair (saves disk)", "只保留最新的一组 G/D 检查点（节省磁盘）"),
    "param.pretrained_g": ("Pretrained G", "预训练底模 G"),
    "help.pretrained_g": ("Pretrained generator (e.g. assets/pretrained_v2/f0G40k.pth); empty = from scratch",
                          "预训练生成器底模（如 assets/pretrained_v2/f0G40k.pth）；留空 = 从零训练"),
    "param.pretrained_d": ("Pretrained D", "预训练底模 D"),
    "help.pretrained_d": ("Pretrained discriminator (e.g. f0D40k.pth); empty = from scratch",
                          "预训练判别器底模（如 f0D40k.pth）；留空 = 从零训练"),
    "param.gpus": ("GPUs", "显卡编号"),
    "help.gpus": ("GPU ids separated by '-' (e.g. 0-1); empty = all visible GPUs, CPU if none",
                  "用 '-' 分隔的显卡编号（如 0-1）；留空 = 使用所有可见显卡，没有显卡则用 CPU"),
    "param.skip_preprocess": ("Skip preprocessing", "跳过预处理"),
    "help.skip_preprocess": ("Reuse the experiment's existing pieces", "复用该实验已有的切片"),
    "param.skip_f0": ("Skip pitch extraction", "跳过音高提取"),
    "help.skip_f0": ("Reuse the existing pitch files", "复用已有的音高文件"),
    "param.skip_feature": ("Skip feature extraction", "跳过特征提取"),
    "help.skip_feature": ("Reuse the existing content features", "复用已有的内容特征"),
    "param.force": ("Redo cached stages", "强制重做"),
    "help.force": ("Redo preprocessing and extraction even when cached", "即使已有缓存也重新预处理和提取"),
    "param.n_processes": ("CPU processes", "CPU 进程数"),
    "help.n_processes": ("CPU processes for preprocessing and pitch extraction", "预处理和音高提取使用的 CPU 进程数"),
    "param.seed": ("Random seed", "随机种子"),
    "param.precision": ("Precision", "精度"),
    "help.precision": ("Mixed precision on CUDA (CPU is always fp32)", "CUDA 上的混合精度（CPU 始终为 fp32）"),
    "param.speaker_id": ("Speaker id", "说话人 ID"),
    "help.speaker_id": ("Speaker id written to the filelist", "写入训练文件列表的说话人 ID"),
    "param.hubert_path": ("HuBERT path", "HuBERT 路径"),
    "help.hubert_path": ("Content encoder (hubert_base.pt or a transformers dir); empty = settings",
                         "内容编码器（hubert_base.pt 或 transformers 格式文件夹）；留空 = 使用设置中的路径"),
    "param.rmvpe_path": ("RMVPE path", "RMVPE 路径"),
    "help.rmvpe_path": ("rmvpe.pt for the rmvpe pitch method; empty = settings",
                        "rmvpe 音高提取算法使用的 rmvpe.pt；留空 = 使用设置中的路径"),
    "param.log_interval": ("Log every N steps", "日志间隔（步）"),
    "help.log_interval": ("Write metrics every N steps", "每 N 步记录一次训练指标"),
    "param.grad_clip": ("Gradient clipping", "梯度裁剪"),
    "help.grad_clip": ("Clip gradient norm to this value (0 = measure only, as upstream)",
                       "把梯度范数裁剪到此值（0 = 只记录不裁剪，与原版一致）"),
    "param.loader_workers": ("Data loader workers", "数据加载进程数"),
    "help.loader_workers": ("Data loader worker processes per training process", "每个训练进程的数据加载工作进程数"),
    "param.cpu_processes": ("CPU training processes", "CPU 训练进程数"),
    "help.cpu_processes": ("Training processes when no GPU is used (DDP over gloo)", "不用显卡时的训练进程数（gloo 后端 DDP）"),
    "param.max_steps": ("Stop after N steps", "最多训练步数"),
    "help.max_steps": ("Stop after this many steps in this run (0 = run all epochs)", "本次最多训练这么多步（0 = 训练完所有轮数）"),
    "param.add_mute": ("Add silent pieces", "加入静音片段"),
    "help.add_mute": ("Add two silent pieces to the filelist, as upstream", "与原版一样，在文件列表中加入两条静音片段"),
}
OWN_HELP = {
    "sr": ("Target sample rate of the model (pick the one of your pretrained G/D)", "模型的目标采样率（与所用底模一致）"),
    "version": ("Model version (v2: 768-d HuBERT layer 12 features; v1: 256-d)", "模型版本（v2：768 维 HuBERT 第 12 层特征；v1：256 维）"),
    "seed": ("Random seed of the training run", "训练随机种子"),
}
# param_widgets also looks the generic help keys up; give them a neutral text when no other tab did.
FIELD_STRINGS.update({f"help.{name}": FIELD_STRINGS[f"param.{name}"] for name in OWN_HELP})
for _key, _value in FIELD_STRINGS.items():
    STRINGS.setdefault(_key, _value)
add({f"rvc.tr.help.{name}": value for name, value in OWN_HELP.items()})


# -- data helpers (no Gradio state) ---------------------------------------------------------

def f0_choices(ws: Any, rmvpe_path: str = "") -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Dropdown choices for the pitch method (unavailable ones marked) and the reason of each unavailable one."""
    from engines.rvc.pitch.f0 import available_f0_methods

    rmvpe = rmvpe_path or str(ws.settings.resolved_rmvpe())
    status = available_f0_methods(rmvpe)
    reasons = {m: why for m, (ok, why) in status.items() if not ok}
    return [(m if ok else f"{m} (unavailable)", m) for m, (ok, _) in status.items()], reasons


def default_f0_method(reasons: dict[str, str]) -> str:
    return next((m for m in PREFERRED_F0 if m not in reasons), "rmvpe")


def standard_pretrained(ws: Any) -> set[str]:
    """Paths of every standard pretrained G/D (a field holding one of these follows sr/version/f0)."""
    out: set[str] = set()
    for sr in ("32k", "40k", "48k"):
        for version in ("v1", "v2"):
            for f0 in (True, False):
                out.update(str(p) for p in pretrained_paths(ws.settings, sr, version, f0))
    return out


def pretrained_for(ws: Any, sr: str, version: str, f0: bool, current_g: str, current_d: str) -> tuple[str, str]:
    """The pretrained G/D fields after a change of sr/version/f0: the matching files when present
    (empty = from scratch when absent); a path the user typed himself is kept."""
    standard = standard_pretrained(ws)
    out = []
    for current, path in zip((current_g, current_d), pretrained_paths(ws.settings, sr, version, bool(f0))):
        if current and current not in standard:
            out.append(current)
        else:
            out.append(str(path) if path.is_file() else "")
    return out[0], out[1]


def asset_rows(ws: Any, sr: str, version: str, f0: bool, f0_method: str, hubert_path: str = "",
               rmvpe_path: str = "", pretrained_g: str = "", pretrained_d: str = "") -> list[dict[str, str]]:
    """What this run needs and whether it is here: item, ok, where, and the command when it is not."""
    from engines.assets.check import check_assets
    from engines.assets.manifest import load_manifest

    manifest = load_manifest()
    rows: list[dict[str, str]] = []
    if hubert_path:
        ok = Path(hubert_path).exists()
        rows.append({"item": "HuBERT content encoder", "ok": ok, "where": hubert_path,
                     "fix": "" if ok else "fix the HuBERT path, or empty it to use the settings' file"})
    else:
        s = check_assets(ws.settings, manifest, names=["hubert_base"], hash_files=False)[0]
        rows.append({"item": "HuBERT content encoder", "ok": s.ok, "where": s.path + (f" ({s.status})" if not s.ok else ""),
                     "fix": s.command})
    if f0:
        _, reasons = f0_choices(ws, rmvpe_path)
        why = reasons.get(f0_method, "")
        rows.append({"item": f"Pitch method '{f0_method}'", "ok": not why, "where": why or "available", "fix": ""})
    g_name, d_name = pretrained_asset_names(sr, version, bool(f0))
    for value, name, what in ((pretrained_g, g_name, "G"), (pretrained_d, d_name, "D")):
        standard = pretrained_paths(ws.settings, sr, version, bool(f0))[0 if what == "G" else 1]
        if value and Path(value) != standard:
            ok = Path(value).is_file()
            rows.append({"item": f"Pretrained {what} (your file)", "ok": ok, "where": value,
                         "fix": "" if ok else "fix the path, or empty it to train from scratch"})
            continue
        present = standard.is_file()
        fix = "" if present else f"voicelab assets download {g_name} {d_name}"
        note = "" if present else " — missing; without it training starts from scratch"
        if present and not value:
            note = " — present but not selected (training from scratch)"
        rows.append({"item": f"Pretrained {what} `{name}`", "ok": present, "where": f"{standard}{note}", "fix": fix})
    return rows


def assets_markdown(rows: list[dict[str, Any]], reasons: dict[str, str]) -> str:
    lines = ["| | Needed | Where / status | Fix |", "|---|---|---|---|"]
    for r in rows:
        command, _, rest = r["fix"].partition(" (")
        fix = f"`{command}`" + (f" ({rest}" if rest else "") if command.startswith("voicelab ") else r["fix"]
        lines.append(f"| {OK if r['ok'] else BAD} | {r['item']} | {str(r['where']).replace('|', '/')} | {fix} |")
    if reasons:
        lines.append("")
        lines.append("Unavailable pitch methods: " + "; ".join(f"**{m}**: {why}" for m, why in reasons.items()))
    return "\n".join(lines)


def loss_frames(ws: Any, exp: str) -> tuple[Any, Any]:
    """(losses, learning rate) frames from the experiment's step records, thinned to MAX_PLOT_POINTS."""
    import pandas as pd

    records = read_metrics(ws, exp, "step") if exp else []
    stride = max(1, -(-len(records) // MAX_PLOT_POINTS))
    if stride > 1:
        records = records[::stride] + ([records[-1]] if (len(records) - 1) % stride else [])
    loss, lr = [], []
    for r in records:
        step = int(r.get("step", 0))
        for key, series in LOSS_SERIES:
            value = r.get(key)
            if isinstance(value, (int, float)) and value == value and abs(value) != float("inf"):
                loss.append({"step": step, "loss": float(value), "series": series})
        if isinstance(r.get("lr"), (int, float)):
            lr.append({"step": step, "lr": float(r["lr"])})
    return (pd.DataFrame(loss, columns=["step", "loss", "series"]), pd.DataFrame(lr, columns=["step", "lr"]))


def saved_rows(ws: Any, exp: str) -> list[list[Any]]:
    kinds = {"G": "G checkpoint", "D": "D checkpoint", "model": "small model"}
    return [[kinds[s.kind], s.path.name, "" if s.epoch is None else s.epoch, s.step, human_size(s.size),
             time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.mtime))] for s in saved_files(ws, exp)]


def view_stamp(ws: Any, exp: str) -> str:
    """Changes whenever the experiment's metrics or saved files change (cheap: a few stats)."""
    if not exp:
        return ":none"
    parts = [exp]
    try:
        root = ws.experiment_dir(exp)
    except InvalidInputError:
        return f"{exp}:invalid"
    for path in (root, root / "metrics.jsonl", ws.weights):
        try:
            st = path.stat()
            parts.append(f"{st.st_mtime_ns}:{st.st_size}")
        except OSError:
            parts.append("-")
    return "|".join(parts)


def training_job_running(ctx: UIContext, exp: str) -> bool:
    return any(r.params.get("exp_name") == exp for r in ctx.runner.list(["queued", "running"], op_prefix="rvc.train"))


def last_run_params(ctx: UIContext, exp: str) -> dict[str, Any]:
    """Parameters of the experiment's latest preprocess/train job ({} when there is none)."""
    for rec in ctx.runner.list(op_prefix="rvc.", limit=200):
        if rec.op in ("rvc.train", "rvc.preprocess") and rec.params.get("exp_name") == exp:
            return rec.params
    return {}


def result_markdown(rec: Any) -> str:
    return outcome_line(rec, OK, BAD)


# -- the tab ----------------------------------------------------------------------------------

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
    with gr.Row():
        preprocess_btn = gr.Button(t("rvc.tr.preprocess"), elem_id="vl-rvc-preprocess")
        train_btn = gr.Button(t("rvc.tr.train"), variant="primary", elem_id="vl-rvc-train")
    result_md = gr.Markdown(elem_id="vl-rvc-result")
    with gr.Accordion(t("rvc.tr.curves"), open=True, elem_id="vl-rvc-curves"):
        with gr.Row():
            loss_plot = gr.LinePlot(x="step", y="loss", color="series", label=t("rvc.tr.loss"),
                                    elem_id="vl-rvc-plot-loss", scale=3)
            lr_plot = gr.LinePlot(x="step", y="lr", label=t("rvc.tr.lr"), elem_id="vl-rvc-plot-lr", scale=2)
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

    for w in (widgets["sr"], widgets["version"], widgets["f0"]):
        w.change(follow_model, status_inputs, [widgets["pretrained_g"], widgets["pretrained_d"], assets_md],
                 show_progress="hidden")
    widgets["f0_method"].change(show_assets, status_inputs, assets_md, show_progress="hidden")
    for w in (widgets["hubert_path"], widgets["rmvpe_path"], widgets["pretrained_g"], widgets["pretrained_d"]):
        w.blur(show_assets, status_inputs, assets_md, show_progress="hidden")

    def recheck(rmvpe_path, *status_values) -> tuple:
        new_choices, _ = f0_choices(ws, confine_value(ws, rmvpe_path, "rmvpe path"))
        return gr.update(choices=new_choices), show_assets(*status_values)

    assets_btn.click(recheck, [widgets["rmvpe_path"], *status_inputs], [widgets["f0_method"], assets_md],
                     api_name="rvc_train_assets")

    # -- curves and saved files
    def views(name: str | None, old_stamp: str) -> tuple:
        name = (name or "").strip()
        running = bool(name) and training_job_running(ctx, name)
        new_stamp = view_stamp(ws, name)
        timer_update = gr.Timer(active=running)
        if new_stamp == old_stamp:
            return gr.update(), gr.update(), gr.update(), old_stamp, timer_update
        loss_df, lr_df = loss_frames(ws, name)
        lang = ui_language()
        return (gr.LinePlot(value=loss_df, x_title=text("plot.step", lang), y_title=text("plot.loss", lang)),
                gr.LinePlot(value=lr_df, x_title=text("plot.step", lang), y_title=text("plot.lr", lang)),
                i18n_table(saved_rows(ws, name), SAVED_KEYS, lang), new_stamp, timer_update)

    view_outputs = [loss_plot, lr_plot, saved, stamp, timer]

    def fresh_views(name: str | None) -> tuple:
        return views(name, "")
    timer.tick(views, [exp, stamp], view_outputs, show_progress="hidden", queue=False)

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

    # -- jobs (submit_job confines the dataset folder and the model paths)
    def job_params(name: str | None, ds: str | None, values: tuple) -> dict:
        name = (name or "").strip()
        if not name:
            raise gr.Error("Give the experiment a name (or pick an existing one).")
        safe_name(name)
        params = values_to_params(TrainParams, names, values)
        params.update(exp_name=name, dataset=(ds or "").strip())
        return params

    def start_preprocess(name, ds, *values) -> str:
        params = job_params(name, ds, values)
        return submit_job(ctx, "rvc.preprocess", params, title=f"RVC preprocess + extract '{params['exp_name']}'")

    def start_train(name, ds, *values) -> str:
        params = job_params(name, ds, values)
        return submit_job(ctx, "rvc.train", params, title=f"RVC train '{params['exp_name']}'")

    job_inputs = [exp, dataset, *widgets.values()]
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
