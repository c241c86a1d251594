"""Strings of the RVC Train tab, and the labels and help of the TrainParams fields (English, 简体中文)."""

from __future__ import annotations

from voicelab_ui.i18n import STRINGS, add

add({
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
    "rvc.tr.pretrained_set": ("Pretrained set", "预训练底模"),
    "rvc.tr.pretrained_set_info": ("The official G/D and your own sets (assets/pretrained_custom, or imported with "
                                   "'rvc import --as pretrained') that fit this sample rate, version and pitch "
                                   "setting, read from the files; choosing one fills the pretrained G and D fields.",
                                   "与当前采样率、版本和音高设置相符的官方 G/D 及你自己的底模（assets/pretrained_custom，"
                                   "或用 'rvc import --as pretrained' 导入），信息读自文件本身；选择后会填入预训练 G 和 D 两个字段。"),
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
    "rvc.tr.scores": ("Scores of each save (1 = the run's best, 0 = its worst)", "每次保存的评分（1 = 本次训练最佳，0 = 最差）"),
    "rvc.tr.saved": ("Saved checkpoints and models", "已保存的检查点与模型"),
    "rvc.tr.saved_table": ("Checkpoints (G/D) and small models of the experiment", "该实验的检查点（G/D）与小模型"),
    "rvc.tr.previews": ("Previews at each save", "每次保存时的试听"),
    "rvc.tr.previews_info": (
        "At every save the new small model converts a few held-out clips of the dataset (and your clip, if you "
        "chose one) in the listening lane, while training goes on.",
        "每次保存时，新的小模型会在试听通道中转换数据集中留出的几个片段（以及你选择的片段），训练不会因此暂停。"),
    "rvc.tr.preview_save": ("Save", "保存点"),
    "rvc.tr.preview_clip": ("Your preview clip (optional, converted at every save)", "你的试听片段（可选，每次保存时转换）"),
    "rvc.tr.to_ab": ("Send saves to A/B Listen", "发送到 A/B 试听"),
    "rvc.tr.ab_saves": ("Saves to compare", "要比较的保存点"),
    "rvc.tr.ab_clip": ("Clip to compare on", "用于比较的片段"),
    "rvc.tr.ab_selected": ("Compare selected in A/B", "在 A/B 中比较所选"),
    "rvc.tr.ab_all": ("Compare all saves so far", "比较目前所有保存点"),
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
    "param.previews": ("Previews at every save", "每次保存时生成试听"),
    "param.scores": ("Score every save", "为每次保存评分"),
    "help.scores": ("Score each save's previews (speaker similarity, pitch, CER, held-out mel loss) while training "
                    "goes on", "训练进行时为每次保存的试听评分（说话人相似度、音高、字错率、留出集 mel 损失）"),
    "help.previews": ("At every save, convert a few clips with the new small model (while training goes on)",
                      "每次保存时用新的小模型转换几个片段（训练继续进行）"),
    "param.holdout_pieces": ("Held-out pieces", "留出片段数"),
    "help.holdout_pieces": ("Pieces kept out of training for previews (-1 = one in fifty of 20+ pieces, at most 8; "
                            "0 = none)", "不参与训练、用于试听的片段数（-1 = 20 段以上时每 50 段留 1 段，最多 8 段；0 = 不留）"),
    "param.nnodes": ("Machines (nodes)", "机器数（节点数）"),
    "help.nnodes": ("Machines training this voice together (torchrun --nnodes)", "共同训练该音色的机器数（torchrun --nnodes）"),
    "param.node_rank": ("This machine's node rank", "本机节点编号"),
    "help.node_rank": ("This machine's number, 0..nodes-1 (node 0 saves and logs)", "本机编号，0 到节点数-1（节点 0 负责保存和日志）"),
    "param.master_addr": ("Node 0 address", "节点 0 地址"),
    "help.master_addr": ("Address of node 0 that every node reaches (torchrun --master-addr)",
                         "所有节点都能访问的节点 0 地址（torchrun --master-addr）"),
    "param.master_port": ("Node 0 port", "节点 0 端口"),
    "help.master_port": ("Free TCP port on node 0 for the rendezvous (torchrun --master-port)",
                         "节点 0 上用于会合的空闲 TCP 端口（torchrun --master-port）"),
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
# the saved-files table's headers (SAVED_HEADERS in __init__.py), set with every row update
add(dict(zip((f"rvc.tr.col.{i}" for i in range(10)),
             (("kind", "类型"), ("file", "文件"), ("epoch", "轮次"), ("step", "步数"), ("size", "大小"),
              ("saved at", "保存时间"), ("speaker sim", "音色相似度"), ("pitch err (cents)", "音高误差（音分）"),
              ("CER", "字错率"), ("held-out mel L1", "留出集 mel L1")))))
