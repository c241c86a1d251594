"""CosyVoice tools: vendor sync, doctor, averaging, model-dir assembly, synthesis, CLI.

No upstream checkout or real weights: git repositories, checkpoints and a
fake ``cosyvoice`` package (same AutoModel calling convention) are made here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from engines.core.errors import InvalidInputError, InvalidModelError, MissingAssetError, VoiceLabError
from engines.core.hooks import Hooks
from engines.core.settings import Settings, Workspace
from engines.cosyvoice import doctor as doctor_mod
from engines.cosyvoice import synth
from engines.cosyvoice.assemble import (
    assemble_from_experiment,
    assemble_model_dir,
    list_models,
    load_speaker_embedding,
)
from engines.cosyvoice.average import average_checkpoints, select_checkpoints
from engines.cosyvoice.model_dir import list_speakers
from engines.cosyvoice.upstream import detect_version, missing_model_files
from engines.cosyvoice.vendor import vendor_sync

V2_FILES = ("llm.pt", "flow.pt", "hift.pt", "campplus.onnx", "speech_tokenizer_v2.onnx")


# -- helpers ----------------------------------------------------------------------------------

def _git(*args: str, cwd: Path) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t", GIT_CONFIG_GLOBAL="/dev/null")
    return subprocess.run(["git", "-c", "protocol.file.allow=always", *args], cwd=cwd, env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def _make_upstream_repo(tmp: Path) -> tuple[Path, str, str]:
    """A local 'CosyVoice' repo with a Matcha-TTS submodule and two commits."""
    matcha = tmp / "matcha_src"
    _write(matcha, {"matcha/__init__.py": ""})
    _git("init", "-q", str(matcha), cwd=tmp)
    _git("add", ".", cwd=matcha)
    _git("commit", "-q", "-m", "matcha", cwd=matcha)
    repo = tmp / "cosy_src"
    _write(repo, {"cosyvoice/__init__.py": "", "cosyvoice/cli/cosyvoice.py": "", "cosyvoice/bin/train.py": "",
                  "README.md": "one\n"})
    _git("init", "-q", str(repo), cwd=tmp)
    _git("submodule", "add", "-q", str(matcha), "third_party/Matcha-TTS", cwd=repo)
    _git("add", ".", cwd=repo)
    _git("commit", "-q", "-m", "first", cwd=repo)
    first = _git("rev-parse", "HEAD", cwd=repo)
    (repo / "README.md").write_text("two\n")
    _git("commit", "-q", "-am", "second", cwd=repo)
    second = _git("rev-parse", "HEAD", cwd=repo)
    return repo, first, second


def _fake_checkout(root: Path) -> Path:
    """A checkout whose cosyvoice.cli.cosyvoice.AutoModel behaves like upstream's (calling convention)."""
    _write(root, {
        "cosyvoice/__init__.py": "",
        "cosyvoice/cli/__init__.py": "",
        "cosyvoice/bin/train.py": "",
        "third_party/Matcha-TTS/matcha/__init__.py": "",
        "cosyvoice/cli/cosyvoice.py": textwrap.dedent("""\
            import json
            import os
            import torch
            LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'calls.jsonl')


            def record(*item):
                with open(LOG, 'a') as f:
                    f.write(json.dumps(item) + '\\n')


            class _Model:
                def __init__(self, d):
                    self.llm, self.flow = torch.nn.Linear(2, 2), torch.nn.Linear(3, 3)
                    self.llm.load_state_dict(torch.load(os.path.join(d, 'llm.pt'), weights_only=True), strict=True)
                    self.flow.load_state_dict(torch.load(os.path.join(d, 'flow.pt'), weights_only=True), strict=True)


            class _CosyVoice:
                def __init__(self, model_dir, v3):
                    self.model, self.sample_rate, self.v3 = _Model(model_dir), 24000, v3
                    p = os.path.join(model_dir, 'spk2info.pt')
                    self.spk2info = torch.load(p, weights_only=True) if os.path.exists(p) else {}

                def _out(self, text, speed):
                    n = int(100 * len(text) / speed)
                    return {'tts_speech': torch.full((1, n), float(self.model.llm.weight[0, 0]))}

                def inference_sft(self, tts_text, spk_id, stream=False, speed=1.0, text_frontend=True):
                    assert spk_id in self.spk2info and self.spk2info[spk_id]['embedding'].shape == (1, 192)
                    assert not self.v3 or '<|endofprompt|>' in tts_text
                    record('sft', tts_text, spk_id, speed)
                    yield self._out(tts_text, speed)

                def inference_zero_shot(self, tts_text, prompt_text, prompt_wav, zero_shot_spk_id='', stream=False,
                                        speed=1.0, text_frontend=True):
                    assert os.path.exists(prompt_wav)
                    assert not self.v3 or '<|endofprompt|>' in prompt_text
                    record('zero_shot', tts_text, prompt_text, speed)
                    yield self._out(tts_text, speed)

                def inference_instruct2(self, tts_text, instruct_text, prompt_wav, zero_shot_spk_id='', stream=False,
                                        speed=1.0, text_frontend=True):
                    record('instruct2', tts_text, instruct_text, speed)
                    yield self._out(tts_text, speed)


            def AutoModel(**kwargs):
                d = kwargs['model_dir']
                record('load', d)
                return _CosyVoice(d, os.path.exists(os.path.join(d, 'cosyvoice3.yaml')))
            """),
    })
    return root


