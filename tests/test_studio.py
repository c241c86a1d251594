"""The studio page in headless Chromium, the LAN login policy, and port handling."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import urllib.request

import pytest
from browser import ROOT, browser_page, free_port, studio

pytestmark = pytest.mark.browser


def test_page_job_log_streams_and_cancel(tmp_path):
    ws = tmp_path / "ws"
    with studio(ws) as (url, _), browser_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="Dataset").wait_for()
        for name in ["Dataset", "RVC Train", "Index", "Convert", "A/B Listen", "CosyVoice", "Jobs", "Settings / Assets"]:
            assert page.get_by_role("tab", name=name).count() == 1
        page.get_by_role("tab", name="Settings / Assets").click()
        page.get_by_text("Machine speed check").click()
        page.locator("#vl-bench-seconds input[type=number]").fill("120")  # still running after the reload below
        page.locator("#vl-bench-seconds input[type=number]").press("Tab")
        page.locator("#vl-bench-run").click()
        log = page.locator("#vl-job-log textarea")
        page.wait_for_function(
            "() => (document.querySelector('#vl-job-log textarea')||{}).value?.includes('GFLOP/s')", timeout=30000)
        first = log.input_value()
        assert "Machine throughput check" in first
        page.wait_for_function(
            "n => (document.querySelector('#vl-job-log textarea')||{}).value.split('GFLOP/s').length > n",
            arg=first.count("GFLOP/s") + 1, timeout=15000)
        # Reload: the panel reopens the running job.
        page.reload()
        page.wait_for_function(
            "() => (document.querySelector('#vl-job-log textarea')||{}).value?.includes('GFLOP/s')", timeout=30000)
        page.locator("#vl-job-cancel").click()
        page.wait_for_function(
            "() => document.querySelector('#vl-job-progress .vl-progress')?.dataset.state === 'cancelled'", timeout=15000)
        assert "Cancelled" in log.input_value()


def test_lan_without_credentials_requires_login(tmp_path):
    ws = tmp_path / "ws"
    with studio(ws, "--lan") as (url, proc):
        # The generated password is printed once; anonymous requests get no app config.
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + "config", timeout=5)
        assert err.value.code in (401, 403)
        body = urllib.request.urlopen(url, timeout=5).read().decode()
        assert "voicelab_job_id" not in body and "Machine speed check" not in body
    log = (tmp_path / f"studio-{url.rsplit(':', 1)[1].strip('/')}.log").read_text()
    assert re.search(r"user: voicelab\s+password: \S{8,}", log)


def test_busy_port_gives_a_clear_message(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run([sys.executable, str(ROOT / "app.py"), "--workspace", str(tmp_path / "w"),
                              "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert f"Port {port}" in out.stderr and "--port 0" in out.stderr


def test_refuses_public_bind_without_lan(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "app.py"), "--workspace", str(tmp_path / "w"),
                          "--host", "0.0.0.0", "--port", str(free_port())], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--lan" in out.stderr


def test_chinese_browser_and_language_switch(tmp_path):
    with studio(tmp_path / "ws") as (url, _):
        with browser_page(locale="zh-CN") as page:
            page.goto(url)
            page.get_by_role("tab", name="数据集").wait_for()
            for name in ["RVC 训练", "索引", "推理转换", "任务"]:
                assert page.get_by_role("tab", name=name).count() == 1
        with browser_page(locale="en-US") as page:
            page.goto(url)
            page.get_by_role("tab", name="Settings / Assets").click()
            page.locator("#vl-language input").click()
            page.get_by_role("option", name="zh-CN").click()
            page.get_by_role("tab", name="数据集").wait_for()
