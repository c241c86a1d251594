"""In a Chinese page, a failed job's error and hint, its state and the job table read in Chinese."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf


@pytest.mark.slow
def test_failed_conversion_shows_error_and_hint_in_chinese(tmp_path):
    from browser import browser_page, studio
    from test_rvc_convert import make_fast_voice

    wsdir = tmp_path / "ws"
    (wsdir / "weights").mkdir(parents=True)
    make_fast_voice(wsdir / "weights" / "tiny.pth", "v1", "40k", f0=True)
    src = tmp_path / "voice.wav"
    sf.write(src, (0.3 * np.sin(2 * np.pi * 180 * np.arange(16000) / 16000)).astype(np.float32), 16000)
    # no HuBERT anywhere: the conversion job fails with MissingAssetError
    with studio(wsdir, env={"VOICELAB_HUBERT": ""}) as (url, _), browser_page(locale="zh-CN") as page:
        page.goto(url)
        page.get_by_role("tab", name="推理转换").click()
        page.locator("#vl-vc-files input[type=file]").set_input_files(str(src))
        page.wait_for_timeout(800)
        page.locator("#vl-vc-run").click()
        status = page.locator("#vl-job-status")
        page.wait_for_function("() => (document.querySelector('#vl-job-status')?.innerText || '').includes('失败')",
                               timeout=90000)
        shown = status.inner_text()
        assert "缺少模型文件“hubert_base.pt”（声音转换需要它）。" in shown, shown
        assert "解决办法: 请把它放到 " in shown and "hubert_base.pt，或运行：voicelab assets download" in shown, shown
        assert "Missing model file" not in shown and "Put it at" not in shown
        assert "用 tiny.pth 转换 1 个输入" in shown and "试听通道" in shown, shown  # title and lane too
        bar = page.locator("#vl-job-progress").inner_text()
        assert "缺少模型文件" in bar, bar
        # the job history: headers and cells in Chinese, set with the rows
        page.get_by_role("tab", name="任务").click()
        page.wait_for_function("() => (document.querySelector('#vl-jobs-table')?.innerText || '').includes('失败')",
                               timeout=30000)
        table = page.locator("#vl-jobs-table").inner_text()
        assert "状态" in table and "消息" in table and "缺少模型文件" in table, table
