"""The message catalogue: every id engines use has English and 简体中文 with the same parameters."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# msg("id", ...), Message("id", ...), and the ids known_text() looks up by prefix.
ID_CALL = re.compile(r"""\b(?:msg|Message)\(\s*["']([A-Za-z0-9_.\-]+)["']""")
PREFIX_CALL = re.compile(r"""\bknown_text\(\s*["']([A-Za-z0-9_.\-]+)["']""")


def _engine_sources() -> list[Path]:
    """Engines and the studio (which gives jobs catalogue titles): every place that names a message id."""
    return sorted(p for top in ("engines", "voicelab_ui") for p in (ROOT / top).rglob("*.py")
                  if "__pycache__" not in p.parts)


def used_ids() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in _engine_sources():
        for m in ID_CALL.finditer(path.read_text(encoding="utf-8")):
            found.setdefault(m.group(1), str(path.relative_to(ROOT)))
    return found


def test_every_message_id_used_in_engines_has_both_languages():
    from engines.core.message_catalogue import CATALOGUE

    ids = used_ids()
    assert len(ids) > 40, ids  # the scan finds the raise and progress sites
    missing = {i: where for i, where in ids.items() if i not in CATALOGUE}
    assert not missing, f"message ids used but not in engines/core/message_catalogue.py: {missing}"


def test_engines_name_message_ids_literally():
    """msg()/Message() take a literal id outside the catalogue's own plumbing, so the scan above sees every id."""
    dynamic = re.compile(r"""\b(?:msg|Message)\(\s*[^"'\s)]""")
    plumbing = {"engines/core/messages.py", "engines/core/errors.py"}
    found = [f"{p.relative_to(ROOT)}:{i + 1}" for p in _engine_sources() if str(p.relative_to(ROOT)) not in plumbing
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines()) if dynamic.search(line)]
    assert not found, found


def test_every_catalogue_entry_has_both_languages_with_the_same_parameters():
    from engines.core.message_catalogue import CATALOGUE
    from engines.core.messages import placeholders

    bad = []
    for key, entry in CATALOGUE.items():
        if not (isinstance(entry, tuple) and len(entry) == 2 and all(isinstance(s, str) and s.strip() for s in entry)):
            bad.append(f"{key}: needs a non-empty (English, 简体中文) pair")
            continue
        en, zh = entry
        if placeholders(en) != placeholders(zh):
            bad.append(f"{key}: parameters differ {sorted(placeholders(en))} vs {sorted(placeholders(zh))}")
    assert not bad, bad


def test_hints_and_prefixes_exist():
    """An error's default hint shares its parameters; prefixes for known_text() have entries."""
    from engines.core.message_catalogue import CATALOGUE
    from engines.core.messages import placeholders

    for key in CATALOGUE:
        if key.endswith(".hint") and key[:-5] in CATALOGUE:
            assert placeholders(CATALOGUE[key][0]) <= placeholders(CATALOGUE[key[:-5]][0]) | placeholders(CATALOGUE[key][0])
    prefixes = {m.group(1) for p in _engine_sources() for m in PREFIX_CALL.finditer(p.read_text(encoding="utf-8"))}
    assert prefixes >= {"why", "audio.reason", "audio.hint", "stage"}
    for prefix in prefixes:
        assert any(k.startswith(prefix + ".") for k in CATALOGUE), prefix


def test_render_and_languages():
    from engines.core.errors import DiskFullError, MissingAssetError
    from engines.core.messages import cli_language, msg, normalize_language, render

    assert normalize_language("zh_CN.UTF-8") == "zh-CN" and normalize_language("zh-Hans") == "zh-CN"
    assert normalize_language("en_US.UTF-8") == "en" and normalize_language(None) == "en"
    assert cli_language({"LANG": "zh_CN.UTF-8"}) == "zh-CN"
    assert cli_language({"LC_ALL": "en_US.UTF-8", "LANG": "zh_CN.UTF-8"}) == "en"
    assert cli_language({"LC_MESSAGES": "zh_TW", "LANG": "C"}) == "zh-CN"
    assert cli_language({}) == "en"
    assert render("progress.converted_seconds", {"done": 3.2, "total": 10}, "zh-CN") == "已转换 3/10 秒"
    assert render("no.such.id", {}, "zh-CN") == "no.such.id"
    assert render("asset.missing", {}, "en") == "Missing model file '{name}'."  # a missing parameter stays visible

    exc = MissingAssetError("hubert_base.pt", "/w/assets/hubert/hubert_base.pt", "voicelab assets download hubert_base",
                            why="voice conversion")
    assert str(exc).startswith("Missing model file 'hubert_base.pt' (needed for voice conversion).")
    assert exc.hint == "Put it at /w/assets/hubert/hubert_base.pt, or run: voicelab assets download hubert_base."
    message, hint = exc.render("zh-CN")
    assert message == "缺少模型文件“hubert_base.pt”（声音转换需要它）。"
    assert hint.startswith("请把它放到 /w/assets/hubert/hubert_base.pt")
    assert exc.message_id == "asset.missing_for"
    m, h = DiskFullError("/w", 5 * 2**20, 50 * 2**20).render("zh-CN")
    assert "磁盘已满" in m and "50 MB" in m and "释放" in h
    assert str(msg("job.queued")) == "Queued"


def test_job_stores_ids_and_renders_in_either_language(ws, tmp_path):
    """A failed job keeps its error's id + params: the record renders it in English or Chinese."""
    import sqlite3

    import numpy as np
    import soundfile as sf
    from test_rvc_convert import make_fast_voice

    from engines.core.jobs import JobRunner, JobStore

    make_fast_voice(ws.weights / "spk.pth", "v1", "40k", f0=True)
    sf.write(tmp_path / "x.wav", np.zeros(8000, np.float32), 16000)
    runner = JobRunner(ws, light_workers=1)
    job_id = runner.submit("rvc.convert", {"model": "spk", "inputs": [str(tmp_path / "x.wav")], "f0_method": "pm"})
    rec = runner.wait(job_id, timeout=120)
    assert rec.state == "failed" and "hubert_base.pt" in rec.error, rec.error
    assert json.loads(rec.error_ref)["message"]["id"] == "asset.missing_for"
    assert rec.state_in("zh-CN") == "失败" and rec.state_in("en") == "failed"
    zh_msg, zh_hint = rec.error_in("zh-CN")
    assert zh_msg == "缺少模型文件“hubert_base.pt”（声音转换需要它）。" and zh_hint.startswith("请把它放到 "), (zh_msg, zh_hint)
    en_msg, en_hint = rec.error_in("en")
    assert rec.error == f"{en_msg}\n{en_hint}"
    assert rec.message_in("zh-CN") == zh_msg and rec.message == en_msg

    # a jobs.sqlite written before the catalogue (no *_ref columns) opens and reads as before
    old = tmp_path / "old.sqlite"
    con = sqlite3.connect(old)
    con.execute("""CREATE TABLE jobs (id TEXT PRIMARY KEY, op TEXT, title TEXT, kind TEXT, state TEXT, params TEXT,
                   created REAL, started REAL, finished REAL, progress REAL, message TEXT,
                   result TEXT, error TEXT, log_path TEXT)""")
    con.execute("INSERT INTO jobs VALUES ('j1','x','t','light','failed','{}',1,1,2,0.5,'boom',NULL,'it broke','/n')")
    con.commit()
    con.close()
    got = JobStore(old).get("j1")
    assert got.message_in("zh-CN") == "boom" and got.error_in("zh-CN") == ("it broke", "")


def test_cli_error_follows_lang(tmp_path):
    """`voicelab` with LANG=zh_CN.UTF-8 prints a failing command's error and hint in Chinese."""
    env = {k: v for k, v in os.environ.items() if k not in ("LC_ALL", "LC_MESSAGES", "LANGUAGE")}
    env.update(LANG="zh_CN.UTF-8", VOICELAB_HOME=str(tmp_path / "ws"), PYTHONIOENCODING="utf-8")
    cmd = [sys.executable, "-m", "engines.cli", "jobs", "log", "no-such-job"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, encoding="utf-8", cwd=ROOT, timeout=120)
    assert out.returncode == 1, out
    assert "错误: 没有 ID 为 no-such-job 的任务。" in out.stderr, out.stderr
    assert "提示: 请查看 `voicelab jobs list`。" in out.stderr, out.stderr
    env["LANG"] = "en_US.UTF-8"
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, encoding="utf-8", cwd=ROOT, timeout=120)
    assert "error: No job with id no-such-job." in out.stderr, out.stderr


