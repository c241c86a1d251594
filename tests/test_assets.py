"""Assets: manifest, missing-asset messages, check, import from other installs, verified downloads.

Downloads run against a small Hugging Face-compatible server started here on
127.0.0.1 (HF_ENDPOINT points at it); nothing touches the real network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engines.assets import check as check_mod
from engines.assets.check import check_assets, feature_readiness
from engines.assets.importer import (
    ALREADY,
    CONFLICT,
    COPIED,
    LINKED,
    MISMATCH,
    import_assets,
)
from engines.assets.manifest import Manifest, asset_path, load_manifest, require_asset
from engines.core.errors import MissingAssetError, VoiceLabError
from engines.core.settings import Settings

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fake_bytes(name: str, n: int = 2000) -> bytes:
    rng = random.Random(name)
    return bytes(rng.getrandbits(8) for _ in range(n))


@pytest.fixture
def world(tmp_path):
    """The real manifest with every file's size/sha256 replaced by those of small fake files."""
    real = load_manifest()
    contents: dict[str, bytes] = {}
    assets = {}
    for name, spec in real.assets.items():
        if spec.kind == "file":
            contents[name] = fake_bytes(name, 1500 + len(name))
            data = contents[name]
            spec = dataclasses.replace(spec, size=len(data), sha256=hashlib.sha256(data).hexdigest())
        assets[name] = spec
    manifest = Manifest(assets, dict(real.features))
    settings = Settings(assets_dir=str(tmp_path / "assets"))
    return settings, manifest, contents


def put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def fill_dir(root: Path, spec, extra: bytes = b"x") -> None:
    for f in spec.files:
        if f.is_folder:
            (root / f.path).mkdir(parents=True, exist_ok=True)
        else:
            put(root / f.path, f.path.encode() + extra)


# ------------------------------------------------------------------ manifest & messages


def test_manifest_lists_every_rvc_cosyvoice_and_whisper_asset():
    m = load_manifest()
    for ver, folder in (("v2", "pretrained_v2"), ("v1", "pretrained")):
        for f0 in ("f0", ""):
            for sr in ("32k", "40k", "48k"):
                for gd in "GD":
                    spec = m.assets[f"{folder}/{f0}{gd}{sr}"]
                    assert spec.path == f"{folder}/{f0}{gd}{sr}.pth" and spec.hf_repo == "lj1995/VoiceConversionWebUI"
                    assert len(spec.sha256) == 64
    assert m.assets["hubert_base"].path == "hubert/hubert_base.pt" and m.assets["hubert_base"].size == 189507909
    assert m.assets["rmvpe"].path == "rmvpe/rmvpe.pt"
    assert "campplus.onnx" in [f.path for f in m.assets["cosyvoice/CosyVoice2-0.5B"].files]
    assert m.assets["cosyvoice/Fun-CosyVoice3-0.5B"].hf_repo.startswith("FunAudioLLM/")
    assert m.assets["whisper/large-v3"].hf_repo == "Systran/faster-whisper-large-v3"
    assert m.resolve("hubert").name == "hubert_base" and m.resolve("rmvpe.pt").name == "rmvpe"
    assert {"rvc.convert", "rvc.train", "rvc.f0.rmvpe", "cosyvoice.prepare", "cosyvoice.synth", "asr"} <= set(m.features)
    with pytest.raises(VoiceLabError, match="several"):
        m.resolve("f0G48k")  # v1 and v2 both have one


