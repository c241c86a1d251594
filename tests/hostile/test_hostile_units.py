"""The pieces behind the hostile suite, one by one: the path policy, the gate's helpers, caches, imports."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from engines.core import paths as P
from engines.core.errors import InvalidInputError
from engines.core.settings import Settings, Workspace


@pytest.fixture
def policy_ws(tmp_path, monkeypatch):
    ws = Workspace(root=tmp_path / "ws", settings=Settings(assets_dir=str(tmp_path / "assets"),
                                                           import_roots=str(tmp_path / "imports")))
    ws.ensure()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(ws.uploads / "gradio"))
    for d in (ws.uploads / "gradio" / "abc", tmp_path / "assets" / "cosyvoice" / "Base", tmp_path / "imports",
              tmp_path / "elsewhere" / "Model", ws.cosyvoice / "models" / "mine"):
        d.mkdir(parents=True, exist_ok=True)
    return ws


def refused(ws, value, kind=P.READ) -> str:
    with pytest.raises(InvalidInputError) as err:
        P.confine_value(ws, value, "x", kind)
    return str(err.value)  # message and hint


def test_read_paths_stay_in_the_workspace_assets_and_import_roots(policy_ws, tmp_path):
    ws = policy_ws
    for ok in (ws.outputs / "a.wav", tmp_path / "assets" / "hubert" / "h.pt", tmp_path / "imports" / "x.wav",
               ws.uploads / "gradio" / "abc" / "u.wav"):
        assert P.confine_value(ws, str(ok), "x") == str(ok)
    for bad in ("/etc", "/etc/passwd", "~", f"{ws.root}/../elsewhere", str(tmp_path / "elsewhere" / "Model")):
        assert "outside the folders" in refused(ws, bad)
    assert P.confine_value(ws, "myvoice", "x") == "myvoice" and P.confine_value(ws, None, "x") == ""  # names pass
    with pytest.raises(InvalidInputError):
        P.confine_value(ws, "a\0b/c", "x")


def test_secrets_are_out_of_reach_for_every_kind(policy_ws):
    ws = policy_ws
    for name in ("settings.toml", "jobs.sqlite", "jobs.sqlite-wal", "jobs.sqlite-shm", "jobs/x.log", "tls/key.pem"):
        for kind in (P.READ, P.WRITE):
            assert "studio's own records" in refused(ws, str(ws.root / name), kind)
        assert not P.servable(ws, ws.root / name)
    assert "studio's own records" in refused(ws, f"{ws.outputs}/../jobs.sqlite-wal")


def test_model_dirs_only_from_the_configured_roots_never_uploads(policy_ws, tmp_path):
    ws = policy_ws
    assert P.confine_value(ws, str(tmp_path / "assets" / "cosyvoice" / "Base"), "m", P.MODEL_DIR)
    assert P.confine_value(ws, str(ws.cosyvoice / "models" / "mine"), "m", P.MODEL_DIR)
    for bad in (ws.uploads / "gradio" / "abc", ws.outputs, tmp_path / "elsewhere" / "Model", Path("/root")):
        assert "model dirs are read only from" in refused(ws, str(bad), P.MODEL_DIR)
    # a model the user linked into the assets folder from elsewhere is theirs to use
    link = tmp_path / "assets" / "cosyvoice" / "Linked"
    os.symlink(tmp_path / "elsewhere" / "Model", link)
    assert P.confine_value(ws, str(link), "m", P.MODEL_DIR) == str(link)
    # ... but a symlink cannot smuggle an upload in
    sneaky = tmp_path / "assets" / "cosyvoice" / "Sneaky"
    os.symlink(ws.uploads / "gradio" / "abc", sneaky)
    assert "model dirs" in refused(ws, str(sneaky), P.MODEL_DIR)


def test_writes_only_inside_the_workspace_and_not_into_uploads(policy_ws, tmp_path):
    ws = policy_ws
    assert P.confine_value(ws, str(ws.outputs / "new" / "x.wav"), "out", P.WRITE)
    for bad in (str(tmp_path / "assets" / "x.pth"), str(ws.uploads / "gradio" / "abc" / "x"), "/tmp/x"):
        with pytest.raises(InvalidInputError) as err:
            P.confine_value(ws, bad, "out", P.WRITE)
        assert "outside the folders" in err.value.message and "inside the workspace" in err.value.hint


def test_lists_repos_and_import_sources(policy_ws, tmp_path):
    ws = policy_ws
    good = ws.cosyvoice / "data.list"
    good.write_text(f"{ws.cosyvoice}/a.parquet\n\n{ws.cosyvoice}/b.parquet\n")
    assert P.confine_value(ws, str(good), "list", P.LIST)
    bad = ws.cosyvoice / "bad.list"
    bad.write_text(f"{ws.cosyvoice}/a.parquet\n/etc/shadow\n")
    assert "line 2" in refused(ws, str(bad), P.LIST)
    assert P.confine_value(ws, "https://github.com/FunAudioLLM/CosyVoice.git", "url", P.REPO).startswith("https://")
    for evil in ("ext::sh -c touch% /tmp/x", "--upload-pack=touch /tmp/x", "file:///etc", "/etc"):
        with pytest.raises(InvalidInputError):
            P.confine_value(ws, evil, "url", P.REPO)
    assert P.confine_value(ws, "/etc", "from", P.IMPORT_SOURCE) == "/etc"  # a local studio imports from anywhere
    ws.settings.lan = True
    assert "outside" in refused(ws, "/etc", P.IMPORT_SOURCE)
    assert "outside" in refused(ws, str(ws.uploads / "gradio" / "abc"), P.IMPORT_SOURCE)  # never from uploads


def test_every_operation_declares_its_path_fields_with_a_known_kind():
    from engines.core.ops import load_operations

    ops = load_operations()
    for op in ops.values():
        assert set(P.path_fields(op.params).values()) <= set(P.PATH_KINDS), op.name
    assert P.path_fields(ops["cosyvoice.synth"].params)["model_dir"] == P.MODEL_DIR
    assert P.path_fields(ops["cosyvoice.train"].params) == {"model_dir": "model_dir", "train_data": "list",
                                                           "cv_data": "list"}
    assert P.path_fields(ops["rvc.convert"].params)["out_dir"] == P.WRITE


def test_request_params_confine_every_declared_field(policy_ws):
    from engines.core.ops import request_params

    with pytest.raises(InvalidInputError, match="The model dir /root is outside"):
        request_params(policy_ws, "cosyvoice.train", {"model_dir": "/root"})
    with pytest.raises(InvalidInputError, match="The inputs /etc is outside"):
        request_params(policy_ws, "rvc.convert", {"model": "tiny", "inputs": ["/etc"]})
    p = request_params(policy_ws, "rvc.convert", {"model": "tiny", "inputs": [str(policy_ws.outputs)]})
    assert p.inputs == [str(policy_ws.outputs)] and p.model == "tiny"


# -- the gate's pieces ------------------------------------------------------------------------------

def test_login_back_off_doubles_and_resets():
    from voicelab_ui.gate import LoginThrottle

    now = [0.0]
    t = LoginThrottle(free=3, base=1.0, cap=8.0, clock=lambda: now[0])
    for _ in range(2):
        t.failed("a")
        assert t.retry_after("a") == 0
    t.failed("a")
    assert t.retry_after("a") == 1.0 and t.retry_after("b") == 0  # per client
    now[0] = 1.0
    t.failed("a")
    assert t.retry_after("a") == 2.0
    for _ in range(10):
        t.failed("a")
    assert t.retry_after("a") == 8.0  # capped
    t.succeeded("a")
    assert t.retry_after("a") == 0


def test_the_anonymous_page_loses_its_endpoint_list():
    from voicelab_ui.gate import strip_api_info

    page = (b'<script>window.gradio_config = {"auth_required":true};</script><script>window.gradio_api_info = '
            b'{"named_endpoints":{"/convert":{"parameters":[{"x":"};</script>"}]}}};</script><p>after</p>')
    out = strip_api_info(page)
    assert b"named_endpoints" not in out and b"/convert" not in out
    assert out.endswith(b"gradio_api_info = null;</script><p>after</p>")
    assert strip_api_info(b"<html>no info</html>") == b"<html>no info</html>"


# -- caches and imports -----------------------------------------------------------------------------

def test_cache_cleanup_by_age_and_size_keeps_what_jobs_read(tmp_path):
    from engines.core.cleanup import clean_folder

    folder = tmp_path / "cache"
    now = time.time()
    files = {}
    for i, (age_h, size) in enumerate([(50, 10), (30, 10), (5, 40), (2, 40), (1, 40), (0.1, 10)]):
        p = folder / f"d{i}" / f"f{i}.bin"
        p.parent.mkdir(parents=True)
        p.write_bytes(b"x" * size)
        os.utime(p, (now - age_h * 3600, now - age_h * 3600))
        files[i] = p
    partial = folder / "tmpabc"
    partial.write_bytes(b"y" * 5)
    os.utime(partial, (now - 3600, now - 3600))
    rep = clean_folder(folder, max_age_seconds=24 * 3600, max_bytes=100, keep=[files[0]], now=now,
                       partial_glob="tmp*")
    gone = {Path(p) for p in rep.removed}
    assert files[1] in gone and partial in gone  # too old; a stale partial upload
    assert files[0] not in gone  # a job still reads it, however old
    assert files[2] in gone and files[3] not in gone  # then the oldest, until under 100 bytes
    assert rep.kept_bytes <= 100 and not (folder / "d1").exists()  # empty folders go too


def test_lazy_imports_go_through_one_lock_from_many_threads():
    from engines.core.imports import import_names

    barrier = threading.Barrier(8)
    got, errors = [], []

    def worker() -> None:
        barrier.wait()
        try:
            got.append(import_names("transformers", "HubertConfig", "HubertModel"))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(got) == 8 and all(g[0].__name__ == "HubertConfig" for g in got)
