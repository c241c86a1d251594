"""Step 1 of CosyVoice data preparation: Kaldi-style dirs as upstream's tools read them.

``wav.scp``, ``text``, ``utt2spk``, ``spk2utt`` (+ ``instruct`` for
CosyVoice3), with ids and paths that survive upstream's whitespace
splitting, and a seeded train/dev split.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.core.atomic import write_text
from engines.core.errors import InvalidInputError, VoiceLabError
from engines.core.settings import Workspace
from engines.cosyvoice.onnx_models import MAX_TOKEN_SECONDS

_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_.\-]+")


@dataclass(frozen=True)
class Utterance:
    utt: str
    wav: str
    text: str
    spk: str



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
                       link_dir: Path, report: Any) -> list[Utterance]:
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
