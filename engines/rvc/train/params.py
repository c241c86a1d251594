"""Parameters and result of RVC training (no torch here: the CLI and UI import this at start-up)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engines.core.params import param
from engines.rvc.pitch.f0 import F0_METHODS

F0_METHOD_CHOICES = F0_METHODS


@dataclass
class TrainParams:
    """Everything ``voicelab rvc preprocess|extract|train`` and the RVC Train tab expose."""

    exp_name: str = param(help="Experiment name (folder under experiments/; the voice's file name)")
    dataset: str = param("", path="read", help="Dataset name (Dataset tab) or a folder of audio files")
    sr: str = param("40k", choices=("32k", "40k", "48k"), help="Target sample rate")
    version: str = param("v2", choices=("v1", "v2"), help="Model version (v2: 768-d HuBERT layer 12)")
    f0: bool = param(True, help="Pitch-guided model (needed for singing and pitch shifting)")
    f0_method: str = param("rmvpe", choices=F0_METHOD_CHOICES, help="Pitch extraction method")
    total_epoch: int = param(20, min=1, max=10000, help="Train until this epoch")
    batch_size: int = param(4, min=1, max=64, help="Batch size per GPU (per process)")
    save_every_epoch: int = param(5, min=1, max=1000, help="Save G/D checkpoints every N epochs")
    save_every_weights: bool = param(True, help="Also write a small inference model at every save")
    keep_latest_only: bool = param(False, help="Keep only the newest G/D checkpoint pair (saves disk)")
    pretrained_g: str = param("", path="read", help="Pretrained generator (e.g. assets/pretrained_v2/f0G40k.pth); empty = from scratch")
    pretrained_d: str = param("", path="read", help="Pretrained discriminator (e.g. f0D40k.pth); empty = from scratch")
    gpus: str = param("", help="GPU ids separated by '-' (e.g. 0-1); empty = all visible GPUs, CPU if none",
                      pattern=r"[0-9 ,-]{0,64}")
    skip_preprocess: bool = param(False, help="Reuse the experiment's existing pieces")
    skip_f0: bool = param(False, help="Reuse the existing pitch files")
    skip_feature: bool = param(False, help="Reuse the existing content features")
    force: bool = param(False, help="Redo preprocessing and extraction even when cached")
    n_processes: int = param(2, min=1, max=64, help="CPU processes for preprocessing and pitch extraction")
    seed: int = param(1234, min=0, max=2**31 - 1, help="Random seed")
    precision: str = param("auto", choices=("auto", "fp32", "fp16", "bf16"), help="Mixed precision on CUDA (CPU is always fp32)")
    speaker_id: int = param(0, min=0, max=108, help="Speaker id written to the filelist")
    hubert_path: str = param("", path="read", help="Content encoder (hubert_base.pt or a transformers dir); empty = settings")
    rmvpe_path: str = param("", path="read", help="rmvpe.pt for the rmvpe pitch method; empty = settings")
    log_interval: int = param(10, min=1, max=10000, help="Write metrics every N steps")
    grad_clip: float = param(0.0, min=0.0, max=1000.0, help="Clip gradient norm to this value (0 = measure only, as upstream)")
    loader_workers: int = param(2, min=0, max=32, help="Data loader worker processes per training process")
    cpu_processes: int = param(1, min=1, max=16, help="Training processes when no GPU is used (DDP over gloo)")
    max_steps: int = param(0, min=0, help="Stop after this many steps in this run (0 = run all epochs)")
    add_mute: bool = param(True, help="Add two silent pieces to the filelist, as upstream")
    previews: bool = param(True, help="At every save, convert a few clips with the new small model to listen to "
                                      "(in the listening lane, while training goes on)")
    preview_clip: str = param("", path="read", help="An audio file of yours converted at every save, beside the held-out clips")
    holdout_pieces: int = param(-1, min=-1, max=1000,
                                help="Pieces kept out of training for previews and held-out checks (-1 = one in fifty of a "
                                     "dataset of 20+ pieces, at most 8; 0 = none)")
    nnodes: int = param(1, min=1, max=64, help="Machines training this voice together (torchrun --nnodes)")
    node_rank: int = param(0, min=0, max=63, help="This machine's number, 0..nnodes-1 (node 0 saves and logs)")
    master_addr: str = param("127.0.0.1", help="Address of node 0 that every node reaches (torchrun --master-addr)")
    master_port: int = param(29500, min=1024, max=65535,
                             help="Free TCP port on node 0 for the rendezvous (torchrun --master-port)")
    segment_size: int = param(0, min=0, help="Training slice in samples (0 = the config's)", cli=False)
    model_config: list | None = param(None, help="18-value model config overriding the standard size", cli=False)


@dataclass
class TrainResult:
    """What a training run produced."""

    exp_dir: Path
    weights: Path | None
    epochs: int
    steps: int
    checkpoints: list[Path] = field(default_factory=list)
    small_models: list[Path] = field(default_factory=list)
    metrics: Path | None = None
    last_losses: dict[str, float] = field(default_factory=dict)
    seconds_per_step: float = 0.0
    resumed_from: Path | None = None
    seconds: float = 0.0
