"""Content encoders recorded in models: the catalogue, what small models and experiments record, which file converts."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from engines.core.errors import InvalidInputError, InvalidModelError, MissingAssetError
from engines.core.settings import Settings
from engines.rvc import encoders
from engines.rvc.checkpoints import extract_small_model, merge_models, model_info, save_small_model


@pytest.fixture
def settings(tmp_path):
    return Settings(assets_dir=str(tmp_path / "assets"))


def test_catalogue_names_and_manifest_entries():
    from engines.assets.manifest import fix_command, load_manifest

    m = load_manifest()
    for enc in encoders.ENCODERS.values():
        for asset in enc.assets:
            assert asset in m.assets, asset
    for asset in ("chinese_hubert_base", "spin", "spin_v2", "japanese_hubert_base", "korean_hubert_base"):
        spec = m.assets[asset]
        assert spec.kind == "dir" and [f.path for f in spec.files] == ["pytorch_model.bin", "config.json"]
        assert spec.hf_repo and len(spec.hf_files) == 2 and spec.size == 0 and spec.sha256 == ""  # nothing invented
        assert fix_command(spec).startswith(f"voicelab assets download {asset}")
    # Applio's spellings (and no record at all) map onto the catalogue
    assert encoders.canonical_encoder("chinese-hubert-base") == "chinese_hubert_base"
    assert encoders.canonical_encoder("contentvec") == encoders.canonical_encoder(None) == "hubert_base"
    assert encoders.canonical_encoder("SPIN-v2") == "spin_v2"
    assert encoders.canonical_encoder("japanese-hubert-large") is None


def test_what_a_model_records_for_an_encoder_path(settings, tmp_path):
    assert encoders.encoder_record(None, settings) == {"embedder_model": "hubert_base"}
    assert encoders.encoder_record(settings.resolved_hubert(), settings) == {"embedder_model": "hubert_base"}
    cn = tmp_path / "assets" / "hubert" / "chinese_hubert_base"
    assert encoders.encoder_record(cn, settings) == {"embedder_model": "chinese_hubert_base"}
    other = tmp_path / "my-encoder"
    rec = encoders.encoder_record(other, settings)
    assert rec == {"embedder_model": "custom", "embedder_path": str(other.resolve())}
    assert encoders.recorded_encoder(rec) == ("custom", str(other.resolve()))
    assert encoders.recorded_encoder({}) == ("hubert_base", "")
    assert encoders.recorded_encoder({"embedder_model": "korean-hubert-base"}) == ("korean_hubert_base", "")


def test_small_models_record_the_encoder_from_their_experiment_and_keep_it(settings, tmp_path):
    from tiny_rvc import make_tiny_generator_checkpoint, make_tiny_voice

    exp = tmp_path / "experiments" / "cn"
    g = make_tiny_generator_checkpoint(exp / "G_40.pth", "v2", "40k", f0=True, epoch=4)
    encoders.write_experiment_encoder(exp, {"embedder_model": "chinese_hubert_base"})
    small = extract_small_model(g, tmp_path / "weights" / "cn.pth")
    raw = torch.load(small, map_location="cpu", weights_only=True)
    assert raw["embedder_model"] == "chinese_hubert_base" and raw["epoch"] == 4
    info = model_info(small)
    assert (info["encoder"], info["encoder_path"]) == ("chinese_hubert_base", "")
    assert model_info(g)["encoder"] == "chinese_hubert_base"  # the checkpoint itself, through encoder.json
    # an older model (no key) means HuBERT base; merging it with the Chinese one is refused
    old = make_tiny_voice(tmp_path / "weights" / "old.pth", "v2", "40k", f0=True, seed=1)
    assert model_info(old)["encoder"] == "hubert_base"
    with pytest.raises(InvalidInputError, match="different content encoders"):
        merge_models(small, old, 0.5, tmp_path / "weights" / "mix.pth")
    # an extract from a small model keeps the record; an explicit record wins
    again = extract_small_model(small, tmp_path / "weights" / "cn2.pth")
    assert model_info(again)["encoder"] == "chinese_hubert_base"
    custom = extract_small_model(g, tmp_path / "weights" / "cn3.pth",
                                 encoder=encoders.encoder_record(tmp_path / "enc", settings))
    assert model_info(custom)["encoder"] == "custom"
    merged = merge_models(small, again, 0.5, tmp_path / "weights" / "cn_merged.pth")
    assert model_info(merged)["encoder"] == "chinese_hubert_base"


def test_encoder_for_model_finds_the_file_or_says_how_to_get_it(settings, tmp_path):
    info = {"path": "/w/voice.pth", "encoder": "chinese_hubert_base", "encoder_path": ""}
    with pytest.raises(MissingAssetError) as err:
        encoders.encoder_for_model(info, settings)
    assert "hubert/chinese_hubert_base" in err.value.message and "voice.pth" in err.value.message
    assert "voicelab assets download chinese_hubert_base" in err.value.hint
    folder = tmp_path / "assets" / "hubert" / "chinese_hubert_base"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    with pytest.raises(MissingAssetError, match="pytorch_model.bin missing"):  # an incomplete folder is not used
        encoders.encoder_for_model(info, settings)
    (folder / "pytorch_model.bin").write_bytes(b"w")
    assert encoders.encoder_for_model(info, settings) == folder
    # raw model fields work as well as model_info's dict
    assert encoders.encoder_for_model({"embedder_model": "chinese-hubert-base"}, settings) == folder
    # HuBERT base: the configured file, else the transformers-format copy
    with pytest.raises(MissingAssetError, match="hubert_base.pt"):
        encoders.encoder_for_model({"extra": {}}, settings)
    cv = tmp_path / "assets" / "hubert" / "contentvec"
    cv.mkdir(parents=True)
    (cv / "config.json").write_text("{}")
    (cv / "pytorch_model.bin").write_bytes(b"w")
    assert encoders.encoder_for_model({"extra": {}}, settings) == cv
    settings.resolved_hubert().write_bytes(b"pt")
    assert encoders.encoder_for_model({"encoder": "hubert_base"}, settings) == settings.resolved_hubert()
    # custom: its path, or a clear error; an unknown name: a clear error
    with pytest.raises(InvalidModelError, match="custom content encoder at /nowhere"):
        encoders.encoder_for_model({"encoder": "custom", "encoder_path": "/nowhere"}, settings)
    assert encoders.encoder_for_model({"encoder": "custom", "encoder_path": str(cv)}, settings) == cv
    with pytest.raises(InvalidModelError, match="'japanese-hubert-large', which VoiceLab does not know"):
        encoders.encoder_for_model({"embedder_model": "japanese-hubert-large"}, settings)


def _tone(seconds: float, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 160 * t)).astype(np.float32)


def test_a_model_trained_with_another_encoder_converts_with_it(ws, tmp_path):
    """A tiny non-default encoder installed where the catalogue expects it: the model's record picks it."""
    from test_rvc_convert import make_fast_voice
    from tiny_hubert import make_tiny_hubert

    from engines.rvc.checkpoints import read_generator
    from engines.rvc.infer.convert import ConvertParams, convert_files

    ws.settings.assets_dir = str(tmp_path / "assets")
    default = make_tiny_hubert(tmp_path / "default-hubert", hidden=32, layers=1, conv_dim=8, heads=2, ffn=32, seed=0)
    ws.settings.hubert_path = str(default)
    chinese = make_tiny_hubert(tmp_path / "assets" / "hubert" / "chinese_hubert_base", hidden=32, layers=1,
                               conv_dim=8, heads=2, ffn=32, seed=7)
    (chinese / "pytorch_model.bin").write_bytes(b"")  # the manifest's listed file; the weights are in model.safetensors
    plain = make_fast_voice(tmp_path / "plain.pth", "v1", "40k", f0=True)
    gen = read_generator(plain)
    record = encoders.encoder_record(chinese, ws.settings)
    voice = save_small_model(gen.weights, sr_tag="40k", f0=True, version="v1", info="cn", config=gen.config,
                             path=ws.weights / "cn.pth", extra=record)
    enc = encoders.encoder_for_model(model_info(voice), ws.settings)
    assert enc == chinese
    src = tmp_path / "in.wav"
    sf.write(src, _tone(0.8), 16000)
    params = ConvertParams(f0_method="pm", seed=1)
    with_own = convert_files(ws, voice, [src], params, out_dir=tmp_path / "a", encoder_path=enc)
    with_default = convert_files(ws, voice, [src], params, out_dir=tmp_path / "b", encoder_path=default)
    recorded = convert_files(ws, voice, [src], params, out_dir=tmp_path / "c")  # no encoder given
    a, sr = sf.read(with_own.converted[0].output)
    b, _ = sf.read(with_default.converted[0].output)
    c, _ = sf.read(recorded.converted[0].output)
    assert sr == 40000 and len(a) == len(b) == round(0.8 * 40000)
    assert np.abs(a - b).max() > 1e-3  # the encoder really changes what the voice hears
    assert np.array_equal(a, c)  # and by default conversion uses the one the model was trained with
