"""Listening while a voice trains, with the real operations and tiny models of the real architectures.

A tiny RVC training runs in the training lane while conversions finish in the listening lane; every
save's previews are rendered and can go to A/B; cancels of a training, of a 10-minute conversion and
of a subprocess-heavy job reach ``cancelled`` within 2 s; progress never goes backwards; the
``/convert`` API queues in the listening lane; two torchrun "nodes" on 127.0.0.1 train like one node
of the same world size; and in the browser a preview of the first save plays and the Convert tab
converts while the training still runs.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engines.core.jobs import FINAL_STATES, JobRunner

SEGMENT = 640  # samples at 32 kHz (2 frames); with batch 1 the full-size discriminator's steps stay short


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    """One spoken sentence, a tiny HuBERT for training, and a fast voice + HuBERT for conversions."""
    from speech import espeak_wav
    from test_rvc_convert import make_fast_hubert, make_fast_voice
    from tiny_hubert import make_tiny_hubert

    root = tmp_path_factory.mktemp("lanes_rvc")
    data = root / "voice"
    data.mkdir()
    espeak_wav("Hello there, this is a short training sentence.", "en", data / "a.wav", sr=22050)
    clip = root / "clip.wav"
    espeak_wav("Listen to this while it trains.", "en", clip, sr=16000)
    return {"data": data, "hubert": make_tiny_hubert(root / "hubert"), "clip": clip,
            "fast_voice": make_fast_voice(root / "fast.pth", "v1", "40k", f0=True),
            "fast_hubert": make_fast_hubert(root / "fast_hubert")}


def train_params(exp: str, m: dict, **kw) -> dict:
    from tiny_rvc import tiny_config

    base = dict(exp_name=exp, dataset=str(m["data"]), sr="32k", version="v2", f0=True, f0_method="pm",
                total_epoch=4, batch_size=1, save_every_epoch=2, save_every_weights=True, keep_latest_only=True,
                hubert_path=str(m["hubert"]), n_processes=1, loader_workers=0, log_interval=1,
                segment_size=SEGMENT, model_config=tiny_config("v2", "32k"), add_mute=False)
    base.update(kw)
    return base


def convert_params(m: dict, source: Path, **kw) -> dict:
    return {"model": str(m["fast_voice"]), "inputs": [str(source)], "index": "none", "f0_method": "pm",
            "hubert": str(m["fast_hubert"]), "seed": 1, **kw}


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _cancel_seconds(runner: JobRunner, job: str) -> float:
    t0 = time.monotonic()
    assert runner.cancel(job)
    rec = runner.wait(job, 10)
    elapsed = time.monotonic() - t0
    assert rec.state == "cancelled", (rec.state, rec.error)
    print(f"cancel of {rec.op} ({rec.message}): {elapsed:.2f} s")  # the figure, with -s
    return elapsed


def _monotonic_per_job(trace: Path) -> dict[str, list[float]]:
    per_job: dict[str, list[float]] = {}
    ops: dict[str, str] = {}
    for line in trace.read_text().splitlines():
        rec = json.loads(line)
        per_job.setdefault(rec["job"], []).append(rec["fraction"])
        ops[rec["job"]] = rec["op"]
    backwards = {ops[j]: v for j, v in per_job.items() if any(b < a - 1e-9 for a, b in zip(v, v[1:]))}
    assert not backwards, f"progress went backwards: {backwards}"
    return {ops[j]: v for j, v in per_job.items()}


@pytest.mark.slow
def test_every_save_has_previews_and_conversions_finish_while_a_voice_trains(ws, material, tmp_path, monkeypatch):
    trace = tmp_path / "progress.jsonl"
    monkeypatch.setenv("VOICELAB_PROGRESS_TRACE", str(trace))
    m = material
    runner = JobRunner(ws)
    first = runner.wait(runner.submit("rvc.train", train_params("lanes", m, preview_clip=str(m["clip"]))), 600)
    assert first.state == "done", runner.read_log(first.id)

    # Every save queued its previews in the listening lane; each is recorded with its checkpoint.
    saves = first.result["small_models"]
    assert [Path(s).name for s in saves] == ["lanes_e2_s2.pth", "lanes_e4_s4.pth"]

    def previews_done():
        jobs = runner.list(op_prefix="rvc.preview")
        return jobs if len(jobs) == 2 and all(j.state in FINAL_STATES for j in jobs) else None

    jobs = _wait_for(previews_done, 300, "the previews")
    assert {j.state for j in jobs} == {"done"} and {j.lane for j in jobs} == {"listening"}
    assert {j.parent for j in jobs} == {first.id}
    from engines.core.ops import run_inline

    records = run_inline("rvc.previews", {"exp_name": "lanes"}, ws)["previews"]
    assert [(r["epoch"], r["step"], Path(r["model"]).name) for r in records] == [
        (2, 2, "lanes_e2_s2.pth"), (4, 4, "lanes_e4_s4.pth")]
    for r in records:
        assert [c["kind"] for c in r["clips"]] == ["trained-on", "yours"]  # one piece: nothing to hold out
        for c in r["clips"]:
            audio, sr = sf.read(c["output"])
            assert c["ok"] and sr == 32000 and np.abs(audio).max() > 0
            assert Path(c["output"]).parent.name == f"e{r['epoch']}_s{r['step']}"

    # Two saves to A/B: the previews are the takes (nothing converted again).
    yours = next(c["source"] for c in records[0]["clips"] if c["kind"] == "yours")
    ab = runner.wait(runner.submit("ab.render", {"experiment": "lanes", "source": yours, "index": "none",
                                                 "checkpoints": [r["model"] for r in records],
                                                 "params": json.dumps({"f0_method": "pm"})}), 120)
    assert ab.state == "done" and ab.lane == "listening", ab.error
    assert ab.result["candidates"] == ["lanes_e2_s2", "lanes_e4_s4"] and ab.result["pairs"] == 1
    assert runner.read_log(ab.id).count("the preview rendered at its save") == 2
    previews = {r["model"]: next(c["output"] for c in r["clips"] if c["kind"] == "yours") for r in records}
    from engines.ab.sessions import load_session

    for cand in load_session(ws, ab.result["session"]).candidates:
        assert Path(cand.output).read_bytes() == Path(previews[cand.model]).read_bytes()

    # Each preview job queued the save's scores, also in the listening lane, in a real worker.
    def scores_done():
        jobs = runner.list(op_prefix="ab.score")
        return jobs if len(jobs) == 2 and all(j.state in FINAL_STATES for j in jobs) else None

    scored = _wait_for(scores_done, 300, "the scores")
    assert {j.state for j in scored} == {"done"} and {j.lane for j in scored} == {"listening"}
    assert {j.parent for j in scored} == {j.id for j in jobs}
    from engines.ab.scores import read_scores

    score_records = read_scores(ws, "lanes")
    assert sorted(Path(r["model"]).name for r in score_records) == ["lanes_e2_s2.pth", "lanes_e4_s4.pth"]
    assert all(r["scores"]["speaker_similarity"] is not None and r["scores"]["pitch_cents"] is not None
               for r in score_records)

    # The training resumes towards many more epochs; three conversions finish while it runs.
    train = runner.submit("rvc.train", train_params("lanes", m, total_epoch=500, save_every_epoch=400))
    _wait_for(lambda: "epoch 5/" in (runner.get(train).message or ""), 300, "the resumed training loop")
    converts = [runner.submit("rvc.convert", convert_params(m, m["clip"], transpose=k)) for k in (0, 3, -3)]
    recs = [runner.wait(j, 300) for j in converts]
    assert all(r.state == "done" for r in recs), [r.error for r in recs]
    training = runner.get(train)
    assert training.state == "running"
    for r in recs:  # all three inside the training's run, in the listening lane, not in its process
        assert training.started < r.started and r.lane == "listening" and r.pid != training.pid
    assert [r.worker["warm"] for r in recs][1:] == [True, True]
    # Then cancel the training mid-run: cancelled within 2 s, nothing half-written.
    assert _cancel_seconds(runner, train) < 2.0
    assert all(r.finished < runner.get(train).finished for r in recs)
    exp = ws.experiment_dir("lanes")
    assert sorted(p.name for p in exp.glob("[GD]_*.pth")) == ["D_4.pth", "G_4.pth"]
    assert not [p for p in list(exp.rglob("*")) + list(ws.weights.rglob("*")) if ".part" in p.name]

    ops = _monotonic_per_job(trace)
    assert {"rvc.train", "rvc.convert", "rvc.preview", "ab.render"} <= set(ops)


@pytest.mark.slow
def test_cancel_of_a_ten_minute_conversion_and_of_a_subprocess_job_within_two_seconds(ws, material, tmp_path):
    m = material
    long = tmp_path / "ten_minutes.wav"
    t = np.arange(600 * 16000) / 16000
    sf.write(long, (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 16000, subtype="PCM_16")
    runner = JobRunner(ws)
    job = runner.submit("rvc.convert", convert_params(m, long))
    _wait_for(lambda: (runner.get(job).message or "").startswith("converted"), 240, "the conversion to run")
    assert _cancel_seconds(runner, job) < 2.0
    assert not list(ws.outputs.glob("ten_minutes*")) and not list(ws.outputs.glob(".ten_minutes*"))

    # A subprocess-heavy job (the machine check runs a child process): cancelled within 2 s too.
    bench = runner.submit("system.benchmark", {"seconds": 120, "size": 256, "device": "cpu"})
    _wait_for(lambda: runner.get(bench).progress > 0, 120, "the benchmark to measure")
    assert _cancel_seconds(runner, bench) < 2.0


@pytest.mark.slow
def test_convert_api_calls_queue_in_the_listening_lane(tmp_path, material):
    from browser import studio
    from gradio_client import Client, handle_file

    from engines.core.jobs import JobStore

    wsdir = tmp_path / "ws"
    (wsdir / "weights").mkdir(parents=True)
    shutil.copy(material["fast_voice"], wsdir / "weights" / "fast.pth")
    src = wsdir / "clip.wav"
    shutil.copy(material["clip"], src)
    with studio(wsdir, env={"VOICELAB_HUBERT": str(material["fast_hubert"])}) as (url, proc):
        client = Client(url, verbose=False)
        calls = [client.submit(handle_file(str(src)), "fast", "", transpose=k, f0_method="pm", seed=k + 10,
                               api_name="/convert") for k in (0, 2, 4)]
        outs = [c.result(timeout=300) for c in calls]
        assert all(Path(out).is_file() and info["files"][0]["ok"] for out, info in outs)
        jobs = sorted(JobStore(wsdir / "jobs.sqlite").list(op_prefix="rvc.convert"), key=lambda r: r.started)
        assert len(jobs) == 3 and {j.lane for j in jobs} == {"listening"} and {j.state for j in jobs} == {"done"}
        for a, b in zip(jobs, jobs[1:]):
            assert a.finished <= b.started  # one at a time: they queued in the lane
        assert len({j.pid for j in jobs}) == 1  # on the one warm listening worker
        workers = client.predict(api_name="/workers")
        assert [w["lane"] for w in workers] == ["listening"] and workers[0]["state"] == "idle"
        assert client.predict("listening", api_name="/free_workers") == 1
        # The studio process itself never loaded a network: torch's library is not even mapped in it.
        assert "libtorch" not in Path(f"/proc/{proc.pid}/maps").read_text()


@pytest.mark.slow
def test_two_torchrun_nodes_train_like_one_node_of_the_same_world_size(tmp_path, material):
    """Node ranks 0 and 1 on 127.0.0.1 (gloo), each with its own workspace, against one node of 2 processes."""
    from engines.core.settings import Workspace
    from engines.rvc.train.launch import free_port, prepare_experiment
    from engines.rvc.train.params import TrainParams

    m = material
    base = Workspace.open(tmp_path / "base")
    common = dict(max_steps=2, total_epoch=50, save_every_epoch=50, previews=False)
    prepare_experiment(base, TrainParams(**train_params("mn", m, **common)))
    spaces = {}
    for name in ("node0", "node1", "single"):
        ws = Workspace.open(tmp_path / name)
        shutil.copytree(base.experiment_dir("mn"), ws.experiment_dir("mn"))
        spaces[name] = ws
    skip = dict(skip_preprocess=True, skip_f0=True, skip_feature=True, **common)
    port = free_port()
    runners = {name: JobRunner(ws) for name, ws in spaces.items()}
    jobs = {name: runners[name].submit("rvc.train", train_params("mn", m, nnodes=2, node_rank=rank,
                                                                 master_addr="127.0.0.1", master_port=port, **skip))
            for rank, name in enumerate(("node0", "node1"))}
    jobs["single"] = runners["single"].submit("rvc.train", train_params("mn", m, cpu_processes=2, **skip))
    recs = {name: runners[name].wait(job, 900) for name, job in jobs.items()}
    for name, rec in recs.items():
        assert rec.state == "done", runners[name].read_log(rec.id)

    # Checkpoints and models exactly once, by global rank 0 (node 0); node 1 keeps nothing.
    assert sorted(p.name for p in spaces["node0"].experiment_dir("mn").glob("[GD]_*.pth")) == ["D_2.pth", "G_2.pth"]
    assert (spaces["node0"].weights / "mn.pth").is_file()
    assert not list(spaces["node1"].experiment_dir("mn").glob("[GD]_*.pth")) and not list(spaces["node1"].weights.iterdir())
    assert recs["node1"].result["weights"] is None and "node 1 of 2" in recs["node1"].message
    log0 = runners["node0"].read_log(jobs["node0"])
    assert "x 2 process(es) [2 nodes" in log0 and "rank 1 (node 1" in log0  # the merged log on node 0

    def losses(ws) -> list[dict]:
        rows = [json.loads(x) for x in (ws.experiment_dir("mn") / "metrics.jsonl").read_text().splitlines()]
        return [r for r in rows if r["kind"] == "step"]

    a, b = losses(spaces["node0"]), losses(spaces["single"])
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2]
    for ra, rb in zip(a, b):
        for key in ("loss_mel", "loss_kl", "loss_fm", "loss_gen", "loss_disc", "loss_gen_all"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-3, abs=1e-4), (ra["step"], key)


@pytest.mark.slow
def test_progress_never_goes_backwards_in_the_data_and_model_file_operations(ws, material, tmp_path, monkeypatch):
    """The operations of the CPU lane and preprocessing, through the runner, with every raw progress report traced."""
    from tiny_rvc import make_tiny_generator_checkpoint, make_tiny_voice

    trace = tmp_path / "progress.jsonl"
    monkeypatch.setenv("VOICELAB_PROGRESS_TRACE", str(trace))
    m = material
    runner = JobRunner(ws)
    incoming = ws.root / "incoming"
    shutil.copytree(m["data"], incoming)
    steps = [
        ("dataset.import", {"name": "spoken", "sources": [str(incoming)]}),
        ("rvc.preprocess", {**train_params("data", m, dataset="spoken")}),
        ("rvc.index", {"exp_name": "data", "version": "v2"}),
        ("rvc.ckpt_extract", {"checkpoint": str(make_tiny_generator_checkpoint(tmp_path / "G_3.pth", "v2", "40k"))}),
        ("rvc.ckpt_merge", {"model_a": str(make_tiny_voice(tmp_path / "a.pth", seed=1)),
                            "model_b": str(make_tiny_voice(tmp_path / "b.pth", seed=2)), "alpha": 0.3}),
    ]
    for op, params in steps:
        rec = runner.wait(runner.submit(op, params), 300)
        assert rec.state == "done", (op, rec.error)
    ops = _monotonic_per_job(trace)
    assert {"dataset.import", "rvc.preprocess", "rvc.index"} <= set(ops)  # (the model-file tools report none)
    assert {r.lane for r in runner.list()} == {"cpu", "training"}


def _open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


@pytest.mark.browser
@pytest.mark.slow
def test_browser_plays_a_preview_and_converts_while_the_voice_trains(tmp_path, material):
    """A tiny training (queued the way any process queues a job: a row in the studio's jobs table; the Train
    form has no tiny model sizes) runs; its first save's preview plays in the Train tab, the Convert tab
    converts a clip while it still trains, and the API lists the previews and sends two saves to A/B."""
    from browser import browser_page, studio
    from gradio_client import Client

    from engines.core.jobs import JobStore, queue_job
    from engines.core.settings import Workspace

    m = material
    wsdir = tmp_path / "ws"
    (wsdir / "weights").mkdir(parents=True)
    shutil.copy(m["fast_voice"], wsdir / "weights" / "fast.pth")
    voice = wsdir / "voice"
    shutil.copytree(m["data"], voice)
    clip = wsdir / "clip.wav"
    shutil.copy(m["clip"], clip)
    with studio(wsdir, env={"VOICELAB_HUBERT": str(m["fast_hubert"])}) as (url, _), browser_page() as page:
        client = Client(url, verbose=False)
        ws = Workspace(root=wsdir)
        store = JobStore(ws.jobs_db)
        train = queue_job(store, ws, "rvc.train", train_params("live", m, dataset=str(voice), total_epoch=400,
                                                               save_every_epoch=1), title="RVC train 'live'")
        page.goto(url)
        _open_tab(page, "RVC Train")
        page.locator("#vl-rvc-exp input").fill("live")
        page.locator("#vl-rvc-exp input").press("Enter")
        page.locator("#vl-job-status").get_by_text("RVC train 'live'").wait_for(timeout=60000)  # the panel follows it
        first = page.locator("#vl-rvc-previews .vl-rvc-preview").first
        first.wait_for(state="visible", timeout=300000)
        assert page.locator("#vl-rvc-preview-save input").input_value().startswith("epoch 1 ")
        first.get_by_role("button", name="Play", exact=True).click()
        first.get_by_role("button", name="Pause", exact=True).wait_for(timeout=20000)  # it plays
        page.wait_for_function("() => document.querySelector('#vl-rvc-previews .vl-rvc-preview #time')"
                               "?.innerText !== '0:00'", timeout=20000)
        assert store.get(train).state == "running"

        _open_tab(page, "Convert")
        page.locator("#vl-vc-files input[type=file]").set_input_files(str(clip))
        page.wait_for_timeout(500)
        _pick(page, "#vl-vc-model", "fast.pth")
        _pick(page, "#vl-vc-f0", "pm")
        page.locator("#vl-vc-index input").fill("none")
        page.locator("#vl-vc-index input").press("Enter")
        page.locator("#vl-vc-run").click()
        page.locator("#vl-vc-result").get_by_text("converted").wait_for(timeout=120000)
        page.locator(".vl-vc-output audio, .vl-vc-output .waveform-container").first.wait_for(state="attached")
        convert = store.list(op_prefix="rvc.convert")[0]
        assert convert.state == "done" and convert.lane == "listening"
        assert store.get(train).state == "running" and convert.finished > store.get(train).started

        _wait_for(lambda: len(client.predict("live", api_name="/rvc_train_previews")) >= 2, 300, "a second save")
        previews = client.predict("live", api_name="/rvc_train_previews")
        assert previews[0]["epoch"] == 1 and previews[0]["clips"][0]["ok"]
        job = client.predict("live", "all", "", api_name="/rvc_previews_to_ab")
        ab = _wait_for(lambda: (lambda r: r if r["state"] in FINAL_STATES else None)(
            client.predict(job, api_name="/job_status")), 120, "the A/B render")
        assert ab["state"] == "done" and ab["kind"] == "listening" and ab["result"]["pairs"] >= 1
        assert client.predict(train, api_name="/cancel_job") is True
        assert _wait_for(lambda: store.get(train).state in FINAL_STATES, 10, "the cancel") and \
            store.get(train).state == "cancelled"


def _pick(page, selector: str, name: str) -> None:
    page.locator(f"{selector} input").click()
    page.get_by_role("option", name=name, exact=True).click()