def test_missing_asset_messages_name_file_place_and_command(world):
    settings, manifest, _ = world
    for name, rel in (("hubert_base", "hubert/hubert_base.pt"), ("rmvpe", "rmvpe/rmvpe.pt")):
        with pytest.raises(MissingAssetError) as err:
            require_asset(settings, name, "voice conversion", manifest)
        text = str(err.value)
        assert name in text and "voice conversion" in text
        assert str(Path(settings.assets_dir) / rel) in text
        assert f"voicelab assets download {name}" in text and "voicelab assets import --from DIR" in text

    cosy = "cosyvoice/CosyVoice2-0.5B"
    with pytest.raises(MissingAssetError) as err:
        require_asset(settings, cosy, "CosyVoice synthesis", manifest)
    assert f"voicelab assets download {cosy}" in str(err.value)
    assert str(Path(settings.assets_dir) / "cosyvoice" / "CosyVoice2-0.5B") in str(err.value)
    put(Path(settings.assets_dir) / "cosyvoice" / "CosyVoice2-0.5B" / "llm.pt", b"x")
    with pytest.raises(MissingAssetError) as err:
        require_asset(settings, "CosyVoice2-0.5B", "", manifest)
    assert "campplus.onnx" in str(err.value) and "speech_tokenizer_v2.onnx" in str(err.value)

    # Present: the path comes back; settings overrides are honoured.
    hub = put(Path(settings.assets_dir) / "hubert" / "hubert_base.pt", b"w")
    assert require_asset(settings, "hubert", manifest=manifest) == hub
    custom = Settings(assets_dir=settings.assets_dir, rmvpe_path=str(hub.parent / "elsewhere.pt"))
    assert asset_path(custom, "rmvpe", manifest) == hub.parent / "elsewhere.pt"
    # Package assets are found in site-packages without importing the package.
    assert require_asset(settings, "swift_f0", manifest=manifest).name == "model.onnx"


# ------------------------------------------------------------------ check


def test_check_empty_partial_and_complete(world, monkeypatch):
    settings, manifest, contents = world
    root = Path(settings.assets_dir)

    statuses = {s.name: s for s in check_assets(settings, manifest)}
    assert all(s.status == "missing" for s in statuses.values() if s.kind != "package")
    assert statuses["crepe_full"].status == "present"
    ready = feature_readiness(list(statuses.values()), manifest)
    assert ready["rvc.convert"] == (False, ["hubert_base"])
    assert ready["rvc.f0.rmvpe"] == (False, ["rmvpe"])
    assert ready["vad"][0] and ready["rvc.f0.fcpe"][0]

    # Partial: one good file, one of the wrong size, one of the right size with other bytes, half a folder.
    put(root / "hubert/hubert_base.pt", contents["hubert_base"])
    put(root / "rmvpe/rmvpe.pt", contents["rmvpe"] + b"extra")
    g = contents["pretrained_v2/f0G40k"]
    put(root / "pretrained_v2/f0G40k.pth", bytes(reversed(g)))
    put(root / "cosyvoice/CosyVoice2-0.5B/llm.pt", b"x")
    statuses = {s.name: s for s in check_assets(settings, manifest)}
    assert statuses["hubert_base"].status == "present"
    assert statuses["rmvpe"].status == "wrong-size"
    assert statuses["pretrained_v2/f0G40k"].status == "wrong-hash"
    assert statuses["cosyvoice/CosyVoice2-0.5B"].status == "incomplete"
    assert "voicelab assets download rmvpe" in statuses["rmvpe"].command
    ready = feature_readiness(list(statuses.values()), manifest)
    assert ready["rvc.convert"] == (True, [])
    assert ready["rvc.train.v2-40k-f0"] == (False, ["pretrained_v2/f0G40k", "pretrained_v2/f0D40k"])

    # Complete.
    for name, spec in manifest.assets.items():
        if spec.kind == "file":
            put(root / spec.path, contents[name])
        elif spec.kind == "dir":
            fill_dir(root / spec.path, spec)
    calls = []
    real_sha = check_mod.sha256_file
    monkeypatch.setattr(check_mod, "sha256_file", lambda p, hooks=None: calls.append(p) or real_sha(p, hooks))
    statuses = check_assets(settings, manifest)
    assert {s.status for s in statuses} == {"present"}
    assert all(ok for ok, _ in feature_readiness(statuses, manifest).values())
    first = len(calls)
    assert first >= 24  # every file with a known hash was hashed once ...
    assert json.loads((root / ".hash-cache.json").read_text())
    check_assets(settings, manifest)
    assert len(calls) == first  # ... and the cache answers the second check
    put(root / "rmvpe/rmvpe.pt", b"changed!")  # a changed file is looked at again
    assert {s.name: s.status for s in check_assets(settings, manifest)}["rmvpe"] == "wrong-size"
    check_assets(settings, manifest, verify=True)
    assert len(calls) >= 2 * first - 1


