"""CosyVoice data preparation: features vs references, kaldi dirs, parquet shards, resume, CLI.

Speech comes from espeak-ng; the ONNX models are the tiny stand-ins from
tiny_cosyvoice_onnx (same names, dtypes and shapes as the real ones).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from engines.core.errors import Cancelled, MissingAssetError
from engines.core.hooks import Hooks
from engines.core.settings import Workspace

ESPEAK = shutil.which("espeak-ng")
needs_espeak = pytest.mark.skipif(ESPEAK is None, reason="espeak-ng is not installed (apt install espeak-ng)")

SENTENCES = {
    "clip_001": "The birch canoe slid on the smooth planks.",
    "clip_002": "Glue the sheet to the dark blue background.",
    "clip_003": "It is easy to tell the depth of a well.",
    "clip_004": "These days a chicken leg is a rare dish.",
    "clip_005": "Rice is often served in round bowls.",
    "clip_006": "The juice of lemons makes fine punch.",
}


def _espeak(text: str, path: Path, voice: str = "en") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([ESPEAK, "-v", voice, "-s", "190", "-w", str(path), text], check=True, capture_output=True)


def _read_kaldi(path: Path) -> dict[str, str]:
    """Parse a Kaldi file exactly as upstream's tools do (split on whitespace)."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        out[parts[0]] = " ".join(parts[1:])
    return out


def _load_pt(path: Path):
    import torch

    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """A workspace with an espeak-ng dataset (one clip in a folder with a space) and tiny model dirs."""
    if ESPEAK is None:
        pytest.skip("espeak-ng is not installed (apt install espeak-ng)")
    from tiny_cosyvoice_onnx import build_model_dir

    from engines.dataset.transcripts import import_transcripts

    root = tmp_path_factory.mktemp("cosy")
    ws = Workspace(root=root / "ws")
    ws.ensure()
    ds = ws.dataset_dir("alice")
    clips = []
    for i, (clip_id, text) in enumerate(SENTENCES.items()):
        rel = f"take one/{clip_id}.wav" if i == 5 else f"clips/{clip_id}.wav"
        _espeak(text, ds / rel, "en" if i % 2 else "en-us")
        import soundfile as sf

        info = sf.info(str(ds / rel))
        clips.append({"id": clip_id, "file": rel, "duration": info.duration, "rate": info.samplerate})
    (ds / "manifest.json").write_text(json.dumps({"name": "alice", "clips": clips}), encoding="utf-8")
    listing = root / "list.txt"
    listing.write_text("".join(f"{c['file']}|alice|EN|{SENTENCES[c['id']]}\n" for c in clips), encoding="utf-8")
    report = import_transcripts(ds, listing)
    assert report.matched == len(SENTENCES) and not report.unmatched
    return {"ws": ws, "v2": build_model_dir(root / "model_v2", "v2"),
            "v3": build_model_dir(root / "model_v3", "v3", with_yaml=True)}


@pytest.fixture(scope="module")
def prepared(studio):
    from engines.cosyvoice.dataprep import PrepareParams, prepare_cosyvoice_data

    params = PrepareParams(model_dir=str(studio["v2"]), speaker="alice", processes=1, dev_ratio=0.2, data_workers=1)
    report = prepare_cosyvoice_data(studio["ws"], "alice", "alice_v2", params)
    return report


# ---------------------------------------------------------------- features


