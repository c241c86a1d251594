"""Dataset engine: slicer on real speech, processing, import (files/zip/bad files), stats, CLI, memory."""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engines.core.errors import Cancelled, InvalidInputError
from engines.core.hooks import Hooks
from engines.dataset.importer import (
    DatasetParams,
    create_or_import_dataset,
    is_allowed_source,
)
from engines.dataset.manifest import load_manifest
from engines.dataset.processing import (
    StreamingHighpass,
    db,
    highpass,
    normalize_loudness,
    rms_linear,
)
from engines.dataset.slicer import SlicerParams, StreamingSlicer, slice_ranges
from engines.dataset.stats import dataset_stats, delete_clip, list_clips, list_datasets

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "A voice studio turns recordings into training data.",
    "Silence between sentences marks where to cut.",
)


def _tone(sr: int, seconds: float, freq: float = 220.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(sr * seconds))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> tuple[np.ndarray, int, list[tuple[int, int]]]:
    """Three espeak-ng sentences separated by 1 s of silence, plus each sentence's voiced extent."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng) — needed for real speech")
    folder = tmp_path_factory.mktemp("speech")
    parts, extents, pos, sr = [], [], 0, None
    for i, text in enumerate(SENTENCES):
        out = folder / f"s{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(out), text], check=True, capture_output=True)
        x, sr_i = sf.read(str(out), dtype="float32")
        sr = sr or sr_i
        assert sr_i == sr
        if i:
            parts.append(np.zeros(sr, np.float32))
            pos += sr
        voiced = np.flatnonzero(np.abs(x) > 0.01)
        extents.append((pos + int(voiced[0]), pos + int(voiced[-1])))
        parts.append(x)
        pos += len(x)
    return np.concatenate(parts), int(sr), extents


# ---------------------------------------------------------------------------
# slicer


def test_slicer_cuts_speech_in_the_pauses(speech) -> None:
    audio, sr, extents = speech
    ranges = slice_ranges(audio, sr, SlicerParams())
    assert len(ranges) == 3, ranges
    for (start, end), (v0, v1) in zip(ranges, extents):
        assert start <= v0 and end >= v1  # each piece holds its whole sentence
        # at most max_sil_kept (500 ms) of silence kept, plus half an RMS window and a hop of slack
        slack = int(0.5 * sr + 0.045 * sr)
        assert v0 - start <= slack and end - v1 <= slack
    for (_, end), (start_next, _), (_, v1), (v0_next, _) in zip(ranges, ranges[1:], extents, extents[1:]):
        assert v1 < end <= start_next < v0_next  # boundaries lie in the pause

    # any blocking of a stream gives exactly the whole-array result
    for block in (777, sr // 3, 5 * sr):
        slicer, got = StreamingSlicer(sr, SlicerParams()), []
        for a in range(0, len(audio), block):
            got += slicer.feed(audio[a : a + block])
        assert got + slicer.finish() == ranges


def test_slicer_rules_short_silent_leading() -> None:
    sr = 16000
    short = _tone(sr, 1.0)
    assert slice_ranges(short, sr) == [(0, len(short))]  # shorter than min_length: kept whole
    assert slice_ranges(np.zeros(5 * sr, np.float32), sr) == []  # nothing but silence
    lead = np.concatenate([np.zeros(3 * sr, np.float32), _tone(sr, 2.0)])
    (start, end), = slice_ranges(lead, sr)
    assert 3 * sr - start <= 0.5 * sr + 0.03 * sr and end == len(lead)  # leading silence trimmed
    # no silence long enough (300 ms < min_interval 400 ms): no cut
    gap = np.concatenate([_tone(sr, 2.0), np.zeros(int(0.3 * sr), np.float32), _tone(sr, 2.0)])
    assert slice_ranges(gap, sr) == [(0, len(gap))]
    # a lower threshold keeps the quiet part as speech
    quiet = np.concatenate([_tone(sr, 2.0), _tone(sr, 1.0, amp=0.003), _tone(sr, 2.0)])
    assert len(slice_ranges(quiet, sr, SlicerParams(threshold_db=-42))) == 2
    assert len(slice_ranges(quiet, sr, SlicerParams(threshold_db=-60))) == 1
    with pytest.raises(InvalidInputError):
        StreamingSlicer(sr, SlicerParams(min_length_ms=300, min_interval_ms=400))


# (seed, (threshold dB, min_length, min_interval, hop, max_sil_kept ms), ranges) — the ranges are what
# upstream RVC's slicer (train/dataset/slicer2.py, run once on these signals) returned.
UPSTREAM_CASES = [
    (1, (-42, 1500, 400, 15, 500), [(31114, 115850), (118498, 188670), (213495, 237989), (276054, 322394)]),
    (2, (-42, 1500, 400, 15, 500), [(12240, 54720), (121680, 242640), (262800, 345600)]),
    (3, (-42, 1500, 400, 15, 500), [(0, 104400), (139680, 167040)]),
    (4, (-50, 2000, 300, 10, 800), [(20400, 261600), (338800, 420400), (420400, 549200), (590400, 630800)]),
    (5, (-35, 1000, 250, 20, 300), [(54400, 168000), (197600, 280000), (291200, 314400), (395200, 540000),
                                    (573600, 649600)]),
    (6, (-42, 3000, 500, 15, 1500), [(0, 99631), (99631, 145640), (145640, 236496)]),
    (7, (-42, 1500, 400, 15, 500), [(82800, 156240), (156240, 434880), (506160, 707040)]),
    (8, (-45, 800, 200, 8, 200), [(74880, 89600), (104000, 145280), (217600, 317120)]),
]


def _bursts(seed: int) -> tuple[np.ndarray, int]:
    """Tone bursts with noisy gaps of random lengths (the signals the upstream ranges were made from)."""
    rng = np.random.default_rng(seed)
    sr = int(rng.choice([16000, 22050, 40000, 48000]))
    parts = [0.0005 * rng.standard_normal(int(sr * rng.uniform(0, 2)))]
    for _ in range(int(rng.integers(2, 7))):
        n = int(sr * rng.uniform(0.1, 3))
        t = np.arange(n) / sr
        parts.append(rng.uniform(0.02, 0.8) * np.sin(2 * np.pi * rng.uniform(80, 900) * t) * (0.3 + 0.7 * rng.random(n)))
        parts.append(rng.uniform(0, 0.004) * rng.standard_normal(int(sr * rng.uniform(0.05, 2.5))))
    return np.concatenate(parts).astype(np.float32), sr


@pytest.mark.parametrize("seed,settings,expected", UPSTREAM_CASES, ids=[str(c[0]) for c in UPSTREAM_CASES])
def test_slicer_matches_upstream(seed: int, settings: tuple, expected: list) -> None:
    x, sr = _bursts(seed)
    assert slice_ranges(x, sr, SlicerParams(*settings)) == expected


# ---------------------------------------------------------------------------
# processing


def test_highpass_and_loudness() -> None:
    sr = 16000
    low, mid = _tone(sr, 2.0, 20.0), _tone(sr, 2.0, 1000.0)
    assert rms_linear(highpass(low, sr)[sr // 2 : -sr // 2]) < 0.05 * rms_linear(low)
    assert rms_linear(highpass(mid, sr)) == pytest.approx(rms_linear(mid), rel=0.02)
    # streaming causal filter == whole-signal causal filter
    x = (low + mid) / 2
    hp = StreamingHighpass(sr)
    streamed = np.concatenate([hp.process(x[a : a + 999]) for a in range(0, len(x), 999)])
    np.testing.assert_allclose(streamed, highpass(x, sr, zero_phase=False), atol=1e-6)

    y = normalize_loudness(mid * 0.1, "rms", -20.0, -1.0)
    assert db(rms_linear(y)) == pytest.approx(-20.0, abs=0.05)
    y = normalize_loudness(mid, "rms", -3.0, -1.0)  # would exceed the ceiling: limited
    assert db(float(np.max(np.abs(y)))) == pytest.approx(-1.0, abs=0.05)
    y = normalize_loudness(mid * 0.1, "peak", -6.0, -1.0)
    assert db(float(np.max(np.abs(y)))) == pytest.approx(-6.0, abs=0.05)
    silence = np.full(1000, 1e-5, np.float32)
    assert np.array_equal(normalize_loudness(silence), silence)  # silence is not amplified


# ---------------------------------------------------------------------------
# import


def _clips_on_disk(ws, name: str) -> set[str]:
    return {p.name for p in (ws.dataset_dir(name) / "clips").iterdir()}


def _assert_consistent(ws, name: str) -> None:
    man = load_manifest(ws, name)
    assert {Path(c["file"]).name for c in man.clips} == _clips_on_disk(ws, name)


def test_import_speech_clips_and_offsets(ws, speech, tmp_path) -> None:
    audio, sr, extents = speech
    src = tmp_path / "talk.flac"
    sf.write(str(src), audio, sr)
    report = create_or_import_dataset(ws, "talk", [src], DatasetParams(target_sr=16000))
    assert report.added_clips == 3 and not report.skipped
    clips, total = list_clips(ws, "talk")
    assert total == 3
    for c, (v0, v1) in zip(clips, extents):
        assert c["sample_rate"] == 16000 and c["source"] == "talk.flac"
        assert c["start"] <= v0 / sr and c["end"] >= v1 / sr
        assert c["duration"] == pytest.approx(c["end"] - c["start"], abs=1e-3)
        x, rate = sf.read(c["path"], dtype="float32")
        assert rate == 16000 and len(x) == pytest.approx(c["duration"] * 16000, abs=2)
        # default normalisation: RMS -20 dBFS unless the -1 dBFS peak ceiling limits the gain
        assert c["rms_db"] == pytest.approx(-20.0, abs=0.1) or (c["peak_db"] == pytest.approx(-1.0, abs=0.1)
                                                                and c["rms_db"] < -20.0)
        assert not c["clipped"] and not c["silent"]
    _assert_consistent(ws, "talk")


def test_streamed_import_equals_whole_file_slicing(ws, tmp_path, monkeypatch) -> None:
    """Long silences (longer than a decode block) and long speech (cut early at max length)."""
    import engines.dataset.importer as importer

    monkeypatch.setattr(importer, "DECODE_BLOCK_SECONDS", 1.7)
    sr = 16000
    rng = np.random.default_rng(3)
    layout = [(2.0, 0.7), (25.0, 6.0), (3.0, 0.2), (1.0, 12.0), (0.4, 0.5), (14.0, 3.0)]  # (voiced s, silence s)
    parts = []
    for voiced, silence in layout:
        parts.append(_tone(sr, voiced, float(rng.uniform(150, 400))) * (0.5 + 0.5 * rng.random(int(round(voiced * sr)))))
        parts.append((0.0003 * rng.standard_normal(int(silence * sr))).astype(np.float32))
    x = np.concatenate(parts).astype(np.float32)
    src = tmp_path / "long.wav"
    sf.write(str(src), x, sr, subtype="FLOAT")

    max_len, min_len = 10 * sr, int(0.5 * sr)
    expected = []
    for a, b in slice_ranges(x, sr):
        for s in range(a, b, max_len):
            if min(b, s + max_len) - s >= min_len:
                expected.append((s, min(b, s + max_len)))
    params = DatasetParams(max_clip_seconds=10.0, min_clip_seconds=0.5, normalize=False)
    create_or_import_dataset(ws, "stream", [src], params)
    clips, _ = list_clips(ws, "stream", page_size=100)
    got = [(round(c["start"] * sr), round(c["end"] * sr)) for c in clips]
    assert got == expected and len(got) >= 6
    for c, (a, b) in zip(clips, expected):  # the written samples are the source samples
        y, _ = sf.read(c["path"], dtype="float32")
        np.testing.assert_allclose(y, x[a:b], atol=1 / 32767)


def _bad_files(folder: Path) -> list[Path]:
    corrupt = folder / "corrupt.wav"
    sf.write(str(corrupt), _tone(16000, 1.0), 16000)
    corrupt.write_bytes(corrupt.read_bytes()[:30])  # header cut inside the fmt chunk
    empty = folder / "empty.flac"
    empty.write_bytes(b"")
    text = folder / "readme.txt"
    text.write_text("not audio at all\n" * 10)
    zero_len = folder / "zero.wav"
    sf.write(str(zero_len), np.zeros(0, np.float32), 16000)
    zero_hz = folder / "zerohz.wav"
    sf.write(str(zero_hz), _tone(16000, 0.5), 16000, subtype="PCM_16")
    data = bytearray(zero_hz.read_bytes())
    data[24:28] = struct.pack("<I", 0)
    zero_hz.write_bytes(bytes(data))
    return [corrupt, empty, text, zero_len, zero_hz]


def test_bad_files_are_listed_and_the_rest_goes_on(ws, tmp_path) -> None:
    good1, good2 = tmp_path / "good1.wav", tmp_path / "good2.ogg"
    sf.write(str(good1), _tone(16000, 2.0), 16000)
    sf.write(str(good2), _tone(22050, 2.0, 330.0), 22050)
    bad = _bad_files(tmp_path)
    report = create_or_import_dataset(ws, "mixed", [good1, *bad, tmp_path / "missing.wav", good2], DatasetParams())
    reasons = {Path(s["source"]).name: s["reason"] for s in report.skipped}
    assert set(reasons) == {p.name for p in bad} | {"missing.wav"}
    assert "corrupt" in reasons["corrupt.wav"]
    assert "empty" in reasons["empty.flac"]
    assert "not audio" in reasons["readme.txt"]
    assert "zero-length" in reasons["zero.wav"]
    assert "0 Hz" in reasons["zerohz.wav"]
    assert "does not exist" in reasons["missing.wav"]
    assert [i["source"] for i in report.imported] == ["good1.wav", "good2.ogg"]
    assert report.added_clips == 2
    assert dataset_stats(ws, "mixed").skipped_files == 6


def test_import_adds_never_replaces(ws, tmp_path) -> None:
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(str(a), np.concatenate([_tone(16000, 2.0), np.zeros(16000, np.float32), _tone(16000, 2.0)]), 16000)
    sf.write(str(b), _tone(16000, 2.5, 440.0), 16000)
    first = create_or_import_dataset(ws, "grow", [a], DatasetParams(), must_be_new=True)
    assert first.added_clips == 2
    before = {c["id"]: Path(c["path"]).read_bytes() for c in list_clips(ws, "grow")[0]}

    with pytest.raises(InvalidInputError, match="already exists"):
        create_or_import_dataset(ws, "grow", [b], DatasetParams(), must_be_new=True)
    second = create_or_import_dataset(ws, "grow", [b, a], DatasetParams(), must_exist=True)
    assert second.added_clips == 1 and second.total_clips == 3
    assert "already imported" in second.skipped[0]["reason"] and second.skipped[0]["source"] == "a.wav"
    clips, total = list_clips(ws, "grow")
    assert [c["id"] for c in clips] == ["000001", "000002", "000003"] and total == 3
    for c in clips[:2]:
        assert Path(c["path"]).read_bytes() == before[c["id"]]  # untouched

    delete_clip(ws, "grow", "000003")
    clips_dir = ws.dataset_dir("grow") / "clips"
    (clips_dir / "000099.wav").write_bytes(b"left by a killed import")
    (clips_dir / ".000100.part.wav").write_bytes(b"half written")
    c = tmp_path / "c.wav"
    sf.write(str(c), _tone(16000, 2.0, 550.0), 16000)
    assert create_or_import_dataset(ws, "grow", [c]).removed_orphans == 2
    assert [x["id"] for x in list_clips(ws, "grow")[0]] == ["000001", "000002", "000004"]  # ids never reused
    with pytest.raises(InvalidInputError):
        delete_clip(ws, "grow", "000003")
    _assert_consistent(ws, "grow")
    assert list_datasets(ws) == ["grow"]


def test_stats_numbers(ws, tmp_path) -> None:
    tmp_path = tmp_path / "in"
    tmp_path.mkdir()
    files = {
        "five.wav": (_tone(16000, 5.0), 16000),  # -> 2 s, 2 s, 1 s
        "three.flac": (_tone(22050, 3.0, 300.0), 22050),  # -> 2 s, 1 s
        "loud.wav": (np.sign(_tone(16000, 1.5, 100.0)).astype(np.float32), 16000),  # full-scale square: clipped
        "quiet.wav": (np.full(24000, 1e-4, np.float32), 16000),  # silent clip
    }
    for name, (x, sr) in files.items():
        sf.write(str(tmp_path / name), x, sr, subtype="FLOAT" if name.endswith(".wav") else "PCM_16")
    (tmp_path / "junk.mp3").write_bytes(b"\x00" * 300)
    params = DatasetParams(slice=False, max_clip_seconds=2.0, min_clip_seconds=0.5, normalize=False)
    create_or_import_dataset(ws, "st", sorted(tmp_path.iterdir()), params)
    st = dataset_stats(ws, "st")
    assert st.clips == 7
    assert st.total_seconds == pytest.approx(5.0 + 3.0 + 1.5 + 1.5, abs=1e-3)
    assert st.min_seconds == pytest.approx(1.0, abs=1e-3)
    assert st.max_seconds == pytest.approx(2.0, abs=1e-3)
    assert st.mean_seconds == pytest.approx(11.0 / 7, abs=1e-3)
    assert st.rate_histogram == {16000: 5, 22050: 2}
    assert st.clipped_clips == 1 and st.silent_clips == 1
    assert st.sources == 4 and st.skipped_files == 1 and "junk.mp3" in st.skipped[0]["source"]

    # resampling to a target rate, and pieces shorter than min_clip_seconds dropped
    params = DatasetParams(slice=False, max_clip_seconds=2.0, min_clip_seconds=1.2, target_sr=24000)
    rep = create_or_import_dataset(ws, "st24", [tmp_path / "five.wav", tmp_path / "three.flac"], params)
    assert rep.added_clips == 3 and rep.dropped_short == 2
    assert dataset_stats(ws, "st24").rate_histogram == {24000: 3}


def _zip_with_traversal(tmp_path: Path) -> Path:
    wav = tmp_path / "inner.wav"
    sf.write(str(wav), _tone(16000, 2.0), 16000)
    zpath = tmp_path / "upload.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(wav, "voice/take1.wav")
        zf.write(wav, "../../escaped.wav")
        zf.writestr(zipfile.ZipInfo("/abs/evil.wav"), wav.read_bytes())
        zf.writestr("notes.txt", "hello")
        zf.writestr("__MACOSX/voice/._take1.wav", b"junk")
        zf.write(wav, "voice/take1_copy.flac")  # same bytes under another name: deduplicated
        zf.writestr(zipfile.ZipInfo("bomb.wav"), bytes(8 << 20), compress_type=zipfile.ZIP_DEFLATED)
    return zpath


def test_zip_import_refuses_traversal(ws, tmp_path) -> None:
    zpath = _zip_with_traversal(tmp_path)
    report = create_or_import_dataset(ws, "zipped", [zpath])
    assert [i["source"] for i in report.imported] == ["upload.zip!voice/take1.wav"]
    reasons = {s["source"]: s["reason"] for s in report.skipped}
    assert "traversal" in reasons["upload.zip!../../escaped.wav"]
    assert "absolute" in reasons["upload.zip!/abs/evil.wav"]
    assert "not an audio file" in reasons["upload.zip!notes.txt"]
    assert "already imported" in reasons["upload.zip!voice/take1_copy.flac"]
    assert "zip bomb" in reasons["upload.zip!bomb.wav"]
    assert not any(p.name == "escaped.wav" for p in tmp_path.parent.rglob("escaped.wav"))
    assert not (ws.dataset_dir("zipped") / ".incoming").exists()
    _assert_consistent(ws, "zipped")


def test_folder_import_and_allowed_roots(ws, tmp_path) -> None:
    folder = ws.uploads / "session"
    (folder / "sub").mkdir(parents=True)
    sf.write(str(folder / "one.wav"), _tone(16000, 2.0), 16000)
    sf.write(str(folder / "sub" / "two.flac"), _tone(16000, 2.0, 330.0), 16000)
    (folder / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    assert is_allowed_source(folder, ws)
    assert not is_allowed_source("/etc", ws)
    assert not is_allowed_source(ws.root / ".." / "elsewhere", ws)
    assert is_allowed_source(tmp_path / "x", ws, extra_roots=[tmp_path])
    report = create_or_import_dataset(ws, "fold", [folder])
    assert sorted(i["source"] for i in report.imported) == ["session/one.wav", "session/sub/two.flac"]
    assert not report.skipped


def test_cancel_keeps_manifest_consistent(ws, tmp_path) -> None:
    srcs = []
    for i in range(3):
        p = tmp_path / f"f{i}.wav"
        sf.write(str(p), np.concatenate([_tone(16000, 2.0, 200 + 50 * i), np.zeros(8000, np.float32)] * 10), 16000)
        srcs.append(p)
    event = threading.Event()

    def progress(frac: float, msg: str) -> None:
        if msg.startswith("f1.wav:"):  # midway through the second file
            event.set()

    with pytest.raises(Cancelled):
        create_or_import_dataset(ws, "cx", srcs, DatasetParams(), hooks=Hooks(progress=progress, cancel_event=event))
    man = load_manifest(ws, "cx")
    assert [s["source"] for s in man.sources] == ["f0.wav"]
    _assert_consistent(ws, "cx")
    # a later import picks up where it stopped; nothing is duplicated
    rep = create_or_import_dataset(ws, "cx", srcs)
    assert [i["source"] for i in rep.imported] == ["f1.wav", "f2.wav"]
    assert rep.total_clips == 30
    _assert_consistent(ws, "cx")


# ---------------------------------------------------------------------------
# CLI


def _parser() -> argparse.ArgumentParser:
    from engines.cli import build_parser

    return build_parser()


def test_cli_in_process(ws, tmp_path, capsys) -> None:
    src = tmp_path / "x.wav"
    sf.write(str(src), np.concatenate([_tone(16000, 2.0), np.zeros(16000, np.float32), _tone(16000, 2.0)]), 16000)
    parser = _parser()
    args = parser.parse_args(["dataset", "create", "cli", str(src), "--target-sr", "22050", "--no-normalize",
                              "--quiet"])
    assert args.func(args, ws) == 0
    assert "added 2 clip(s)" in capsys.readouterr().out

    args = parser.parse_args(["dataset", "stats", "cli", "--json"])
    assert args.func(args, ws) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["clips"] == 2 and st["rate_histogram"] == {"22050": 2}

    args = parser.parse_args(["dataset", "list", "cli", "--json", "--page-size", "1", "--page", "2"])
    assert args.func(args, ws) == 0
    page = json.loads(capsys.readouterr().out)
    assert page["total"] == 2 and [c["id"] for c in page["clips"]] == ["000002"]

    with pytest.raises(SystemExit):  # out-of-range choice rejected by argparse
        parser.parse_args(["dataset", "create", "cli2", str(src), "--target-sr", "12345"])
    args = parser.parse_args(["dataset", "import", "nope", str(src)])
    with pytest.raises(InvalidInputError, match="no dataset"):
        args.func(args, ws)


def test_cli_subprocess(tmp_path) -> None:
    src = tmp_path / "y.flac"
    sf.write(str(src), _tone(16000, 2.0), 16000)
    bad = tmp_path / "bad.wav"
    bad.write_text("nope")
    wsdir = tmp_path / "ws"
    cmd = [sys.executable, "-m", "engines.cli", "--workspace", str(wsdir)]
    run = subprocess.run([*cmd, "dataset", "create", "sub", str(src), str(bad), "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["added_clips"] == 1 and report["skipped"][0]["source"] == "bad.wav"
    run = subprocess.run([*cmd, "dataset", "list"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.stdout.split() == ["sub"]
    run = subprocess.run([*cmd, "dataset", "stats", "missing"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "no dataset named 'missing'" in run.stderr


# ---------------------------------------------------------------------------
# bounded memory on a long input

_MEMORY_PROBE = r"""
import json, sys
from engines.core.settings import Workspace
from engines.dataset.importer import DatasetParams, create_or_import_dataset


