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
import random
import re
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from engines.core.atomic import torch_save, write_json, write_text
from engines.core.errors import InvalidInputError, VoiceLabError
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.params import param, validate
from engines.core.settings import Workspace, safe_name
from engines.cosyvoice.onnx_models import MAX_TOKEN_SECONDS, require_model_file

ENDOFPROMPT = "<|endofprompt|>"
DEFAULT_INSTRUCT = "You are a helpful assistant."
VERSIONS = ("auto", "v1", "v2", "v3")
TOKENIZER_FILES = {"v1": "speech_tokenizer_v1.onnx", "v2": "speech_tokenizer_v2.onnx", "v3": "speech_tokenizer_v3.onnx"}
YAML_VERSIONS = (("cosyvoice3.yaml", "v3"), ("cosyvoice2.yaml", "v2"), ("cosyvoice.yaml", "v1"))
SPLITS = ("train", "dev")
SAVE_EVERY_SECONDS = 10.0
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_.\-]+")


@dataclass
class PrepareParams:
    """Options of CosyVoice data preparation (shared by UI, CLI and API)."""

    model_dir: str = param("", help="CosyVoice model folder holding campplus.onnx and speech_tokenizer_v*.onnx "
                                    "(default: <assets>/cosyvoice/CosyVoice2-0.5B)")
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
    onnx_device: str = param("auto", help="ONNX device: auto, cpu or cuda (falls back to CPU when CUDA fails)")
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


@dataclass(frozen=True)
class Utterance:
    utt: str
    wav: str
    text: str
    spk: str


# ---------------------------------------------------------------- model dir


def detect_version(model_dir: str | os.PathLike) -> str | None:
    """v1/v2/v3 from the yaml name, else from the only tokenizer file present."""
    root = Path(model_dir)
    for name, version in YAML_VERSIONS:
        if (root / name).is_file():
            return version
    present = [v for v, f in TOKENIZER_FILES.items() if (root / f).is_file()]
    return present[0] if len(present) == 1 else None


def default_model_dir(ws: Workspace) -> Path:
    """Where ``voicelab assets download cosyvoice/CosyVoice2-0.5B`` puts the model."""
    return ws.assets / "cosyvoice" / "CosyVoice2-0.5B"


def resolve_models(model_dir: str | os.PathLike, version: str) -> tuple[str, Path, Path]:
    """(version, campplus path, tokenizer path) or a MissingAssetError naming the missing file."""
    chosen = version if version != "auto" else (detect_version(model_dir) or "v2")
    campplus = require_model_file(model_dir, "campplus.onnx", "CosyVoice speaker embeddings")
    tokenizer = require_model_file(model_dir, TOKENIZER_FILES[chosen], f"CosyVoice {chosen} speech tokens")
    return chosen, campplus, tokenizer


def instruct_line(text: str) -> str:
    """The v3 instruct text on one line, ending with exactly one ``<|endofprompt|>`` marker."""
    from engines.dataset.transcripts import clean_text

    text = clean_text(text or DEFAULT_INSTRUCT)
    return text if ENDOFPROMPT in text else text + ENDOFPROMPT


# ---------------------------------------------------------------- step 1: kaldi dirs


def safe_id(text: str, fallback: str = "x") -> str:
    """An id without whitespace or shell-unfriendly characters (Kaldi files split on spaces)."""
    cleaned = _UNSAFE_ID.sub("_", str(text)).strip("_")
    return cleaned or fallback


def _safe_wav_path(path: Path, utt: str, link_dir: Path) -> str:
    """An absolute path without whitespace: the clip itself, or a link/copy of it under ``link_dir``."""
    resolved = path.resolve()
    if not re.search(r"\s", str(resolved)):
        return str(resolved)
    link = Path(os.path.abspath(link_dir / f"{utt}{path.suffix.lower()}"))
    if re.search(r"\s", str(link)):
        raise InvalidInputError(
            f"The workspace path '{link_dir}' contains spaces; upstream CosyVoice's Kaldi files cannot hold such paths.",
            "Move the workspace (--workspace / VOICELAB_HOME) to a path without spaces.",
        )
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and link.resolve() != resolved:
        link.unlink()  # left from an earlier run for another clip
    if not link.exists():
        try:
            link.symlink_to(resolved)
        except OSError:
            import shutil

            shutil.copy2(resolved, link)
    return str(link)