def test_an_unofficial_hubert_or_rmvpe_is_usable_with_a_warning(world):
    """Replaceable assets (hubert_base, rmvpe): another file of the kind works, so a size or hash that
    differs from the official one is a warning and the feature stays ready; a pretrained G is strict."""
    settings, manifest, contents = world
    root = Path(settings.assets_dir)
    put(root / "rmvpe/rmvpe.pt", contents["rmvpe"] + b"a fine-tuned one")
    put(root / "hubert/hubert_base.pt", bytes(reversed(contents["hubert_base"])))  # same size, other bytes
    put(root / "pretrained_v2/f0G40k.pth", b"short")
    statuses = {s.name: s for s in check_assets(settings, manifest)}
    for name, status in (("rmvpe", "wrong-size"), ("hubert_base", "wrong-hash")):
        s = statuses[name]
        assert s.status == status and s.usable and not s.ok
        assert f"not the official {name} file" in s.warning and s.command  # the command fetches the official one
    assert statuses["pretrained_v2/f0G40k"].status == "wrong-size" and not statuses["pretrained_v2/f0G40k"].usable
    ready = feature_readiness(list(statuses.values()), manifest)
    assert ready["rvc.f0.rmvpe"] == (True, []) and ready["rvc.convert"] == (True, [])
    assert not ready["rvc.train.v2-40k-f0"][0]
    assert "usable" in check_mod.format_table(list(statuses.values()))


def test_cli_assets_check_creates_no_folders(tmp_path, monkeypatch, capsys):
    from engines.cli import main

    home, assets = tmp_path / "ws", tmp_path / "assets"
    monkeypatch.setenv("VOICELAB_HOME", str(home))
    monkeypatch.setenv("VOICELAB_ASSETS", str(assets))
    assert main(["assets", "check"]) == 0
    assert "rvc.convert" in capsys.readouterr().out
    assert main(["assets", "list", "--json"]) == 0
    assert list(tmp_path.iterdir()) == []  # neither the workspace nor the assets folder was made


# ------------------------------------------------------------------ import


def make_rvc_webui(root: Path, contents: dict[str, bytes], manifest: Manifest, old: bool = False) -> Path:
    base = root if old else root / "assets"
    put(base / ("hubert_base.pt" if old else "hubert/hubert_base.pt"), contents["hubert_base"])
    put(base / ("rmvpe.pt" if old else "rmvpe/rmvpe.pt"), contents["rmvpe"])
    for name, spec in manifest.assets.items():
        if name.startswith("pretrained"):
            put(base / spec.path, contents[name])
    return root


def test_import_rvc_webui_by_symlink_then_again(world):
    settings, manifest, contents = world
    src = make_rvc_webui(Path(settings.assets_dir).parent / "RVC-WebUI", contents, manifest)
    report = import_assets(settings, src, manifest=manifest)
    linked = {i.name for i in report.by_action(LINKED)}
    assert {"hubert_base", "rmvpe", "pretrained_v2/f0G48k", "pretrained/D32k"} <= linked and len(linked) == 26
    dest = Path(settings.assets_dir) / "hubert/hubert_base.pt"
    assert dest.is_symlink() and dest.resolve() == (src / "assets/hubert/hubert_base.pt").resolve()
    statuses = {s.name: s for s in check_assets(settings, manifest)}
    assert statuses["pretrained_v2/f0D40k"].status == "present" and statuses["rmvpe"].linked_to
    again = import_assets(settings, src, manifest=manifest)
    assert len(again.by_action(ALREADY)) == 26 and not again.by_action(LINKED)


