"""The training data as upstream's trainer will see it, checked before training starts.

Data lists made absolute and checked to exist; whether the shards carry
speech tokens and embeddings (then upstream's online extractor stays off);
and how many utterances upstream's data filter keeps (``data_check``, run
in an upstream process).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from engines.core.atomic import write_text
from engines.core.errors import InvalidInputError
from engines.core.hooks import Hooks
from engines.cosyvoice import upstream
from engines.cosyvoice.params import CosyTrainParams


def absolute_data_list(src: str | os.PathLike, dst: Path) -> Path:
    """Copy a data.list with every entry made absolute (and checked to exist).

    Upstream only warns about a missing shard and trains on nothing, and
    resolves relative entries against its working directory.
    """
    src = Path(src)
    if not src.is_file():
        raise InvalidInputError(f"Data list {src} does not exist.",
                                "Run `voicelab cosyvoice prepare` first, or pass the data.list it wrote.")
    out, missing = [], []
    for line in src.read_text(encoding="utf-8").splitlines():
        entry = line.strip()
        if not entry:
            continue
        p = Path(entry)
        if not p.is_absolute():
            candidates = [Path.cwd() / p, src.parent / p, src.parent / p.name]
            p = next((c for c in candidates if c.exists()), candidates[0])
        if not p.exists():
            missing.append(entry)
        out.append(str(p.resolve()))
    if not out:
        raise InvalidInputError(f"Data list {src} is empty.", "Prepare the dataset again.")
    if missing:
        raise InvalidInputError(f"{len(missing)} shard(s) listed in {src} do not exist (first: {missing[0]}).",
                                "Prepare the dataset again.")
    write_text(dst, "\n".join(out) + "\n")
    return dst


OFFLINE_FEATURES_ENV = "VOICELAB_OFFLINE_FEATURES"
FEATURE_COLUMNS = ("speech_token", "utt_embedding", "spk_embedding")


def shards_carry_features(data_list: Path) -> bool:
    """True when every shard of a data.list holds speech tokens and embeddings (as ours do)."""
    import pyarrow.parquet as pq

    shards = [line.strip() for line in data_list.read_text(encoding="utf-8").splitlines() if line.strip()]
    return bool(shards) and all(set(FEATURE_COLUMNS) <= set(pq.read_schema(s).names) for s in shards)


def online_tokenizer_file(model_dir: str | os.PathLike) -> str | None:
    """The ``*.batch.onnx`` upstream's online extractor loads for this model version (v1 has none)."""
    version = upstream.detect_version(model_dir)
    return {"v2": "speech_tokenizer_v2.batch.onnx", "v3": "speech_tokenizer_v3.batch.onnx"}.get(version or "")


def feature_mode(params: CosyTrainParams, train_list: Path, cv_list: Path, hooks: Hooks) -> bool:
    """True = offline (tokens + embeddings from the data); False = upstream extracts them while training.

    Upstream builds its online extractors whenever ``--onnx_path`` is given,
    which needs ``speech_tokenizer_v*.batch.onnx`` and a CUDA onnxruntime;
    our launcher keeps them off when the data already carries the features.
    """
    if shards_carry_features(train_list) and shards_carry_features(cv_list):
        hooks.log("The data carries speech tokens and speaker embeddings: upstream's online extractor stays off.")
        return True
    batch = online_tokenizer_file(params.model_dir)
    if batch is None or not (Path(params.model_dir) / batch).is_file():
        raise InvalidInputError(
            "The training data has no speech tokens or embeddings, so upstream would extract them while training, "
            f"which needs {batch or 'a batch speech tokenizer'} in the model dir.",
            "Prepare the data with `voicelab cosyvoice prepare` (it stores tokens and embeddings), or add "
            f"{batch} to {params.model_dir}.")
    hooks.log(f"The data has no speech tokens or embeddings: upstream extracts them online with {batch}.")
    return False


def check_data(env: dict[str, str], config: Path, lists: dict[str, Path], qwen: Path | None, online: bool,
               cwd: Path, hooks: Hooks) -> dict[str, dict]:
    """Count what upstream's data filter keeps of each list (in an upstream process); fail when nothing is left."""
    from engines.cosyvoice.data_check import MARK

    cmd = [sys.executable, "-m", "engines.cosyvoice.data_check", "--config", str(config)]
    if qwen is not None:
        cmd += ["--qwen_pretrain_path", str(qwen)]
    if online:
        cmd.append("--online")
    cmd += [str(p) for p in lists.values()]
    reports: list[dict] = []

    def on_line(line: str) -> None:
        if line.startswith(MARK):
            reports.append(json.loads(line[len(MARK):]))

    hooks.log("Checking the data against upstream's filter (audio length, text tokens)")
    hooks.run(cmd, cwd=str(cwd), env=env, on_line=on_line)
    by_name = dict(zip(lists, reports))
    for name, rep in by_name.items():
        dropped = "; ".join(f"{n} {why}" for why, n in rep["dropped"].items())
        hooks.log(f"{name}: upstream's filter keeps {rep['kept']} of {rep['total']} utterance(s)"
                  + (f"; drops {dropped}" if dropped else ""))
        if rep["kept"] == 0:
            lim = rep["limits"]
            raise InvalidInputError(
                f"Upstream's data filter would drop all {rep['total']} {name} utterance(s): {dropped or 'empty list'}.",
                f"CosyVoice trains on clips of {lim['min_length'] / 100:.1f}-{lim['max_length'] / 100:.0f} s with "
                f"{lim['token_min_length']}-{lim['token_max_length']} text tokens: slice the dataset accordingly "
                "(or change 'filter' in the model yaml).")
    return by_name
