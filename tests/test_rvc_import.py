"""Community model import: zips with confusing names, ambiguity, malicious pickles, URLs, Hugging Face repos.

Voices are tiny real RVC models (the real architecture, see test_rvc_convert.make_fast_voice);
indexes are built by our faiss builder from random features of the right dimension.
"""

from __future__ import annotations

import json
import os
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from test_assets import hub  # noqa: F401 - the local Hugging Face stand-in fixture

from engines.core.errors import InvalidInputError, UnsafeFileError, VoiceLabError
from engines.core.settings import Workspace
from engines.rvc.index import read_index_header
from engines.rvc.model_import import import_models, source_kind
from engines.rvc.model_import.install import read_sidecar
from engines.rvc.ops.catalog import guess_index


def make_index(tmp: Path, exp: str, version: str, frames: int = 120, seed: int = 0) -> Path:
    """A real upstream-named index (added_IVF..._<exp>_<version>.index) built by our builder."""
    from engines.rvc.index import IndexParams, build_index

    scratch = Workspace(root=tmp / f"scratch-{exp}-{version}")
    scratch.ensure()
    dim = 256 if version == "v1" else 768
    folder = scratch.experiment_dir(exp) / f"3_feature{dim}"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    np.save(folder / "0.npy", rng.standard_normal((frames, dim)).astype(np.float32))
    return build_index(scratch, exp, IndexParams(version=version)).index_path


def voice(path: Path, version: str, sr: str = "40k", seed: int = 0) -> Path:
    from test_rvc_convert import make_fast_voice

    path.parent.mkdir(parents=True, exist_ok=True)
    return make_fast_voice(path, version, sr, f0=True, seed=seed)


