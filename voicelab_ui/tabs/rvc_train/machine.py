"""Train tab: smoothed losses, the machine view of an RVC experiment, its TensorBoard folder.

The curves read the experiment's ``metrics.jsonl``: ``step`` records for the
losses (drawn smoothed, with the raw values faint behind, as TensorBoard does)
and ``system`` records for the machine (voicelab_ui.machine_view draws them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engines.core.errors import InvalidInputError
from voicelab_ui import machine_view
from voicelab_ui.machine_view import machine_values

SMOOTHING = 0.6  # TensorBoard's default exponential-moving-average weight
MAX_POINTS = 1500
# Strong colours for the smoothed curves, a pale tint of the same for the raw values behind them.
PALETTE = {"G total": ("#1f77b4", "#c6dbef"), "mel": ("#ff7f0e", "#fdd0a2"), "kl": ("#2ca02c", "#c7e9c0"),
           "fm": ("#9467bd", "#dadaeb"), "D": ("#d62728", "#fcbba1")}
RAW = " (raw)"


def ema(values: list[float], weight: float = SMOOTHING) -> list[float]:
    """Debiased exponential moving average (the first points are not pulled towards zero)."""
    out, last, norm = [], 0.0, 0.0
    for v in values:
        last = last * weight + (1 - weight) * v
        norm = norm * weight + (1 - weight)
        out.append(last / norm)
    return out


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


def machine_frame(ws: Any, exp: str) -> tuple[Any, str]:
    from engines.rvc.ops.catalog import read_metrics

    return machine_values(read_metrics(ws, exp, "system") if exp else [])


def experiment_logdir(ws: Any, exp: str) -> Path:
    """The experiment's tensorboard/ folder (losses from rank 0, machine samples in system/)."""
    from engines.rvc.ops.catalog import experiment_exists

    if not exp:
        raise InvalidInputError("Pick an experiment first.")
    if not experiment_exists(ws, exp):
        raise InvalidInputError(f"There is no experiment '{exp}'.", "Pick one from the list (or start a training).")
    return ws.experiment_dir(exp) / "tensorboard"


def tensorboard_link(ws: Any, exp: str, request_host: str = "") -> str:
    """Start (or reuse) TensorBoard on the experiment; a Markdown link for the browser that asked."""
    return machine_view.tensorboard_link(ws, experiment_logdir(ws, exp), request_host)
