"""CosyVoice jobs on the job runner, the CosyVoice tab built in-process, and its status in Chromium.

The jobs run end to end with the stand-ins the engine tests use: espeak-ng
speech, tiny ONNX models with the real input/output names
(tiny_cosyvoice_onnx) and a stand-in upstream checkout whose train.py
prints upstream's log lines (test_cosyvoice_train).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from speech import espeak_wav

from engines.core.jobs import JobRunner
from engines.core.settings import Settings, Workspace

SENTENCES = {
    "c1": "The birch canoe slid on the smooth planks.",
    "c2": "Glue the sheet to the dark blue background.",
    "c3": "Rice is often served in round bowls.",
}


def _dataset(ws: Workspace, name: str = "alice") -> Path:
    """A studio dataset of three espeak-ng clips with transcripts imported from a list."""
    from engines.dataset.transcripts import import_transcripts

    ds = ws.dataset_dir(name)
    (ds / "clips").mkdir(parents=True)
    clips = []
    for cid, text in SENTENCES.items():
        audio, sr = espeak_wav(text, "en", ds / "clips" / f"{cid}.wav", sr=16000, speed=200)
        clips.append({"id": cid, "file": f"clips/{cid}.wav", "duration": len(audio) / sr, "rate": sr})
    (ds / "manifest.json").write_text(json.dumps({"name": name, "clips": clips}), encoding="utf-8")
    listing = ds.parent / f"{name}.list"
    listing.write_text("".join(f"clips/{c}.wav|{t}\n" for c, t in SENTENCES.items()), encoding="utf-8")
    assert import_transcripts(ds, listing).matched == 3
    return ds


def _checkout_and_base(root: Path) -> tuple[Path, Path]:
    """The stand-in upstream checkout and a base model dir (yaml + llm/flow) of test_cosyvoice_train."""
    import torch
    from test_cosyvoice_train import BASE_YAML, write_standin_checkout
    from tiny_cosyvoice_onnx import build_model_dir

    checkout = write_standin_checkout(root)
    base = build_model_dir(root / "base", "v2")
    (base / "cosyvoice2.yaml").write_text(BASE_YAML)
    sd = {f"proj.{k}": v for k, v in torch.nn.Linear(4, 1).state_dict().items()}
    for name in ("llm.pt", "flow.pt"):
        torch.save(sd, base / name)
    return checkout, base


def _run(runner: JobRunner, op: str, params: dict, timeout: float = 120):
    rec = runner.wait(runner.submit(op, params), timeout=timeout)
    assert rec is not None
    return rec


@pytest.mark.slow
def test_prepare_train_assemble_jobs_end_to_end(tmp_path):
    checkout, base = _checkout_and_base(tmp_path)
    ws = Workspace(root=tmp_path / "ws", settings=Settings(cosyvoice_repo=str(checkout)))
    ws.ensure()
    _dataset(ws)
    runner = JobRunner(ws)

    prep = _run(runner, "cosyvoice.prepare", {"dataset": "alice", "out_name": "alice_v2", "model_dir": str(base),
                                              "processes": 1, "data_workers": 1, "dev_ratio": 0.34})
    assert prep.state == "done", runner.read_log(prep.id)
    assert prep.result["data"] == "alice_v2"
    assert Path(prep.result["train_list"]).is_file() and Path(prep.result["dev_list"]).is_file()
    assert prep.result["report"]["train_utts"] + prep.result["report"]["dev_utts"] == 3
    assert "speaker 'alice'" in prep.message

    train = _run(runner, "cosyvoice.train", {"data": "alice_v2", "exp_name": "alice", "model_dir": str(base),
                                             "models": "llm", "max_epoch": 2, "log_interval": 1, "num_workers": 1,
                                             "prefetch": 2, "timeout": 17})
    assert train.state == "done", runner.read_log(train.id)
    exp = Path(train.result["exp_dir"])
    assert [Path(p).name for p in train.result["checkpoints"]["llm"]] == ["epoch_0_whole.pt", "epoch_1_whole.pt"]
    assert Path(train.result["latest"]["llm"]).name == "epoch_1_whole.pt"
    # the prepared lists were resolved from the data name
    params = json.loads((exp / "params.json").read_text())
    assert params["train_data"] == prep.result["train_list"] and params["cv_data"] == prep.result["dev_list"]
    from engines.cosyvoice.train import read_metrics

    rows = read_metrics(train.result["metrics"])
    assert {r["split"] for r in rows} == {"train", "cv"}
    from voicelab_ui.tabs.cosyvoice import (
        checkpoint_rows,
        list_experiments,
        metrics_frames,
    )

    loss, acc = metrics_frames(ws, "alice")
    assert len(loss) == len(rows) and set(loss["series"]) == {"llm train", "llm cv"} and len(acc) > 0
    assert [r[1] for r in checkpoint_rows(ws, "alice")] == ["epoch_0_whole.pt", "epoch_1_whole.pt"]
    assert checkpoint_rows(ws, "alice")[1][2] == pytest.approx(1.9)  # the stand-in's cv loss of epoch 1
    assert list_experiments(ws) == ["alice"]

    # base model, speaker and embedding all come from the experiment and its prepared data
    asm = _run(runner, "cosyvoice.assemble", {"exp_name": "alice", "name": "alice_sft", "mode": "best", "num": 1})
    assert asm.state == "done", runner.read_log(asm.id)
    assert asm.result["speakers"] == ["alice"]
    model_dir = Path(asm.result["model_dir"])
    assert model_dir == ws.cosyvoice / "models" / "alice_sft"
    from engines.cosyvoice.model_dir import list_speakers

    assert list_speakers(model_dir) == ["alice"]
    assert (model_dir / "cosyvoice2.yaml").is_file() and (exp / "averaged" / "llm.pt").is_file()

    # a missing experiment fails with a message saying what to do
    bad = _run(runner, "cosyvoice.assemble", {"exp_name": "nobody"})
    assert bad.state == "failed" and "base model" in bad.error


def test_synth_job_without_checkout_says_how_to_get_it(tmp_path):
    import numpy as np
    import soundfile as sf

    ws = Workspace(root=tmp_path / "ws", settings=Settings(cosyvoice_repo=str(tmp_path / "no_checkout")))
    ws.ensure()
    model = tmp_path / "CosyVoice2-0.5B"
    (model / "CosyVoice-BlankEN").mkdir(parents=True)
    for name in ("cosyvoice2.yaml", "llm.pt", "flow.pt", "hift.pt", "campplus.onnx", "speech_tokenizer_v2.onnx"):
        (model / name).write_bytes(b"x")
    prompt = tmp_path / "prompt.wav"
    sf.write(prompt, np.zeros(16000, np.float32), 16000)
    runner = JobRunner(ws)
    rec = _run(runner, "cosyvoice.synth", {"model_dir": str(model), "text": "Hello there.", "mode": "zero_shot",
                                           "prompt_wav": str(prompt), "prompt_text": "Hi."}, timeout=60)
    assert rec.state == "failed"
    assert "CosyVoice source checkout" in rec.error and "voicelab vendor sync" in rec.error
    assert str(tmp_path / "no_checkout") in rec.error
    grid = _run(runner, "cosyvoice.synth", {"model_dir": str(model), "text": "Hello.", "mode": "zero_shot",
                                            "prompt_wav": str(prompt), "prompt_text": "Hi.", "speeds": ["0.9", "1.1"]})
    assert grid.state == "failed" and "voicelab vendor sync" in grid.error
    nospeed = _run(runner, "cosyvoice.synth", {"model_dir": str(model), "text": "Hello.", "speeds": ["fast"]})
    assert nospeed.state == "failed" and "'fast' is not a speed" in nospeed.error


FAKE_AUTOMODEL = """\
import torch


