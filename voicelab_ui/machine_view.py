"""The machine view shared by the training steps: CPU/RAM/GPU samples as a plot and a line, the TensorBoard link.

Samples are the ``kind: "system"`` records a training appends to its
``metrics.jsonl`` (engines.core.sysmon). The TensorBoard link starts (or
reuses) a studio-managed TensorBoard (engines.core.tboard) on a folder and
points the browser at it on the host it used to reach the studio.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from engines.core.errors import VoiceLabError
from voicelab_ui.i18n import add, t, text

MAX_POINTS = 1500

add({
    "machine.plot": ("Machine (% of CPU, RAM, GPU load and GPU memory)", "机器负载（CPU、内存、GPU 利用率与显存，%）"),
    "machine.none": ("No machine samples yet (taken every few seconds while a training runs).",
                     "暂无机器采样（训练时每隔几秒采样一次）。"),
    "machine.tensorboard": ("Open TensorBoard", "打开 TensorBoard"),
    "machine.tensorboard_info": ("Starts TensorBoard on this experiment (once; it stops with the studio).",
                                 "为该实验启动 TensorBoard（只启动一次，随工作室一起停止）。"),
})


def thin(records: list[dict[str, Any]], limit: int = MAX_POINTS) -> list[dict[str, Any]]:
    stride = max(1, -(-len(records) // limit))
    return records if stride == 1 else records[::stride] + ([records[-1]] if (len(records) - 1) % stride else [])


def system_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows {minutes, percent, series} for the machine plot (minutes since the first sample)."""
    records = thin(records)
    if not records:
        return []
    t0 = float(records[0].get("time", 0))
    rows = []
    for r in records:
        minutes = round((float(r.get("time", t0)) - t0) / 60, 3)
        for key, name in (("cpu_percent", "CPU"), ("ram_percent", "RAM")):
            if isinstance(r.get(key), (int, float)):
                rows.append({"minutes": minutes, "percent": float(r[key]), "series": name})
        for g in r.get("gpus", []):
            if "util_percent" in g:
                rows.append({"minutes": minutes, "percent": g["util_percent"], "series": f"GPU{g['index']} load"})
            if g.get("mem_total_mb"):
                rows.append({"minutes": minutes, "percent": round(100 * g["mem_used_mb"] / g["mem_total_mb"], 1),
                             "series": f"GPU{g['index']} memory"})
    return rows


def machine_markdown(records: list[dict[str, Any]]) -> str:
    """The latest sample in words: CPU, RAM, the training's memory, and each GPU's readings."""
    if not records:
        return text("machine.none")
    r = records[-1]
    age = max(0, int(time.time() - float(r.get("time", time.time()))))
    parts = [f"CPU {r.get('cpu_percent', 0):.0f}%",
             f"RAM {r.get('ram_used_mb', 0) / 1024:.1f} GB ({r.get('ram_percent', 0):.0f}%)",
             f"training processes {r.get('proc_rss_mb', 0) / 1024:.2f} GB"]
    for g in r.get("gpus", []):
        bits = [f"GPU{g['index']}"]
        if "util_percent" in g:
            bits.append(f"{g['util_percent']:.0f}%")
        if "mem_used_mb" in g and "mem_total_mb" in g:
            bits.append(f"{g['mem_used_mb'] / 1024:.1f}/{g['mem_total_mb'] / 1024:.0f} GB")
        if "temp_c" in g:
            bits.append(f"{g['temp_c']:.0f} °C")
        if "power_w" in g:
            bits.append(f"{g['power_w']:.0f} W")
        parts.append(" ".join(bits))
    return " · ".join(parts) + f"  _(sample {age} s ago, {r.get('host', '')})_"


def machine_values(records: list[dict[str, Any]]) -> tuple[Any, str]:
    """(plot frame, latest-sample line) from an experiment's system records."""
    import pandas as pd

    return pd.DataFrame(system_rows(records), columns=["minutes", "percent", "series"]), machine_markdown(records)


def build_machine(prefix: str) -> tuple[Any, Any]:
    plot = gr.LinePlot(x="minutes", y="percent", color="series", label=t("machine.plot"), y_lim=[0, 100],
                       elem_id=f"{prefix}-plot-machine")
    text = gr.Markdown(elem_id=f"{prefix}-machine")
    return plot, text


def build_tensorboard(prefix: str) -> tuple[Any, Any]:
    with gr.Row():
        button = gr.Button(t("machine.tensorboard"), size="sm", scale=0, min_width=180, elem_id=f"{prefix}-tensorboard")
        link = gr.Markdown(t("machine.tensorboard_info"), elem_id=f"{prefix}-tensorboard-link")
    return button, link


def studio_bind_host(ws: Any) -> str:
    """Where the studio listens (TensorBoard listens there too)."""
    return "0.0.0.0" if ws.settings.lan else (ws.settings.host or "127.0.0.1")


def tensorboard_link(ws: Any, logdir: Path, request_host: str = "") -> str:
    """Start (or reuse) TensorBoard on ``logdir``; a Markdown link for the browser that asked."""
    from engines.core.tboard import ensure_tensorboard

    server = ensure_tensorboard(logdir, studio_bind_host(ws))
    host = request_host.rsplit(":", 1)[0] if request_host and not request_host.startswith("[") else ""
    if not all(c.isalnum() or c in ".-" for c in host):  # a Host header is the browser's to set: only a host name
        host = ""
    url = f"http://{host}:{server.port}/" if host else server.url
    return f"[{text('machine.tensorboard')} ↗]({url}) — `{url}`"


def wire_tensorboard(ws: Any, exp: Any, button: Any, out: Any, logdir_of: Callable[[str], Path],
                     api_name: str) -> None:
    """``button`` opens TensorBoard on ``logdir_of(experiment)`` (which raises for an unknown experiment)."""

    def open_tb(name: str | None, request: gr.Request) -> str:
        try:
            logdir = logdir_of(name.strip() if isinstance(name, str) else "")
            return tensorboard_link(ws, logdir, (request.headers.get("host") or "") if request else "")
        except VoiceLabError as exc:
            return f"✘ {exc.message} {exc.hint}".strip()
        except Exception as exc:  # TensorBoard failed to start: say why, keep the page
            return f"✘ TensorBoard: {type(exc).__name__}: {exc}"

    button.click(open_tb, [exp], out, api_name=api_name)