def _probe_duration(path: Path) -> float | None:
    from engines.core.audio import probe_audio

    try:
        return probe_audio(path).duration
    except VoiceLabError:
        return None


def collect_utterances(ws: Workspace, dataset: str, speaker: str, normalize: bool,
                       link_dir: Path, report: PrepareReport) -> list[Utterance]:
    """Clips with usable text as utterances; the rest is listed in ``report.skipped``."""
    from engines.dataset.transcripts import (
        clean_text,
        dataset_clips,
        load_transcripts,
        normalize_text,
    )

    dataset_dir = ws.dataset_dir(dataset)
    clips = dataset_clips(dataset_dir)
    transcripts = load_transcripts(dataset_dir)
    utts: list[Utterance] = []
    used: set[str] = set()
    for clip in clips:
        entry = transcripts.get(clip.id)
        if entry is None or not entry["text"].strip():
            report.skipped[clip.id] = "no transcript"
            continue
        if entry["dropped"]:
            report.skipped[clip.id] = "dropped by the user"
            continue
        text = normalize_text(entry["text"], entry["language"] or "auto") if normalize else clean_text(entry["text"])
        if not text:
            report.skipped[clip.id] = "empty text after cleanup"
            continue
        duration = clip.duration if clip.duration else _probe_duration(clip.path)
        if duration is None:
            report.skipped[clip.id] = "audio could not be read"
            continue
        if duration > MAX_TOKEN_SECONDS:
            report.skipped[clip.id] = (f"longer than {MAX_TOKEN_SECONDS:.0f} s ({duration:.1f} s): upstream's speech "
                                       "tokenizer cannot take it; slice the dataset shorter")
            continue
        base = f"{speaker}_{safe_id(clip.id)}"
        utt, n = base, 1
        while utt in used:
            n += 1
            utt = f"{base}_{n}"
        used.add(utt)
        utts.append(Utterance(utt, _safe_wav_path(clip.path, utt, link_dir), text, speaker))
    return sorted(utts, key=lambda u: u.utt)


def split_train_dev(utts: list[Utterance], dev_ratio: float, seed: int) -> tuple[list[Utterance], list[Utterance]]:
    """Seeded split; at least one dev utterance once there are two or more."""
    if len(utts) < 2:
        return list(utts), list(utts)
    order = list(utts)
    random.Random(seed).shuffle(order)
    n_dev = min(len(utts) - 1, max(1, round(len(utts) * dev_ratio)))
    dev = sorted(order[:n_dev], key=lambda u: u.utt)
    train = sorted(order[n_dev:], key=lambda u: u.utt)
    return train, dev


def write_kaldi_dir(split_dir: Path, utts: list[Utterance], instruct: str | None) -> None:
    """wav.scp, text, utt2spk, spk2utt (and instruct) as upstream's tools parse them."""
    split_dir.mkdir(parents=True, exist_ok=True)
    write_text(split_dir / "wav.scp", "".join(f"{u.utt} {u.wav}\n" for u in utts))
    write_text(split_dir / "text", "".join(f"{u.utt} {u.text}\n" for u in utts))
    write_text(split_dir / "utt2spk", "".join(f"{u.utt} {u.spk}\n" for u in utts))
    spk2utt: dict[str, list[str]] = {}
    for u in utts:
        spk2utt.setdefault(u.spk, []).append(u.utt)
    write_text(split_dir / "spk2utt", "".join(f"{s} {' '.join(us)}\n" for s, us in sorted(spk2utt.items())))
    if instruct is not None:
        write_text(split_dir / "instruct", "".join(f"{u.utt} {instruct}\n" for u in utts))
    else:
        (split_dir / "instruct").unlink(missing_ok=True)