def _make_model_dir(d: Path, version: str = "v2", speakers: dict | None = None, llm_value: float = 0.5) -> Path:
    import torch

    d.mkdir(parents=True, exist_ok=True)
    (d / {"v1": "cosyvoice.yaml", "v2": "cosyvoice2.yaml", "v3": "cosyvoice3.yaml"}[version]).write_text("sample_rate: 24000\n")
    llm = torch.nn.Linear(2, 2)
    with torch.no_grad():
        llm.weight.fill_(llm_value)
    torch.save(llm.state_dict(), d / "llm.pt")
    torch.save(torch.nn.Linear(3, 3).state_dict(), d / "flow.pt")
    torch.save({"w": torch.zeros(2)}, d / "hift.pt")
    (d / "campplus.onnx").write_bytes(b"onnx")
    (d / f"speech_tokenizer_{version}.onnx").write_bytes(b"onnx")
    if version != "v1":
        (d / "CosyVoice-BlankEN").mkdir(exist_ok=True)
        (d / "CosyVoice-BlankEN" / "config.json").write_text("{}")
    if speakers:
        torch.save({k: {"embedding": torch.as_tensor(v, dtype=torch.float32).reshape(1, 192)} for k, v in speakers.items()},
                   d / "spk2info.pt")
    return d


@pytest.fixture
def fake_upstream(tmp_path: Path):
    from engines.cosyvoice.worker import stop_worker

    checkout = _fake_checkout(tmp_path / "CosyVoice")
    yield checkout
    stop_worker()


def _recorded(checkout: Path) -> tuple[list, list]:
    """(loads, calls) the fake AutoModel wrote in the synthesis worker process."""
    path = checkout / "cosyvoice" / "cli" / "calls.jsonl"
    items = [tuple(json.loads(line)) for line in path.read_text().splitlines()] if path.is_file() else []
    return [i[1] for i in items if i[0] == "load"], [i for i in items if i[0] != "load"]


# -- vendor sync -------------------------------------------------------------------------------

def test_vendor_sync_clones_pinned_commit_with_submodule_then_updates(tmp_path: Path) -> None:
    repo, first, second = _make_upstream_repo(tmp_path)
    dest = tmp_path / "vendor" / "CosyVoice"
    res = vendor_sync(str(repo), dest, first[:8], Hooks())
    assert res.commit == first and res.path == dest
    assert (dest / "third_party" / "Matcha-TTS" / "matcha" / "__init__.py").is_file()
    assert res.submodules == ["third_party/Matcha-TTS"]
    assert (dest / "README.md").read_text() == "one\n"
    assert not list(dest.parent.glob(".*partial*"))
    res2 = vendor_sync(str(repo), dest, second, Hooks())
    assert res2.commit == second and (dest / "README.md").read_text() == "two\n"
    # through the CLI, back to the first commit
    from engines.cli import main

    assert main(["--workspace", str(tmp_path / "ws"), "vendor", "sync", "--source", str(repo), "--commit", first,
                 "--dest", str(dest), "--quiet"]) == 0
    assert (dest / "README.md").read_text() == "one\n"
    with pytest.raises(Exception, match="not in the CosyVoice repository"):
        vendor_sync(str(repo), dest, "deadbeef" * 5, Hooks())