def status_kb(key):
    # VmHWM is this process's own peak RSS (getrusage's ru_maxrss can carry the parent's peak across exec)
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024


ws = Workspace.open(sys.argv[2])
import numpy, soundfile, soxr, scipy.signal, av  # loaded before the baseline
base = status_kb("VmRSS")
rep = create_or_import_dataset(ws, "long", [sys.argv[1]], DatasetParams(target_sr=16000, max_clip_seconds=15))
peak = status_kb("VmHWM")
print(json.dumps({"growth": peak - base, "base": base, "peak": peak, "clips": rep.added_clips,
                  "seconds": rep.added_seconds}))
"""


@pytest.mark.slow
def test_long_file_bounded_memory(tmp_path) -> None:
    sr, minutes = 8000, 25
    src = tmp_path / "long.flac"
    rng = np.random.default_rng(0)
    with sf.SoundFile(str(src), "w", sr, 1, subtype="PCM_16") as out:
        for _ in range(minutes * 6):  # 10-second blocks: 6 s of tone+noise, 4 s of near silence
            t = np.arange(6 * sr) / sr
            burst = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 400) * t) + 0.05 * rng.standard_normal(6 * sr)
            out.write(np.concatenate([burst, 0.001 * rng.standard_normal(4 * sr)]).astype(np.float32))
    run = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(src), str(tmp_path / "ws")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    whole_file_bytes = minutes * 60 * 16000 * 4  # the resampled audio alone, held whole
    assert result["clips"] == minutes * 6, result
    assert result["seconds"] == pytest.approx(minutes * 60 * 0.6 + minutes * 6 * 0.8, rel=0.1), result
    assert result["growth"] < 60 * 2**20, result  # far below the ~96 MB a whole-file decode needs
    assert result["growth"] < whole_file_bytes / 1.5
