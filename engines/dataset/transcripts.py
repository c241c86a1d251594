"""Transcripts of a studio dataset's clips: storage, editing, import, normalisation.

A dataset folder (``runtime/datasets/<name>/``) holds the clips and a
``manifest.json`` written by the dataset engine; this module keeps the text
of each clip beside it in ``transcripts.json``::

    {"<clip id>": {"text": str, "language": str, "edited": bool, "dropped": bool, "source": str}}

``edited`` marks text the user typed or imported: ASR never overwrites it.
``dropped`` clips stay on disk but are left out of TTS data preparation.
Every change re-reads the file and writes it atomically, so an ASR job and
a user editing in the tab do not lose each other's changes.
"""

from __future__ import annotations

import json
import os
import re
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from engines.core.atomic import write_json
from engines.core.errors import InvalidInputError

TRANSCRIPTS_FILE = "transcripts.json"
MANIFEST_FILE = "manifest.json"
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".opus")

_LOCK = threading.Lock()


@dataclass(frozen=True)
class Clip:
    """One audio clip of a dataset, as the manifest (or the folder) describes it."""

    id: str
    path: Path
    duration: float | None = None
    rate: int | None = None
    source: str = ""  # the file the clip was cut from, when the manifest says


# ---------------------------------------------------------------- clips


