"""Create a dataset or add audio to one: decode, slice, process, write clips + manifest.

Sources are audio/video files, zip archives, or folders (searched
recursively). Every file is decoded block by block (``iter_audio``), run
through the streaming slicer and cut into clips as soon as each clip is
final, so memory stays bounded by the block size plus the longest clip
(``max_clip_seconds``), whatever the input length.

Guarantees:
- importing into an existing dataset only adds clips (ids continue);
- a source whose content (sha256) is already in the dataset is skipped;
- a file that cannot be decoded is listed in ``skipped`` with the reason
  and the import goes on;
- the manifest is saved after every source file; if a file fails or the
  job is cancelled midway, the clips already written for that file are
  deleted, so manifest and clips on disk always agree.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from engines.core.archives import extract_member, is_hidden_member, member_path, unsafe_member
from engines.core.atomic import require_space
from engines.core.audio import AUDIO_EXTENSIONS, iter_audio, probe_audio, require_duration, write_audio
from engines.core.errors import AudioDecodeError, InvalidInputError
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.messages import msg
from engines.core.params import param, validate
from engines.core.settings import Workspace, safe_name
from engines.dataset.manifest import (
    CLIPS_DIR,
    ClipRecord,
    Manifest,
    SourceRecord,
    dataset_lock,
    dataset_path,
    load_manifest,
    manifest_path,
    now_iso,
    remove_orphans,
    save_manifest,
)
from engines.dataset.processing import (
    db,
    highpass,
    is_clipped,
    is_silent,
    normalize_loudness,
    peak_linear,
    rms_linear,
)
from engines.dataset.slicer import SlicerParams, StreamingSlicer

TARGET_RATES = (0, 16000, 22050, 24000, 32000, 40000, 44100, 48000)
ZIP_MAX_TOTAL_BYTES = 16 * 1024**3  # uncompressed audio a zip may expand to
DECODE_BLOCK_SECONDS = 10.0
MIN_SOURCE_SECONDS = 0.05  # shorter than this holds no clip whatever the settings


@dataclass
class DatasetParams:
    """How sources become clips (shared by the Dataset tab, the CLI and the API)."""

    target_sr: int = param(0, help="Output sample rate (0 = keep each file's rate)", choices=TARGET_RATES)
    slice: bool = param(True, help="Slice on silence (RVC slicer)")
    threshold_db: float = param(-42.0, help="Slicer: silence threshold (dBFS RMS)", min=-90.0, max=0.0, step=1.0)
    min_length_ms: int = param(1500, help="Slicer: minimum piece length before a cut (ms)", min=100, max=60000, step=50)
    min_interval_ms: int = param(400, help="Slicer: minimum silence that makes a cut (ms)", min=10, max=10000, step=10)
    hop_ms: int = param(15, help="Slicer: RMS hop (ms)", min=1, max=200)
    max_sil_kept_ms: int = param(500, help="Slicer: longest silence kept around a piece (ms)", min=0, max=10000, step=10)
    normalize: bool = param(True, help="Normalise each clip's loudness")
    norm_mode: str = param("rms", help="Normalise RMS level or sample peak", choices=("rms", "peak"))
    target_db: float = param(-20.0, help="Target level (dBFS) for the normalisation", min=-60.0, max=0.0, step=0.5)
    peak_ceiling_db: float = param(-1.0, help="Peak never exceeds this after normalisation (dBFS)", min=-30.0, max=0.0, step=0.5)
    highpass: bool = param(False, help="5th-order Butterworth high-pass at 48 Hz (removes rumble/DC)")
    min_clip_seconds: float = param(0.5, help="Drop clips shorter than this (s)", min=0.0, max=30.0, step=0.1)
    max_clip_seconds: float = param(20.0, help="Split longer pieces into parts of at most this (s)", min=1.0, max=120.0, step=0.5)

    def slicer_params(self) -> SlicerParams:
        return SlicerParams(self.threshold_db, self.min_length_ms, self.min_interval_ms, self.hop_ms, self.max_sil_kept_ms)


@dataclass
class ImportReport:
    """What an import did; ``skipped`` lists {source, reason} for files not imported."""

    name: str
    path: str
    added_clips: int = 0
    added_seconds: float = 0.0
    imported: list[dict] = field(default_factory=list)  # {source, clips, seconds}
    skipped: list[dict] = field(default_factory=list)  # {source, reason}
    dropped_short: int = 0  # pieces shorter than min_clip_seconds
    total_clips: int = 0
    removed_orphans: int = 0


# ---------------------------------------------------------------------------
# sources


def is_allowed_source(path: str | os.PathLike, ws: Workspace, extra_roots: Iterable[str | os.PathLike] = ()) -> bool:
    """True when ``path`` lies inside the workspace or one of ``extra_roots`` (the path policy's test)."""
    from engines.core.paths import within

    return within(path, [ws.root, *extra_roots])


@dataclass
class _Item:
    """One audio file to import; zip members are extracted just before use."""

    display: str
    path: Path | None = None
    zip_path: Path | None = None
    member: zipfile.ZipInfo | None = None


def _zip_items(zpath: Path, skipped: list[dict], display: str = "") -> list[_Item]:
    label = display or zpath.name
    try:
        zf = zipfile.ZipFile(zpath)
    except (zipfile.BadZipFile, OSError) as exc:
        skipped.append({"source": label, "reason": f"not a readable zip archive ({exc})"})
        return []
    items: list[_Item] = []
    total = 0
    with zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            display = f"{label}!{info.filename}"
            if is_hidden_member(info):
                continue
            why = unsafe_member(info)
            if why:
                skipped.append({"source": display, "reason": why})
                continue
            if member_path(info).suffix.lower() not in AUDIO_EXTENSIONS:
                skipped.append({"source": display, "reason": "not an audio file (unknown extension)"})
                continue
            total += info.file_size
            if total > ZIP_MAX_TOTAL_BYTES:
                skipped.append({"source": label, "reason": f"archive expands beyond {ZIP_MAX_TOTAL_BYTES >> 30} GB; "
                                "remaining entries refused"})
                break
            items.append(_Item(display=display, zip_path=zpath, member=info))
    return items


def _expand_sources(sources: Iterable[str | os.PathLike], skipped: list[dict]) -> list[_Item]:
    items: list[_Item] = []
    for src in sources:
        p = Path(src).expanduser()
        if not p.exists():
            skipped.append({"source": str(src), "reason": "the file does not exist"})
        elif p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
            found = [f for f in files if f.suffix.lower() in AUDIO_EXTENSIONS]
            zips = [f for f in files if f.suffix.lower() == ".zip"]
            if not found and not zips:
                skipped.append({"source": str(src), "reason": "the folder contains no audio files or zip archives"})
            items.extend(_Item(display=str(f.relative_to(p.parent)), path=f) for f in found)
            for z in zips:  # imported like an uploaded zip (same safety checks)
                items.extend(_zip_items(z, skipped, display=str(z.relative_to(p.parent))))
        elif p.suffix.lower() == ".zip" or (p.suffix.lower() not in AUDIO_EXTENSIONS and zipfile.is_zipfile(p)):
            items.extend(_zip_items(p, skipped))
        else:
            items.append(_Item(display=p.name, path=p))
    return items


def _extract_member(item: _Item, dest_dir: Path) -> Path:
    """Copy one zip member to ``dest_dir`` (within its declared size)."""
    assert item.zip_path is not None and item.member is not None
    return extract_member(item.zip_path, item.member, dest_dir / f"member{member_path(item.member).suffix.lower()}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------
# streaming cut of one file


class _SampleBuffer:
    """Audio kept by absolute sample position; spans no future clip needs are dropped."""

    def __init__(self) -> None:
        self._segs: list[tuple[int, np.ndarray]] = []
        self.end = 0

    def append(self, block: np.ndarray) -> None:
        if len(block):
            self._segs.append((self.end, block))
            self.end += len(block)

    def get(self, a: int, b: int) -> np.ndarray:
        parts = []
        pos = a
        for s, arr in self._segs:
            e = s + len(arr)
            if e <= pos or s >= b:
                continue
            if s > pos:
                raise AssertionError(f"samples {pos}..{s} were dropped but are needed")
            parts.append(arr[pos - s : min(b, e) - s])
            pos = min(b, e)
        if pos < b:
            raise AssertionError(f"samples {pos}..{b} are not buffered")
        return np.concatenate(parts) if len(parts) != 1 else parts[0]

    def retain(self, spans: list[tuple[int, int | None]]) -> None:
        kept: list[tuple[int, np.ndarray]] = []
        for s, arr in self._segs:
            e = s + len(arr)
            for a, b in spans:
                lo, hi = max(s, a), min(e, b if b is not None else e)
                if hi > lo:
                    piece = arr if (lo, hi) == (s, e) else arr[lo - s : hi - s].copy()
                    kept.append((lo, piece))
        self._segs = kept


def _cut_pieces(
    path: Path,
    native_sr: int,
    rate: int,
    params: DatasetParams,
    hooks: Hooks,
    on_progress,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield (start, end, samples) of every piece of ``path`` at ``rate``, in order.

    Slicer ranges are split into consecutive parts of at most
    ``max_clip_seconds``; parts of a long open piece are cut as soon as they
    are complete, so the buffer never grows beyond about one clip.
    """
    max_len = max(1, int(round(params.max_clip_seconds * rate)))
    slicer = StreamingSlicer(rate, params.slicer_params()) if params.slice else None
    buf = _SampleBuffer()
    cut = {"chunk": 0, "upto": 0}  # parts of the open chunk already cut

    def split(a: int, b: int) -> Iterator[tuple[int, int]]:
        s = cut["upto"] if cut["chunk"] == a and cut["upto"] > a else a
        while s < b:
            e = min(b, s + max_len)
            yield s, e
            s = e

    def final(ranges: list[tuple[int, int]]) -> Iterator[tuple[int, int, np.ndarray]]:
        for a, b in ranges:
            for s, e in split(a, b):
                yield s, e, buf.get(s, e)
            cut["chunk"], cut["upto"] = b, b

    def early() -> Iterator[tuple[int, int, np.ndarray]]:
        start = slicer.open_start() if slicer is not None else 0
        frontier = slicer.final_before() if slicer is not None else buf.end
        s = cut["upto"] if cut["chunk"] == start and cut["upto"] > start else start
        while frontier - s > max_len:
            yield s, s + max_len, buf.get(s, s + max_len)
            s += max_len
            cut["chunk"], cut["upto"] = start, s

    resample_to = rate if rate != native_sr else None
    for block in iter_audio(path, sr=resample_to, block_seconds=DECODE_BLOCK_SECONDS, mono=True):
        hooks.check_cancel()
        buf.append(block)
        on_progress(buf.end)
        if slicer is not None:
            yield from final(slicer.feed(block))
        yield from early()
        # keep only audio a future piece can contain
        spans = slicer.retained_spans() if slicer is not None else [(0, None)]
        if cut["chunk"] == spans[0][0]:
            spans[0] = (max(spans[0][0], cut["upto"]), spans[0][1])
        buf.retain(spans)
    if slicer is not None:
        yield from final(slicer.finish())
    else:
        yield from final([(0, buf.end)] if buf.end else [])


# ---------------------------------------------------------------------------
# the import


def _make_clip(
    man: Manifest, folder: Path, x: np.ndarray, a: int, b: int, rate: int,
    params: DatasetParams, source: str, sha: str,
) -> ClipRecord:
    clipped = is_clipped(x)
    silent = is_silent(x)
    y = x
    if params.highpass:
        y = highpass(y, rate)
    if params.normalize and not silent:
        y = normalize_loudness(y, params.norm_mode, params.target_db, params.peak_ceiling_db)
    y = np.clip(y, -1.0, 1.0)
    cid = man.new_clip_id()
    rel = f"{CLIPS_DIR}/{cid}.wav"
    write_audio(folder / rel, y, rate, fmt="wav", subtype="PCM_16")
    peak = peak_linear(y)
    return ClipRecord(
        id=cid, file=rel, source=source, source_sha256=sha,
        start=round(a / rate, 4), end=round(b / rate, 4), duration=round((b - a) / rate, 4),
        sample_rate=rate, peak=round(peak, 5), peak_db=round(db(peak), 2), rms_db=round(db(rms_linear(y)), 2),
        clipped=clipped, silent=silent,
    )


def create_or_import_dataset(
    ws: Workspace,
    name: str,
    sources: list[str | os.PathLike],
    params: DatasetParams | None = None,
    hooks: Hooks | None = None,
    must_be_new: bool = False,
    must_exist: bool = False,
) -> ImportReport:
    """Decode, slice and process ``sources`` into clips of dataset ``name`` (created if new).

    ``must_be_new``/``must_exist`` let `dataset create` and `dataset import`
    refuse the wrong case; the default adds to the dataset either way.
    """
    hooks = ensure_hooks(hooks)
    name = safe_name(name)
    params = validate(params or DatasetParams())
    if params.slice:  # invalid slicer settings fail now, not after the first file
        StreamingSlicer(16000, params.slicer_params())
    exists = manifest_path(ws, name).is_file()
    if must_be_new and exists:
        raise InvalidInputError(msg("dataset.exists", name=name))
    if must_exist and not exists:
        raise InvalidInputError(msg("dataset.missing", name=name))
    if not sources:
        raise InvalidInputError(msg("dataset.no_inputs"))

    folder = dataset_path(ws, name)
    with dataset_lock(ws, name):
        man = load_manifest(ws, name, create=True)
        report = ImportReport(name=name, path=str(folder))
        report.removed_orphans = len(remove_orphans(ws, man))
        (folder / CLIPS_DIR).mkdir(parents=True, exist_ok=True)
        man.params = asdict(params)
        incoming = folder / ".incoming"
        skipped: list[dict] = []
        items = _expand_sources(sources, skipped)
        for s in skipped:
            man.add_skipped(s["source"], s["reason"])
        report.skipped.extend(skipped)
        save_manifest(ws, man)
        hooks.log(f"Dataset '{name}': {len(items)} audio file(s) to import"
                  + (f", {len(skipped)} skipped up front" if skipped else ""))
        seen = man.known_hashes()
        try:
            for index, item in enumerate(items):
                hooks.check_cancel()
                f_hooks = hooks.scaled(index / max(1, len(items)), (index + 1) / max(1, len(items)))
                f_hooks.progress(0.0, msg("progress.import_file", name=item.display))
                try:
                    path = _extract_member(item, incoming) if item.zip_path is not None else item.path
                    assert path is not None
                    sha = _sha256(path)
                    if sha in seen:
                        reason = f"already imported (same content as {seen[sha]})"
                        man.add_skipped(item.display, reason)
                        report.skipped.append({"source": item.display, "reason": reason})
                        hooks.log(f"skip {item.display}: {reason}")
                        save_manifest(ws, man)
                        continue
                    added = _import_one(ws, man, folder, item.display, path, sha, params, f_hooks, report)
                    seen[sha] = item.display
                    hooks.log(f"{item.display}: {added} clip(s)")
                except (AudioDecodeError, InvalidInputError) as exc:
                    reason = exc.message
                    man.add_skipped(item.display, reason)
                    report.skipped.append({"source": item.display, "reason": reason})
                    hooks.log(f"skip {item.display}: {reason}")
                    save_manifest(ws, man)
                finally:
                    if incoming.exists():
                        shutil.rmtree(incoming, ignore_errors=True)
        finally:
            report.total_clips = len(man.clips)
        hooks.progress(1.0, msg("progress.import_done", added=report.added_clips, skipped=len(report.skipped)))
        return report


def _import_one(
    ws: Workspace, man: Manifest, folder: Path, display: str, path: Path, sha: str,
    params: DatasetParams, hooks: Hooks, report: ImportReport,
) -> int:
    """Cut one file into clips; on any failure remove its clips and leave the manifest as it was."""
    info = probe_audio(path)
    require_duration(info, max(params.min_clip_seconds, MIN_SOURCE_SECONDS), "a clip")
    rate = params.target_sr or info.sample_rate
    expected = max(1.0, info.duration * rate)
    require_space(folder, int(expected * 2))  # 16-bit mono clips
    records: list[ClipRecord] = []
    next_id_before = man.next_id
    dropped = 0

    def on_progress(samples: int) -> None:
        hooks.progress(min(0.99, samples / expected), msg("progress.import_seconds", name=display, done=samples / rate, total=info.duration))

    try:
        for a, b, x in _cut_pieces(path, info.sample_rate, rate, params, hooks, on_progress):
            if (b - a) / rate < params.min_clip_seconds:
                dropped += 1
                continue
            hooks.check_cancel()
            records.append(_make_clip(man, folder, x, a, b, rate, params, display, sha))
    except BaseException:
        for rec in records:
            (folder / rec.file).unlink(missing_ok=True)
        man.next_id = next_id_before
        raise
    if not records:
        raise InvalidInputError(msg("dataset.no_clips", seconds=info.duration, minimum=params.min_clip_seconds,
                                    note=info.length_note()))
    seconds = sum(r.duration for r in records)
    for rec in records:
        man.add_clip(rec)
    man.add_source(SourceRecord(display, sha, now_iso(), info.sample_rate, info.channels, round(info.duration, 3), len(records)))
    save_manifest(ws, man)
    report.added_clips += len(records)
    report.added_seconds += seconds
    report.dropped_short += dropped
    report.imported.append({"source": display, "clips": len(records), "seconds": round(seconds, 3)})
    return len(records)
