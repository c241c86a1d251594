"""The hostile corpus through both surfaces: the ``voicelab`` command line and the studio's HTTP API.

Each case of ``corpus.CASES`` (audio files, archives, model files, indexes, CosyVoice model dirs)
goes through the CLI and through the Gradio API of a LAN studio with a login; ``API_ATTACKS``
adds hostile arguments and paths (with their CLI counterparts where one exists). Every outcome
is the one written next to the case: a clear message, or (``accept``) a clean result. Nothing
may run code from a file, and the studio keeps serving throughout.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from harness import run_cli
from corpus import CASES, Case

pytestmark = pytest.mark.slow

IDS = [c.id for c in CASES]


def test_the_corpus_covers_every_family():
    families = Counter(c.surface for c in CASES)
    assert len(CASES) + len(API_ATTACKS) >= 30
    assert {"import", "convert", "model", "index", "model_dir"} <= set(families)
    assert len(set(IDS)) == len(IDS)


def _matches(case: Case, text: str) -> None:
    assert re.search(case.expect, text, re.S), f"{case.id}: expected /{case.expect}/ in:\n{text}"


def _check_accepted_dataset(ws: Path, name: str) -> None:
    manifest = json.loads((ws / "datasets" / name / "manifest.json").read_text())
    assert manifest["clips"], f"{name}: no clips"
    for clip in manifest["clips"]:
        x, _ = sf.read(ws / "datasets" / name / clip["file"])
        assert np.isfinite(x).all() and np.abs(x).max() <= 1.0


def _no_marker(case: Case, path: Path) -> None:
    """The case's payload (made under ``path.parent``) never ran."""
    if case.marker:
        assert not case.marker_path(path.parent).exists(), f"{case.id}: the file ran code"


# -- the command line -------------------------------------------------------------------------------

@pytest.mark.parametrize("case_id", IDS)
def test_corpus_case_through_the_cli(case_id, corpus, tiny_models, tmp_path):
    case = next(c for c in CASES if c.id == case_id)
    _, built = corpus
    path = built[case.id]
    ws = tmp_path / "ws"
    (ws / "weights").mkdir(parents=True)
    shutil.copy(tiny_models[0], ws / "weights" / "tiny.pth")
    env = {"VOICELAB_HUBERT": str(tiny_models[1])}
    convert = ["rvc", "convert", "--model", "tiny", "--f0-method", "pm", "--quiet"]
    if case.surface == "import":
        code, out, err = run_cli(ws, "dataset", "create", case.id, str(path), "--json")
        assert code == 0, err
        report = json.loads(out)
        if case.accept:
            assert report["added_clips"] >= 1, report
            _check_accepted_dataset(ws, case.id)
        else:
            _matches(case, " || ".join(f"{s['source']}: {s['reason']}" for s in report["skipped"]))
            assert report["added_clips"] == 0
    elif case.surface == "convert":
        code, out, err = run_cli(ws, *convert, "--index", "none", str(path), env=env)
        assert code == 1 and err.startswith("error: "), (code, out, err)
        _matches(case, err)
    elif case.surface == "model":
        code, out, err = run_cli(ws, "rvc", "ckpt", "info", str(path))
        assert code == 1 and err.startswith("error: ") and "Traceback" not in err
        _matches(case, err)
    elif case.surface == "index":
        good = tmp_path / "good.wav"
        sf.write(good, np.sin(np.arange(16000) / 7).astype(np.float32) * 0.3, 16000)
        code, out, err = run_cli(ws, *convert, "--index", str(path), str(good), env=env)
        assert code == 1 and err.startswith("error: "), (code, out, err)
        _matches(case, err)
    elif case.surface == "model_dir":
        # The command line is the local user's own: it may read any folder, but reading never runs the yaml
        # (our own readers parse it inertly) and a pickled spk2info.pt cannot run code either.
        code, out, err = run_cli(ws, "cosyvoice", "doctor", "--model-dir", str(path))
        assert code == 1 and "Traceback" not in err
        code, out, err = run_cli(ws, "cosyvoice", "speakers", "--model-dir", str(path))
        if (path / "spk2info.pt").exists():
            assert code == 1 and "spk2info.pt cannot be read" in err
        else:
            assert code == 0 and out.strip() == ""
    _no_marker(case, path)