def _as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def dataset_clips(dataset_dir: str | os.PathLike) -> list[Clip]:
    """The clips of a dataset, from ``manifest.json`` (read defensively) or, without one, its audio files.

    Entries without an existing file are skipped; ids are unique.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise InvalidInputError(f"Dataset folder {root} does not exist.", "Create or import the dataset first.")
    clips: list[Clip] = []
    seen: set[str] = set()
    manifest = root / MANIFEST_FILE
    entries: list[Any] = []
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{manifest} is not valid JSON ({exc}).", "Re-run the dataset import.") from exc
        entries = data.get("clips", []) if isinstance(data, dict) else data if isinstance(data, list) else []
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            rel = entry.get("file") or entry.get("path")
            if not rel:
                continue
            path = Path(rel) if Path(rel).is_absolute() else root / rel
            if not path.is_file():
                continue
            clip_id = str(entry.get("id") or path.stem)
            if clip_id in seen:
                continue
            seen.add(clip_id)
            clips.append(Clip(clip_id, path, _as_float(entry.get("duration")),
                              _as_int(entry.get("rate") or entry.get("sample_rate")), str(entry.get("source") or "")))
        if clips or entries:
            return clips
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()):
        rel = path.relative_to(root).with_suffix("")
        clip_id = "_".join(rel.parts)
        if clip_id in seen:
            continue
        seen.add(clip_id)
        clips.append(Clip(clip_id, path))
    return clips


# ---------------------------------------------------------------- text cleanup


_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?%)\]}，。！？；：、])")
_REPEATED_PUNCT = re.compile(r"([,;:，；：、])\1+")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00a0": " ", "\u3000": " "})
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def clean_text(text: str) -> str:
    """Whitespace and punctuation tidy-up that is always safe (one line, single spaces)."""
    text = unicodedata.normalize("NFKC", str(text)).translate(_QUOTES)
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = " ".join(text.split())
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _REPEATED_PUNCT.sub(r"\1", text)
    return text.strip()


def _wetext_normalizer(language: str) -> Callable[[str], str] | None:
    try:
        from wetext import Normalizer  # optional dependency
    except Exception:
        return None
    try:
        return Normalizer(lang=language, operator="tn").normalize
    except Exception:
        return None


def normalize_text(text: str, language: str = "auto") -> str:
    """Text normalisation for TTS: ``wetext`` (numbers, symbols) when installed, else ``clean_text``.

    ``language`` is "en", "zh" (or "zh-CN") or "auto" (zh when the text has CJK characters).
    """
    cleaned = clean_text(text)
    lang = (language or "auto").lower()
    if lang == "auto":
        lang = "zh" if _CJK.search(cleaned) else "en"
    lang = "zh" if lang.startswith("zh") else "en" if lang.startswith("en") else lang
    normalizer = _wetext_normalizer(lang) if lang in ("zh", "en") else None
    if normalizer is None:
        return cleaned
    try:
        return clean_text(normalizer(cleaned))
    except Exception:
        return cleaned


# ---------------------------------------------------------------- storage


def transcripts_path(dataset_dir: str | os.PathLike) -> Path:
    return Path(dataset_dir) / TRANSCRIPTS_FILE


def load_transcripts(dataset_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """All transcript entries of a dataset ({} when none yet); malformed entries are dropped."""
    path = transcripts_path(dataset_dir)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{path} is not valid JSON ({exc}).",
                                "Fix or delete the file, then transcribe or import again.") from exc
    out: dict[str, dict[str, Any]] = {}
    if isinstance(data, dict):
        for key, entry in data.items():
            if isinstance(entry, str):
                entry = {"text": entry}
            if isinstance(entry, dict):
                out[str(key)] = {
                    "text": str(entry.get("text", "")),
                    "language": str(entry.get("language", "")),
                    "edited": bool(entry.get("edited", False)),
                    "dropped": bool(entry.get("dropped", False)),
                    "source": str(entry.get("source", "")),
                }
    return out


def update_transcripts(dataset_dir: str | os.PathLike,
                       change: Callable[[dict[str, dict[str, Any]]], Any]) -> Any:
    """Re-read, apply ``change`` in place, write atomically; returns what ``change`` returned."""
    with _LOCK:
        entries = load_transcripts(dataset_dir)
        result = change(entries)
        write_json(transcripts_path(dataset_dir), dict(sorted(entries.items())))
        return result


def _entry(text: str = "", language: str = "", edited: bool = False, dropped: bool = False,
           source: str = "") -> dict[str, Any]:
    return {"text": text, "language": language, "edited": edited, "dropped": dropped, "source": source}


def _known_clip(dataset_dir: str | os.PathLike, clip_id: str) -> None:
    if clip_id not in {c.id for c in dataset_clips(dataset_dir)}:
        raise InvalidInputError(f"Clip '{clip_id}' is not in this dataset.", "Reload the clip list.")


def set_text(dataset_dir: str | os.PathLike, clip_id: str, text: str, language: str | None = None) -> dict[str, Any]:
    """Store the user's text for a clip (marked edited, so ASR keeps it); returns the entry."""
    _known_clip(dataset_dir, clip_id)

    def change(entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
        old = entries.get(clip_id, _entry())
        entries[clip_id] = _entry(clean_text(text), old["language"] if language is None else language,
                                  True, False, "user")
        return entries[clip_id]

    return update_transcripts(dataset_dir, change)


def drop_clip(dataset_dir: str | os.PathLike, clip_id: str, dropped: bool = True) -> dict[str, Any]:
    """Leave a clip out of data preparation (``dropped=False`` takes it back); the audio stays."""
    _known_clip(dataset_dir, clip_id)

    def change(entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
        entry = entries.setdefault(clip_id, _entry())
        entry["dropped"] = bool(dropped)
        return entry

    return update_transcripts(dataset_dir, change)


@dataclass
class TranscriptRow:
    """One line of the transcript editor: a clip and its current text."""

    clip_id: str
    path: str
    duration: float | None
    text: str
    language: str
    edited: bool
    dropped: bool
    source: str


def transcript_table(dataset_dir: str | os.PathLike) -> list[TranscriptRow]:
    """Every clip of the dataset with its transcript (empty text when none yet), in clip order."""
    entries = load_transcripts(dataset_dir)
    rows = []
    for clip in dataset_clips(dataset_dir):
        e = entries.get(clip.id) or _entry()
        rows.append(TranscriptRow(clip.id, str(clip.path), clip.duration, e["text"], e["language"],
                                  e["edited"], e["dropped"], e["source"]))
    return rows


def merge_transcriptions(dataset_dir: str | os.PathLike, results: dict[str, tuple[str, str]],
                         source: str = "asr") -> int:
    """Store machine transcriptions {clip: (text, language)} except where the user edited; returns count stored."""

    def change(entries: dict[str, dict[str, Any]]) -> int:
        stored = 0
        for clip_id, (text, language) in results.items():
            old = entries.get(clip_id)
            if old is not None and old["edited"]:
                continue
            entries[clip_id] = _entry(clean_text(text), language, False,
                                      bool(old and old["dropped"]), source)
            stored += 1
        return stored

    return update_transcripts(dataset_dir, change)


# ---------------------------------------------------------------- import


@dataclass
class ImportReport:
    matched: int
    unmatched: list[str]  # keys from the source that match no clip
    missing: list[str]  # clips with no text after the import


def _parse_list_line(line: str) -> tuple[str, str, str] | None:
    """(key, text, language) from one line of a transcript list, or None for blank/comment lines.

    Accepts ``path|text``, ``path|speaker|language|text`` (GPT-SoVITS/Bert-VITS2
    lists), ``id|text|normalised text`` (LJSpeech; the normalised text wins) and
    Kaldi ``utt text``.
    """
    line = line.strip().lstrip("\ufeff")
    if not line or line.startswith("#"):
        return None
    if "|" in line:
        fields = line.split("|")
        if len(fields) >= 4:
            return fields[0].strip(), "|".join(fields[3:]).strip(), fields[2].strip().lower()
        if len(fields) == 3:
            return fields[0].strip(), (fields[2].strip() or fields[1].strip()), ""
        return fields[0].strip(), fields[1].strip(), ""
    parts = line.split(maxsplit=1)
    return parts[0], (parts[1] if len(parts) > 1 else ""), ""


def _clip_keys(clip: Clip, root: Path) -> Iterable[str]:
    yield clip.id
    yield clip.path.name
    yield clip.path.stem
    try:
        rel = clip.path.relative_to(root)
        yield rel.as_posix()
        yield rel.with_suffix("").as_posix()
    except ValueError:
        pass
    yield str(clip.path)


def _lookup_key(key: str) -> list[str]:
    """Spellings under which a list's key may match a clip (full path, name, stem)."""
    norm = key.replace("\\", "/")
    name = norm.rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return [norm, name, stem]


def import_transcripts(dataset_dir: str | os.PathLike, source: str | os.PathLike | None = None,
                       language: str = "") -> ImportReport:
    """Import existing transcripts (marked edited, so ASR keeps them).

    ``source`` is a list file (see ``_parse_list_line``), or a folder of
    ``<stem>.lab``/``<stem>.txt`` files; None looks for ``.lab``/``.txt``
    files beside each clip.
    """
    root = Path(dataset_dir)
    clips = dataset_clips(root)
    by_key: dict[str, str] = {}
    for clip in clips:
        for key in _clip_keys(clip, root):
            by_key.setdefault(key, clip.id)
    # a list usually names the user's original files: match those too when one source gave one clip
    per_source: dict[str, list[str]] = {}
    for clip in clips:
        if clip.source:
            name = clip.source.replace("\\", "/").split("!")[-1].rsplit("/", 1)[-1]
            for key in {name, name.rsplit(".", 1)[0]}:
                per_source.setdefault(key, []).append(clip.id)
    for key, ids in per_source.items():
        if len(ids) == 1:
            by_key.setdefault(key, ids[0])
    found: dict[str, tuple[str, str]] = {}
    unmatched: list[str] = []

    def read_side_file(path: Path) -> str:
        return path.read_text(encoding="utf-8", errors="replace")

    if source is None:
        for clip in clips:
            for ext in (".lab", ".txt", ".normalized.txt"):
                side = clip.path.with_suffix(ext)
                if side.is_file():
                    found[clip.id] = (read_side_file(side), language)
                    break
    else:
        src = Path(source)
        if src.is_dir():
            for side in sorted(src.rglob("*")):
                if side.suffix.lower() not in (".lab", ".txt") or not side.is_file():
                    continue
                stem = side.name[: -len(".normalized.txt")] if side.name.endswith(".normalized.txt") else side.stem
                clip_id = by_key.get(stem)
                if clip_id is None:
                    unmatched.append(side.name)
                else:
                    found[clip_id] = (read_side_file(side), language)
        elif src.is_file():
            for raw in src.read_text(encoding="utf-8", errors="replace").splitlines():
                parsed = _parse_list_line(raw)
                if parsed is None:
                    continue
                key, text, lang = parsed
                clip_id = next((by_key[k] for k in _lookup_key(key) if k in by_key), None)
                if clip_id is None:
                    unmatched.append(key)
                else:
                    found[clip_id] = (text, lang or language)
        else:
            raise InvalidInputError(f"Transcript source {src} does not exist.",
                                    "Give a list file (path|text or 'utt text' lines) or a folder of .lab/.txt files.")

    def change(entries: dict[str, dict[str, Any]]) -> None:
        for clip_id, (text, lang) in found.items():
            old = entries.get(clip_id)
            entries[clip_id] = _entry(clean_text(text), lang, True, bool(old and old["dropped"]), "import")

    update_transcripts(root, change)
    current = load_transcripts(root)
    missing = [c.id for c in clips if not current.get(c.id, {}).get("text")]
    return ImportReport(len(found), unmatched, missing)