def make_zip(path: Path, members: dict[str, Path | bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            if isinstance(data, Path):
                zf.write(data, name)
            else:
                zf.writestr(name, data)
    return path


def _dim(index_path: str | Path) -> int:
    return read_index_header(index_path).dim


def test_source_kinds(tmp_path):
    (tmp_path / "a.zip").write_bytes(b"")
    assert source_kind(str(tmp_path)) == "folder"
    assert source_kind("someone/voices") == source_kind("hf://someone/voices") == "hf"
    assert source_kind("https://huggingface.co/someone/voices/tree/main") == "hf"
    assert source_kind("https://huggingface.co/someone/voices/resolve/main/kiki.zip") == "url"
    assert source_kind("http://127.0.0.1:8000/kiki.zip") == "url"
    assert source_kind(str(tmp_path / "a.zip")) == "zip"


def test_zip_with_two_voices_and_confusing_names_pairs_by_dimension(ws, tmp_path):
    """The names all say "kiki" (and one v1 voice is called kiki_v2): only the files' dimensions tell."""
    from engines.cli import main

    members = {
        "kiki_v2.pth": voice(tmp_path / "src" / "a.pth", "v1"),          # a v1 model, despite its name
        "kiki.pth": voice(tmp_path / "src" / "b.pth", "v2", seed=1),
        "added_IVF2_Flat_nprobe_1_kiki_v2.index": make_index(tmp_path, "kiki", "v2"),
        "added_IVF2_Flat_nprobe_1_kiki_v1.index": make_index(tmp_path, "kiki", "v1"),
        "readme.txt": b"enjoy",
        "../escape.pth": b"nope",
    }
    zpath = make_zip(tmp_path / "kiki-pack.zip", members)
    code = main(["--workspace", str(ws.root), "rvc", "import", str(zpath), "--json", "--quiet"])
    assert code == 0
    v1, v2 = ws.weights / "kiki_v2.pth", ws.weights / "kiki.pth"
    assert v1.is_file() and v2.is_file()
    assert _dim(guess_index(ws, v1)) == 256 and _dim(guess_index(ws, v2)) == 768  # "auto" finds each one's index
    side = read_sidecar(v1)
    assert side["source"] == str(zpath) and side["member"] == "kiki-pack.zip!kiki_v2.pth" and side["version"] == "v1"
    assert side["index_member"] == "kiki-pack.zip!added_IVF2_Flat_nprobe_1_kiki_v1.index"
    assert len(side["sha256"]) == 64
    assert sorted(p.name for p in ws.indices.glob("*.index")) == ["kiki.index", "kiki_v2.index"]
    assert not (tmp_path / "escape.pth").exists() and not (ws.root.parent / "escape.pth").exists()
    assert not (ws.root / ".import").exists()  # staging is gone

    # the same zip again: everything is already there, nothing duplicated
    res = import_models(ws, str(zpath))
    assert [v["action"] for v in res["voices"]] == ["already", "already"]
    assert "unsafe path" in next(s["reason"] for s in res["skipped"] if "escape" in s["file"])
    assert len(list(ws.weights.glob("*.pth"))) == 2 and len(list(ws.indices.glob("*.index"))) == 2
    # a different model under a taken name is kept beside, never over the existing one
    other = make_zip(tmp_path / "other.zip", {"kiki.pth": voice(tmp_path / "src" / "c.pth", "v2", seed=5)})
    res = import_models(ws, str(other))
    assert res["voices"][0]["action"] == "renamed" and res["voices"][0]["name"] == "kiki_2.pth"
    assert read_sidecar(v2)["member"] == "kiki-pack.zip!kiki.pth"


def test_ambiguous_indexes_install_nothing_until_chosen(ws, tmp_path):
    from engines.cli import main

    one, two = make_index(tmp_path, "one", "v2", seed=1), make_index(tmp_path, "two", "v2", seed=2)
    zpath = make_zip(tmp_path / "pack.zip", {
        "alpha.pth": voice(tmp_path / "s" / "alpha.pth", "v2"), "beta.pth": voice(tmp_path / "s" / "beta.pth", "v2", seed=1),
        one.name: one, two.name: two})
    res = import_models(ws, str(zpath))
    assert res["exit_code"] == 2 and "choose the index" in res["summary"]
    asked = {a["voice"]: a["candidates"] for a in res["needs_choice"]}
    assert set(asked) == {"pack.zip!alpha.pth", "pack.zip!beta.pth"}
    assert sorted(asked["pack.zip!alpha.pth"]) == sorted([f"pack.zip!{one.name}", f"pack.zip!{two.name}"])
    assert not list(ws.weights.iterdir()) and not list(ws.indices.iterdir())
    assert main(["--workspace", str(ws.root), "rvc", "import", str(zpath), "--quiet"]) == 2
    with pytest.raises(InvalidInputError, match="No index 'three"):
        import_models(ws, str(zpath), choices={"alpha.pth": "three.index"})
    res = import_models(ws, str(zpath), choices={"alpha.pth": two.name, "beta.pth": "none"})
    assert res["exit_code"] == 0
    assert read_sidecar(ws.weights / "alpha.pth")["index_member"] == f"pack.zip!{two.name}"
    assert read_sidecar(ws.weights / "beta.pth")["index"] is None
    assert [p.name for p in ws.indices.glob("*.index")] == ["alpha.index"]
    assert any("not paired" in s["reason"] for s in res["skipped"])


def _evil_pth(path: Path, marker: Path) -> Path:
    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"weight": {"x": torch.zeros(1)}, "config": [], "hack": Evil()}, path)
    return path


def test_zip_with_a_malicious_pickle_installs_nothing(ws, tmp_path):
    marker = tmp_path / "pwned"
    zpath = make_zip(tmp_path / "trap.zip", {
        "nice.pth": voice(tmp_path / "s" / "nice.pth", "v1"),
        "added_IVF2_Flat_nprobe_1_nice_v1.index": make_index(tmp_path, "nice", "v1"),
        "extra/bonus.pth": _evil_pth(tmp_path / "bonus.pth", marker)})
    with pytest.raises(UnsafeFileError) as err:
        import_models(ws, str(zpath))
    assert "Nothing was imported" in err.value.message and "extra/bonus.pth" in err.value.message
    assert "posix.system" in err.value.message
    assert not marker.exists()  # nothing in it ran
    assert not list(ws.weights.iterdir()) and not list(ws.indices.iterdir())
    assert not (ws.root / ".import").exists()
    # a damaged file is only skipped (it is not a threat), the rest imports
    damaged = make_zip(tmp_path / "damaged.zip", {"nice.pth": tmp_path / "s" / "nice.pth", "broken.pth": b"garbage"})
    res = import_models(ws, str(damaged))
    assert [v["name"] for v in res["voices"]] == ["nice.pth"]
    assert "not a readable PyTorch file" in res["skipped"][0]["reason"]


