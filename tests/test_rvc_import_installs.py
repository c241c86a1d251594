"""Importing RVC WebUI and Applio installs: their voices, and a training run that then resumes here.

The run's data (pieces, pitch, features) is made by our upstream-compatible
pipeline and laid out the way each tool lays out ``logs/<exp>`` (looked up
in their sources: RVC WebUI 0_gt_wavs/1_16k_wavs/2a_f0/2b-f0nsf/3_feature768,
voices in assets/weights; Applio sliced_audios/sliced_audios_16k/f0/f0_voiced/
extracted + model_info.json, voices <exp>_<E>e_<S>s.pth beside the run).
The generator is a tiny one of the real architecture, the discriminator
upstream's full size.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from engines.core.errors import InvalidInputError
from engines.core.settings import Workspace
from engines.rvc.model_import import import_models
from engines.rvc.model_import.install import read_sidecar
from engines.rvc.ops.catalog import guess_index, saved_files
from engines.rvc.train.experiment import experiment_paths, list_checkpoints

SEGMENT = 640
RENAMES_APPLIO = {"0_gt_wavs": "sliced_audios", "1_16k_wavs": "sliced_audios_16k", "2a_f0": "f0",
                  "2b-f0nsf": "f0_voiced", "3_feature768": "extracted"}


@pytest.fixture(scope="module")
def run_data(tmp_path_factory):
    """A prepared experiment (our layout = RVC WebUI's), a tiny G and a full D checkpoint, an index."""
    from speech import espeak_wav
    from tiny_hubert import make_tiny_hubert
    from tiny_rvc import make_tiny_generator_checkpoint, tiny_config

    from engines.rvc.index import IndexParams, build_index
    from engines.rvc.models.discriminator import MultiPeriodDiscriminator
    from engines.rvc.train.launch import prepare_experiment
    from engines.rvc.train.params import TrainParams

    root = tmp_path_factory.mktemp("foreign")
    scratch = Workspace(root=root / "scratch")
    scratch.ensure()
    data = root / "voice"
    data.mkdir()
    espeak_wav("Hello there, this is a short training sentence.", "en", data / "a.wav", sr=22050)
    hubert = make_tiny_hubert(root / "hubert")
    params = TrainParams(exp_name="myexp", dataset=str(data), sr="32k", version="v2", f0=True, f0_method="pm",
                         hubert_path=str(hubert), n_processes=1, add_mute=False)
    prepare_experiment(scratch, params)
    exp = scratch.experiment_dir("myexp")
    index = build_index(scratch, "myexp", IndexParams(version="v2")).index_path
    g = make_tiny_generator_checkpoint(root / "G_2.pth", "v2", "32k", f0=True, epoch=1)
    net_d = MultiPeriodDiscriminator("v2")
    opt = torch.optim.AdamW(net_d.parameters(), lr=1e-4, betas=(0.8, 0.99), eps=1e-9)
    torch.save({"model": net_d.state_dict(), "iteration": 1, "optimizer": opt.state_dict(), "learning_rate": 1e-4},
               root / "D_2.pth")
    return {"exp": exp, "index": index, "g": g, "d": root / "D_2.pth", "hubert": hubert, "tiny": tiny_config("v2", "32k")}


def _copy_run(data: dict, dest: Path, renames: dict[str, str] | None = None) -> Path:
    from engines.rvc.models.configs import train_config

    dest.mkdir(parents=True)
    for sub in ("0_gt_wavs", "1_16k_wavs", "2a_f0", "2b-f0nsf", "3_feature768"):
        shutil.copytree(data["exp"] / sub, dest / (renames or {}).get(sub, sub))
    (dest / "config.json").write_text(json.dumps(train_config("v2", "32k")))  # upstream writes the full-size config
    (dest / "filelist.txt").write_text("/home/someone/RVC/logs/myexp/0_gt_wavs/0_0.wav|...|0\n")  # their paths
    shutil.copyfile(data["g"], dest / "G_2.pth")
    shutil.copyfile(data["d"], dest / "D_2.pth")
    shutil.copyfile(data["index"], dest / data["index"].name)
    return dest


def _small_model(g: Path, out: Path, **extra) -> Path:
    from engines.rvc.checkpoints import read_generator, save_small_model

    gen = read_generator(g)
    return save_small_model(gen.weights, sr_tag="32k", f0=True, version="v2", info="1epoch", config=gen.config,
                            path=out, extra=extra)


def _resume(ws: Workspace, data: dict, exp: str) -> dict:
    from engines.core.ops import run_inline

    return run_inline("rvc.train", {
        "exp_name": exp, "sr": "32k", "version": "v2", "f0": True, "f0_method": "pm", "skip_preprocess": True,
        "skip_f0": True, "skip_feature": True, "total_epoch": 2, "batch_size": 1, "save_every_epoch": 1,
        "hubert_path": str(data["hubert"]), "n_processes": 1, "loader_workers": 0, "log_interval": 1,
        "segment_size": SEGMENT, "model_config": data["tiny"], "add_mute": False}, ws)


@pytest.mark.slow
def test_rvc_webui_install_voices_and_a_run_that_resumes(ws, tmp_path, run_data):
    install = tmp_path / "RVC-WebUI"
    run = _copy_run(run_data, install / "logs" / "myexp")
    _small_model(run_data["g"], install / "assets" / "weights" / "myexp.pth")
    _small_model(run_data["g"], install / "assets" / "weights" / "myexp_e1_s2.pth")
    for asset in ("assets/hubert/hubert_base.pt", "assets/pretrained_v2/f0G40k.pth", "assets/rmvpe/rmvpe.pt"):
        (install / asset).parent.mkdir(parents=True, exist_ok=True)
        (install / asset).write_bytes(b"not read: assets are imported with voicelab assets import")
    for sub in ("0_gt_wavs", "3_feature768"):  # upstream's shared silent pieces: not a run
        (install / "logs" / "mute" / sub).mkdir(parents=True)
    shutil.copyfile(next((run / "3_feature768").glob("*.npy")), install / "logs" / "mute" / "3_feature768" / "mute.npy")

    res = import_models(ws, str(install))  # voices only; the run is offered
    assert res["layout"] == "rvc-webui" and res["experiments"] == [] and res["experiments_available"] == ["myexp"]
    assert sorted(v["name"] for v in res["voices"]) == ["myexp.pth", "myexp_e1_s2.pth"]
    assert guess_index(ws, ws.weights / "myexp_e1_s2.pth") == ws.indices / "myexp.index"  # logs/myexp/added_...
    assert not res["skipped"]  # the asset folders were not even read
    with pytest.raises(InvalidInputError, match="No training run named nope"):
        import_models(ws, str(install), experiments=["nope"])

    res = import_models(ws, str(install), experiments=["myexp"])
    assert [v["action"] for v in res["voices"]] == ["already", "already"]
    (exp,) = res["experiments"]
    paths = experiment_paths(ws, "myexp")
    assert exp["path"] == str(paths.root) and (exp["version"], exp["sr"], exp["f0"], exp["epoch"]) == ("v2", "32k", True, 1)
    assert exp["pieces"] == len(list((run / "0_gt_wavs").glob("*.wav"))) > 0 and exp["filelist_entries"] == exp["pieces"]
    assert all(str(paths.root) in line for line in paths.filelist.read_text().splitlines())  # our paths, not theirs
    assert json.loads((paths.root / "encoder.json").read_text()) == {"embedder_model": "hubert_base"}
    assert "--skip-preprocess --skip-f0 --skip-feature" in exp["resume"]
    assert not [p for p in ws.experiments.iterdir() if p.name.startswith(".")]  # no temporary folder left
    with pytest.raises(InvalidInputError, match="already exists"):
        import_models(ws, str(install), experiments=["myexp"])

    out = _resume(ws, run_data, "myexp")
    assert out["resumed_from"] == str(paths.root / "G_2.pth")
    assert out["epochs"] == 2 and out["steps"] > 0
    newest = list_checkpoints(paths.root, "G")[-1][1]
    assert torch.load(newest, map_location="cpu", weights_only=True)["iteration"] == 2  # one more epoch trained here


@pytest.mark.slow
def test_applio_install_voices_and_a_run_that_resumes(ws, tmp_path, run_data):
    install = tmp_path / "Applio"
    (install / "rvc" / "models" / "pretraineds").mkdir(parents=True)
    run = _copy_run(run_data, install / "logs" / "myexp", RENAMES_APPLIO)
    (run / "model_info.json").write_text(json.dumps({"embedder_model": "chinese-hubert-base",
                                                     "total_dataset_duration": 3.1, "speakers_id": 1}))
    _small_model(run_data["g"], run / "myexp_1e_2s.pth", embedder_model="chinese-hubert-base", vocoder="HiFi-GAN")
    # an older Applio wrote parametrised weight-norm keys: the import rewrites them to the ones our networks load
    g = torch.load(run / "G_2.pth", map_location="cpu", weights_only=True)
    g["model"] = {k.replace(".weight_g", ".parametrizations.weight.original0")
                  .replace(".weight_v", ".parametrizations.weight.original1"): v for k, v in g["model"].items()}
    torch.save(g, run / "G_2.pth")

    res = import_models(ws, str(install), experiments=["all"], name="from-applio")
    assert res["layout"] == "applio"
    (exp,) = res["experiments"]
    assert exp["name"] == "from-applio" and exp["embedder_model"] == "chinese_hubert_base"
    paths = experiment_paths(ws, "from-applio")
    assert sorted(p.name for p in paths.root.iterdir() if p.is_dir()) == [
        "0_gt_wavs", "1_16k_wavs", "2a_f0", "2b-f0nsf", "3_feature768"]
    saved = torch.load(paths.root / "G_2.pth", map_location="cpu", weights_only=True)["model"]
    assert not any("parametrizations" in k for k in saved) and any(k.endswith(".weight_g") for k in saved)
    # the run's voice follows the run's new name, in the studio's checkpoint naming, paired with its index
    (v,) = res["voices"]
    assert v["name"] == "from-applio_e1_s2.pth" and v["encoder"] == "chinese_hubert_base"
    assert [s.path.name for s in saved_files(ws, "from-applio") if s.kind == "model"] == ["from-applio_e1_s2.pth"]
    assert read_sidecar(ws.weights / v["name"])["member"] == "logs/myexp/myexp_1e_2s.pth"
    assert guess_index(ws, ws.weights / v["name"]).parent == ws.indices

    out = _resume(ws, run_data, "from-applio")
    assert out["resumed_from"] == str(paths.root / "G_2.pth") and out["epochs"] == 2
    # a run folder given directly is imported as a run (its name from the folder)
    res = import_models(ws, str(run))
    assert res["layout"] == "experiment" and res["experiments"][0]["name"] == "myexp"


def test_a_run_whose_discriminator_is_of_another_version_is_refused(ws, tmp_path, run_data):
    from engines.rvc.models.discriminator import MultiPeriodDiscriminator

    run = _copy_run(run_data, tmp_path / "logs" / "bad")
    torch.save({"model": MultiPeriodDiscriminator("v1").state_dict(), "iteration": 1}, run / "D_2.pth")
    with pytest.raises(Exception, match="v2 generator but D_2.pth a v1 discriminator"):
        import_models(ws, str(run))
    assert not list(ws.experiments.iterdir()) and not list(ws.weights.iterdir())
