"""Pretrained G/D catalogue (official + custom, read from the files) and the training preflight's mismatch check."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch

from engines.core.errors import InvalidInputError
from engines.core.ops import run_inline
from engines.core.settings import Workspace


def tiny_g(path: Path, version: str = "v2", sr: str = "40k", f0: bool = True) -> Path:
    """A pretrained-style generator file ({"model": state dict}, enc_q included) of the real architecture."""
    from tiny_rvc import make_tiny_synthesizer

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": make_tiny_synthesizer(version, sr, f0).state_dict()}, path)
    return path


def full_d(path: Path, version: str = "v2") -> Path:
    from engines.rvc.models.discriminator import MultiPeriodDiscriminator

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": MultiPeriodDiscriminator(version).state_dict()}, path)
    return path


@pytest.fixture
def wsa(tmp_path, monkeypatch):
    for var in ("VOICELAB_HOME", "VOICELAB_ASSETS", "VOICELAB_HUBERT"):
        monkeypatch.delenv(var, raising=False)
    return Workspace.open(tmp_path / "ws", overrides={"assets_dir": str(tmp_path / "assets")})


def test_catalogue_reads_official_and_custom_files(wsa, tmp_path):
    assets = tmp_path / "assets"
    rows = run_inline("rvc.pretrained", {"sr": "40k", "version": "v2", "f0": True}, wsa)["sets"]
    assert rows[0]["source"] == "official" and not rows[0]["present"] and not rows[0]["fits"]
    assert "voicelab assets download pretrained_v2/f0G40k" in rows[0]["fix"]
    # an "official" file that is really a 48k model: the file, not its name, decides
    tiny_g(assets / "pretrained_v2" / "f0G40k.pth", sr="48k")
    full_d(assets / "pretrained_v2" / "f0D40k.pth")
    # custom sets: one per folder (G/D paired by name when a folder holds several)
    tiny_g(assets / "pretrained_custom" / "KLM" / "G_KLM.pth")
    full_d(assets / "pretrained_custom" / "KLM" / "D_KLM.pth")
    tiny_g(assets / "pretrained_custom" / "mix" / "f0G40k.pth")
    full_d(assets / "pretrained_custom" / "mix" / "f0D40k.pth")
    tiny_g(assets / "pretrained_custom" / "mix" / "f0G32k.pth", sr="32k")
    full_d(assets / "pretrained_custom" / "mix" / "f0D32k.pth", version="v1")
    (assets / "pretrained_custom" / "junk.pth").write_bytes(b"not a model")
    res = run_inline("rvc.pretrained", {"sr": "40k", "version": "v2", "f0": True}, wsa)
    by_name = {r["name"]: r for r in res["sets"]}
    official = by_name["official v2 40k f0"]
    assert official["present"] and not official["fits"] and "f0G40k.pth is 48k, not 40k" in official["why"]
    assert official["g_info"] == "RVC v2 48k generator with pitch" and official["d_info"] == "RVC v2 discriminator"
    assert by_name["KLM"]["fits"] and by_name["KLM"]["d"].endswith("D_KLM.pth")
    assert by_name["mix/f0G40k"]["fits"]
    assert not by_name["mix/f0G32k"]["fits"] and "32k, not 40k" in by_name["mix/f0G32k"]["why"]
    assert "RVC v1, not v2" in by_name["mix/f0G32k"]["why"]  # its D is a v1 discriminator
    assert not by_name["./junk"]["fits"] and "junk.pth" in by_name["./junk"]["why"]
    assert res["fitting"] == ["KLM", "mix/f0G40k"]
    from voicelab_ui.tabs import rvc_train  # the Train tab offers exactly the fitting sets, labelled from the files

    assert rvc_train.pretrained_sets(wsa, "40k", "v2", True) == [
        ("KLM (RVC v2 40k generator with pitch)", "KLM"), ("mix/f0G40k (RVC v2 40k generator with pitch)", "mix/f0G40k")]
    g, d = rvc_train.pretrained_set_files(wsa, "KLM", "40k", "v2", True)
    assert g.endswith("G_KLM.pth") and d.endswith("D_KLM.pth")
    assert rvc_train.pretrained_set_files(wsa, "mix/f0G32k", "40k", "v2", True) is None  # does not fit: not offered
    cache = json.loads((assets / ".pretrained-cache.json").read_text())
    assert len(cache) == 8 and all(v["stamp"] for v in cache.values())  # read once, remembered
    no_f0 = {r["name"]: r for r in run_inline("rvc.pretrained", {"sr": "40k", "f0": False}, wsa)["sets"]}
    assert "without pitch guidance, the experiment" not in no_f0["KLM"]["why"]
    assert "with pitch guidance, the experiment has none" in no_f0["KLM"]["why"]


def test_training_refuses_a_pretrained_that_does_not_fit(wsa, tmp_path):
    from tiny_hubert import make_tiny_hubert

    hubert = make_tiny_hubert(tmp_path / "hubert", hidden=32, layers=1, conv_dim=8, heads=2, ffn=32)
    data = tmp_path / "voice"
    data.mkdir()
    base = {"exp_name": "fresh", "dataset": str(data), "sr": "40k", "version": "v2", "f0": True, "f0_method": "pm",
            "hubert_path": str(hubert)}
    g48 = tiny_g(tmp_path / "p" / "f0G48k.pth", sr="48k")
    d2 = full_d(tmp_path / "p" / "f0D48k.pth")
    with pytest.raises(InvalidInputError) as err:
        run_inline("rvc.train", {**base, "pretrained_g": str(g48), "pretrained_d": str(d2)}, wsa)
    assert "does not fit this experiment (v2 40k, with pitch)" in err.value.message
    assert "f0G48k.pth is 48k, not 40k" in err.value.message and "voicelab rvc pretrained" in err.value.hint
    assert not (wsa.experiment_dir("fresh") / "0_gt_wavs").exists()  # refused before any work
    g40 = tiny_g(tmp_path / "p" / "f0G40k.pth")
    with pytest.raises(InvalidInputError, match="RVC v1, not v2"):
        run_inline("rvc.train", {**base, "pretrained_g": str(g40), "pretrained_d": str(full_d(tmp_path / "d1.pth", "v1"))},
                   wsa)
    with pytest.raises(InvalidInputError, match="is a RVC v2 40k generator with pitch, not a discriminator"):
        run_inline("rvc.train", {**base, "pretrained_g": str(g40), "pretrained_d": str(g40)}, wsa)
    no_f0 = tiny_g(tmp_path / "p" / "G40k.pth", f0=False)
    with pytest.raises(InvalidInputError, match="without pitch guidance, the experiment uses it"):
        run_inline("rvc.train", {**base, "pretrained_g": str(no_f0)}, wsa)


def test_a_downloaded_pretrained_set_is_imported_into_the_custom_folder(wsa, tmp_path, monkeypatch):
    from engines.cli import main

    monkeypatch.setenv("VOICELAB_ASSETS", str(tmp_path / "assets"))  # the CLI reads its settings itself
    zpath = tmp_path / "TITAN.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(tiny_g(tmp_path / "s" / "G-f048k-TITAN.pth", sr="48k"), "TITAN/G-f048k-TITAN.pth")
        zf.write(full_d(tmp_path / "s" / "D-f048k-TITAN.pth"), "TITAN/D-f048k-TITAN.pth")
    assert main(["--workspace", str(wsa.root), "rvc", "import", str(zpath), "--as", "pretrained", "--quiet"]) == 0
    folder = tmp_path / "assets" / "pretrained_custom" / "TITAN"
    assert sorted(p.name for p in folder.glob("*.pth")) == ["D-f048k-TITAN.pth", "G-f048k-TITAN.pth"]
    assert json.loads((folder / "G-f048k-TITAN.source.json").read_text())["source"] == str(zpath)
    fitting = run_inline("rvc.pretrained", {"sr": "48k", "version": "v2"}, wsa)["fitting"]
    assert fitting == ["TITAN"]
    # a pretrained set is not taken for voices
    with pytest.raises(InvalidInputError, match="--as pretrained"):
        run_inline("rvc.import", {"source": str(zpath)}, wsa)
