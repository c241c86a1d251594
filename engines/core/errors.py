"""User-facing errors.

Every error a user can cause (bad input, missing weights, cancelled job)
is a ``VoiceLabError`` carrying a message that says what happened and a
hint that says what to do. The UI and CLI show both; anything else that
escapes is a bug and is shown with its traceback in the job log.
"""

from __future__ import annotations


class VoiceLabError(Exception):
    """An error the user can act on: ``message`` plus an optional ``hint``."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

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
        need = f", need about {max(1, round(need_bytes / mb))} MB" if need_bytes else ""
        super().__init__(f"disk full at {path}: {free_bytes // mb} MB free{need}.",
                         "Free some space (or move the workspace with --workspace) and run it again; "
                         "nothing half-written was kept.")
        self.path = path
        self.free_bytes = free_bytes
        self.need_bytes = need_bytes


class UnsafeFileError(InvalidModelError):
    """A file asks to run code or rebuild objects when loaded (a malicious or foreign pickle); it was not loaded."""


class MissingAssetError(VoiceLabError):
    """A weight file the operation needs is not on disk.

    The message names the file, where it goes, and the command that fetches it.
    """

    def __init__(self, name: str, path: str, command: str = "", why: str = "") -> None:
        what = f"Missing model file '{name}'" + (f" (needed for {why})" if why else "")
        hint = f"Put it at {path}"
        if command:
            hint += f", or run: {command}"
        super().__init__(what + ".", hint + ".")
        self.name = name
        self.path = path
        self.command = command


class Cancelled(VoiceLabError):
    """Raised inside a job when the user cancelled it."""

    def __init__(self, message: str = "Cancelled by the user.") -> None:
        super().__init__(message)
