"""Where an import comes from: a folder, a file, a zip, an http(s) URL or a Hugging Face repo id.

Every source becomes one or more local folders to scan (:class:`Staged`).
A folder or a file is read where it is; zips (the source itself, or zips
holding models inside a folder, a download or a repo) are extracted into a
staging folder inside the workspace, entry by entry under the shared zip
rules (``engines.core.archives``): unsafe entries are skipped with the
reason, nothing expands past its declared size, and the whole archive must
fit the disk. URLs and repos download into the same staging folder, which
is removed when the import ends, whatever happens.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import shutil
import socket
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator

from engines.core.archives import decoded_name, extract_member, is_hidden_member, unsafe_member
from engines.core.errors import InvalidInputError, VoiceLabError
from engines.core.hooks import Hooks
from engines.core.settings import Workspace

MODEL_SUFFIXES = (".pth", ".index")
# What an import can use from an archive: models, indexes, and an experiment's configs, pieces and features.
KEEP_SUFFIXES = (*MODEL_SUFFIXES, ".json", ".wav", ".npy")
ARCHIVE_MAX_BYTES = 64 * 1024**3
DOWNLOAD_MAX_BYTES = 32 * 1024**3
HF_PATTERNS = ["*.pth", "*.index", "*.zip", "*.json"]
OTHER_WAY = "download the zip yourself and import the file or its folder"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")
_HF_HOSTS = ("huggingface.co", "www.huggingface.co", "hf.co")


@dataclass
class Staged:
    """The local folders an import scans; ``only`` restricts it to given files (a single-file source)."""

    kind: str  # "folder" | "file" | "zip" | "url" | "hf"
    label: str  # what the source was, safe to record (URLs without credentials or query)
    roots: list[tuple[Path, str]] = field(default_factory=list)  # (folder, display prefix)
    only: list[Path] | None = None
    skipped: list[dict] = field(default_factory=list)  # {file, reason} for archive entries left out
    name: str = ""  # a name the source suggests (zip stem, folder, repo, file)


def _hf_url_repo(url: str) -> str | None:
    """``owner/name`` of a Hugging Face model page URL (not of a file URL), else None."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname not in _HF_HOSTS:
        return None
    bits = [b for b in parts.path.split("/") if b]
    if len(bits) == 2 or (len(bits) >= 3 and bits[2] == "tree"):
        return f"{bits[0]}/{bits[1]}"
    return None