def test_an_old_torch_does_not_open_files_from_strangers(ws, tmp_path, monkeypatch):
    import torch

    zpath = make_zip(tmp_path / "v.zip", {"v.pth": voice(tmp_path / "s" / "v.pth", "v1")})
    monkeypatch.setattr(torch, "__version__", "2.5.1+cpu")
    with pytest.raises(VoiceLabError, match="CVE-2025-32434"):
        import_models(ws, str(zpath))
    assert not list(ws.weights.iterdir())


@pytest.fixture
def http_dir(tmp_path):
    """A plain HTTP server on 127.0.0.1 serving a folder."""
    root = tmp_path / "www"
    root.mkdir()
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = partial(Quiet, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_import_from_a_local_http_url(ws, tmp_path, http_dir, monkeypatch):
    monkeypatch.delenv("VOICELAB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    root, base = http_dir
    make_zip(root / "kiki.zip", {"kiki/kiki.pth": voice(tmp_path / "s" / "k.pth", "v1"),
                                 "kiki/added_IVF2_Flat_nprobe_1_kiki_v1.index": make_index(tmp_path, "kiki", "v1")})
    voice(root / "solo.pth", "v2")
    res = import_models(ws, f"{base}/kiki.zip?token=secret")
    assert res["kind"] == "url" and [v["name"] for v in res["voices"]] == ["kiki.pth"]
    side = read_sidecar(ws.weights / "kiki.pth")
    assert side["source"] == f"{base}/kiki.zip" and "secret" not in json.dumps(side)  # no query in the record
    assert _dim(guess_index(ws, ws.weights / "kiki.pth")) == 256
    res = import_models(ws, f"{base}/solo.pth", name="Solo voice")
    assert res["voices"][0]["name"] == "Solo voice.pth" and res["voices"][0]["index"] is None
    with pytest.raises(VoiceLabError, match="404"):
        import_models(ws, f"{base}/missing.zip")
    monkeypatch.setenv("VOICELAB_OFFLINE", "1")
    with pytest.raises(VoiceLabError, match="switched off"):
        import_models(ws, f"{base}/kiki.zip")
    monkeypatch.delenv("VOICELAB_OFFLINE")
    lan = Workspace.open(tmp_path / "lan-ws", overrides={"lan": True})
    with pytest.raises(InvalidInputError, match="points at this machine"):
        import_models(lan, f"{base}/kiki.zip")  # a studio on the LAN does not fetch its own loopback
    assert not list(lan.weights.iterdir())


def test_import_from_a_hugging_face_repo(ws, tmp_path, hub, monkeypatch):  # noqa: F811 - the fixture
    packed = make_zip(tmp_path / "pack.zip", {"Voice A/a.pth": voice(tmp_path / "s" / "a.pth", "v2"),
                                              "Voice A/added_IVF2_Flat_nprobe_1_a_v2.index": make_index(tmp_path, "a", "v2")})
    hub.files["someone/voices/voice-a.zip"] = packed.read_bytes()
    hub.files["someone/voices/README.md"] = b"# voices"
    hub.files["someone/voices/b.pth"] = voice(tmp_path / "s" / "b.pth", "v1", seed=3).read_bytes()
    res = import_models(ws, "someone/voices")
    assert res["kind"] == "hf" and res["source"] == "hf:someone/voices@main"
    assert sorted(v["name"] for v in res["voices"]) == ["a.pth", "b.pth"]
    assert _dim(guess_index(ws, ws.weights / "a.pth")) == 768 and guess_index(ws, ws.weights / "b.pth") is None
    assert read_sidecar(ws.weights / "a.pth")["member"] == "voice-a.zip!Voice A/a.pth"
    assert not any("README" in r["path"] for r in hub.requests)  # only models, indexes, zips and json are fetched
    with pytest.raises(InvalidInputError, match="No RVC voice model found in hf:someone/empty@main"):
        import_models(ws, "someone/empty")  # (the stand-in hub answers an unknown repo with no files)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(VoiceLabError, match="switched off"):
        import_models(ws, "someone/voices")
