"""Every UI string the page uses exists in English and Simplified Chinese."""

from __future__ import annotations


def test_every_used_ui_string_is_translated(ws):
    from engines.core.jobs import JobRunner
    from voicelab_ui import i18n
    from voicelab_ui.app import build_app
    from voicelab_ui.context import UIContext

    i18n.USED_KEYS.clear()
    build_app(UIContext(ws=ws, runner=JobRunner(ws)))
    assert len(i18n.USED_KEYS) > 20
    assert i18n.missing_translations() == []
    for key in i18n.USED_KEYS:
        en, zh = i18n.STRINGS[key]
        assert en.strip() and zh.strip()


def test_lookup_falls_back_to_english_and_formats():
    from voicelab_ui import i18n

    i18n.add({"test.greet": ("Hello {name}", "你好 {name}")})
    assert i18n.text("test.greet", "zh-CN", name="A") == "你好 A"
    assert i18n.text("test.greet", "en", name="A") == "Hello A"
    assert i18n.text("test.greet", "fr", name="A") == "Hello A"


def test_ui_language_from_cookie_then_accept_language():
    from types import SimpleNamespace

    from voicelab_ui import i18n

    def req(cookies=None, headers=None):
        return SimpleNamespace(cookies=cookies or {}, headers=headers or {})

    assert i18n.ui_language() == "en"  # outside a Gradio event
    assert i18n.ui_language(req({"voicelab_lang": "zh-CN"}, {"accept-language": "en-US"})) == "zh-CN"
    assert i18n.ui_language(req({"voicelab_lang": "en"}, {"accept-language": "zh-CN,zh;q=0.9"})) == "en"
    assert i18n.ui_language(req(headers={"accept-language": "zh-TW,zh;q=0.9"})) == "zh-CN"
    assert i18n.ui_language(req()) == "en"
    assert 'document.cookie = "voicelab_lang="' in i18n.language_head("auto")


def test_tables_carry_headers_in_the_language():
    from voicelab_ui import i18n
    from voicelab_ui.tabs import jobs  # noqa: F401 - registers the job table's strings

    value = i18n.table([["a", "failed"]], ["jobs.col.id", "jobs.col.state"], "zh-CN")
    assert value == {"headers": ["ID", "状态"], "data": [["a", "failed"]]}
    assert i18n.table([], ["jobs.col.state"], "en") == {"headers": ["state"], "data": []}
    assert not i18n.missing_translations()


def test_every_ui_text_and_header_key_in_the_source_is_translated():
    """Keys the page renders at request time (ui_text, table headers) are not seen by a page build: scan for them."""
    import re
    from pathlib import Path

    import importlib
    import pkgutil

    import voicelab_ui
    from voicelab_ui import i18n

    for mod in pkgutil.walk_packages(voicelab_ui.__path__, "voicelab_ui."):  # every module registers its strings
        importlib.import_module(mod.name)

    root = Path(__file__).resolve().parents[1] / "voicelab_ui"
    keys = set()
    for path in root.rglob("*.py"):
        src = path.read_text(encoding="utf-8")
        keys |= set(re.findall(r"""\bui_text\(\s*["']([\w.]+)["']""", src))
        keys |= set(re.findall(r"""["']((?:jobs|ds|vc|ix|cv|assets)\.w?col\.\w+|plot\.\w+|lane\.\w+)["']""", src))
    assert len(keys) > 30, keys
    missing = sorted(k for k in keys if k not in i18n.STRINGS or not all(s.strip() for s in i18n.STRINGS[k]))
    assert not missing, missing


def test_job_panel_renders_a_failed_job_in_the_viewers_language():
    import html

    from engines.core.errors import MissingAssetError
    from engines.core.jobs import JobRecord
    from engines.core.messages import msg, ref_json
    from voicelab_ui.widgets import job_status_md, outcome_line, progress_html

    exc = MissingAssetError("rmvpe.pt", "/a/rmvpe.pt", "voicelab assets download rmvpe", why="RMVPE pitch extraction")
    rec = JobRecord(id="j1", op="rvc.convert", title="Convert", kind="listening", state="failed", params={},
                    created=1.0, started=1.0, finished=3.0, progress=0.4, message=exc.message, result=None,
                    error=str(exc), log_path="/nonexistent", error_ref=exc.ref(),
                    message_ref=ref_json(exc.message_ref))
    zh = job_status_md(rec, "zh-CN")
    assert "**失败**" in zh and "试听通道" in zh
    assert "缺少模型文件“rmvpe.pt”（RMVPE 音高提取需要它）。" in zh and "解决办法: 请把它放到 /a/rmvpe.pt" in zh
    assert "缺少模型文件" in progress_html(rec, "zh-CN")
    en = html.unescape(job_status_md(rec, "en"))
    assert "**failed**" in en and "Missing model file 'rmvpe.pt'" in en and "What to do: Put it at /a/rmvpe.pt" in en
    assert outcome_line(rec, lang="zh-CN").startswith("✘ **失败**: 缺少模型文件")
    rec.state, rec.message, rec.message_ref = "done", "2/2 converted", ref_json(msg("convert.summary", done=2, total=2,
                                                                                     model="a.pth"))
    assert outcome_line(rec, lang="zh-CN") == "✔ 已用 a.pth 转换 2/2 个"
