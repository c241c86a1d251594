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

    from engines.rvc.ops.catalog import experiment_settings, list_experiments, read_metrics, saved_files

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
    assert experiment_settings(ws, "job") == {"sr": "32k", "version": "v2", "f0_method": "pm"}

    # Resume towards many epochs and cancel once training runs (no save is due, so none may appear).
    job_id = runner.submit("rvc.train", _params("job", data, hubert, total_epoch=200, save_every_epoch=100))
    _wait_for(lambda: (runner.get(job_id).message or "").startswith("epoch "), 120, "training to start")
    assert runner.cancel(job_id)
    final = runner.wait(job_id, timeout=60)
    assert final.state == "cancelled"
    exp_dir = ws.experiment_dir("job")
    assert sorted(p.name for p in exp_dir.glob("[GD]_*.pth")) == [f"D_{steps}.pth", f"G_{steps}.pth"]
    assert sorted(p.name for p in ws.weights.glob("*.pth")) == ["job.pth", f"job_e1_s{steps}.pth"]
    leftovers = [p for p in list(exp_dir.rglob("*")) + list(ws.weights.rglob("*")) if ".part" in p.name or ".tmp" in p.name]
    assert leftovers == []
    for path in list(exp_dir.glob("G_*.pth")) + list(exp_dir.glob("D_*.pth")) + list(ws.weights.glob("job*.pth")):
        torch.load(path, map_location="cpu", weights_only=True)  # every file there is whole
    assert "Cancelled" in runner.read_log(job_id)


def test_missing_hubert_fails_before_any_work(tmp_path, monkeypatch):
    for var in ("VOICELAB_HUBERT", "VOICELAB_RMVPE", "VOICELAB_ASSETS"):
        monkeypatch.delenv(var, raising=False)
    ws = _workspace_with_assets(tmp_path, hubert=False, pretrained=False)
    runner = JobRunner(ws)
    params = dict(exp_name="nohubert", dataset=str(tmp_path / "voice"), f0_method="pm")
    rec = runner.wait(runner.submit("rvc.train", params), timeout=30)
    assert rec.state == "failed"
    assert "Missing model file 'hubert/hubert_base.pt'" in rec.error
    assert "voicelab assets download hubert_base" in rec.error
    assert not (ws.experiment_dir("nohubert") / "0_gt_wavs").exists()  # failed before preprocessing
    rec = runner.wait(runner.submit("rvc.preprocess", {**params, "skip_feature": True, "f0_method": "rmvpe"}), 30)
    assert rec.state == "failed" and "rmvpe.pt" in rec.error  # the pitch method's model is checked too


def test_pretrained_names_and_asset_rows(ws):
    from engines.rvc.ops.train import pretrained_asset_names, pretrained_paths

    assert pretrained_asset_names("40k", "v2", True) == ("pretrained_v2/f0G40k", "pretrained_v2/f0D40k")
    assert pretrained_asset_names("48k", "v1", False) == ("pretrained/G48k", "pretrained/D48k")
    g, d = pretrained_paths(ws.settings, "32k", "v2", True)
    assert g.name == "f0G32k.pth" and d.name == "f0D32k.pth" and g.parent.name == "pretrained_v2"


def _workspace_with_assets(root: Path, hubert: bool, pretrained: bool):
    """A workspace whose assets folder (empty or holding stand-in files) is its own."""
    from engines.core.settings import Workspace

    assets = root / "assets"
    assets.mkdir(parents=True)
    if hubert:
        (assets / "hubert").mkdir()
        (assets / "hubert" / "hubert_base.pt").write_bytes(b"x")
    if pretrained:
        (assets / "pretrained_v2").mkdir()
        for name in ("f0G40k.pth", "f0D40k.pth"):
            (assets / "pretrained_v2" / name).write_bytes(b"x")
    return Workspace.open(root / "ws", overrides={"assets_dir": str(assets)})


