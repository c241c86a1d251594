"""User-facing errors.

Every error a user can cause (bad input, missing weights, cancelled job)
is a ``VoiceLabError`` carrying a message that says what happened and a
hint that says what to do. The UI and CLI show both; anything else that
escapes is a bug and is shown with its traceback in the job log.
"""

from __future__ import annotations

from engines.core.messages import CATALOGUE, Message, known_text, msg, ref_json, text_of


class VoiceLabError(Exception):
    """An error the user can act on: ``message`` plus an optional ``hint``.

    Either may be a ``Message`` from the catalogue (``msg(id, **params)``); then
    ``message``/``hint`` hold the English text and ``render(lang)`` gives both in
    another language. A message id ``X`` whose catalogue has ``X.hint`` gets that
    hint (with the same parameters) unless one is given.
    """

    def __init__(self, message: "str | Message", hint: "str | Message" = "") -> None:
        if isinstance(message, Message) and not hint and f"{message.id}.hint" in CATALOGUE:
            hint = Message(f"{message.id}.hint", message.params)
        self.message_ref = message if isinstance(message, Message) else None
        self.hint_ref = hint if isinstance(hint, Message) else None
        self.message = text_of(message)
        self.hint = text_of(hint)
        super().__init__(self.message)

    @property
    def message_id(self) -> str:
        return self.message_ref.id if self.message_ref else ""

    @property
    def params(self) -> dict:
        return dict(self.message_ref.params) if self.message_ref else {}

    def render(self, lang: str = "en") -> tuple[str, str]:
        """(message, hint) in ``lang`` (English where the error carries plain text)."""
        m = self.message_ref.render(lang) if self.message_ref else self.message
        h = self.hint_ref.render(lang) if self.hint_ref else self.hint
        return m, h

    def ref(self) -> str:
        """JSON the job store keeps so a page renders this error in its own language ('' if plain text)."""
        return ref_json(self.message_ref, self.hint_ref or self.hint) if self.message_ref else ""

    def __str__(self) -> str:
        return f"{self.message}\n{self.hint}" if self.hint else self.message


class InvalidInputError(VoiceLabError):
    """A parameter or an input file is not acceptable."""


class AudioDecodeError(InvalidInputError):
    """An audio file could not be decoded (corrupt, empty, not audio, ...)."""


class InvalidModelError(InvalidInputError):
    """A file is not the kind of model it was given as."""


class DiskFullError(VoiceLabError):
    """A write did not fit: the message names the folder, what is free and about what was needed."""

    def __init__(self, path: str, free_bytes: int, need_bytes: int | None = None) -> None:
        mb = 1024 * 1024
        free = free_bytes // mb
        if need_bytes:
            super().__init__(msg("disk.full_need", path=str(path), free_mb=free, need_mb=max(1, round(need_bytes / mb))),
                             msg("disk.full.hint"))
        else:
            super().__init__(msg("disk.full", path=str(path), free_mb=free))
        self.path = path
        self.free_bytes = free_bytes
        self.need_bytes = need_bytes


class UnsafeFileError(InvalidModelError):
    """A file asks to run code or rebuild objects when loaded (a malicious or foreign pickle); it was not loaded."""


class MissingAssetError(VoiceLabError):
    """A weight file the operation needs is not on disk.

    The message names the file, where it goes, and the command that fetches it.
    """

    def __init__(self, name: str, path: str, command: str = "", why: "str | Message" = "") -> None:
        why = known_text("why", why)
        what = msg("asset.missing_for", name=name, why=why) if why else msg("asset.missing", name=name)
        hint = (msg("asset.missing.hint_command", path=str(path), command=command) if command
                else msg("asset.missing.hint", path=str(path)))
        super().__init__(what, hint)
        self.name = name
        self.path = path
        self.command = command


class Cancelled(VoiceLabError):
    """Raised inside a job when the user cancelled it."""

    def __init__(self, message: "str | Message" = "") -> None:
        super().__init__(message or msg("job.cancelled_by_user"))