# -- doctor ------------------------------------------------------------------------------------

def test_doctor_missing_partial_and_failing_imports(tmp_path: Path, fake_upstream: Path) -> None:
    missing = doctor_mod.doctor(Settings(cosyvoice_repo=str(tmp_path / "nope")), tmp_path / "no_model",
                                disk_path=tmp_path)
    assert not missing.ok and not missing.checkout["present"]
    assert any("voicelab vendor sync" in p for p in missing.problems)
    assert any("does not exist" in p for p in missing.problems)
    assert "MISSING" in missing.to_text()
    json.dumps(missing.to_dict())

    model = tmp_path / "CosyVoice2-0.5B"
    model.mkdir()
    (model / "cosyvoice2.yaml").write_text("x: 1\n")
    (model / "llm.pt").write_bytes(b"x")
    partial = doctor_mod.doctor(Settings(cosyvoice_repo=str(fake_upstream)), model, disk_path=tmp_path)
    assert partial.checkout["present"] and partial.checkout["matcha"] and partial.checkout["commit"] is None
    assert partial.model["version"] == "v2"
    assert partial.model["missing"] == {
        "prepare": ["campplus.onnx", "speech_tokenizer_v2.onnx"],
        "train": ["flow.pt", "CosyVoice-BlankEN/", "CosyVoice-BlankEN/config.json"],
        "synth": ["flow.pt", "hift.pt", "campplus.onnx", "speech_tokenizer_v2.onnx", "CosyVoice-BlankEN/",
                  "CosyVoice-BlankEN/config.json"]}
    only_prepare = doctor_mod.inspect_model_dir(model, ["prepare"])
    assert list(only_prepare["missing"]) == ["prepare"]
    online = doctor_mod.inspect_model_dir(model, ["train"], online_features=True)
    assert "speech_tokenizer_v2.batch.onnx" in online["missing"]["train"]
    assert "speech_tokenizer_v2.batch.onnx" not in partial.model["missing"]["train"]
    # the stand-in checkout has AutoModel but none of upstream's model code: the import probe says so
    runtime = partial.runtime["modules"]
    assert runtime["cosyvoice.cli.cosyvoice"]["ok"] and not runtime["cosyvoice.flow.flow_matching"]["ok"]
    assert partial.runtime["torchaudio"] in ("voicelab stand-in",) or partial.runtime["torchaudio"].startswith("torchaudio")
    assert any("`import cosyvoice.flow.flow_matching` fails" in p and "setup.sh" in p for p in partial.problems)
    assert any("ships no SFT speakers" in n for n in partial.notes)
    assert "FAILING" in partial.to_text()


def test_doctor_falls_back_to_cpu_when_cuda_ep_cannot_load(monkeypatch) -> None:
    fake = types.ModuleType("onnxruntime")
    fake.__version__ = "9.9"
    fake.get_available_providers = lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]

    def session(*a, **k):
        raise RuntimeError("libcudnn.so.9: cannot open shared object file")

    fake.InferenceSession = session
    monkeypatch.setitem(sys.modules, "onnxruntime", fake)
    status = doctor_mod.onnx_providers_status()
    assert status["cuda_listed"] and not status["cuda_usable"] and status["use"] == "CPUExecutionProvider"
    assert "libcudnn" in status["note"]
    assert doctor_mod.preferred_onnx_providers() == ["CPUExecutionProvider"]


def test_version_detection_and_required_files(tmp_path: Path) -> None:
    d = _make_model_dir(tmp_path / "v3", "v3")
    assert detect_version(d) == "v3" and missing_model_files(d) == []
    (d / "speech_tokenizer_v3.onnx").unlink()
    assert missing_model_files(d) == ["speech_tokenizer_v3.onnx"]
    assert detect_version(tmp_path) is None


# -- averaging ---------------------------------------------------------------------------------

