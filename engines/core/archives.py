"""Zip archives from users: which entries are safe to extract, and extracting one within its size.

Shared by every importer that takes a zip (datasets, community voice models):
no absolute paths, no ``..``, no symbolic links, no encrypted entries, no
entry that expands far more than real audio or weights ever do (a zip
bomb), and no entry that writes more bytes than its header declared.
"""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path, PurePosixPath

from engines.core.atomic import require_space
from engines.core.errors import InvalidInputError

ZIP_MAX_RATIO = 200  # uncompressed/compressed per member; audio and model weights never compress like this
_RATIO_CHECK_ABOVE = 1 << 20  # small members may compress well (text, silence): only big ones are checked


def member_path(info: zipfile.ZipInfo) -> PurePosixPath:
    """The entry's name as a POSIX path (backslashes written by Windows tools count as separators)."""
    return PurePosixPath(info.filename.replace("\\", "/"))


def decoded_name(info: zipfile.ZipInfo) -> str:
    """The entry's name as its author wrote it.

    Zips made without the UTF-8 flag are read as cp437 by Python; names written on Chinese Windows
    (GBK) or as unflagged UTF-8 are recovered from those bytes. ASCII names are unchanged.
    """
    if info.flag_bits & 0x800:
        return info.filename
    try:
        raw = info.filename.encode("cp437")
    except UnicodeEncodeError:
        return info.filename
    for encoding in ("utf-8", "gbk"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return info.filename


def is_hidden_member(info: zipfile.ZipInfo) -> bool:
    """macOS resource forks and dot files: never user content."""
    base = member_path(info).name
    return info.filename.startswith("__MACOSX/") or base.startswith(".")


def unsafe_member(info: zipfile.ZipInfo) -> str | None:
    """Why a zip entry must not be extracted, or None when it is safe."""
    name = info.filename
    posix = member_path(info)
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or posix.is_absolute():
        return "unsafe path in zip (absolute path)"
    if any(part == ".." for part in posix.parts):
        return "unsafe path in zip (path traversal '..')"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "unsafe entry in zip (symbolic link)"
    if info.flag_bits & 0x1:
        return "encrypted zip entry"
    if info.compress_size and info.file_size / max(1, info.compress_size) > ZIP_MAX_RATIO \
            and info.file_size > _RATIO_CHECK_ABOVE:
        return f"suspicious compression ratio ({info.file_size // max(1, info.compress_size)}:1, zip bomb?)"
    return None


def extract_member(zip_path: Path, info: zipfile.ZipInfo, out: Path, chunk: int = 1 << 20) -> Path:
    """Copy one entry to ``out``, refusing to write more than the entry's declared size (zip-bomb guard).

    The caller has checked the entry with :func:`unsafe_member`; ``out`` is chosen by the caller,
    never taken from the entry's name.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    limit = info.file_size
    require_space(out.parent, limit)
    written = 0
    try:
        with zipfile.ZipFile(zip_path) as zf, zf.open(info) as src, open(out, "wb") as dst:
            while True:
                block = src.read(chunk)
                if not block:
                    break
                written += len(block)
                if written > limit:
                    raise InvalidInputError(f"Zip entry {zip_path.name}!{info.filename} is larger than its header says.",
                                            "The archive is corrupt or malicious; it was not imported.")
                dst.write(block)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        out.unlink(missing_ok=True)
        raise InvalidInputError(f"Zip entry {zip_path.name}!{info.filename} cannot be read ({exc}).",
                                "The archive is damaged; download or pack it again.") from exc
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return out