def read_kaldi_map(path: Path) -> dict[str, str]:
    """{first field: rest of the line} the way upstream reads Kaldi files (whitespace-split)."""
    out: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if parts:
                out[parts[0]] = " ".join(parts[1:])
    return out


# ---------------------------------------------------------------- steps 2+3: embeddings and tokens

_WORKER: dict[str, Any] = {}


def _init_worker(campplus: str, tokenizer: str, device: str, threads: int) -> None:
    """Open both ONNX sessions once per worker process."""
    from engines.cosyvoice.onnx_models import CampPlusEncoder, SpeechTokenizer

    notes: list[str] = []
    _WORKER["campplus"] = CampPlusEncoder(campplus, device, threads, notes.append)
    _WORKER["tokenizer"] = SpeechTokenizer(tokenizer, device, threads, notes.append)
    _WORKER["notes"] = notes


def _extract_one(utt: str, wav: str, want_embedding: bool, want_tokens: bool) -> dict[str, Any]:
    """Embedding and/or tokens of one utterance (runs in a worker; never raises for bad audio)."""
    from engines.core.audio import load_audio

    result: dict[str, Any] = {"utt": utt, "notes": list(_WORKER.pop("notes", []))}
    try:
        audio, _ = load_audio(wav, sr=16000)
    except VoiceLabError as exc:
        result["error"] = f"audio could not be read: {exc.message}"
        return result
    if want_embedding:
        try:
            result["embedding"] = _WORKER["campplus"].embed(audio)
        except ValueError as exc:
            result["error"] = f"no speaker embedding: {exc}"
            return result
    if want_tokens:
        tokens = _WORKER["tokenizer"].tokenize(audio)
        if tokens is None:
            result["notes"].append(f"{utt}: longer than 30 s ({len(audio) / 16000:.1f} s); no speech tokens "
                                   "(upstream's tokenizer cannot take it), left out of the shards")
            tokens = []
        result["tokens"] = tokens
    return result


class _FeatureStore:
    """utt2embedding / utt2speech_token of one split, loaded for resume and saved as work goes."""

    def __init__(self, split_dir: Path, utts: list[str], force: bool) -> None:
        self.dir = split_dir
        wanted = set(utts)
        self.embeddings = {} if force else {k: v for k, v in _load_pt(split_dir / "utt2embedding.pt").items() if k in wanted}
        self.tokens = {} if force else {k: v for k, v in _load_pt(split_dir / "utt2speech_token.pt").items() if k in wanted}
        self.dirty = False

    def save(self) -> None:
        if self.dirty:
            torch_save(dict(sorted(self.embeddings.items())), self.dir / "utt2embedding.pt")
            torch_save(dict(sorted(self.tokens.items())), self.dir / "utt2speech_token.pt")
            self.dirty = False


def _load_pt(path: Path) -> dict:
    if not path.is_file():
        return {}
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return {}  # unreadable partial results are simply recomputed
    return data if isinstance(data, dict) else {}