def test_every_job_state_has_both_languages():
    from engines.core.jobs import STATES
    from engines.core.message_catalogue import CATALOGUE

    for state in STATES:
        assert all(CATALOGUE[f"state.{state}"]), state


def test_nothing_converted_nests_the_file_error_in_either_language(ws, tmp_path):
    """'No file could be converted: <the file's error>' keeps both parts translatable."""
    from test_rvc_convert import make_fast_hubert, make_fast_voice

    from engines.core.jobs import JobRunner

    ws.settings.hubert_path = str(make_fast_hubert(tmp_path / "hubert"))
    make_fast_voice(ws.weights / "spk.pth", "v1", "40k", f0=True)
    bad = tmp_path / "b.wav"
    bad.write_text("not audio at all\n")
    runner = JobRunner(ws, light_workers=1)
    rec = runner.wait(runner.submit("rvc.convert", {"model": "spk", "inputs": [str(bad)], "f0_method": "pm"}), 120)
    assert rec.state == "failed" and "No file could be converted" in rec.error
    zh, zh_hint = rec.error_in("zh-CN")
    assert zh == "没有任何文件转换成功（共尝试 1 个）：无法解码“b.wav”：这不是音频（是文本文件）。", zh
    assert zh_hint == "请选择一个音频文件。"
    assert rec.error_in("en") == ("No file could be converted (1 tried): Cannot decode 'b.wav': "
                                  "it is not audio (it is a text file).", "Select an audio file.")
