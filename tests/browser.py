"""Start the studio in a subprocess and drive it with Playwright + Debian Chromium."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def studio(workspace: Path, *extra: str, env: dict | None = None, timeout: float = 90) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``app.py`` on a free port; yield (url, process); stop it afterwards."""
    port = free_port()
    log = open(workspace.parent / f"studio-{port}.log", "w")
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("VOICELAB_AUTH", None) if "VOICELAB_AUTH" not in (env or {}) else None
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--workspace", str(workspace), "--port", str(port), *extra],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True,
    )
    tls = "--https" in extra or "--ssl-cert" in extra
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/"
    context = ssl._create_unverified_context() if tls else None  # a self-signed certificate: tests pin it
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError("studio exited: " + Path(log.name).read_text())
        try:
            urllib.request.urlopen(url, timeout=2, context=context)
            break
        except urllib.error.HTTPError:
            break  # it answers (e.g. 401 with a login)
        except Exception:
            if time.time() > deadline:
                proc.kill()
                raise RuntimeError("studio did not start: " + Path(log.name).read_text())
            time.sleep(0.3)
    try:
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextlib.contextmanager
def browser_page(locale: str = "en-US", viewport: dict | None = None) -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(locale=locale, viewport=viewport or {"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(30000)
        try:
            yield page
        finally:
            context.close()
            browser.close()