def test_import_old_rvc_and_applio_by_copy(world):
    settings, manifest, contents = world
    old = make_rvc_webui(Path(settings.assets_dir).parent / "old-rvc", contents, manifest, old=True)
    report = import_assets(settings, old, copy=True, names=["hubert_base", "rmvpe", "pretrained/f0G40k"], manifest=manifest)
    assert {i.name for i in report.by_action(COPIED)} == {"hubert_base", "rmvpe", "pretrained/f0G40k"}
    dest = Path(settings.assets_dir) / "pretrained/f0G40k.pth"
    assert not dest.is_symlink() and dest.read_bytes() == contents["pretrained/f0G40k"]

    applio = Path(settings.assets_dir).parent / "Applio"
    put(applio / "rvc/models/embedders/contentvec/pytorch_model.bin", b"weights")
    put(applio / "rvc/models/embedders/contentvec/config.json", b"{}")
    put(applio / "rvc/models/predictors/rmvpe.pt", contents["rmvpe"])
    put(applio / "rvc/models/pretraineds/hifi-gan/f0G48k.pth", contents["pretrained_v2/f0G48k"])
    report = import_assets(settings, applio, copy=True, manifest=manifest)
    assert {i.name for i in report.by_action(COPIED)} == {"contentvec", "pretrained_v2/f0G48k"}
    assert [i.name for i in report.by_action(ALREADY)] == ["rmvpe"]  # same bytes already copied
    cv = Path(settings.assets_dir) / "hubert/contentvec"
    assert cv.is_dir() and not cv.is_symlink() and (cv / "pytorch_model.bin").read_bytes() == b"weights"
    assert not [p for p in cv.parent.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_import_cosyvoice_conflicts_and_corrupt_sources(world):
    settings, manifest, contents = world
    root = Path(settings.assets_dir)
    cosy = root.parent / "CosyVoice"
    fill_dir(cosy / "pretrained_models/CosyVoice2-0.5B", manifest.assets["cosyvoice/CosyVoice2-0.5B"])
    put(cosy / "pretrained_models/Fun-CosyVoice3-0.5B/llm.pt", b"partial")  # incomplete: no yaml -> not a model dir
    put(cosy / "hubert_base.pt", contents["hubert_base"])
    put(cosy / "rmvpe.pt", b"corrupt" * 10)  # wrong size: must not be linked
    mine = put(root / "hubert/hubert_base.pt", b"the user's own different file")

    report = import_assets(settings, cosy, manifest=manifest)
    actions = {i.name: i for i in report.items}
    assert actions["cosyvoice/CosyVoice2-0.5B"].action == LINKED
    assert (root / "cosyvoice/CosyVoice2-0.5B").is_symlink()
    assert require_asset(settings, "cosyvoice/CosyVoice2-0.5B", manifest=manifest).name == "CosyVoice2-0.5B"
    assert actions["hubert_base"].action == CONFLICT and mine.read_bytes() == b"the user's own different file"
    assert actions["rmvpe"].action == MISMATCH and not (root / "rmvpe/rmvpe.pt").exists()
    assert actions["cosyvoice/Fun-CosyVoice3-0.5B"].action == "not-found"
    assert "1 linked" in report.summary() and "1 conflict" in report.summary()

    # Pointing --from at the model folder itself works too (copy of a folder).
    settings2 = Settings(assets_dir=str(root.parent / "assets2"))
    rep2 = import_assets(settings2, cosy / "pretrained_models/CosyVoice2-0.5B", copy=True, manifest=manifest)
    assert [i.name for i in rep2.by_action(COPIED)] == ["cosyvoice/CosyVoice2-0.5B"]


# ------------------------------------------------------------------ download through a local HF mirror


class HubServer:
    """Just enough of the Hub's resolve endpoint for hf_hub_download: HEAD/GET with Range."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}  # "repo/filename" -> bytes
        self.drop_first_get: dict[str, int] = {}  # path -> bytes to send before dropping the connection
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _lookup(self) -> tuple[str, bytes] | None:
                parts = self.path.split("?")[0].lstrip("/").split("/")
                if "resolve" not in parts:
                    return None
                i = parts.index("resolve")
                key = "/".join(parts[:i]) + "/" + "/".join(parts[i + 2:])
                return (key, server.files[key]) if key in server.files else None

            def _headers(self, data: bytes, status: int, length: int, extra: dict | None = None) -> None:
                self.send_response(status)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", '"%s"' % hashlib.sha256(data).hexdigest())
                self.send_header("Content-Length", str(length))
                self.send_header("Accept-Ranges", "bytes")
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()

            def do_HEAD(self) -> None:
                found = self._lookup()
                server.requests.append({"method": "HEAD", "path": self.path})
                if found is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._headers(found[1], 200, len(found[1]))

            def _api(self) -> bool:
                """repo_info and the recursive tree listing that snapshot_download asks for."""
                path = self.path.split("?")[0]
                if not path.startswith("/api/models/"):
                    return False
                rest = path[len("/api/models/"):]
                if "/revision/" in rest:
                    repo = rest.split("/revision/")[0]
                    body = {"id": repo, "sha": COMMIT, "siblings": [
                        {"rfilename": k[len(repo) + 1:]} for k in server.files if k.startswith(repo + "/")]}
                else:
                    repo = rest.split("/tree/")[0]
                    body = [{"type": "file", "path": k[len(repo) + 1:], "size": len(v), "oid": hashlib.sha1(v).hexdigest()}
                            for k, v in server.files.items() if k.startswith(repo + "/")]
                data = json.dumps(body).encode()
                server.requests.append({"method": "GET", "path": self.path, "range": None, "sent": len(data)})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return True

            def do_GET(self) -> None:
                if self._api():
                    return
                found = self._lookup()
                rng = self.headers.get("Range")
                record = {"method": "GET", "path": self.path, "range": rng, "sent": 0}
                server.requests.append(record)
                if found is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                key, data = found
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                body = data[start:]
                if rng:
                    self._headers(data, 206, len(body), {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
                else:
                    self._headers(data, 200, len(body))
                cut = server.drop_first_get.pop(key, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    record["sent"] = cut
                    self.close_connection = True
                    return
                self.wfile.write(body)
                record["sent"] = len(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hub(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants

    server = HubServer()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("VOICELAB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)  # resume granularity for a small file
    yield server
    server.close()


def big_world(world, name: str, data: bytes):
    settings, manifest, contents = world
    spec = dataclasses.replace(manifest.assets[name], size=len(data), sha256=hashlib.sha256(data).hexdigest())
    manifest.assets[name] = spec
    return settings, manifest


def test_download_resumes_after_a_dropped_connection(world, hub):
    from engines.assets.download import download_assets
    from engines.core.hooks import Hooks

    data = fake_bytes("big hubert", 600_000)
    settings, manifest = big_world(world, "hubert_base", data)
    key = "lj1995/VoiceConversionWebUI/hubert_base.pt"
    hub.files[key] = data
    hub.drop_first_get[key] = 300_000
    seen: list[float] = []
    results = download_assets(settings, ["hubert"], manifest=manifest, hooks=Hooks(lambda f, m: seen.append(f)))

    dest = Path(settings.assets_dir) / "hubert/hubert_base.pt"
    assert results[0].action == "downloaded" and dest.read_bytes() == data
    gets = [r for r in hub.requests if r["method"] == "GET"]
    assert len(gets) == 2 and gets[0]["range"] is None
    resumed_from = int(gets[1]["range"].split("=")[1].rstrip("-"))
    assert resumed_from > 0 and gets[1]["sent"] == len(data) - resumed_from < len(data)
    assert sum(g["sent"] for g in gets) < 2 * len(data) - resumed_from + 1
    assert seen and max(seen) == pytest.approx(1.0)
    assert not (Path(settings.assets_dir) / ".downloads" / "hubert_base").exists()
    # Present and intact now: a second call downloads nothing.
    before = len(hub.requests)
    assert download_assets(settings, ["hubert_base"], manifest=manifest)[0].action == "already"
    assert len(hub.requests) == before


def test_download_with_wrong_hash_is_rejected_and_not_installed(world, hub):
    from engines.assets.download import download_assets

    good = fake_bytes("real rmvpe", 50_000)
    settings, manifest = big_world(world, "rmvpe", good)
    hub.files["lj1995/VoiceConversionWebUI/rmvpe.pt"] = bytes(reversed(good))  # same size, other bytes
    with pytest.raises(VoiceLabError) as err:
        download_assets(settings, ["rmvpe"], manifest=manifest)
    assert "wrong-hash" in str(err.value) and "not installed" in str(err.value)
    assert not (Path(settings.assets_dir) / "rmvpe/rmvpe.pt").exists()
    assert not (Path(settings.assets_dir) / ".downloads" / "rmvpe").exists()
    # An unknown file on the server is a clear error too.
    with pytest.raises(VoiceLabError, match="failed"):
        download_assets(settings, ["pretrained_v2/f0G48k"], manifest=manifest)


def test_download_job_installs_a_folder_asset(world, hub, monkeypatch, tmp_path):
    from engines.core.jobs import JobRunner
    from engines.core.settings import Workspace

    settings, manifest, _ = world
    real = load_manifest()
    text = Path(real.path).read_text(encoding="utf-8")
    man_path = tmp_path / "manifest.toml"
    man_path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("VOICELAB_ASSET_MANIFEST", str(man_path))
    hub.files["lj1995/VoiceConversionWebUI/hubert_base/pytorch_model.bin"] = b"w" * 1000
    hub.files["lj1995/VoiceConversionWebUI/hubert_base/config.json"] = b"{}"
    ws = Workspace.open(tmp_path / "ws", overrides={"assets_dir": settings.assets_dir})
    runner = JobRunner(ws)
    rec = runner.wait(runner.submit("assets.download", {"names": ["contentvec"]}), 30)
    assert rec.state == "done", rec.error
    cv = Path(settings.assets_dir) / "hubert/contentvec"
    assert (cv / "pytorch_model.bin").read_bytes() == b"w" * 1000 and (cv / "config.json").is_file()
    assert not (cv / ".cache").exists()
    assert "1 downloaded" in rec.result["summary"]


def test_download_snapshot_folder_replaces_an_incomplete_one(world, hub):
    from engines.assets.download import download_assets

    settings, manifest, _ = world
    repo = "Systran/faster-whisper-large-v3"
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.json"):
        hub.files[f"{repo}/{name}"] = name.encode() * 50
    dest = Path(settings.assets_dir) / "whisper/large-v3"
    put(dest / "model.bin", b"half")  # an earlier incomplete folder
    result = download_assets(settings, ["whisper-large-v3"], manifest=manifest)[0]
    assert result.action == "downloaded" and "kept as" in result.detail
    assert sorted(p.name for p in dest.iterdir()) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.json"]
    assert (dest / "model.bin").read_bytes() == b"model.bin" * 50
    assert any(p.name.startswith("large-v3.old-") for p in dest.parent.iterdir())
    assert require_asset(settings, "whisper/large-v3", manifest=manifest) == dest


def test_cli_check_json_and_import(world, tmp_path, capsys, monkeypatch):
    from engines.cli import main

    settings, manifest, contents = world
    monkeypatch.setenv("VOICELAB_ASSETS", settings.assets_dir)
    src = tmp_path / "old"
    put(src / "rmvpe.pt", b"not the real rmvpe")
    assert main(["--workspace", str(tmp_path / "ws"), "assets", "import", "--from", str(src)]) == 0
    out = capsys.readouterr().out
    assert "1 mismatch" in out and "not imported" in out  # a wrong file is reported, not linked
    assert main(["--workspace", str(tmp_path / "ws"), "assets", "check", "--json", "rmvpe", "crepe_tiny"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {a["name"]: a["status"] for a in out["assets"]} == {"rmvpe": "missing", "crepe_tiny": "present"}
    assert out["features"]["rvc.f0.rmvpe"] == {"ready": False, "missing": ["rmvpe"]}
    assert main(["--workspace", str(tmp_path / "ws"), "assets", "download", "rmvpe", "--source", "modelscope"]) == 1
    assert "ModelScope" in capsys.readouterr().err


# ------------------------------------------------------------------ UI panel


def test_assets_panel_builds_translated_and_confines_import_in_lan_mode(ws, tmp_path):
    import gradio as gr

    from engines.core.jobs import JobRunner
    from voicelab_ui import i18n
    from voicelab_ui.context import UIContext
    from voicelab_ui.tabs.settings import assets as assets_panel

    ws.settings.assets_dir = str(tmp_path / "assets")
    ctx = UIContext(ws=ws, runner=JobRunner(ws))
    i18n.USED_KEYS.clear()
    with gr.Blocks() as demo:
        ctx.demo = demo
        ctx.job_id = gr.State("")
        assets_panel.build(ctx)
    assert any(k.startswith("assets.") for k in i18n.USED_KEYS)
    assert i18n.missing_translations() == []
    assert "底模" in i18n.text("assets.intro", "zh-CN") and "缺失" in i18n.text("assets.legend", "zh-CN")

    rows, feats, choices = assets_panel.current_tables(ctx)
    by_name = {r[0]: r for r in rows}
    assert by_name["hubert_base"][1].startswith("❌ missing") and by_name["crepe_tiny"][1].startswith("✅")
    assert ["rvc.f0.rmvpe", "❌", "rmvpe"] in feats
    assert "rmvpe" in choices["value"] and "crepe_tiny" not in choices["choices"]

    outside = tmp_path / "RVC"
    outside.mkdir()
    assert assets_panel.import_folder(ctx, str(outside)) == outside.resolve()  # local studio: any folder
    ws.settings.lan = True
    with pytest.raises(VoiceLabError, match="outside the folders"):
        assets_panel.import_folder(ctx, str(outside))
    inside = ws.root / "imports"
    inside.mkdir()
    assert assets_panel.import_folder(ctx, str(inside)) == inside.resolve()
