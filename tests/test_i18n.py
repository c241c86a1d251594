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