# -- the HTTP API of a LAN studio -------------------------------------------------------------------

def _server_copy(hostile, path: Path) -> str:
    """A folder case copied into the workspace (where a user's folder would be), as a server path."""
    dest = hostile.ws / "imports" / path.name
    if not dest.exists():
        shutil.copytree(path, dest)
    return str(dest)


@pytest.mark.parametrize("case_id", IDS)
def test_corpus_case_through_the_api(case_id, corpus, hostile):
    case = next(c for c in CASES if c.id == case_id)
    _, built = corpus
    path = built[case.id]
    http = hostile.http
    if case.surface == "import":
        if path.is_dir():
            ans = http.call("/dataset_import", f"api_{case.id}", None, _server_copy(hostile, path))
        else:
            ans = http.call("/dataset_import", f"api_{case.id}", [http.file_data(http.upload(path))], "")
        assert ans.ok, ans.text
        rec = http.wait_job(ans.value[0])
        assert rec["state"] == "done", rec["error"]
        report = rec["result"]["report"]
        if case.accept:
            assert report["added_clips"] >= 1
            _check_accepted_dataset(hostile.ws, f"api_{case.id}")
        else:
            _matches(case, " || ".join(f"{s['source']}: {s['reason']}" for s in report["skipped"]))
    elif case.surface == "convert":
        ans = http.call("/convert", http.file_data(http.upload(path)), "tiny", "", f0_method="pm")
        assert not ans.ok
        _matches(case, ans.text)
    elif case.surface == "model":
        ans = http.call("/model_info", http.upload(path))
        assert not ans.ok
        _matches(case, ans.text)
    elif case.surface == "index":
        ans = http.call("/convert", http.file_data(http.upload(hostile.good_wav)), "tiny", http.upload(path),
                        f0_method="pm")
        assert not ans.ok
        _matches(case, ans.text)
    elif case.surface == "model_dir":
        # An upload lands at a path the client is told: its folder must never count as a model dir.
        files = [p for p in path.iterdir() if p.name in ("cosyvoice2.yaml", "spk2info.pt")]
        folders = {str(Path(http.upload(f)).parent) for f in files}
        for folder in folders:
            for endpoint, args in (("/cosyvoice_synth", (folder, None, None, "neutral", "", "", "hello")),
                                   ("/cosyvoice_doctor", (folder,)), ("/cosyvoice_status", (folder,))):
                ans = http.call(endpoint, *args)
                text = ans.text
                assert (not ans.ok) or endpoint == "/cosyvoice_status", (endpoint, text)
                _matches(case, text)
            ans = http.call("/speakers_of", folder)
            assert ans.ok and ans.value[0]["choices"] == []
    _no_marker(case, path)
    assert http.call("/job_status", "20990101-000000-abcdef").text.startswith("No job")  # still serving


# -- hostile arguments and paths (API, and the CLI where it has the same command) ---------------------

