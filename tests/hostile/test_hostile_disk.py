"""A full disk, for real: a small tmpfs holds the workspace (root only; skipped with the reason otherwise).

An import, a conversion and an upload (with and without a declared size) each end with
"disk full at <path>: N MB free, need about M MB", leave no partial file behind, and the
studio keeps serving. The write path that libsndfile reports as "System error." is checked too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytestmark = pytest.mark.slow

DISK_MB = 40
LEAVE_FREE_MB = 3  # below the studio's spare room: every sizeable write is refused up front
DISK_FULL = r"disk full at .*: \d+ MB free, need about \d+ MB"


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (run as root, as CI does, to test a real full disk)")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(disk: Path, leave_mb: float) -> Path:
    """Write a ballast file so that about ``leave_mb`` MB stay free."""
    ballast = disk / "ballast.bin"
    free = shutil.disk_usage(disk).free
    size = max(0, free - int(leave_mb * 1024 * 1024))
    with open(ballast, "ab") as fh:
        fh.write(b"\0" * size)
    return ballast


def partial_files(root: Path) -> list[Path]:
    """Anything half-written: atomic temp files, Gradio's upload temp files."""
    return [p for p in root.rglob("*") if p.is_file() and (".part" in p.name or
                                                           (p.parent.name == "gradio" and p.name.startswith("tmp")))]


def test_an_atomic_write_that_hits_enospc_says_disk_full(small_disk):
    from engines.core.atomic import atomic_path
    from engines.core.errors import DiskFullError

    fill(small_disk, 0.5)
    target = small_disk / "big.wav"
    with pytest.raises(DiskFullError, match=DISK_FULL):
        with atomic_path(target) as tmp:  # no size given: the write itself runs out of space
            sf.write(str(tmp), np.zeros(2_000_000, np.float32), 16000, subtype="FLOAT")
    assert not target.exists() and not partial_files(small_disk)


def test_import_conversion_and_upload_on_a_full_disk(small_disk, tiny_models, tmp_path):
    from browser import studio
    from corpus import tone
    from studio_http import StudioHTTP

    ws = small_disk / "ws"
    (ws / "weights").mkdir(parents=True)
    (ws / "imports").mkdir()
    shutil.copy(tiny_models[0], ws / "weights" / "tiny.pth")
    speech = ws / "imports" / "speech.wav"
    sf.write(speech, tone(30.0), 16000)  # 0.9 MB; its clips or its conversion need more than is left
    with studio(ws, env={"VOICELAB_HUBERT": str(tiny_models[1])}, timeout=180) as (url, _):
        http = StudioHTTP(url)
        try:
            fill(small_disk, LEAVE_FREE_MB)
            # import: refused before the first clip; the dataset holds nothing half-made
            ans = http.call("/dataset_import", "full", None, str(ws / "imports"))
            assert ans.ok, ans.text
            rec = http.wait_job(ans.value[0])
            assert rec["state"] == "failed" and _matches(rec["error"]), rec
            assert not list((ws / "datasets").rglob("*.wav"))
            # conversion: refused before writing; no partial output
            ans = http.call("/convert_job", None, str(ws / "imports"), "tiny", "none")
            assert ans.ok, ans.text
            rec = http.wait_job(ans.value[0])
            assert rec["state"] == "failed" and _matches(rec["error"]), rec
            assert not list((ws / "outputs").rglob("*.wav"))
            # upload with a declared size: refused at once; chunked (no size): runs out of space, cleaned up
            with open(speech, "rb") as fh:
                r = http.http.post(f"{url}gradio_api/upload", files={"files": ("speech.wav", fh)})
            assert r.status_code == 507 and _matches(r.json()["detail"]), r.text
            r = http.http.post(f"{url}gradio_api/upload", content=_chunked_multipart(speech),
                               headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"})
            assert r.status_code == 507 and _matches(r.json()["detail"]), r.text
            assert not partial_files(ws)
            assert shutil.disk_usage(small_disk).free > (LEAVE_FREE_MB - 1) * 1024 * 1024  # nothing left behind
            # and the studio still serves
            assert http.call("/job_status", rec["id"]).ok
            assert http.http.get(url).status_code == 200
        finally:
            http.close()


BOUNDARY = uuid.uuid4().hex


def _chunked_multipart(path: Path):
    """The multipart body as a generator: httpx sends it chunked, without a Content-Length."""
    yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{path.name}\"\r\n"
           "Content-Type: audio/wav\r\n\r\n").encode()
    data = path.read_bytes()
    for _ in range(6):  # several times the file: more than the disk holds
        for i in range(0, len(data), 1 << 16):
            yield data[i : i + (1 << 16)]
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def _matches(text: str) -> bool:
    import re

    return re.search(DISK_FULL, text or "") is not None
