"""The parameters of CosyVoice data preparation and fine-tuning, on their own.

One definition each for the tab, the CLI and the API; kept apart from the code that runs them so
the helpers of that code (features, training data) can name them without importing it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from engines.core.params import DEVICE_PATTERN, param

ENDOFPROMPT = "<|endofprompt|>"
DEFAULT_INSTRUCT = "You are a helpful assistant."
VERSIONS = ("auto", "v1", "v2", "v3")


@dataclass
class PrepareParams:
    """Options of CosyVoice data preparation (shared by UI, CLI and API)."""

    model_dir: str = param("", help="CosyVoice model folder holding campplus.onnx and speech_tokenizer_v*.onnx "
                                    "(default: <assets>/cosyvoice/CosyVoice2-0.5B)", path="model_dir")
    speaker: str = param("", help="Speaker id used in the data and later in spk2info.pt (default: the dataset name)")
    version: str = param("auto", choices=VERSIONS,
                         help="CosyVoice version (picks the tokenizer; v3 adds the instruct column); auto = from the model dir")
    instruct: str = param(DEFAULT_INSTRUCT, help=f"CosyVoice3 instruct text ('{ENDOFPROMPT}' is appended when missing)")
    dev_ratio: float = param(0.05, min=0.0, max=0.5, help="Share of utterances held out for validation (at least 1)")
    seed: int = param(1986, min=0, help="Seed of the train/dev split")
    normalize_text: bool = param(False, help="Normalise transcripts (wetext when installed, else punctuation/space cleanup)")
    processes: int = param(2, min=1, max=64, help="Worker processes for embeddings and tokens")
    data_workers: int = param(2, min=1, max=64, help="Data-loader workers the training will use (sets the shard size)")
    num_gpus: int = param(1, min=1, max=64, help="GPUs the training will use (sets the shard size)")
    shards_per_worker: int = param(4, min=2, max=32, help="Parquet shards per data-loader worker")
    onnx_device: str = param("auto", help="ONNX device: auto, cpu or cuda (CPU when CUDA fails)", pattern=DEVICE_PATTERN)
    force: bool = param(False, help="Recompute everything instead of resuming")


@dataclass
class PrepareReport:
    out_dir: str
    version: str
    speaker: str
    train_list: str
    dev_list: str
    train_utts: int = 0
    dev_utts: int = 0
    computed: int = 0  # utterances whose embedding/tokens were computed in this run
    reused: int = 0  # utterances whose embedding and tokens came from an earlier run
    shards_written: int = 0
    shards_reused: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # clip or utt -> why it is not in the shards
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CosyTrainParams:
    """Everything the CosyVoice train tab/CLI exposes (one definition for both)."""

    exp_name: str = param("cosy_sft", help="Experiment name (folder under cosyvoice/train/)")
    model_dir: str = param("", path="model_dir", help="Base CosyVoice model dir (cosyvoice2.yaml, llm.pt, flow.pt, ...)")
    train_data: str = param("", path="list", help="data.list of the training parquet shards")
    cv_data: str = param("", path="list", help="data.list for validation (default: the training list)")
    models: str = param("llm", choices=("llm", "llm+flow", "flow"), help="Which models to fine-tune")
    max_epoch: int = param(10, min=1, max=10000, help="Epochs to train (total, including resumed ones)")
    lr: float = param(1e-5, min=1e-8, max=1e-2, help="Learning rate (constant scheduler)")
    accum_grad: int = param(2, min=1, max=256, help="Gradient accumulation (batches per optimizer step)")
    max_frames_in_batch: int = param(2000, min=50, max=1000000, help="Dynamic batch size in feature frames")
    save_per_step: int = param(-1, min=-1, max=10000000, help="Extra checkpoint every N steps (-1: per epoch only)")
    log_interval: int = param(10, min=1, max=100000, help="Log every N batches")
    grad_clip: float = param(5.0, min=0.01, max=1000.0, help="Gradient clipping norm")
    gpus: int = param(0, min=0, max=64, help="Processes/GPUs (0: all visible GPUs, 1 process on CPU)")
    train_engine: str = param("torch_ddp", choices=("torch_ddp", "deepspeed"),
                              help="Parallel engine (deepspeed only when installed)")
    num_workers: int = param(2, min=1, max=64, help="Data loader worker processes")
    prefetch: int = param(100, min=1, max=10000, help="Batches prefetched per worker")
    use_amp: bool = param(True, help="Mixed precision on CUDA (always off on CPU)")
    timeout: int = param(60, min=5, max=86400, help="Seconds ranks wait for each other (cosyvoice_join)")
    resume: bool = param(True, help="Continue from the newest checkpoint of this experiment")
    device: str = param("auto", choices=("auto", "cpu", "cuda"), help="Train on CUDA when available, or force CPU")
