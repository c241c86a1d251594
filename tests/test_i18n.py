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