API_ATTACKS = [
    # (id, endpoint, positional args, by-name args, expected message, CLI argv or None, CLI expected)
    ("job_status_null", "/job_status", (None,), {}, r"job_id must be a job id", ("jobs", "log", ""), r"No job"),
    ("job_log_traversal", "/job_log", ("../../etc/passwd",), {}, r"is not a job id",
     ("jobs", "log", "../../etc/passwd"), r"No job with id"),
    ("cancel_job_list", "/cancel_job", ([1, 2],), {}, r"job_id: expected str, got list", None, None),
    ("dataset_name_traversal", "/dataset_stats", ("../..",), {}, r"not a valid name",
     ("dataset", "stats", "../.."), r"not a valid name"),
    ("dataset_name_nul", "/dataset_stats", ("a\0b",), {}, r"not a valid name", None, None),
    ("ab_session_traversal", "/ab_vote", ("../../sessions/x", 0, "A"), {}, r"not a valid name", None, None),
    ("ab_pair_not_a_number", "/ab_vote", ("s", "first", "A"), {}, r"pair: 'first' is not a valid int", None, None),
    ("import_folder_etc", "/dataset_import", ("x", None, "/etc"), {}, r"The folder /etc is outside the folders",
     ("dataset", "create", "cli_etc", "/etc"), None),
    ("convert_folder_etc", "/convert_job", (None, "/etc", "tiny"), {}, r"The folder /etc is outside", None, None),
    ("convert_model_passwd", "/convert", (None, "/etc/passwd", ""), {}, r"No audio file given|outside", None, None),
    ("model_info_passwd", "/model_info", ("/etc/passwd",), {}, r"The model /etc/passwd is outside",
     ("rvc", "ckpt", "info", "/etc/passwd"), r"cannot be loaded as an RVC model"),
    ("synth_model_dir_etc", "/cosyvoice_synth", ("/etc", None, None, "neutral", "", "", "hello"), {},
     r"The model dir /etc is outside.*model dirs are read only from", None, None),
    ("train_base_model_root", "/cosyvoice_train", (None,), {"cv.train.model_dir": "/root", "cv.train.train_data": "data.list"},
     r"The model dir /root is outside", None, None),
    ("train_list_outside", "/cosyvoice_train", (None,), {"cv.train.train_data": "/etc/passwd"},
     r"The train data /etc/passwd is outside", None, None),
    ("doctor_model_dir_etc", "/cosyvoice_doctor", ("/etc",), {}, r"model dirs are read only from", None, None),
    ("prepare_model_dir_etc", "/cosyvoice_prepare", ("x", "x", "/etc"), {}, r"The model dir /etc is outside",
     None, None),
    ("assets_import_etc", "/assets_import", ("/etc", False), {}, r"The folder /etc is outside", None, None),
    ("rvc_train_pretrained_passwd", "/rvc_train", ("exp", ""), {"param.pretrained_g": "/etc/passwd"},
     r"The pretrained g /etc/passwd is outside", None, None),
    ("ab_source_outside", "/start_models", ({"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}},
                                            ["tiny.pth", "tiny.pth"]), {}, r"outside|not allowed|Cannot", None, None),
]


def label_key(param: dict) -> str:
    """A parameter's label as the page's translation key (e.g. ``cv.train.model_dir``), or its text."""
    label = param.get("label")
    return label.get("key", "") if isinstance(label, dict) else str(label or "")


def _by_label(http, endpoint: str, by_label: dict) -> dict:
    params = http.endpoints()[endpoint]
    out = {}
    for key, value in by_label.items():
        match = [p for p in params if label_key(p) == key]
        assert match, f"{endpoint} has no parameter labelled {key!r}: {[label_key(p) for p in params]}"
        out[match[0]["parameter_name"]] = value
    return out


@pytest.mark.parametrize("attack", API_ATTACKS, ids=[a[0] for a in API_ATTACKS])
def test_hostile_argument_through_the_api(attack, hostile):
    _, endpoint, args, by_label, expect, _, _ = attack
    ans = hostile.http.call(endpoint, *args, **_by_label(hostile.http, endpoint, by_label))
    assert not ans.ok, ans.text
    assert re.search(expect, ans.text, re.S), ans.text
    assert "Traceback" not in ans.text and "cannot use these arguments" not in ans.text


@pytest.mark.parametrize("attack", [a for a in API_ATTACKS if a[5]], ids=[a[0] for a in API_ATTACKS if a[5]])
def test_hostile_argument_through_the_cli(attack, tmp_path):
    _, _, _, _, _, argv, expect = attack
    code, out, err = run_cli(tmp_path / "ws", *argv, "--json") if argv[:2] == ("dataset", "create") else \
        run_cli(tmp_path / "ws", *argv)
    if expect is None:  # the local user's own shell may name /etc: nothing there is audio, nothing is written
        assert code == 0 and "the folder contains no audio files" in out
        return
    assert code == 1 and err.startswith("error: ") and "Traceback" not in err, (code, out, err)
    assert re.search(expect, err), err


def test_protected_files_are_never_served(hostile):
    http = hostile.http
    for name in ("jobs.sqlite", "jobs.sqlite-wal", "jobs.sqlite-shm", "settings.toml"):
        (hostile.ws / name).touch()
        assert http.get_file(str(hostile.ws / name)).status_code == 403, name
    assert http.get_file("/etc/passwd").status_code == 403
    assert http.get_file(str(hostile.outside / "canary.wav")).status_code == 403