def _checkpoints(d: Path, losses: list[float]) -> None:
    import torch
    import yaml

    d.mkdir(parents=True, exist_ok=True)
    for e, loss in enumerate(losses):
        state = {"w": torch.full((2, 3), float(e + 1)), "h": torch.full((4,), float(e), dtype=torch.float16),
                 "count": torch.tensor(7), "epoch": e, "step": 10 * (e + 1)}
        torch.save(state, d / f"epoch_{e}_whole.pt")
        info = {"epoch": e, "step": 10 * (e + 1), "tag": "CV", "loss_dict": {"loss": loss, "acc": 0.5},
                "grad_norm": torch.tensor(1.5)}
        (d / f"epoch_{e}_whole.yaml").write_text(yaml.dump(info))  # grad_norm: !!python/object/apply tag
    (d / "init.pt").write_bytes(b"x")


def test_average_last_best_and_explicit(tmp_path: Path) -> None:
    import torch

    src = tmp_path / "llm"
    _checkpoints(src, [1.0, 3.0, 0.5, 2.0])
    assert "python/object" in (src / "epoch_0_whole.yaml").read_text()
    last = average_checkpoints(src, tmp_path / "last.pt", mode="last", num=2)
    assert [p.name for p in last.sources] == ["epoch_2_whole.pt", "epoch_3_whole.pt"]
    avg = torch.load(last.out_path, weights_only=True)
    assert set(avg) == {"w", "h", "count"}  # epoch/step stripped
    assert torch.equal(avg["w"], torch.full((2, 3), 3.5)) and avg["h"].dtype == torch.float16
    assert torch.equal(avg["h"], torch.full((4,), 2.5, dtype=torch.float16)) and int(avg["count"]) == 7

    assert [p.name for p in select_checkpoints(src, "best", 2)] == ["epoch_0_whole.pt", "epoch_2_whole.pt"]
    best = average_checkpoints(src, tmp_path / "best.pt", mode="best", num=2)
    assert best.scores == {"epoch_0_whole.pt": 1.0, "epoch_2_whole.pt": 0.5}
    assert torch.equal(torch.load(best.out_path, weights_only=True)["w"], torch.full((2, 3), 2.0))

    explicit = average_checkpoints([src / "epoch_0_whole.pt", src / "epoch_1_whole.pt", src / "epoch_3_whole.pt"],
                                   tmp_path / "x.pt")
    assert torch.allclose(torch.load(explicit.out_path, weights_only=True)["w"], torch.full((2, 3), 7 / 3))
    torch.save({"other": torch.zeros(1)}, tmp_path / "odd.pt")
    with pytest.raises(InvalidModelError):
        average_checkpoints([src / "epoch_0_whole.pt", tmp_path / "odd.pt"], tmp_path / "y.pt")
    assert not (tmp_path / "y.pt").exists() and not list(tmp_path.glob(".y.*"))
    with pytest.raises(InvalidInputError):
        select_checkpoints(tmp_path / "empty_dir_missing", "last", 2)


# -- assembly ----------------------------------------------------------------------------------

def test_assemble_model_dir_layout_and_spk2info(tmp_path: Path) -> None:
    import torch

    base = _make_model_dir(tmp_path / "base", "v2", speakers={"base_spk": [0.0] * 192})
    emb = [float(i) / 192 for i in range(192)]
    torch.save({"alice": emb}, tmp_path / "spk2embedding.pt")
    ckpt = tmp_path / "epoch_3_whole.pt"
    torch.save({**torch.nn.Linear(2, 2).state_dict(), "epoch": 3, "step": 40}, ckpt)
    out = tmp_path / "ws" / "cosyvoice" / "models" / "alice"
    res = assemble_model_dir(base, out, ckpt, spk_name="alice", spk_embedding=tmp_path / "spk2embedding.pt")
    assert res.model_dir == out and res.speakers == ["base_spk", "alice"]
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["CosyVoice-BlankEN", "campplus.onnx", "cosyvoice2.yaml", "flow.pt", "hift.pt", "llm.pt",
                            "speech_tokenizer_v2.onnx", "spk2info.pt", "voicelab_model.json"])
    for linked in ("CosyVoice-BlankEN", "campplus.onnx", "cosyvoice2.yaml", "flow.pt", "hift.pt"):
        assert (out / linked).is_symlink() and (out / linked).resolve() == (base / linked).resolve()
    assert not (out / "llm.pt").is_symlink() and not (out / "spk2info.pt").is_symlink()
    assert set(torch.load(out / "llm.pt", weights_only=True)) == {"weight", "bias"}
    info = torch.load(out / "spk2info.pt", weights_only=True)
    assert set(info["alice"]) == {"embedding", "llm_embedding", "flow_embedding"}
    for key in ("embedding", "llm_embedding", "flow_embedding"):
        t = info["alice"][key]
        assert t.shape == (1, 192) and t.dtype == torch.float32 and torch.equal(t[0], torch.tensor(emb))
    assert torch.equal(info["base_spk"]["embedding"], torch.zeros(1, 192))
    assert list_speakers(out) == ["base_spk", "alice"]
    assert missing_model_files(out) == []

    with pytest.raises(InvalidInputError, match="already exists"):
        assemble_model_dir(base, out, ckpt, spk_name="alice", spk_embedding=emb)
    flow = tmp_path / "flow_avg.pt"
    torch.save(torch.nn.Linear(3, 3).state_dict(), flow)
    res2 = assemble_model_dir(base, out, ckpt, flow, spk_name="bob", spk_embedding=emb, link=False, overwrite=True)
    assert res2.copied and not any(p.is_symlink() for p in out.iterdir())
    assert (out / "CosyVoice-BlankEN" / "config.json").is_file()
    assert torch.equal(torch.load(out / "flow.pt", weights_only=True)["weight"], torch.load(flow)["weight"])
    assert list_speakers(out) == ["base_spk", "bob"]
    with pytest.raises(InvalidInputError):
        load_speaker_embedding([0.0] * 10)