def _run_tasks(tasks: list[tuple[str, str, bool, bool]], campplus: Path, tokenizer: Path, params: PrepareParams,
               hooks: Hooks) -> Iterator[dict[str, Any]]:
    """Results of ``_extract_one`` for every task, from a process pool (or in-process for 1 process)."""
    if not tasks:
        return
    processes = min(params.processes, len(tasks))
    threads = max(1, (os.cpu_count() or 1) // processes)
    if processes == 1:
        _init_worker(str(campplus), str(tokenizer), params.onnx_device, threads)
        for task in tasks:
            hooks.check_cancel()
            yield _extract_one(*task)
        return
    import multiprocessing

    pool = ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker,
                               initargs=(str(campplus), str(tokenizer), params.onnx_device, threads))
    queue = list(reversed(tasks))
    running: set[Future] = set()
    try:
        while queue or running:
            hooks.check_cancel()
            while queue and len(running) < processes * 2:
                running.add(pool.submit(_extract_one, *queue.pop()))
            done, running = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def extract_features(split_utts: dict[str, list[Utterance]], out_dir: Path, campplus: Path, tokenizer: Path,
                     params: PrepareParams, report: PrepareReport, hooks: Hooks) -> dict[str, _FeatureStore]:
    """Fill utt2embedding.pt / utt2speech_token.pt of every split, skipping what is already there."""
    stores = {s: _FeatureStore(out_dir / s, [u.utt for u in utts], params.force) for s, utts in split_utts.items()}
    pending: dict[str, list[Any]] = {}
    owner: dict[str, list[str]] = {}
    for split, utts in split_utts.items():
        store = stores[split]
        for u in utts:
            owner.setdefault(u.utt, []).append(split)
            need_emb, need_tok = u.utt not in store.embeddings, u.utt not in store.tokens
            if need_emb or need_tok:
                task = pending.setdefault(u.utt, [u.utt, u.wav, False, False])
                task[2], task[3] = task[2] or need_emb, task[3] or need_tok
    tasks = [tuple(t) for t in pending.values()]
    report.reused += len(owner) - len(pending)
    if params.force:
        report.notes.append("force: recomputing every embedding and token")
    hooks.log(f"features: {len(tasks)} utterance(s) to compute, {report.reused} reused from an earlier run")
    last_save = time.monotonic()
    try:
        for i, result in enumerate(_run_tasks(tasks, campplus, tokenizer, params, hooks)):
            for note in result.get("notes", []):
                hooks.log(note)
                if note not in report.notes:
                    report.notes.append(note)
            utt = result["utt"]
            if "error" in result:
                report.skipped[utt] = result["error"]
                hooks.log(f"{utt}: {result['error']}")
            else:
                report.computed += 1
                for split in owner[utt]:
                    store = stores[split]
                    if "embedding" in result:
                        store.embeddings[utt] = result["embedding"]
                    if "tokens" in result:
                        store.tokens[utt] = result["tokens"]
                    store.dirty = True
            hooks.progress((i + 1) / len(tasks), f"embeddings + speech tokens {i + 1}/{len(tasks)}")
            if time.monotonic() - last_save >= SAVE_EVERY_SECONDS:
                for store in stores.values():
                    store.save()
                last_save = time.monotonic()
    finally:
        for store in stores.values():
            store.save()
    return stores


def speaker_means(utt2embedding: dict[str, list[float]], utt2spk: dict[str, str]) -> dict[str, list[float]]:
    """spk -> mean of that speaker's utterance embeddings (float32, as upstream)."""
    import numpy as np

    per_spk: dict[str, list[list[float]]] = {}
    for utt, emb in sorted(utt2embedding.items()):  # fixed order: the same mean on every run
        if utt in utt2spk:
            per_spk.setdefault(utt2spk[utt], []).append(emb)
    return {spk: np.asarray(v, dtype=np.float32).mean(axis=0).tolist() for spk, v in sorted(per_spk.items())}


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
    hooks.progress(0.0, "collecting transcripts")
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
                              on_shard=lambda i, k, s=split, h=sub: h.progress(i / k, f"{s} parquet shard {i}/{k}"))
        total_shards["written"] += result.written
        total_shards["reused"] += result.reused
        hooks.log(f"{split}: {len(records)} utterance(s) in {len(result.shards)} shard(s) of <= {size} "
                  f"({result.written} written, {result.reused} unchanged)")
    report.shards_written, report.shards_reused = total_shards["written"], total_shards["reused"]
    report.seconds = time.monotonic() - start
    write_json(out_dir / "prepare.json", {"dataset": dataset, "params": asdict(params), "report": report.to_dict()})
    hooks.progress(1.0, "data ready")
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