def test_tab_builds_translated_and_shows_what_a_run_needs(tmp_path, monkeypatch):
    import gradio as gr

    from engines.core.jobs import JobRunner
    from voicelab_ui import i18n
    from voicelab_ui.context import UIContext
    from voicelab_ui.tabs import rvc_train
    from voicelab_ui.widgets import job_panel

    for var in ("VOICELAB_HOME", "VOICELAB_ASSETS", "VOICELAB_HUBERT", "VOICELAB_RMVPE"):
        monkeypatch.delenv(var, raising=False)
    ws = _workspace_with_assets(tmp_path, hubert=False, pretrained=True)
    i18n.USED_KEYS.clear()
    ctx = UIContext(ws=ws, runner=JobRunner(ws))
    with gr.Blocks() as demo:  # the tab alone, with the job panel it reports to (as app.build_app does)
        ctx.demo = demo
        job_panel(ctx)
        rvc_train.build(ctx)
    assert i18n.missing_translations() == []
    used = i18n.USED_KEYS
    assert {"rvc.tr.train", "rvc.tr.preprocess", "rvc.tr.assets", "rvc.tr.loss", "rvc.tr.advanced",
            "rvc.tr.pretrained_set"} <= used
    shown = {"sr", "version", "f0", "f0_method", "total_epoch", "batch_size", "save_every_epoch",
             "save_every_weights", "pretrained_g", "pretrained_d", "gpus", "skip_preprocess", "max_steps"}
    assert {f"param.{n}" for n in shown} <= used
    assert "param.segment_size" not in used and "param.model_config" not in used

    # The pretrained fields follow sr/version/f0 when the files are present; a typed path is kept.
    g, d = rvc_train.pretrained_for(ws, "40k", "v2", True, "", "")
    assert g.endswith("pretrained_v2/f0G40k.pth") and d.endswith("pretrained_v2/f0D40k.pth")
    assert rvc_train.pretrained_for(ws, "48k", "v2", True, g, d) == ("", "")  # not present: from scratch
    assert rvc_train.pretrained_for(ws, "48k", "v2", True, "/my/G.pth", d)[0] == "/my/G.pth"

    rows = rvc_train.asset_rows(ws, "40k", "v2", True, "rmvpe", pretrained_g=g, pretrained_d=d)
    md = rvc_train.assets_markdown(rows, rvc_train.f0_choices(ws)[1])
    hubert_row = next(r for r in rows if r["item"].startswith("HuBERT"))
    assert not hubert_row["ok"] and "voicelab assets download hubert_base" in hubert_row["fix"]
    assert all(r["ok"] for r in rows if r["item"].startswith("Pretrained"))
    assert "rmvpe" in md and "Missing model file 'rmvpe.pt'" in md  # unavailable methods say why
    rows48 = rvc_train.asset_rows(ws, "48k", "v1", False, "pm")
    assert any(r["fix"] == "voicelab assets download pretrained/G48k pretrained/D48k" for r in rows48)


def test_curves_and_checkpoint_rows_from_an_experiment(ws):
    from voicelab_ui.tabs import rvc_train

    root = ws.experiment_dir("curves")
    root.mkdir(parents=True)
    lines = [{"kind": "step", "epoch": 1, "step": s, "lr": 1e-4, "loss_gen_all": 30.0 - s, "loss_mel": 20.0,
              "loss_kl": 2.0, "loss_fm": 3.0, "loss_disc": 4.0} for s in (1, 2)]
    lines.append({"kind": "epoch", "epoch": 1, "step": 2, "loss_mel": 20.0})
    (root / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    for name in ("G_2.pth", "D_2.pth"):
        (root / name).write_bytes(b"0" * 2048)
    (ws.weights / "curves_e1_s2.pth").write_bytes(b"0")
    (ws.weights / "curves_extra_e1_s2.pth").write_bytes(b"0")  # another experiment's model

    loss, lr = rvc_train.loss_frames(ws, "curves")
    names = {"G total", "mel", "kl", "fm", "D"}
    assert set(loss["series"]) == names | {n + " (raw)" for n in names} and len(loss) == 20
    g = loss[loss["series"] == "G total"]["loss"].tolist()
    assert g[0] == pytest.approx(29.0) and 28.0 < g[1] < 29.0  # smoothed (debiased EMA); the raw values stay beside it
    assert loss[loss["series"] == "G total (raw)"]["loss"].tolist() == [29.0, 28.0]
    assert list(lr["step"]) == [1, 2]
    rows = rvc_train.saved_rows(ws, "curves")
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("G checkpoint", "G_2.pth", 1, 2), ("D checkpoint", "D_2.pth", 1, 2), ("small model", "curves_e1_s2.pth", 1, 2)]
    stamp = rvc_train.view_stamp(ws, "curves")
    (root / "metrics.jsonl").write_text((root / "metrics.jsonl").read_text() + json.dumps(lines[0]) + "\n")
    assert rvc_train.view_stamp(ws, "curves") != stamp
    assert rvc_train.loss_frames(ws, "unknown")[0].empty and not ws.experiment_dir("unknown").exists()