# -- synthesis ---------------------------------------------------------------------------------

def test_sentence_split_and_prompts(tmp_path: Path) -> None:
    assert synth.split_sentences("Hello there. How are you today? Fine!\nNext line here.") == [
        "Hello there.", "How are you today?", "Fine! Next line here."]  # short fragments join the next
    assert synth.split_sentences("今天天气很好，阳光明媚。我们去公园散步吧！好的。") == [
        "今天天气很好，阳光明媚。", "我们去公园散步吧！好的。"]
    long = "word " * 100
    parts = synth.split_sentences(long, max_chars=50)
    assert all(len(p) <= 50 for p in parts) and " ".join(parts).split() == long.split()
    assert synth.split_sentences("  ") == []
    assert synth.with_endofprompt("You are a helpful assistant.", "Hi") == "You are a helpful assistant.<|endofprompt|>Hi"
    assert synth.with_endofprompt("x", "a<|endofprompt|>b") == "a<|endofprompt|>b"
    assert synth.resolve_instruct("neutral", None) == "You are a helpful assistant."
    assert synth.resolve_instruct("neutral", "Speak slowly.") == "Speak slowly."
    ws = Workspace(root=tmp_path / "ws", settings=Settings())
    ws.ensure()
    synth.save_preset(ws, "happy", "You are a helpful assistant. Speak happily.")
    presets = synth.load_presets(ws)
    assert presets["neutral"] == synth.NEUTRAL_PRESET and presets["happy"].endswith("happily.")
    with pytest.raises(InvalidInputError):
        synth.resolve_instruct("nope", "", presets)


