"""Content encoder: fairseq golden, both checkpoint formats, safe unpickling, windowing."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_hubert import make_tiny_fairseq_hubert, make_tiny_hubert

from engines.core.errors import (
    Cancelled,
    InvalidInputError,
    InvalidModelError,
    MissingAssetError,
)
from engines.core.hooks import Hooks
from engines.rvc.content.hubert import load_content_encoder, parse_conv_layers
from engines.rvc.safe_pickle import safe_torch_load

GOLDEN = Path(__file__).parent / "golden" / "hubert"


@pytest.fixture(scope="module")
def golden_encoder():
    return load_content_encoder(GOLDEN / "hubert_base.pt")


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_fairseq_checkpoint_matches_fairseq_features(golden_encoder, version):
    audio = np.load(GOLDEN / "input.npy")
    expected = np.load(GOLDEN / f"feats_{version}.npy")
    feats = golden_encoder.extract(audio, version=version)
    assert isinstance(feats, torch.Tensor) and feats.dtype == torch.float32
    assert tuple(feats.shape) == expected.shape  # 149 frames for 3 s, as fairseq
    np.testing.assert_allclose(feats.numpy(), expected, atol=1e-4, rtol=0)
    assert golden_encoder.num_frames(audio.size) == expected.shape[0]


@pytest.mark.parametrize("cfg_style", ["dict", "omegaconf", "namespace"])
def test_test_written_fairseq_checkpoint_loads_like_transformers_copy(tmp_path, cfg_style):
    ckpt = make_tiny_fairseq_hubert(tmp_path / "hubert_base.pt", transformers_copy=tmp_path / "hf", cfg_style=cfg_style)
    raw = safe_torch_load(ckpt)  # the pickled fairseq Dictionary becomes an inert record
    assert type(raw["task_state"]["dictionaries"][0]).__name__ == "InertDictionary"
    fairseq_enc = load_content_encoder(ckpt)
    hf_enc = load_content_encoder(tmp_path / "hf")
    assert fairseq_enc.info.source_format == "fairseq" and hf_enc.info.source_format == "transformers"
    audio = np.random.default_rng(1).standard_normal(16000).astype(np.float32) * 0.1
    for version, dim in (("v1", 16), ("v2", 32)):
        a = fairseq_enc.extract(audio, version)
        b = hf_enc.extract(torch.from_numpy(audio), version)  # tensors are accepted too
        assert a.shape == (49, dim)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo owned > owned.txt",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_restricted_unpickler_refuses_code_execution(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "payload": _Exploit()}, str(evil))
    with pytest.raises(InvalidModelError) as err:
        load_content_encoder(evil)
    assert "system" in str(err.value) and "Refused" in str(err.value)
    assert not (tmp_path / "owned.txt").exists()
    plain = tmp_path / "plain.pkl"  # a bare pickle (not torch format) is refused too
    plain.write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(InvalidModelError):
        safe_torch_load(plain)
    assert not (tmp_path / "owned.txt").exists()


def test_conv_spec_is_parsed_without_eval():
    assert parse_conv_layers("[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2") == (
        [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
    )
    with pytest.raises(InvalidModelError):
        parse_conv_layers("__import__('os').system('true')")


def test_tiny_transformers_dir_has_real_dimensions(tmp_path, caplog):
    lines: list[str] = []
    enc = load_content_encoder(make_tiny_hubert(tmp_path / "tiny"), hooks=Hooks(log=lines.append))
    audio = np.random.default_rng(2).standard_normal(8000).astype(np.float32) * 0.1
    with caplog.at_level(logging.WARNING):
        v2 = enc.extract(audio, "v2")
        v2_again = enc.extract(audio, version="v2")
        v1 = enc.extract(audio, "v1")
    assert v2.shape == (24, 768) and v1.shape == (24, 256)
    torch.testing.assert_close(v2, v2_again)
    assert enc.dim("v1") == 256 and enc.dim("v2") == 768
    # 2 layers instead of 12/9: said once per tap, not per call
    assert sum("using its last layer" in line for line in lines) == 2
    with pytest.raises(InvalidInputError):
        enc.extract(audio, "v3")
    with pytest.raises(InvalidInputError):
        enc.extract(np.zeros(100, np.float32), "v2")  # shorter than one frame


def test_transformers_dir_without_final_proj_only_does_v2(tmp_path):
    d = make_tiny_hubert(tmp_path / "tiny", hidden=64, conv_dim=16, final_dim=16)
    from safetensors.torch import load_file, save_file

    weights = load_file(str(d / "model.safetensors"))
    save_file({k: v for k, v in weights.items() if not k.startswith("final_proj")}, str(d / "model.safetensors"))
    enc = load_content_encoder(d)
    audio = np.zeros(4000, np.float32)
    assert enc.extract(audio, "v2").shape == (12, 64)
    with pytest.raises(InvalidModelError, match="final_proj"):
        enc.extract(audio, "v1")


def test_conv_front_end_in_pieces_is_exact(golden_encoder, monkeypatch):
    audio = np.load(GOLDEN / "input.npy")
    monkeypatch.setattr(golden_encoder, "conv_piece_frames", 7)  # 149 frames -> 22 pieces
    feats = golden_encoder.extract(audio, "v2")
    np.testing.assert_allclose(feats.numpy(), np.load(GOLDEN / "feats_v2.npy"), atol=1e-4, rtol=0)


def test_windowed_extraction_matches_one_shot(golden_encoder):
    t = np.arange(16000 * 6) / 16000
    rng = np.random.default_rng(3)
    audio = (0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.1 * np.sin(t))) + 0.05 * rng.standard_normal(t.size))
    audio = audio.astype(np.float32)
    whole = golden_encoder.extract(audio, "v2")
    windowed = golden_encoder.extract(audio, "v2", window_seconds=2.5, context_seconds=0.6)
    assert windowed.shape == whole.shape == (299, 32)
    rel = (windowed - whole).norm() / whole.norm()
    assert rel < 0.03, rel  # measured ~0.008: only attention sees the window edges
    stop = Hooks()
    stop.cancel_event.set()
    with pytest.raises(Cancelled):
        golden_encoder.extract(audio, "v2", window_seconds=2.5, context_seconds=0.6, hooks=stop)


def test_missing_checkpoint_names_file_place_and_command(tmp_path):
    with pytest.raises(MissingAssetError) as err:
        load_content_encoder(tmp_path / "assets" / "hubert" / "hubert_base.pt")
    text = str(err.value)
    assert "hubert_base.pt" in text and "assets/hubert/hubert_base.pt" in text.replace(os.sep, "/")
    assert "voicelab assets download hubert_base" in text


def test_non_hubert_file_is_rejected(tmp_path):
    bad = tmp_path / "not_hubert.pt"
    torch.save({"model": {"weight": torch.zeros(3)}}, str(bad))
    with pytest.raises(InvalidModelError, match="HuBERT"):
        load_content_encoder(bad)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(InvalidModelError):
        load_content_encoder(junk)