def is_archive(path: Path) -> bool:
    """A zip to unpack (a .pth is a zip too: torch's format, holding a data.pkl)."""
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return True
    if suffix in MODEL_SUFFIXES or not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return not any(n.endswith("data.pkl") for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def source_kind(src: str) -> str:
    """How ``src`` is read: "url", "hf" (repo id, ``hf://`` or a model page URL), "folder", "zip" or "file"."""
    s = (src or "").strip()
    if re.match(r"^https?://", s, re.IGNORECASE):
        return "hf" if _hf_url_repo(s) else "url"
    if s.startswith("hf://"):
        return "hf"
    p = Path(s).expanduser()
    if p.is_dir():
        return "folder"
    if p.is_file():
        return "zip" if is_archive(p) else "file"
    if _REPO_ID.match(s) and not s.startswith((".", "~")):
        return "hf"
    return "file"


def hf_repo_id(src: str) -> str:
    s = src.strip()
    if s.startswith("hf://"):
        s = s[len("hf://"):]
    return _hf_url_repo(s) or s.strip("/")


def safe_label(url: str) -> str:
    """A URL without user, password, query or fragment (a signed link's token is not recorded)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# -- zips ------------------------------------------------------------------------------------

def _relative(name: str) -> PurePosixPath | None:
    rel = PurePosixPath(name.replace("\\", "/"))
    parts = [p for p in rel.parts if p not in ("", ".")]
    if not parts or rel.is_absolute() or ".." in parts or ":" in parts[0]:
        return None
    return PurePosixPath(*parts)


def zip_has_models(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(PurePosixPath(i.filename).suffix.lower() in MODEL_SUFFIXES for i in zf.infolist())
    except (zipfile.BadZipFile, OSError):
        return False


def extract_zip(zpath: Path, dest: Path, hooks: Hooks, skipped: list[dict]) -> Path:
    """Extract the entries an import can use into ``dest``; unsafe ones are listed in ``skipped``."""
    try:
        zf = zipfile.ZipFile(zpath)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInputError(f"{zpath.name} is not a readable zip archive ({exc}).",
                                "Download it again, or unpack it yourself and import the folder.") from exc
    with zf:
        entries = []
        for info in zf.infolist():
            if info.is_dir() or is_hidden_member(info):
                continue
            display = f"{zpath.name}!{decoded_name(info)}"
            why = unsafe_member(info)
            rel = _relative(decoded_name(info))
            if why or rel is None:
                skipped.append({"file": display, "reason": why or "unsafe path in zip"})
                continue
            if rel.suffix.lower() in KEEP_SUFFIXES:
                entries.append((info, rel))
    total = sum(info.file_size for info, _ in entries)
    if total > ARCHIVE_MAX_BYTES:
        raise InvalidInputError(f"{zpath.name} expands to {total / 1e9:.1f} GB, more than an import accepts "
                                f"({ARCHIVE_MAX_BYTES >> 30} GB).", "Unpack it yourself and import the folder.")
    dest.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(dest).free
    if total > free:
        raise InvalidInputError(f"Not enough disk space to unpack {zpath.name}: it needs {total / 1e9:.1f} GB, "
                                f"{free / 1e9:.1f} GB are free.", "Free some space and import again.")
    done = 0
    for info, rel in entries:
        hooks.check_cancel()
        target = dest / rel
        if target.exists():  # two entries with one name (e.g. after decoding): keep the first
            skipped.append({"file": f"{zpath.name}!{rel}", "reason": "a second entry with the same name"})
            continue
        extract_member(zpath, info, target)
        done += info.file_size
        hooks.progress(done / max(1, total), f"unpacking {zpath.name}: {rel.name}")
    return dest


def _expand_zips(folder: Path, stage: Path, staged: Staged, hooks: Hooks, prefix: str = "") -> None:
    """Zips holding models inside ``folder`` are unpacked and scanned too (one level, not zips in zips)."""
    for z in sorted(folder.rglob("*.zip")):
        if z.is_file() and not any(part.startswith(".") for part in z.relative_to(folder).parts) and zip_has_models(z):
            out = extract_zip(z, stage / f"zip-{uuid.uuid4().hex[:8]}", hooks, staged.skipped)
            staged.roots.append((out, f"{prefix}{z.relative_to(folder)}!"))


# -- downloads -------------------------------------------------------------------------------

def _refuse_local(url: str) -> None:
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError):
        return  # the download itself reports the unknown host
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if ip.is_loopback or ip.is_link_local or ip.is_unspecified:
            raise InvalidInputError(f"{safe_label(url)} points at this machine or a link-local address.",
                                    "A studio reachable from the LAN does not fetch such addresses; "
                                    "put the file in the workspace and import it from there.")


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    def __init__(self, allow_local: bool) -> None:
        self.allow_local = allow_local

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 - urllib's signature
        if not re.match(r"^https?://", newurl, re.IGNORECASE):
            raise InvalidInputError(f"The download redirects to {newurl!r}.", "Only http(s) addresses are followed.")
        if not self.allow_local:
            _refuse_local(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _file_name(resp, url: str) -> str:  # noqa: ANN001 - an http.client response
    disposition = resp.headers.get("Content-Disposition") or ""
    m = re.search(r"filename\*=UTF-8''([^;]+)|filename=\"?([^\";]+)\"?", disposition, re.IGNORECASE)
    raw = urllib.parse.unquote(m.group(1) or m.group(2)) if m else urllib.parse.unquote(
        urllib.parse.urlsplit(resp.geturl() or url).path.rsplit("/", 1)[-1])
    name = re.sub(r"[\\/\x00-\x1f]", "_", raw).strip(" .")
    return name[:150] or "download"


def mirror_url(url: str) -> str:
    """A huggingface.co file URL rewritten to the HF_ENDPOINT mirror when one is set."""
    from engines.assets.download import hf_endpoint

    mirror = hf_endpoint()
    parts = urllib.parse.urlsplit(url)
    if mirror and parts.hostname in _HF_HOSTS:
        return mirror + parts.path + (f"?{parts.query}" if parts.query else "")
    return url


def download_url(url: str, dest: Path, hooks: Hooks, *, allow_local: bool) -> Path:
    """Download ``url`` into the folder ``dest`` (streamed, size-capped, cancellable); returns the file."""
    from engines.assets.download import require_online

    require_online(OTHER_WAY)
    url = mirror_url(url)
    if not allow_local:
        _refuse_local(url)
    opener = urllib.request.build_opener(_CheckedRedirects(allow_local))
    request = urllib.request.Request(url, headers={"User-Agent": "VoiceLab"})
    label = safe_label(url)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with opener.open(request, timeout=60) as resp:
            total = int(resp.headers.get("Content-Length") or 0)
            if total > DOWNLOAD_MAX_BYTES:
                raise InvalidInputError(f"{label} is {total / 1e9:.1f} GB, more than an import downloads.",
                                        "Download it yourself and import the file.")
            target = dest / _file_name(resp, url)
            part = target.with_name(target.name + ".part")
            done = 0
            with open(part, "wb") as out:
                while True:
                    hooks.check_cancel()
                    block = resp.read(1 << 20)
                    if not block:
                        break
                    done += len(block)
                    if done > DOWNLOAD_MAX_BYTES:
                        raise InvalidInputError(f"{label} is larger than an import downloads.",
                                                "Download it yourself and import the file.")
                    out.write(block)
                    hooks.progress(done / total if total else 0.0, f"downloading {target.name}: {done / 1e6:.1f} MB")
            if total and done != total:
                raise VoiceLabError(f"The download of {label} stopped after {done} of {total} bytes.",
                                    "Run the import again.")
            part.rename(target)
            return target
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = f"HTTP {exc.code} {exc.reason}" if isinstance(exc, urllib.error.HTTPError) else (
            getattr(exc, "reason", None) or exc)
        raise VoiceLabError(f"Download of {label} failed: {reason}.",
                            f"Check the address and that this machine is online, then try again; or {OTHER_WAY}.") from exc


def download_repo(repo: str, revision: str, dest: Path, hooks: Hooks) -> Path:
    """The models, indexes, zips and json files of a Hugging Face repo (honours HF_ENDPOINT)."""
    from engines.assets.download import call_hub, require_hub

    hub = require_hub(OTHER_WAY)
    call_hub(hub.snapshot_download, hooks, repo, other_way=OTHER_WAY, repo_id=repo, revision=revision or "main",
             local_dir=str(dest), allow_patterns=HF_PATTERNS)
    shutil.rmtree(dest / ".cache", ignore_errors=True)  # huggingface_hub's local_dir bookkeeping
    return dest


# -- the context manager -----------------------------------------------------------------------

STALE_STAGE_SECONDS = 24 * 3600


def _remove_stale_stages(parent: Path) -> None:
    """Staging folders of imports that a killed studio could not clean up (older than a day)."""
    import time

    if parent.is_dir():
        for old in parent.iterdir():
            with contextlib.suppress(OSError):
                if time.time() - old.stat().st_mtime > STALE_STAGE_SECONDS:
                    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_source(ws: Workspace, src: str, hooks: Hooks, *, revision: str = "main") -> Iterator[Staged]:
    """Make ``src`` local; yields the folders to scan; removes everything staged on exit."""
    src = (src or "").strip()
    if not src:
        raise InvalidInputError("No source given.", "Give a .zip, a folder, a .pth file, a URL or a Hugging Face repo id.")
    _remove_stale_stages(ws.root / ".import")
    stage = ws.root / ".import" / uuid.uuid4().hex[:12]
    kind = source_kind(src)
    try:
        if kind == "hf":
            repo = hf_repo_id(src)
            staged = Staged("hf", f"hf:{repo}@{revision or 'main'}", name=repo.rsplit("/", 1)[-1])
            root = download_repo(repo, revision, stage / "repo", hooks.scaled(0.0, 0.8))
            staged.roots.append((root, ""))
            _expand_zips(root, stage, staged, hooks.scaled(0.8, 1.0))
        elif kind == "url":
            file = download_url(src, stage / "download", hooks.scaled(0.0, 0.8), allow_local=not ws.settings.lan)
            staged = Staged("url", safe_label(src), name=Path(file.name).stem)
            if is_archive(file):
                staged.roots.append((extract_zip(file, stage / "zip", hooks.scaled(0.8, 1.0), staged.skipped),
                                     f"{file.name}!"))
            else:
                staged.roots.append((file.parent, ""))
                staged.only = [file]
        else:
            path = Path(src).expanduser()
            if not path.exists():
                raise InvalidInputError(f"{src} does not exist.",
                                        "Give a .zip, a folder, a .pth file, an http(s) URL or a Hugging Face repo id "
                                        "(owner/name).")
            path = path.resolve()
            staged = Staged(kind, str(path), name=path.stem if path.is_file() else path.name)
            if kind == "zip":
                staged.roots.append((extract_zip(path, stage / "zip", hooks, staged.skipped), f"{path.name}!"))
            elif kind == "folder":
                staged.roots.append((path, ""))
                _expand_zips(path, stage, staged, hooks)
            else:
                if path.suffix.lower() not in MODEL_SUFFIXES:
                    raise InvalidInputError(f"{path.name} is not a model: give a .pth, .index or .zip file, or a folder.")
                staged.roots.append((path.parent, ""))
                staged.only = [path]
        yield staged
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        with contextlib.suppress(OSError):
            stage.parent.rmdir()  # .import/ itself, when no other import is running