def test_synthesize_through_automodel(tmp_path: Path, fake_upstream: Path) -> None:
    import soundfile as sf
    import torch

    model = _make_model_dir(tmp_path / "spk_model", "v2", speakers={"alice": [0.1] * 192})
    progress: list[str] = []
    hooks = Hooks(progress=lambda f, m: progress.append(m))
    out = synth.synthesize(model, "First sentence here. Second one is here.", "alice", speed=1.0,
                           out_path=tmp_path / "o.wav", hooks=hooks, checkout=fake_upstream)
    loads, calls = _recorded(fake_upstream)
    assert calls == [("sft", "First sentence here.", "alice", 1.0), ("sft", "Second one is here.", "alice", 1.0)]
    audio, sr = sf.read(out)
    assert sr == 24000 and len(audio) == 100 * (20 + 19) and abs(audio.mean() - 0.5) < 1e-3
    assert any("Sentence 2/2" in m for m in progress)
    assert not list(tmp_path.glob(".o.*"))

    # hot-load an epoch checkpoint (epoch/step stripped) into the llm, then back to the dir's llm.pt
    lin = torch.nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.fill_(0.25)
    torch.save({**lin.state_dict(), "epoch": 4, "step": 99}, tmp_path / "epoch_4_whole.pt")
    out2 = synth.synthesize(model, "Short text here.", "alice", checkpoint=tmp_path / "epoch_4_whole.pt",
                            out_path=tmp_path / "o2.wav", checkout=fake_upstream)
    assert abs(sf.read(out2)[0].mean() - 0.25) < 1e-3
    out3 = synth.synthesize(model, "Short text here.", "alice", speed=2.0, out_path=tmp_path / "o3.wav",
                            checkout=fake_upstream)
    audio3, _ = sf.read(out3)
    assert abs(audio3.mean() - 0.5) < 1e-3 and len(audio3) == 50 * 16
    assert len(_recorded(fake_upstream)[0]) == 1  # loaded once, in one worker
    torch.save({"w": torch.ones(2)}, model / "hift.pt")
    os.utime(model / "hift.pt", ns=(1, 1))
    synth.synthesize(model, "Again please.", "alice", out_path=tmp_path / "o4.wav", checkout=fake_upstream)
    assert len(_recorded(fake_upstream)[0]) == 2  # weights changed -> reloaded in a new worker

    with pytest.raises(InvalidInputError, match="not in this model"):
        synth.synthesize(model, "Hi there.", "bob", out_path=tmp_path / "x.wav", checkout=fake_upstream)
    with pytest.raises(VoiceLabError, match="matches neither the llm nor the flow"):
        torch.save({"nope": torch.zeros(1)}, tmp_path / "bad.pt")
        synth.synthesize(model, "Hi there.", "alice", checkpoint=tmp_path / "bad.pt", out_path=tmp_path / "x.wav",
                         checkout=fake_upstream)


def test_v3_prompts_zero_shot_and_compare_grid(tmp_path: Path, fake_upstream: Path) -> None:
    import soundfile as sf

    model = _make_model_dir(tmp_path / "v3model", "v3", speakers={"alice": [0.1] * 192})
    ws = Workspace(root=tmp_path / "ws", settings=Settings())
    ws.ensure()
    synth.save_preset(ws, "happy", "You are a helpful assistant. Speak happily.")
    items = synth.compare_grid(model, "Hello world, friends.", "alice", tmp_path / "grid",
                               presets=["neutral", "happy"], speeds=[1.0, 1.25], preset_texts=synth.load_presets(ws),
                               checkout=fake_upstream)
    assert [(i.preset, i.speed) for i in items] == [("neutral", 1.0), ("neutral", 1.25), ("happy", 1.0), ("happy", 1.25)]
    assert all(i.path.is_file() for i in items)
    assert len(sf.read(items[1].path)[0]) < len(sf.read(items[0].path)[0])
    calls = _recorded(fake_upstream)[1]
    assert calls[0][1] == "You are a helpful assistant.<|endofprompt|>Hello world, friends."
    assert calls[2][1] == "You are a helpful assistant. Speak happily.<|endofprompt|>Hello world, friends."

    prompt = tmp_path / "prompt.wav"
    sf.write(prompt, [0.0] * 1600, 16000)
    synth.synthesize(model, "Say this.", mode="zero_shot", prompt_wav=prompt, prompt_text="Prompt words.",
                     out_path=tmp_path / "zs.wav", checkout=fake_upstream)
    calls = _recorded(fake_upstream)[1]
    assert calls[-1] == ("zero_shot", "Say this.", "You are a helpful assistant.<|endofprompt|>Prompt words.", 1.0)
    synth.synthesize(model, "Say this.", mode="instruct", instruct="Speak slowly.", prompt_wav=prompt,
                     out_path=tmp_path / "in.wav", checkout=fake_upstream)
    calls = _recorded(fake_upstream)[1]
    assert calls[-1] == ("instruct2", "Say this.", "Speak slowly.<|endofprompt|>", 1.0)
    with pytest.raises(InvalidInputError):
        synth.synthesize(model, "Say this.", mode="zero_shot", out_path=tmp_path / "zs2.wav", checkout=fake_upstream)


