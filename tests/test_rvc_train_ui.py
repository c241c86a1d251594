"""RVC training as jobs (rvc.preprocess / rvc.train through JobRunner) and the RVC Train tab.

The job tests train a tiny generator (tests/tiny_rvc.py) on one espeak-ng
sentence with a tiny HuBERT and the 'pm' pitch method, one step per epoch,
so no downloaded weights are needed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from engines.core.jobs import JobRunner

SEGMENT = 1280  # samples at 32 kHz (4 frames), as in test_rvc_train.py


@pytest.fixture(scope="module")
def voice(tmp_path_factory):
    """A folder with one spoken sentence and a tiny HuBERT directory."""
    from speech import espeak_wav
    from tiny_hubert import make_tiny_hubert

    root = tmp_path_factory.mktemp("rvc_train_ui")
    data = root / "voice"
    data.mkdir()
    espeak_wav("Hello there, this is a short training sentence.", "en", data / "a.wav", sr=22050)
    return data, make_tiny_hubert(root / "hubert")


def _params(exp: str, data: Path, hubert: Path, **kw) -> dict:
    from tiny_rvc import tiny_config

    base = dict(exp_name=exp, dataset=str(data), sr="32k", version="v2", f0=True, f0_method="pm",
                total_epoch=1, batch_size=4, save_every_epoch=1, save_every_weights=True,
                hubert_path=str(hubert), n_processes=1, loader_workers=0, log_interval=1,
                segment_size=SEGMENT, model_config=tiny_config("v2", "32k"))
    base.update(kw)
    return base


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_train_job_end_to_end_then_cancel_keeps_only_whole_files(ws, voice):
    import torch

    from engines.rvc.ops_train import list_experiments, read_metrics, saved_files

    data, hubert = voice
    runner = JobRunner(ws)

    # Data stages alone first: the summary says what was produced.
    pre = runner.wait(runner.submit("rvc.preprocess", _params("job", data, hubert)), timeout=120)
    assert pre.state == "done", runner.read_log(pre.id)
    assert pre.result["pieces"] >= 1 and pre.result["feature_files"] == pre.result["pieces"]
    assert pre.result["f0_files"] == pre.result["pieces"]
    assert f"{pre.result['pieces']} pieces" in pre.message and "filelist.txt" in pre.message
    assert not list(ws.weights.glob("*.pth"))  # no training happened

    rec = runner.wait(runner.submit("rvc.train", _params("job", data, hubert)), timeout=180)
    assert rec.state == "done", runner.read_log(rec.id)
    res = rec.result
    steps = res["steps"]
    assert res["epochs"] == 1 and steps >= 1
    assert Path(res["weights"]) == ws.weights / "job.pth" and Path(res["weights"]).is_file()
    assert [Path(p).name for p in res["small_models"]] == [f"job_e1_s{steps}.pth"]
    assert sorted(Path(p).name for p in res["checkpoints"]) == [f"D_{steps}.pth", f"G_{steps}.pth"]
    assert set(res["last_losses"]) >= {"loss_mel", "loss_kl", "loss_fm", "loss_disc", "loss_gen_all"}
    assert res["seconds_per_step"] > 0
    assert "job.pth" in rec.message and "epoch 1" in rec.message
    assert "skipped" in runner.read_log(rec.id)  # the data stages were cached by the preprocess job
    json.dumps(res)  # the record is plain JSON

    records = read_metrics(ws, "job")
    assert [r["step"] for r in records if r["kind"] == "step"][0] == 1
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1]
    listed = {(s.kind, s.epoch, s.step) for s in saved_files(ws, "job")}
    assert listed == {("G", 1, steps), ("D", 1, steps), ("model", 1, steps)}
    assert "job" in list_experiments(ws)

    # Resume towards many epochs, saving every epoch, and cancel once training runs.
    job_id = runner.submit("rvc.train", _params("job", data, hubert, total_epoch=200))
    _wait_for(lambda: (runner.get(job_id).message or "").startswith("epoch "), 120, "training to start")
    assert runner.cancel(job_id)
    final = runner.wait(job_id, timeout=60)
    assert final.state == "cancelled"
    exp_dir = ws.experiment_dir("job")
    leftovers = [p for p in list(exp_dir.rglob("*")) + list(ws.weights.rglob("*")) if ".part" in p.name or ".tmp" in p.name]
    assert leftovers == []
    for path in list(exp_dir.glob("G_*.pth")) + list(exp_dir.glob("D_*.pth")) + list(ws.weights.glob("job*.pth")):
        torch.load(path, map_location="cpu", weights_only=True)  # every file there is whole
    assert "Cancelled" in runner.read_log(job_id)


def test_missing_hubert_fails_before_any_work(ws, voice):
    data, _ = voice
    runner = JobRunner(ws)
    rec = runner.wait(runner.submit("rvc.train", _params("nohubert", data, Path(""), hubert_path="")), timeout=30)
    assert rec.state == "failed"
    assert "Missing model file" in rec.error and "hubert" in rec.error.lower()
    assert "voicelab assets download hubert_base" in rec.error
    assert not (ws.experiment_dir("nohubert") / "0_gt_wavs").exists()  # failed before preprocessing


def test_pretrained_names_and_asset_rows(ws):
    from engines.rvc.ops_train import pretrained_asset_names, pretrained_paths

    assert pretrained_asset_names("40k", "v2", True) == ("pretrained_v2/f0G40k", "pretrained_v2/f0D40k")
    assert pretrained_asset_names("48k", "v1", False) == ("pretrained/G48k", "pretrained/D48k")
    g, d = pretrained_paths(ws.settings, "32k", "v2", True)
    assert g.name == "f0G32k.pth" and d.name == "f0D32k.pth" and g.parent.name == "pretrained_v2"