class _Inner:
    llm = torch.nn.Linear(1, 1)
    flow = torch.nn.Linear(1, 1)


class AutoModel:
    # upstream's interface: 0.1 s of audio per character, shortened by speed
    def __init__(self, model_dir):
        self.sample_rate = 24000
        self.model = _Inner()

    def _speech(self, text, speed):
        return {'tts_speech': torch.full((1, int(2400 * len(text) / speed)), 0.1)}

    def inference_sft(self, tts_text, spk_id, stream=False, speed=1.0):
        assert spk_id == 'alice'
        yield self._speech(tts_text, speed)

    def inference_zero_shot(self, tts_text, prompt_text, prompt_wav, stream=False, speed=1.0):
        yield self._speech(tts_text, speed)
"""


def test_synth_jobs_single_and_grid_with_a_stand_in_automodel(tmp_path):
    import soundfile as sf
    import torch

    from engines.cosyvoice.worker import stop_worker

    checkout = tmp_path / "CosyVoice"
    for rel, text in {"cosyvoice/__init__.py": "", "cosyvoice/cli/__init__.py": "",
                      "cosyvoice/cli/cosyvoice.py": FAKE_AUTOMODEL, "cosyvoice/bin/train.py": "",
                      "third_party/Matcha-TTS/matcha/__init__.py": ""}.items():
        (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
        (checkout / rel).write_text(text)
    ws = Workspace(root=tmp_path / "ws", settings=Settings(cosyvoice_repo=str(checkout)))
    ws.ensure()
    model = ws.cosyvoice / "models" / "tiny"
    (model / "CosyVoice-BlankEN").mkdir(parents=True)
    for name in ("cosyvoice2.yaml", "llm.pt", "flow.pt", "hift.pt", "campplus.onnx", "speech_tokenizer_v2.onnx"):
        (model / name).write_bytes(b"x")
    torch.save({"alice": {"embedding": torch.zeros(1, 192)}}, model / "spk2info.pt")
    from voicelab_ui.tabs.cosyvoice import synth_model_dirs

    assert synth_model_dirs(ws) == [str(model)]
    runner = JobRunner(ws)
    try:
        one = _run(runner, "cosyvoice.synth", {"model": "tiny", "text": "Hello there.", "speaker": "alice",
                                               "speed": 1.0})
        assert one.state == "done", runner.read_log(one.id)
        audio, sr = sf.read(one.result["audio"])
        assert sr == 24000 and len(audio) == 2400 * len("Hello there.")
        assert Path(one.result["audio"]).parent == ws.outputs / "cosyvoice"
        grid = _run(runner, "cosyvoice.synth", {"model_dir": str(model), "text": "Hello.", "speaker": "alice",
                                                "speeds": ["1.0", "2.0"]})
        assert grid.state == "done", runner.read_log(grid.id)
        takes = grid.result["grid"]
        assert [(g["preset"], g["speed"]) for g in takes] == [("neutral", 1.0), ("neutral", 2.0)]
        lengths = [len(sf.read(g["audio"])[0]) for g in takes]
        assert lengths == [2400 * 6, 1200 * 6]
        wrong = _run(runner, "cosyvoice.synth", {"model": "tiny", "text": "Hi.", "speaker": "bob"})
        assert wrong.state == "failed" and "Speaker 'bob' is not in this model" in wrong.error
    finally:
        stop_worker()


def test_transcribe_and_vendor_sync_jobs(tmp_path, ws):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    from engines.dataset.transcripts import load_transcripts, set_text

    ds = _dataset(ws)
    set_text(ds, "c1", "My own words.")
    runner = JobRunner(ws)
    # every clip already has text: the job reports so without loading Whisper
    rec = _run(runner, "dataset.transcribe", {"dataset": "alice"})
    assert rec.state == "done", runner.read_log(rec.id)
    assert rec.result["report"]["kept_edited"] == 3 and rec.result["report"]["transcribed"] == 0
    assert load_transcripts(ds)["c1"]["text"] == "My own words."
    missing = _run(runner, "dataset.transcribe", {"dataset": ""})
    assert missing.state == "failed" and "No dataset" in missing.error

    src = tmp_path / "upstream"
    src.mkdir()
    git = ["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(src)], check=True)
    (src / "README.md").write_text("upstream stand-in\n")
    subprocess.run([*git, "add", "README.md"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    sync = _run(runner, "cosyvoice.vendor_sync", {"source": str(src), "commit": head, "dest": str(tmp_path / "co")})
    assert sync.state == "done", runner.read_log(sync.id)
    assert sync.result["commit"] == head and (tmp_path / "co" / "README.md").is_file()


def test_send_to_ab_writes_pending_file(ws, tmp_path):
    from engines.core.errors import InvalidInputError
    from engines.ab.ops import send_to_ab

    a, b = tmp_path / "epoch_0_whole.pt", tmp_path / "epoch_3_whole.pt"
    a.write_bytes(b"x")
    b.write_bytes(b"x")
    path = send_to_ab(ws, "/m", str(a), str(b), text="Hi.", speaker="alice", seed=3)
    assert path == ws.root / "ab" / "cosyvoice_pending.json"
    data = json.loads(path.read_text())
    assert data["a"]["checkpoint"] == str(a) and data["b"]["checkpoint"] == str(b)
    assert (data["model_dir"], data["speaker"], data["seed"], data["kind"]) == ("/m", "alice", 3, "cosyvoice")
    with pytest.raises(InvalidInputError):
        send_to_ab(ws, "/m", str(a), str(tmp_path / "gone.pt"))


def test_tab_builds_translated_and_shows_status(tmp_path):
    from voicelab_ui import i18n
    from voicelab_ui.app import build_app
    from voicelab_ui.context import UIContext
    from voicelab_ui.tabs.cosyvoice import doctor_markdown, table_value, transcript_rows

    ws = Workspace(root=tmp_path / "ws", settings=Settings(cosyvoice_repo=str(tmp_path / "no_checkout")))
    ws.ensure()
    _dataset(ws)
    i18n.USED_KEYS.clear()
    demo = build_app(UIContext(ws=ws, runner=JobRunner(ws)))
    assert i18n.missing_translations() == []
    cv_keys = {k for k in i18n.USED_KEYS if k.startswith("cv.")}
    assert len(cv_keys) > 60
    for key in cv_keys:
        en, zh = i18n.STRINGS[key]
        assert en.strip() and zh.strip()
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    for elem in ("vl-cv-status", "vl-cv-sync", "vl-cv-transcribe", "vl-cv-table", "vl-cv-prepare", "vl-cv-train",
                 "vl-cv-plot-loss", "vl-cv-assemble", "vl-cv-synth", "vl-cv-grid", "vl-cv-send-ab"):
        assert elem in ids
    api_names = {d.api_name for d in demo.fns.values()}
    for name in ("cosyvoice_doctor", "cosyvoice_transcribe", "cosyvoice_prepare", "cosyvoice_train",
                 "cosyvoice_assemble", "cosyvoice_synth", "cosyvoice_grid", "cosyvoice_transcripts"):
        assert name in api_names

    md = doctor_markdown(ws, str(ws.root / "no_model"))
    assert "Upstream checkout" in md and "Sync upstream" in md and "voicelab vendor sync" in md
    assert "voicelab assets download" in md and "Not ready" in md
    rows = transcript_rows(ws, "alice")
    assert [r[0] for r in table_value(rows)] == ["c1", "c2", "c3"]
    assert table_value(rows)[0][2] == SENTENCES["c1"] and table_value(rows)[0][3] == "edited"


@pytest.mark.browser
@pytest.mark.slow
def test_cosyvoice_tab_in_browser_status_edit_and_job_result(tmp_path):
    from browser import browser_page, studio

    from engines.dataset.transcripts import load_transcripts

    ws = Workspace.open(tmp_path / "ws")
    ws.ensure()
    ds = _dataset(ws)
    env = {"VOICELAB_COSYVOICE_REPO": str(tmp_path / "no_checkout")}
    with studio(tmp_path / "ws", env=env) as (url, _), browser_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="CosyVoice").click()
        page.wait_for_function("() => document.querySelector('#vl-cv-status')?.innerText.includes('Upstream checkout')",
                               timeout=60000)
        status = page.locator("#vl-cv-status").inner_text()
        assert "Sync upstream" in status and str(tmp_path / "no_checkout") in status
        page.locator("#vl-cv-dataset input").fill("alice")
        page.locator("#vl-cv-dataset input").press("Enter")
        page.wait_for_function("() => document.querySelector('#vl-cv-table')?.innerText.includes('birch canoe')",
                               timeout=60000)
        page.locator("#vl-cv-table [data-testid='cell-1-2']").click()
        page.wait_for_function("() => document.querySelector('#vl-cv-clip-id textarea, #vl-cv-clip-id input')"
                               "?.value === 'c2'", timeout=60000)
        page.locator("#vl-cv-clip-text textarea").fill("Glue the sheet to the blue background.")
        page.locator("#vl-cv-save-text").click()
        page.wait_for_function("() => document.querySelector('#vl-cv-table')?.innerText.includes('to the blue')",
                               timeout=60000)
        # a job: its result shows in the section when the job panel reports it finished
        page.locator("#vl-cv-transcribe").click()
        page.wait_for_function("() => document.querySelector('#vl-cv-transcripts-msg')?.innerText"
                               ".includes('kept edited 3')", timeout=60000)
        # the same through the API (gradio_client)
        from gradio_client import Client

        client = Client(url, verbose=False)
        report = client.predict("", api_name="/cosyvoice_doctor")
        assert report["ok"] is False and report["checkout"]["present"] is False
        client.predict("alice", "c3", "Rice is served in bowls.", api_name="/cosyvoice_set_text")
        rows = client.predict("alice", api_name="/cosyvoice_transcripts")
        assert [r["text"] for r in rows][1:] == ["Glue the sheet to the blue background.", "Rice is served in bowls."]
    assert load_transcripts(ds)["c2"]["text"] == "Glue the sheet to the blue background."