def test_synth_errors_name_the_missing_piece(tmp_path: Path) -> None:
    model = _make_model_dir(tmp_path / "m", "v2", speakers={"alice": [0.1] * 192})
    with pytest.raises(MissingAssetError) as err:
        synth.synthesize(model, "Hello there.", "alice", out_path=tmp_path / "o.wav", checkout=tmp_path / "none")
    assert "voicelab vendor sync" in str(err.value) and "checkout" in str(err.value)
    (model / "hift.pt").unlink()
    with pytest.raises(MissingAssetError, match="hift.pt"):
        synth.synthesize(model, "Hello there.", "alice", out_path=tmp_path / "o.wav", checkout=tmp_path / "none")


def test_cli_average_assemble_and_speakers(tmp_path: Path, capsys) -> None:
    import torch

    from engines.cli import main

    ws_root = tmp_path / "ws"
    exp_llm = ws_root / "cosyvoice" / "train" / "e1" / "llm"
    _checkpoints(exp_llm, [1.0, 0.2, 0.3])
    assert main(["--workspace", str(ws_root), "cosyvoice", "average", "--exp", "e1", "--mode", "best", "--num", "2",
                 "--quiet"]) == 0
    avg = ws_root / "cosyvoice" / "train" / "e1" / "averaged" / "llm.pt"
    assert torch.equal(torch.load(avg, weights_only=True)["w"], torch.full((2, 3), 2.5))
    base = tmp_path / "base"
    _make_model_dir(base, "v2")
    torch.save({**torch.load(base / "llm.pt")}, avg)  # a valid llm for the base
    data = ws_root / "cosyvoice" / "data" / "d1" / "train"
    data.mkdir(parents=True)
    torch.save({"spk1": [0.5] * 192}, data / "spk2embedding.pt")
    assert main(["--workspace", str(ws_root), "cosyvoice", "assemble", "--name", "alice", "--base", str(base),
                 "--speaker", "alice", "--exp", "e1", "--data", "d1", "--reuse-averaged", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["--workspace", str(ws_root), "cosyvoice", "speakers", "--model", "alice"]) == 0
    assert capsys.readouterr().out.split() == ["alice"]
    # --exp without a prior `average`: averaged on the fly (best 1 = epoch 1)
    import shutil

    shutil.rmtree(avg.parent)
    assert main(["--workspace", str(ws_root), "cosyvoice", "assemble", "--name", "alice2", "--base", str(base),
                 "--speaker", "alice", "--exp", "e1", "--mode", "best", "--num", "1", "--embedding",
                 str(data / "spk2embedding.pt"), "--embedding-key", "spk1", "--quiet"]) == 0
    model2 = ws_root / "cosyvoice" / "models" / "alice2"
    assert torch.equal(torch.load(model2 / "llm.pt", weights_only=True)["w"], torch.full((2, 3), 2.0))
    assert torch.equal(torch.load(model2 / "spk2info.pt")["alice"]["embedding"], torch.full((1, 192), 0.5))
    capsys.readouterr()
    assert main(["--workspace", str(ws_root), "cosyvoice", "doctor", "--json"]) == 1
    rep = json.loads(capsys.readouterr().out)
    assert rep["ok"] is False and rep["checkout"]["present"] is False


def test_assemble_from_experiment_averages_then_builds(tmp_path: Path) -> None:
    import torch

    ws = Workspace(root=tmp_path / "ws", settings=Settings())
    ws.ensure()
    base = _make_model_dir(tmp_path / "base", "v2")
    exp = ws.cosyvoice / "train" / "e2"
    for model, lin in (("llm", torch.nn.Linear(2, 2)), ("flow", torch.nn.Linear(3, 3))):
        (exp / model).mkdir(parents=True)
        for e in range(3):
            with torch.no_grad():
                lin.weight.fill_(float(e))
            torch.save({**lin.state_dict(), "epoch": e, "step": e}, exp / model / f"epoch_{e}_whole.pt")
    res = assemble_from_experiment(ws, "e2", base, "bob", "bob", [0.2] * 192, mode="last", num=2)
    assert res.model_dir == ws.cosyvoice / "models" / "bob" and list_models(ws) == [res.model_dir]
    assert torch.equal(torch.load(res.model_dir / "llm.pt")["weight"], torch.full((2, 2), 1.5))
    assert torch.equal(torch.load(res.model_dir / "flow.pt")["weight"], torch.full((3, 3), 1.5))
    assert not (res.model_dir / "flow.pt").is_symlink() and (exp / "averaged" / "flow.pt").is_file()
