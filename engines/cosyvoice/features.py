"""Steps 2 and 3 of CosyVoice data preparation: speaker embeddings and speech tokens.

One pass over the audio (each clip decoded once) in a small process pool
fills ``utt2embedding.pt`` (campplus) and ``utt2speech_token.pt`` (the
speech tokenizer) of every split; utterances already there are skipped and
partial results are saved as the pass goes, so a cancelled or crashed run
resumes where it stopped.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Iterator

from engines.core.atomic import torch_save
from engines.core.errors import VoiceLabError
from engines.core.hooks import Hooks
from engines.cosyvoice.kaldi_data import Utterance
from engines.cosyvoice.params import PrepareParams, PrepareReport


SAVE_EVERY_SECONDS = 10.0


_WORKER: dict[str, Any] = {}


def _init_worker(campplus: str, tokenizer: str, device: str, threads: int) -> None:
    """Open both ONNX sessions once per worker process."""
    from engines.cosyvoice.onnx_models import CampPlusEncoder, SpeechTokenizer

    notes: list[str] = []
    _WORKER["campplus"] = CampPlusEncoder(campplus, device, threads, notes.append)
    _WORKER["tokenizer"] = SpeechTokenizer(tokenizer, device, threads, notes.append)
    _WORKER["notes"] = notes


# Upstream's training pipeline resamples the stored clip to 24 kHz, pads it with zeros to a
# multiple of 960 samples (``compute_fbank(num_frames=960)``) and takes a mel frame every 480:
# mel frames = 2 * ceil(n24 / 960), and the flow needs exactly mel frames / 2 speech tokens.
# A 25 Hz tokenizer run on the unpadded 16 kHz clip gives ceil(floor(n16 / 160) / 4) tokens,
# one fewer whenever n16 mod 640 is in [1, 159] ("Sizes of tensors must match" in the flow).
# So we do what upstream's own online extractor does: pad the 16 kHz audio to the same
# multiple (640 samples at 16 kHz = 960 at 24 kHz) before tokenizing. Tokens then always number
# ceil(n24 / 960), whatever the clip's rate; the embedding is computed on the clip as it is.
TOKEN_SAMPLES_16K = 640
TOKEN_SAMPLES_24K = 960


def upstream_samples_24k(frames: int, rate: int) -> int:
    """Samples of a clip after upstream's resampling to 24 kHz (ceil(n * 24000 / rate), as torchaudio)."""
    return frames if rate == 24000 else -(-frames * 24000 // rate)


def aligned_token_audio(audio_16k: Any, frames: int, rate: int) -> Any:
    """The 16 kHz audio zero-padded (or cut) to ceil(n24 / 960) * 640 samples: tokens = upstream's mel frames / 2."""
    import numpy as np

    target = math.ceil(upstream_samples_24k(frames, rate) / TOKEN_SAMPLES_24K) * TOKEN_SAMPLES_16K
    if len(audio_16k) >= target:
        return audio_16k[:target]
    return np.concatenate([audio_16k, np.zeros(target - len(audio_16k), dtype=audio_16k.dtype)])


def _extract_one(utt: str, wav: str, want_embedding: bool, want_tokens: bool) -> dict[str, Any]:
    """Embedding and/or tokens of one utterance (runs in a worker; never raises for bad audio)."""
    from engines.core.audio import load_audio, probe_audio

    result: dict[str, Any] = {"utt": utt, "notes": list(_WORKER.pop("notes", []))}
    try:
        info = probe_audio(wav)
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
        tokens = _WORKER["tokenizer"].tokenize(aligned_token_audio(audio, info.frames, info.sample_rate))
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
