"""The one message catalogue: what engines tell a user, in English and 简体中文.

Engines raise errors and report progress with a ``Message`` (a message id
plus named parameters) instead of a finished sentence. The English text is
kept beside it (``str(exc)``, logs, old callers), and whoever shows it picks
the language at display time: the studio the viewer's UI language, the CLI
the one ``LANG`` names. The templates live in ``message_catalogue``; a test
proves every id used in engines is there in both languages with the same
parameter names.
"""

from __future__ import annotations

import json
import os
import string
from typing import Any, Mapping

from engines.core.message_catalogue import CATALOGUE

LANGUAGES = ("en", "zh-CN")


def normalize_language(lang: str | None) -> str:
    """'zh', 'zh_CN.UTF-8', 'zh-Hans' ... -> 'zh-CN'; anything else -> 'en'."""
    return "zh-CN" if (lang or "").strip().lower().startswith("zh") else "en"


def cli_language(environ: Mapping[str, str] | None = None) -> str:
    """The language the command line speaks: the first of LC_ALL, LC_MESSAGES, LANG that is set."""
    env = os.environ if environ is None else environ
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(var, "")
        if value:
            return normalize_language(value)
    return "en"


class _Keep(dict):
    """format_map helper: a parameter nobody passed stays visible as {name}."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def template(message_id: str, lang: str = "en") -> str | None:
    entry = CATALOGUE.get(message_id)
    if entry is None:
        return None
    en, zh = entry
    return zh if normalize_language(lang) == "zh-CN" and zh else en


def render(message_id: str, params: Mapping[str, Any] | None = None, lang: str = "en") -> str:
    """The text of ``message_id`` in ``lang`` with ``params`` filled in (the id itself when unknown)."""
    tpl = template(message_id, lang)
    if tpl is None:
        return message_id
    values = {k: (v.render(lang) if isinstance(v, Message) else v) for k, v in (params or {}).items()}
    try:
        return tpl.format_map(_Keep(values))
    except (ValueError, TypeError, IndexError, KeyError):  # a bad format spec for this value: keep it readable
        return tpl + " " + json.dumps(dict(params or {}), ensure_ascii=False, default=str)


def placeholders(tpl: str) -> set[str]:
    """The named parameters a template uses ({name} and {name:.1f} both give 'name')."""
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(tpl) if name}


class Message(str):
    """A message id plus its parameters. It *is* its English text (a ``str``), so a progress callback or
    a caller that expects text keeps working; ``render(lang)`` gives it in another language."""

    id: str
    params: dict

    def __new__(cls, id: str, params: Mapping[str, Any] | None = None) -> "Message":
        params = dict(params or {})
        obj = super().__new__(cls, render(id, params, "en"))
        obj.id = id
        obj.params = params
        return obj

    def __reduce__(self) -> tuple:  # pickles (to worker processes) as id + params
        return (Message, (self.id, self.params))

    def __repr__(self) -> str:
        return f"Message({self.id!r}, {self.params!r})"

    def render(self, lang: str = "en") -> str:
        return render(self.id, self.params, lang)

    def to_dict(self) -> dict:
        return {"id": self.id, "params": _plain(self.params)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Message":
        params = {k: (cls.from_dict(v) if isinstance(v, dict) and "id" in v else v)
                  for k, v in dict(d.get("params") or {}).items()}
        return cls(str(d.get("id", "")), params)


def msg(message_id: str, **params: Any) -> Message:
    """``msg("progress.converting_file", name="a.wav")``: a message for an error or a progress report."""
    return Message(message_id, params)


def known_text(prefix: str, english: "str | Message") -> "str | Message":
    """The catalogue message under ``prefix`` whose English text is ``english`` (else ``english`` itself).

    Lets a raise site keep passing a short English phrase (``why="voice conversion"``)
    while the page still shows it translated.
    """
    if isinstance(english, Message) or not english:
        return english
    for key, (en, _zh) in CATALOGUE.items():
        if key.startswith(prefix + ".") and en == english:
            return Message(key, {})
    return english


def text_of(message: "Message | str", lang: str = "en") -> str:
    """Plain text of a Message or a string, in ``lang``."""
    return message.render(lang) if isinstance(message, Message) else str(message)


def _plain(params: Mapping[str, Any]) -> dict:
    """Parameters as JSON-friendly values (paths and the like become strings)."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if isinstance(v, Message):
            out[k] = v.to_dict()
            continue
        out[k] = v if isinstance(v, (str, int, float, bool)) or v is None else str(v)
    return out


# -- stored references (jobs keep these so a page renders them in its own language) --

def ref_json(message: "Message | None" = None, hint: "Message | str | None" = None) -> str:
    """JSON for a stored message (and hint): '' when there is nothing to translate."""
    if message is None:
        return ""
    d: dict[str, Any] = {"message": message.to_dict()}
    if isinstance(hint, Message):
        d["hint"] = hint.to_dict()
    elif hint:
        d["hint_text"] = str(hint)
    return json.dumps(d, ensure_ascii=False)


def messages_of_ref(ref: str) -> tuple["Message | None", "Message | str"]:
    """(message, hint) as objects again from ``ref_json`` output ((None, '') when there is none)."""
    try:
        d = json.loads(ref) if ref else {}
        message = Message.from_dict(d["message"]) if d else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, ""
    hint = Message.from_dict(d["hint"]) if isinstance(d.get("hint"), dict) else str(d.get("hint_text", ""))
    return message, hint


def render_ref(ref: str, lang: str, fallback: str = "") -> tuple[str, str]:
    """(message, hint) in ``lang`` from ``ref_json`` output; ``(fallback, '')`` when there is none."""
    if not ref:
        return fallback, ""
    try:
        d = json.loads(ref)
        text = Message.from_dict(d["message"]).render(lang)
    except (ValueError, KeyError, TypeError, AttributeError):
        return fallback, ""
    hint = Message.from_dict(d["hint"]).render(lang) if isinstance(d.get("hint"), dict) else str(d.get("hint_text", ""))
    return text, hint