@needs_espeak
def test_kaldi_fbank_matches_kaldi_native_fbank(tmp_path):
    import kaldi_native_fbank as knf

    from engines.core.audio import load_audio
    from engines.cosyvoice.fbank import campplus_features, kaldi_fbank

    _espeak("A quick check of the filter bank features.", tmp_path / "a.wav")
    audio, _ = load_audio(tmp_path / "a.wav", sr=16000)
    ours = kaldi_fbank(audio)
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = 16000
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = 80
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(16000, audio.tolist())
    fb.input_finished()
    ref = np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])
    assert ours.shape == ref.shape == (1 + (len(audio) - 400) // 160, 80)
    # kaldi-native-fbank works in float32; the largest differences are in near-silent bins
    assert np.abs(ours - ref).max() < 2e-3
    assert np.abs(ours - ref).mean() < 1e-4
    feats = campplus_features(audio)
    assert np.allclose(feats.mean(axis=0), 0.0, atol=1e-4)
    assert np.allclose(feats, ours - ours.mean(axis=0), atol=1e-5)


def test_whisper_log_mel_matches_reference_formula():
    import librosa
    import torch

    from engines.cosyvoice.fbank import whisper_log_mel, whisper_mel_filters

    assert np.abs(whisper_mel_filters(128) - librosa.filters.mel(sr=16000, n_fft=400, n_mels=128)).max() < 1e-7
    rng = np.random.default_rng(3)
    t = np.arange(16000 * 2 + 77) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t * (1 + t)) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    ours = whisper_log_mel(audio, 128)
    # Whisper's formula written with torch.stft: centred reflect-padded periodic-Hann STFT, drop the last frame
    x = torch.from_numpy(audio)
    spec = torch.stft(x, 400, 160, window=torch.hann_window(400), return_complex=True)[..., :-1].abs() ** 2
    mel = torch.from_numpy(librosa.filters.mel(sr=16000, n_fft=400, n_mels=128)) @ spec
    ref = torch.clamp(mel, min=1e-10).log10()
    ref = (torch.maximum(ref, ref.max() - 8.0) + 4.0) / 4.0
    assert ours.shape == (128, len(audio) // 160)
    assert np.abs(ours - ref.numpy()).max() < 1e-4


def test_onnx_wrappers_follow_upstream_io(tmp_path):
    from tiny_cosyvoice_onnx import build_model_dir

    from engines.cosyvoice.onnx_models import CampPlusEncoder, SpeechTokenizer

    model_dir = build_model_dir(tmp_path / "m", "v2")
    enc = CampPlusEncoder(model_dir / "campplus.onnx", device="cpu")
    tok = SpeechTokenizer(model_dir / "speech_tokenizer_v2.onnx", device="cpu")
    assert enc.session.get_inputs()[0].name == "input"
    assert [i.name for i in tok.session.get_inputs()] == ["feats", "feats_length"]
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(16000 * 3 + 123)).astype(np.float32)
    emb = enc.embed(audio)
    assert len(emb) == 192 and all(isinstance(v, float) for v in emb)
    tokens = tok.tokenize(audio)
    assert len(tokens) == math.ceil((len(audio) // 160) / 4)
    assert all(isinstance(v, int) for v in tokens)
    assert tok.tokenize(np.zeros(16000 * 31, np.float32)) is None  # > 30 s: upstream cannot tokenize


# ---------------------------------------------------------------- pipeline


def test_split_rules():
    from engines.cosyvoice.kaldi_data import Utterance, split_train_dev

    utts = [Utterance(f"s_{i:03d}", f"/w/{i}.wav", "t", "s") for i in range(40)]
    train, dev = split_train_dev(utts, 0.1, 7)
    assert len(dev) == 4 and not {u.utt for u in train} & {u.utt for u in dev}
    assert split_train_dev(utts, 0.1, 7) == (train, dev)  # seeded
    assert split_train_dev(utts, 0.1, 8)[1] != dev
    assert [len(x) for x in split_train_dev(utts[:2], 0.0, 1)] == [1, 1]  # at least one dev utt
    one_train, one_dev = split_train_dev(utts[:1], 0.1, 1)
    assert one_train == one_dev == utts[:1]


@needs_espeak
def test_prepare_writes_upstream_layout(studio, prepared):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from engines.cosyvoice.parquet import shard_size

    out = Path(prepared.out_dir)
    assert prepared.version == "v2" and prepared.train_utts + prepared.dev_utts == len(SENTENCES)
    assert prepared.dev_utts == 1 and not prepared.skipped
    all_utts = set()
    for split in ("train", "dev"):
        d = out / split
        wav = _read_kaldi(d / "wav.scp")
        text = _read_kaldi(d / "text")
        utt2spk = _read_kaldi(d / "utt2spk")
        spk2utt = _read_kaldi(d / "spk2utt")
        assert not (d / "instruct").exists()  # v2 data has no instruct column
        assert set(wav) == set(text) == set(utt2spk) and not all_utts & set(wav)
        all_utts |= set(wav)
        assert set(utt2spk.values()) == {"alice"} and sorted(spk2utt["alice"].split()) == sorted(wav)
        for utt, path in wav.items():
            assert utt.startswith("alice_") and Path(path).is_absolute() and Path(path).is_file()
        assert set(text.values()) <= set(SENTENCES.values())

        utt2emb = _load_pt(d / "utt2embedding.pt")
        spk2emb = _load_pt(d / "spk2embedding.pt")
        utt2tok = _load_pt(d / "utt2speech_token.pt")
        assert set(utt2emb) == set(utt2tok) == set(wav) and set(spk2emb) == {"alice"}
        assert all(len(v) == 192 and isinstance(v[0], float) for v in utt2emb.values())
        assert np.allclose(spk2emb["alice"], np.mean([utt2emb[u] for u in sorted(utt2emb)], axis=0), atol=1e-6)

        listed = (d / "parquet" / "data.list").read_text().splitlines()
        assert len(listed) == math.ceil(len(wav) / shard_size(len(wav), 1, 1, 4))
        assert [Path(p).name for p in listed] == [f"parquet_{i:09d}.tar" for i in range(len(listed))]
        utt_maps = (d / "parquet" / "utt2data.list").read_text().splitlines()
        spk_maps = (d / "parquet" / "spk2data.list").read_text().splitlines()
        seen = []
        for shard, utt_map, spk_map in zip(listed, utt_maps, spk_maps):
            assert Path(shard).is_absolute() and Path(shard).is_file()
            pf = pq.ParquetFile(shard)
            assert pf.num_row_groups == 1
            table = pf.read()
            expected = [("utt", pa.string()), ("audio_data", pa.binary()), ("wav", pa.string()),
                        ("text", pa.string()), ("spk", pa.string()),
                        ("utt_embedding", pa.list_(pa.float64())), ("spk_embedding", pa.list_(pa.float64())),
                        ("speech_token", pa.list_(pa.int64()))]
            assert [(f.name, f.type) for f in table.schema] == expected
            rows = table.to_pylist()
            for row in rows:
                utt = row["utt"]
                seen.append(utt)
                assert row["wav"] == wav[utt]
                assert row["audio_data"] == Path(wav[utt]).read_bytes()
                assert row["text"] == text[utt] and row["spk"] == "alice"
                assert row["utt_embedding"] == utt2emb[utt]
                assert row["spk_embedding"] == spk2emb["alice"]
                assert row["speech_token"] == utt2tok[utt] and len(row["speech_token"]) > 0
            assert json.loads(Path(utt_map).read_text()) == {r["utt"]: shard for r in rows}
            assert json.loads(Path(spk_map).read_text()) == {"alice": shard}  # upstream leaves it empty
        assert sorted(seen) == sorted(wav)
    # the clip stored under "take one/" reaches upstream's whitespace-split files through a safe link
    spaced = [u for u in all_utts if u.endswith("clip_006")]
    assert spaced and " " not in _read_kaldi(out / "train" / "wav.scp").get(spaced[0], "x")


@needs_espeak
def test_prepare_resumes_and_survives_cancel(studio, prepared):
    import torch

    from engines.cosyvoice.dataprep import PrepareParams, prepare_cosyvoice_data

    ws = studio["ws"]
    out = Path(prepared.out_dir)
    params = PrepareParams(model_dir=str(studio["v2"]), speaker="alice", processes=1, dev_ratio=0.2, data_workers=1)
    shard = out / "train" / "parquet" / "parquet_000000000.tar"
    before = shard.stat().st_mtime_ns
    again = prepare_cosyvoice_data(ws, "alice", "alice_v2", params)
    assert again.computed == 0 and again.reused == len(SENTENCES)
    assert again.shards_written == 0 and shard.stat().st_mtime_ns == before

    # simulate an interrupted run: two train utterances lost their tokens
    tok_path = out / "train" / "utt2speech_token.pt"
    tokens = _load_pt(tok_path)
    lost = sorted(tokens)[:2]
    torch.save({k: v for k, v in tokens.items() if k not in lost}, tok_path)
    resumed = prepare_cosyvoice_data(ws, "alice", "alice_v2", params)
    assert resumed.computed == 2 and resumed.reused == len(SENTENCES) - 2
    assert _load_pt(tok_path) == tokens

    # cancel part-way through a forced run: the work done so far is saved, the rerun does the rest
    cancel = threading.Event()
    seen = []

    def progress(frac: float, msg: str) -> None:
        if msg.startswith("embeddings + speech tokens"):
            seen.append(msg)
            if len(seen) == 2:
                cancel.set()

    forced = PrepareParams(model_dir=str(studio["v2"]), speaker="alice", processes=1, dev_ratio=0.2,
                           data_workers=1, force=True)
    with pytest.raises(Cancelled):
        prepare_cosyvoice_data(ws, "alice", "alice_cancel", forced, Hooks(progress, None, cancel))
    partial = out.parent / "alice_cancel"
    saved = [partial / s / "utt2speech_token.pt" for s in ("train", "dev")]
    assert sum(len(_load_pt(p)) for p in saved if p.is_file()) == 2
    finish = prepare_cosyvoice_data(ws, "alice", "alice_cancel", params)
    assert finish.computed == len(SENTENCES) - 2


@needs_espeak
def test_process_pool_gives_same_features(studio, prepared):
    from engines.cosyvoice.dataprep import PrepareParams, prepare_cosyvoice_data

    params = PrepareParams(model_dir=str(studio["v2"]), speaker="alice", processes=2, dev_ratio=0.2, data_workers=1)
    pooled = prepare_cosyvoice_data(studio["ws"], "alice", "alice_pool", params)
    assert pooled.computed == len(SENTENCES)
    for split in ("train", "dev"):
        a = Path(prepared.out_dir) / split
        b = Path(pooled.out_dir) / split
        assert _load_pt(a / "utt2speech_token.pt") == _load_pt(b / "utt2speech_token.pt")
        ea, eb = _load_pt(a / "utt2embedding.pt"), _load_pt(b / "utt2embedding.pt")
        assert ea.keys() == eb.keys() and all(np.allclose(ea[k], eb[k], atol=1e-6) for k in ea)


@needs_espeak
def test_v3_instruct_long_and_dropped_clips(studio):
    import pyarrow.parquet as pq
    import soundfile as sf

    from engines.cosyvoice.dataprep import (
        ENDOFPROMPT,
        PrepareParams,
        prepare_cosyvoice_data,
    )
    from engines.dataset.transcripts import (
        drop_clip,
        import_transcripts,
        load_transcripts,
        set_text,
    )

    ws = studio["ws"]
    src = ws.dataset_dir("alice")
    ds = ws.dataset_dir("bob")
    (ds / "wavs").mkdir(parents=True)
    for name in ("clip_001", "clip_002", "clip_005"):
        shutil.copy(src / "clips" / f"{name}.wav", ds / "wavs" / f"{name}.wav")
    t = np.arange(16000 * 31) / 16000  # 31 s: upstream's tokenizer cannot take it
    sf.write(ds / "wavs" / "long.wav", (0.2 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 16000)
    (ds / "list.txt").write_text("clip_001|one\nclip_002|two\nclip_005|x\nlong|a very long take\n")
    assert import_transcripts(ds, ds / "list.txt").matched == 4
    drop_clip(ds, "wavs_clip_001")
    set_text(ds, "wavs_clip_005", "  Rice is often   served in round bowls .  ")
    assert load_transcripts(ds)["wavs_clip_005"]["text"] == "Rice is often served in round bowls."
    params = PrepareParams(model_dir=str(studio["v3"]), processes=1, instruct="Speak warmly.", data_workers=1,
                           dev_ratio=0.3)
    report = prepare_cosyvoice_data(ws, "bob", "bob_v3", params)
    assert report.version == "v3" and report.speaker == "bob"
    assert report.skipped["wavs_clip_001"] == "dropped by the user"
    assert report.skipped["wavs_long"].startswith("longer than 30 s (31.0 s)") and len(report.skipped) == 2
    assert (report.train_utts, report.dev_utts) == (1, 1)
    rows = []
    for split in ("train", "dev"):
        d = Path(report.out_dir) / split
        instruct = _read_kaldi(d / "instruct")
        assert set(instruct.values()) == {f"Speak warmly.{ENDOFPROMPT}"}
        for shard in (d / "parquet" / "data.list").read_text().split():
            table = pq.read_table(shard)
            assert table.schema.names[-1] == "instruct"
            rows += table.to_pylist()
    assert sorted(r["utt"] for r in rows) == ["bob_wavs_clip_002", "bob_wavs_clip_005"]
    assert {r["instruct"] for r in rows} == {f"Speak warmly.{ENDOFPROMPT}"}
    assert "Rice is often served in round bowls." in {r["text"] for r in rows}


def test_missing_model_file_names_it(ws, tmp_path):
    from tiny_cosyvoice_onnx import build_campplus

    from engines.cosyvoice.dataprep import PrepareParams, prepare_cosyvoice_data

    build_campplus(tmp_path / "model" / "campplus.onnx")
    with pytest.raises(MissingAssetError) as err:
        prepare_cosyvoice_data(ws, "none", "x", PrepareParams(model_dir=str(tmp_path / "model")))
    assert err.value.name == "speech_tokenizer_v2.onnx"
    assert "voicelab assets download cosyvoice/CosyVoice2-0.5B" in str(err.value)
    with pytest.raises(MissingAssetError) as err:
        prepare_cosyvoice_data(ws, "none", "x", PrepareParams())  # default model dir under assets/
    assert err.value.name == "campplus.onnx"


def test_transcript_import_formats_and_edits(tmp_path):
    from engines.dataset.transcripts import (
        clean_text,
        import_transcripts,
        load_transcripts,
        merge_transcriptions,
        set_text,
    )

    ds = tmp_path / "ds"
    for name in ("a", "b", "c", "d"):
        (ds / "wavs").mkdir(parents=True, exist_ok=True)
        (ds / "wavs" / f"{name}.wav").write_bytes(b"RIFF")
    (ds / "wavs" / "d.lab").write_text("text from a lab file\n")
    listing = tmp_path / "list.txt"
    listing.write_text("/elsewhere/wavs/a.wav|first line\nwavs_b second  line\nc|spk|ZH|第三行\nghost|nobody\n")
    rep = import_transcripts(ds, listing)
    assert rep.matched == 3 and rep.unmatched == ["ghost"] and rep.missing == ["wavs_d"]
    rep = import_transcripts(ds)  # .lab beside the clips
    assert rep.matched == 1 and rep.missing == []
    entries = load_transcripts(ds)
    assert entries["wavs_a"]["text"] == "first line" and entries["wavs_b"]["text"] == "second line"
    assert entries["wavs_c"]["language"] == "zh" and entries["wavs_d"]["text"] == "text from a lab file"
    assert all(e["edited"] for e in entries.values())
    assert merge_transcriptions(ds, {"wavs_a": ("asr text", "en")}) == 0  # never overwrites imported text
    (ds / "transcripts.json").write_text(json.dumps({"wavs_a": {"text": "old asr", "edited": False}}))
    assert merge_transcriptions(ds, {"wavs_a": ("new asr", "en")}) == 1
    set_text(ds, "wavs_b", "typed by hand")
    assert merge_transcriptions(ds, {"wavs_b": ("asr", "en")}) == 0
    assert load_transcripts(ds)["wavs_b"]["text"] == "typed by hand"
    assert clean_text(" Hello ,  world!!\n next\tline ") == "Hello, world!! next line"


@needs_espeak
def test_cli_prepare_and_transcripts(studio, prepared, capsys):
    from engines.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["cosyvoice", "prepare", "alice", "--out", "alice_v2", "--model-dir", str(studio["v2"]),
                              "--speaker", "alice", "--processes", "1", "--dev-ratio", "0.2",
                              "--data-workers", "1", "--quiet", "--json"])
    assert args.func(args, studio["ws"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["computed"] == 0 and report["train_list"] == prepared.train_list
    args = parser.parse_args(["cosyvoice", "transcripts", "alice", "--json"])
    assert args.func(args, studio["ws"]) == 0
    assert json.loads(capsys.readouterr().out)["clip_003"]["text"] == SENTENCES["clip_003"]


def test_import_matches_original_source_names(tmp_path):
    from engines.dataset.transcripts import (
        dataset_clips,
        import_transcripts,
        load_transcripts,
        transcript_table,
    )

    ds = tmp_path / "ds"
    (ds / "clips").mkdir(parents=True)
    clips = []
    for cid, source in (("000001", "/home/u/raw/vocal_a.wav"), ("000002", "long.flac"), ("000003", "long.flac")):
        (ds / "clips" / f"{cid}.wav").write_bytes(b"RIFF")
        clips.append({"id": cid, "file": f"clips/{cid}.wav", "source": source, "duration": 1.5, "sample_rate": 40000})
    clips.append({"id": "000004", "file": "clips/gone.wav"})  # not on disk: not a clip
    (ds / "manifest.json").write_text(json.dumps({"name": "ds", "clips": clips}))
    found = dataset_clips(ds)
    assert [c.id for c in found] == ["000001", "000002", "000003"] and found[0].rate == 40000
    listing = tmp_path / "list.txt"
    listing.write_text("vocal_a.wav|hello there\nlong.flac|cut into two clips, so ambiguous\n000003|by clip id\n")
    rep = import_transcripts(ds, listing)
    assert rep.matched == 2 and rep.unmatched == ["long.flac"] and rep.missing == ["000002"]
    entries = load_transcripts(ds)
    assert entries["000001"]["text"] == "hello there" and entries["000003"]["text"] == "by clip id"
    table = transcript_table(ds)
    assert [(r.clip_id, r.text, r.edited) for r in table] == [
        ("000001", "hello there", True), ("000002", "", False), ("000003", "by clip id", True)]
    assert table[0].duration == 1.5 and table[0].path.endswith("clips/000001.wav")
