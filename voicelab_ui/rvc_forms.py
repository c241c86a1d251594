"""Conversion forms shared by the Convert and A/B tabs: pitch-method choices, widget tweaks, index choices."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from engines.core.paths import confine, confine_value
from engines.core.settings import Workspace
from engines.rvc.ops.catalog import list_indexes, resolve_index, resolve_model
from voicelab_ui.i18n import add, t

F0_PREFERENCE = ("rmvpe", "fcpe", "crepe-tiny", "swift", "harvest", "pm")

add({
    "param.transpose": ("Transpose (semitones)", "变调（半音）"),
    "help.transpose": ("Pitch shift in semitones: +12 = one octave up (male → female ≈ +12, female → male ≈ -12)",
                       "以半音为单位变调：+12 = 升高一个八度（男转女约 +12，女转男约 -12）"),
    "param.f0_method": ("Pitch extraction method", "音高提取算法"),
    "help.f0_method": ("rmvpe is the usual best; pm is fastest; crepe/fcpe are network-based",
                       "rmvpe 通常效果最好；pm 最快；crepe/fcpe 基于神经网络"),
    "param.index_rate": ("Index rate", "检索特征占比"),
    "help.index_rate": ("How much of the index's voice features to blend in (0 = index unused)",
                        "混入索引中音色特征的比例（0 = 不使用索引）"),
    "param.filter_radius": ("Median filter radius", "中值滤波半径"),
    "help.filter_radius": ("harvest only: >= 3 median-filters the pitch curve (less muffled breathing)",
                           "仅 harvest：>= 3 时对音高曲线做中值滤波，可减轻哑音"),
    "param.resample_sr": ("Resample output to (Hz)", "输出重采样 (Hz)"),
    "help.resample_sr": ("0 = the model's own rate; otherwise 16000..48000", "0 = 使用模型自身采样率；否则为 16000..48000"),
    "param.rms_mix_rate": ("Volume envelope mix", "响度因子"),
    "help.rms_mix_rate": ("0 = follow the input's loudness envelope, 1 = keep the model's output",
                          "0 = 跟随输入的响度包络，1 = 保持模型输出的响度"),
    "param.protect": ("Protect consonants", "保护清辅音"),
    "help.protect": ("Protect breaths and voiceless consonants from the index (0.5 = off)",
                     "保护清辅音和呼吸声不受索引影响（0.5 = 关闭）"),
    "param.speaker_id": ("Speaker ID", "说话人 ID"),
    "help.speaker_id": ("Speaker of multi-speaker models (0 for most models)", "多说话人模型的说话人（多数模型为 0）"),
    "param.output_format": ("Output format", "输出格式"),
    "help.output_format": ("File format of the converted audio", "转换结果的文件格式"),
    "help.convert_normalize": ("Peak-normalise the output to -0.1 dBFS (off keeps the model's levels)",
                               "将输出峰值归一化到 -0.1 dBFS（关闭则保持模型原电平）"),
    "param.seed": ("Seed", "随机种子"),
    "help.seed": ("Noise seed for repeatable output (-1 = random)", "噪声种子，相同种子输出相同（-1 = 随机）"),
    "param.unvoiced": ("Unvoiced frames", "清音帧"),
    "help.unvoiced": ("keep-zero: frames without pitch stay unvoiced, as models are trained (consonants and breaths "
                      "stay noisy; protect works). interpolate: pitch filled in from the neighbours, as RVC 2026 "
                      "(no dropouts, but consonants may buzz; protect has no effect)",
                      "keep-zero：无音高的帧保持清音，与训练一致（辅音和呼吸声保持噪声质感，保护参数有效）。"
                      "interpolate：用相邻帧插值补全音高，同 RVC 2026（无断音，但辅音可能带嗡声，保护参数无效）"),
    "param.length": ("Output length", "输出长度"),
    "help.length": ("exact: the input's duration to the sample. upstream: RVC's own length (10–20 ms short, "
                    "10 ms dropped at each odd-length segment) and its loudness envelope",
                    "exact：与输入时长逐采样一致。upstream：与 RVC 原版一致（短 10–20 毫秒，"
                    "每个奇数长度分段丢 10 毫秒）及其响度包络"),
    "param.preset": ("Preset", "预设"),
    "help.preset": ("upstream-compatible: RVC 2026 main's output end to end (sets unvoiced interpolate, length "
                    "upstream, no normalisation). none: the values as set here",
                    "upstream-compatible：与 RVC 2026 主线输出完全一致（设为插值清音、原版长度、不归一化）。"
                    "none：使用此处设置的值"),
})


def f0_method_choices(probe: Any, rmvpe: str | None = None) -> tuple[list[tuple[str, str]], str, str]:
    avail = probe(rmvpe)
    choices = [(m if ok else f"{m} ✗", m) for m, (ok, _) in avail.items()]
    default = next((m for m in F0_PREFERENCE if avail.get(m, (False, ""))[0]), "pm")
    why = "\n".join(f"- **{m}**: {reason}" for m, (ok, reason) in avail.items() if not ok)
    return choices, default, why


def form_overrides(cls: type, min_width: int) -> dict[str, dict]:
    """Widget overrides for a ConvertParams form: narrow-screen width, and normalize's conversion help."""
    out: dict[str, dict] = {f.name: {"min_width": min_width} for f in dataclasses.fields(cls)}
    out["normalize"]["info"] = t("help.convert_normalize")
    return out


def confined_model(ws: Workspace, model: str | None) -> Path:
    """A model chosen on the page (a name in weights/ or a path), refused outside the readable folders."""
    return confine(ws, resolve_model(ws, confine_value(ws, model, "model")), "model")


def link_preset(widgets: dict[str, Any]) -> None:
    """Choosing a preset shows the values it sets in their own widgets (the engine applies them anyway)."""
    import gradio as gr

    from engines.rvc.infer.convert import PRESETS

    names = [n for n in ("unvoiced", "length", "normalize") if n in widgets]
    if "preset" not in widgets or not names:
        return

    def show(preset: str) -> list[Any]:
        values = PRESETS.get(preset, {})
        return [gr.update(value=values[n]) if n in values else gr.update() for n in names]

    widgets["preset"].change(show, [widgets["preset"]], [widgets[n] for n in names])


def confined_index(ws: Workspace, idx: str, model_path: Path) -> str | None:
    """The index to use ("auto"/"none"/a path), refusing paths outside the readable folders."""
    found = resolve_index(ws, confine_value(ws, idx, "index"), model_path)
    if found:
        confine(ws, found, "index")
    return found


def index_choices(ws: Workspace) -> list[tuple[str, str]]:
    return [("auto", "auto"), ("none", "none")] + [(r["name"], r["path"]) for r in list_indexes(ws)]
