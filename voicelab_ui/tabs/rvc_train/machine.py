"""Train tab: the machine view beside the loss curves, smoothed losses, and the TensorBoard link.

The curves read the experiment's ``metrics.jsonl``: ``step`` records for the
losses (drawn smoothed, with the raw values faint behind, as TensorBoard does)
and ``system`` records for the machine (CPU, RAM and, where NVML reports
them, GPU load, memory, temperature and power).
"""

from __future__ import annotations

import time
from typing import Any

import gradio as gr

from engines.core.errors import InvalidInputError, VoiceLabError
from voicelab_ui.i18n import add, t, text

SMOOTHING = 0.6  # TensorBoard's default exponential-moving-average weight
MAX_POINTS = 1500
# Strong colours for the smoothed curves, a pale tint of the same for the raw values behind them.
PALETTE = {"G total": ("#1f77b4", "#c6dbef"), "mel": ("#ff7f0e", "#fdd0a2"), "kl": ("#2ca02c", "#c7e9c0"),
           "fm": ("#9467bd", "#dadaeb"), "D": ("#d62728", "#fcbba1")}
RAW = " (raw)"

add({
    "rvc.tr.machine": ("Machine (% of CPU, RAM, GPU load and GPU memory)", "机器负载（CPU、内存、GPU 利用率与显存，%）"),
    "rvc.tr.machine_none": ("No machine samples yet (taken every few seconds while a training runs).",
                            "暂无机器采样（训练时每隔几秒采样一次）。"),
    "rvc.tr.tensorboard": ("Open TensorBoard", "打开 TensorBoard"),
    "rvc.tr.tensorboard_info": ("Starts TensorBoard on this experiment (once; it stops with the studio).",
                                "为该实验启动 TensorBoard（只启动一次，随工作室一起停止）。"),
})


def ema(values: list[float], weight: float = SMOOTHING) -> list[float]:
    """Debiased exponential moving average (the first points are not pulled towards zero)."""
    out, last, norm = [], 0.0, 0.0
    for v in values:
        last = last * weight + (1 - weight) * v
        norm = norm * weight + (1 - weight)
        out.append(last / norm)
    return out


def _thin(records: list[dict[str, Any]], limit: int = MAX_POINTS) -> list[dict[str, Any]]:
    stride = max(1, -(-len(records) // limit))
    return records if stride == 1 else records[::stride] + ([records[-1]] if (len(records) - 1) % stride else [])


def smoothed_loss_rows(records: list[dict[str, Any]], series: tuple[tuple[str, str], ...]) -> list[dict[str, Any]]:
    """Rows {step, loss, series} for each loss: the raw values (``name (raw)``) and their smoothed curve."""
    rows: list[dict[str, Any]] = []
    for key, name in series:
        points = [(int(r.get("step", 0)), float(r[key])) for r in records
                  if isinstance(r.get(key), (int, float)) and r[key] == r[key] and abs(r[key]) != float("inf")]
        if not points:
            continue
        smooth = ema([v for _, v in points])  # over every step, then thinned, so thinning does not change it
        stride = max(1, -(-len(points) // MAX_POINTS))
        for i, (step, value) in enumerate(points):
            if i % stride and i != len(points) - 1:
                continue
            rows.append({"step": step, "loss": value, "series": name + RAW})
            rows.append({"step": step, "loss": smooth[i], "series": name})
    return rows


def loss_colors() -> dict[str, str]:
    colors = {}
    for name, (strong, pale) in PALETTE.items():
        colors[name], colors[name + RAW] = strong, pale
    return colors


def system_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows {minutes, percent, series} for the machine plot (minutes since the first sample)."""
    records = _thin(records)
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
        return text("rvc.tr.machine_none")
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


def machine_frame(ws: Any, exp: str) -> tuple[Any, str]:
    import pandas as pd

    from engines.rvc.ops.catalog import read_metrics

    records = read_metrics(ws, exp, "system") if exp else []
    return pd.DataFrame(system_rows(records), columns=["minutes", "percent", "series"]), machine_markdown(records)


def build_machine() -> tuple[Any, Any]:
    plot = gr.LinePlot(x="minutes", y="percent", color="series", label=t("rvc.tr.machine"), y_lim=[0, 100],
                       elem_id="vl-rvc-plot-machine")
    text = gr.Markdown(elem_id="vl-rvc-machine")
    return plot, text


def studio_bind_host(ws: Any) -> str:
    """Where the studio listens (TensorBoard listens there too)."""
    return "0.0.0.0" if ws.settings.lan else (ws.settings.host or "127.0.0.1")


def tensorboard_link(ws: Any, exp: str, request_host: str = "") -> str:
    """Start (or reuse) TensorBoard on the experiment; a Markdown link for the browser that asked."""
    from engines.core.tboard import ensure_tensorboard
    from engines.rvc.ops.catalog import experiment_exists

    exp = (exp or "").strip() if isinstance(exp, str) else ""
    if not exp:
        raise InvalidInputError("Pick an experiment first.")
    if not experiment_exists(ws, exp):
        raise InvalidInputError(f"There is no experiment '{exp}'.", "Pick one from the list (or start a training).")
    server = ensure_tensorboard(ws.experiment_dir(exp) / "tensorboard", studio_bind_host(ws))
    host = request_host.rsplit(":", 1)[0] if request_host and not request_host.startswith("[") else ""
    if not all(c.isalnum() or c in ".-" for c in host):  # a Host header is the browser's to set: only a host name
        host = ""
    url = f"http://{host}:{server.port}/" if host else server.url
    return f"[{text('rvc.tr.tensorboard')} ↗]({url}) — `{url}`"


def wire_tensorboard(ws: Any, exp: Any, button: Any, out: Any) -> None:
    def open_tb(name: str | None, request: gr.Request) -> str:
        try:
            return tensorboard_link(ws, name or "", (request.headers.get("host") or "") if request else "")
        except VoiceLabError as exc:
            return f"✘ {exc.message} {exc.hint}".strip()
        except Exception as exc:  # TensorBoard failed to start: say why, keep the page
            return f"✘ TensorBoard: {type(exc).__name__}: {exc}"

    button.click(open_tb, [exp], out, api_name="rvc_tensorboard")
