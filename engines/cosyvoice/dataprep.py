"""CosyVoice fine-tuning data from a studio dataset: Kaldi dirs, embeddings, tokens, parquet.

``prepare_cosyvoice_data`` turns ``runtime/datasets/<name>`` (clips +
transcripts) into ``runtime/cosyvoice/data/<out_name>/{train,dev}/`` holding
what upstream's recipe produces with its four tools:

1. Kaldi files ``wav.scp``, ``text``, ``utt2spk``, ``spk2utt`` (+ ``instruct``
   for CosyVoice3) with a seeded train/dev split;
2. ``utt2embedding.pt`` / ``spk2embedding.pt`` from ``campplus.onnx``;
3. ``utt2speech_token.pt`` from ``speech_tokenizer_v*.onnx`` (clips over
   30 s get ``[]`` like upstream and are left out of the shards);
4. ``parquet/`` shards + ``data.list`` (see ``engines.cosyvoice.parquet``).

Steps 2 and 3 share one pass over the audio (each clip is decoded once)
in a small process pool; every utterance already in the ``.pt`` files is
skipped, and partial results are saved as the pass goes, so a cancelled or
crashed run resumes where it stopped. ``force`` recomputes everything.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterable

from engines.core.atomic import torch_save, write_json
from engines.core.errors import InvalidInputError, VoiceLabError
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.messages import msg
from engines.core.params import validate
from engines.core.settings import Workspace, safe_name
from engines.cosyvoice import upstream
from engines.cosyvoice.features import extract_features, speaker_means
from engines.cosyvoice.kaldi_data import collect_utterances, safe_id, split_train_dev, write_kaldi_dir
from engines.cosyvoice.onnx_models import require_model_file
from engines.cosyvoice.params import DEFAULT_INSTRUCT, ENDOFPROMPT, PrepareParams, PrepareReport

SPLITS = ("train", "dev")


# ---------------------------------------------------------------- model dir


def detect_version(model_dir: str | os.PathLike) -> str | None:
    """v1/v2/v3 from the yaml name (as AutoModel decides), else from the only tokenizer file present."""
    return upstream.detect_version(model_dir) or upstream.detect_version_from_tokenizer(model_dir)


def default_model_dir(ws: Workspace) -> Path:
    """Where ``voicelab assets download cosyvoice/CosyVoice2-0.5B`` puts the model."""
    return ws.assets / "cosyvoice" / "CosyVoice2-0.5B"


def resolve_models(model_dir: str | os.PathLike, version: str) -> tuple[str, Path, Path]:
    """(version, campplus path, tokenizer path) or a MissingAssetError naming the missing file."""
    chosen = version if version != "auto" else (detect_version(model_dir) or "v2")
    campplus = require_model_file(model_dir, "campplus.onnx", "CosyVoice speaker embeddings")
    tokenizer = require_model_file(model_dir, upstream.TOKENIZER_ONNX[chosen], f"CosyVoice {chosen} speech tokens")
    return chosen, campplus, tokenizer


def instruct_line(text: str) -> str:
    """The v3 instruct text on one line, ending with exactly one ``<|endofprompt|>`` marker."""
    from engines.dataset.transcripts import clean_text

    text = clean_text(text or DEFAULT_INSTRUCT)
    return text if ENDOFPROMPT in text else text + ENDOFPROMPT


# ---------------------------------------------------------------- the pipeline


def prepare_cosyvoice_data(ws: Workspace, dataset: str, out_name: str, params: PrepareParams,
                           hooks: Hooks | None = None) -> PrepareReport:
    """Dataset -> Kaldi dirs -> embeddings -> speech tokens -> parquet, for train and dev; resumable."""
    from engines.cosyvoice.parquet import UttRecord, shard_size, write_shards

    params = validate(params)
    hooks = ensure_hooks(hooks)
    start = time.monotonic()
    version, campplus, tokenizer = resolve_models(params.model_dir or default_model_dir(ws), params.version)
    speaker = safe_id(params.speaker or dataset, "spk")
    out_dir = ws.cosyvoice / "data" / safe_name(out_name)
    report = PrepareReport(out_dir=str(out_dir), version=version, speaker=speaker,
                           train_list=str(out_dir / "train" / "parquet" / "data.list"),
                           dev_list=str(out_dir / "dev" / "parquet" / "data.list"))
    hooks.log(f"CosyVoice {version} data for speaker '{speaker}' from dataset '{dataset}' -> {out_dir}")

    # 1. kaldi dirs
    hooks.progress(0.0, msg("progress.cv_collecting"))
    utts = collect_utterances(ws, dataset, speaker, params.normalize_text, out_dir / "wavs", report)
    if not utts:
        raise InvalidInputError(f"Dataset '{dataset}' has no clip with a transcript.",
                                "Transcribe the dataset (ASR) or import a transcript list first.")
    for clip_id, why in report.skipped.items():
        hooks.log(f"skipping clip {clip_id}: {why}")
    train, dev = split_train_dev(utts, params.dev_ratio, params.seed)
    if len(utts) == 1:
        report.notes.append("only one utterance: it is used for both train and dev")
    instruct = instruct_line(params.instruct) if version == "v3" else None
    if version != "v3" and params.instruct.strip() not in ("", DEFAULT_INSTRUCT):
        report.notes.append(f"instruct text ignored: only CosyVoice3 data carries it (this is {version})")
    split_utts = {"train": train, "dev": dev}
    for split, items in split_utts.items():
        write_kaldi_dir(out_dir / split, items, instruct)
    report.train_utts, report.dev_utts = len(train), len(dev)
    hooks.log(f"kaldi dirs: {len(train)} train / {len(dev)} dev utterance(s)")
    hooks.check_cancel()

    # 2+3. embeddings and tokens
    stores = extract_features(split_utts, out_dir, campplus, tokenizer, params, report, hooks.scaled(0.05, 0.9))
    hooks.check_cancel()

    # 4. speaker means and parquet shards
    total_shards = {"written": 0, "reused": 0}
    for n, (split, items) in enumerate(split_utts.items()):
        store = stores[split]
        utt2spk = {u.utt: u.spk for u in items}
        spk2emb = speaker_means(store.embeddings, utt2spk)
        torch_save(spk2emb, out_dir / split / "spk2embedding.pt")
        records = []
        for u in items:
            emb, tok = store.embeddings.get(u.utt), store.tokens.get(u.utt)
            if emb is None or tok is None:
                report.skipped.setdefault(u.utt, "no embedding/tokens")
                continue
            if not tok:
                report.skipped.setdefault(u.utt, "no speech tokens (longer than 30 s)")
                continue
            records.append(UttRecord(u.utt, u.wav, u.text, u.spk, emb, spk2emb[u.spk], tok, instruct))
        if not records:
            raise VoiceLabError(f"No usable utterance left for the {split} set.",
                                "See the skipped clips in the log (unreadable audio, clips over 30 s).")
        size = shard_size(len(records), params.data_workers, params.num_gpus, params.shards_per_worker)
        sub = hooks.scaled(0.9 + 0.05 * n, 0.95 + 0.05 * n)
        result = write_shards(records, out_dir / split / "parquet", size, force=params.force,
                              on_shard=lambda i, k, s=split, h=sub: h.progress(i / k, msg("progress.cv_shard", split=s, done=i, total=k)))
        total_shards["written"] += result.written
        total_shards["reused"] += result.reused
        hooks.log(f"{split}: {len(records)} utterance(s) in {len(result.shards)} shard(s) of <= {size} "
                  f"({result.written} written, {result.reused} unchanged)")
    report.shards_written, report.shards_reused = total_shards["written"], total_shards["reused"]
    report.seconds = time.monotonic() - start
    write_json(out_dir / "prepare.json", {"dataset": dataset, "params": asdict(params), "report": report.to_dict()})
    hooks.progress(1.0, msg("progress.data_ready"))
    return report


def prepared_lists(ws: Workspace, out_name: str) -> tuple[Path, Path]:
    """(train data.list, dev data.list) of a prepared data folder, or an InvalidInputError."""
    out_dir = ws.cosyvoice / "data" / safe_name(out_name)
    lists = (out_dir / "train" / "parquet" / "data.list", out_dir / "dev" / "parquet" / "data.list")
    for path in lists:
        if not path.is_file():
            raise InvalidInputError(f"Prepared data '{out_name}' is incomplete ({path} missing).",
                                    "Run the data preparation (voicelab cosyvoice prepare) first.")
    return lists


def iter_prepared(ws: Workspace) -> Iterable[str]:
    """Names of the prepared data folders that have both lists."""
    root = ws.cosyvoice / "data"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if (p / "train" / "parquet" / "data.list").is_file() and (p / "dev" / "parquet" / "data.list").is_file())