@pytest.mark.browser
@pytest.mark.slow
def test_browser_tab_shows_assets_and_a_started_job_reports_missing_hubert(tmp_path):
    from browser import browser_page, studio

    assets = tmp_path / "assets"
    assets.mkdir()
    env = {"VOICELAB_ASSETS": str(assets), "VOICELAB_HUBERT": "", "VOICELAB_RMVPE": ""}
    with studio(tmp_path / "ws", env=env) as (url, _), browser_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="RVC Train").click()
        status = page.locator("#vl-rvc-assets")
        status.get_by_text("voicelab assets download hubert_base").wait_for()
        assert "pretrained_v2/f0G40k" in status.inner_text()
        page.locator("#vl-rvc-exp input").fill("browser_exp")
        page.locator("#vl-rvc-exp input").press("Enter")
        page.locator("#vl-rvc-dataset input").fill(str(tmp_path / "ws" / "voice"))
        page.locator("#vl-rvc-dataset input").press("Enter")
        page.locator("#vl-rvc-train").click()
        # the job starts in a training-lane worker process: on a loaded 2-core machine that can take > 30 s
        page.locator("#vl-job-status").get_by_text("failed").wait_for(timeout=120000)
        assert "Missing model file 'hubert/hubert_base.pt'" in page.locator("#vl-job-status").inner_text()
        page.locator("#vl-rvc-result").get_by_text("voicelab assets download hubert_base").wait_for(timeout=60000)

        from gradio_client import Client

        client = Client(url, verbose=False)
        assert client.predict("browser_exp", api_name="/rvc_train_checkpoints") == []
        assert client.predict("browser_exp", api_name="/rvc_train_metrics") == []


def test_machine_view_and_tensorboard_link(ws):
    from voicelab_ui.tabs.rvc_train.machine import machine_frame, tensorboard_link

    from engines.core import tboard
    from engines.core.errors import InvalidInputError

    root = ws.experiment_dir("mach")
    root.mkdir(parents=True)
    lines = [{"kind": "step", "epoch": 1, "step": 1, "loss_mel": 20.0},
             {"kind": "system", "time": 1000.0, "host": "box", "cpu_percent": 50.0, "ram_used_mb": 4096,
              "ram_percent": 25.0, "proc_rss_mb": 1024, "node": 0},
             {"kind": "system", "time": 1060.0, "host": "box", "cpu_percent": 70.0, "ram_used_mb": 4096,
              "ram_percent": 25.0, "proc_rss_mb": 1024, "node": 0,
              "gpus": [{"index": 0, "util_percent": 90.0, "mem_used_mb": 8192, "mem_total_mb": 16384,
                        "temp_c": 66.0, "power_w": 210.0}]}]
    (root / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    frame, text = machine_frame(ws, "mach")
    assert set(frame["series"]) == {"CPU", "RAM", "GPU0 load", "GPU0 memory"}
    assert frame[frame["series"] == "GPU0 memory"]["percent"].tolist() == [50.0]
    assert frame["minutes"].max() == 1.0
    assert "CPU 70%" in text and "GPU0 90% 8.0/16 GB 66 °C 210 W" in text
    assert "No machine samples" in machine_frame(ws, "")[1]
    with pytest.raises(InvalidInputError, match="no experiment 'nope'"):
        tensorboard_link(ws, "nope")
    try:
        link = tensorboard_link(ws, "mach", "studio.local:7860")
        port = tboard.running()[0].port
        assert f"(http://studio.local:{port}/)" in link  # the host the browser used, TensorBoard's port
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
            assert resp.status == 200
    finally:
        tboard.stop_all()
