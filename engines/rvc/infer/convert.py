"""Batch voice conversion: parameters, output naming, model caching, per-file reports.

``convert_files`` is what the Convert tab, ``voicelab rvc convert`` and the
``/convert`` API call. Loaded voices, the content encoder and indexes stay in
a size-limited LRU cache between calls, so a second conversion starts
immediately. A batch goes on past a file that cannot be decoded or converted
and reports it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from engines.core.errors import Cancelled, InvalidInputError, VoiceLabError
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.messages import msg
from engines.core.params import param, to_dict, validate
from engines.rvc.pitch.f0 import F0_METHODS

OUTPUT_FORMATS = ("wav", "flac", "ogg", "mp3", "m4a")
# The pipeline's zero-phase high-pass needs more than 18 samples at 16 kHz; one HuBERT frame is 20 ms.
MIN_CONVERT_SECONDS = 0.02


UPSTREAM_COMPATIBLE = "upstream-compatible"
# What the upstream-compatible preset sets: RVC 2026 main's behaviour end to end (tests/golden/pipeline).
PRESETS: dict[str, dict[str, Any]] = {
    "none": {},
    UPSTREAM_COMPATIBLE: {"unvoiced": "interpolate", "length": "upstream", "normalize": False},
}


@dataclass
class ConvertParams:
    """Conversion parameters (one definition for the Convert tab, the CLI and the API)."""

    transpose: int = param(0, min=-24, max=24, help="Pitch shift in semitones (+12 = one octave up)")
    f0_method: str = param("rmvpe", choices=F0_METHODS, help="Pitch extraction method")
    index_rate: float = param(0.75, min=0.0, max=1.0, step=0.01,
                              help="How much of the index's voice features to blend in (0 = index unused)")
    filter_radius: int = param(3, min=0, max=7, help="harvest only: >= 3 median-filters the pitch curve")
    resample_sr: int = param(0, min=0, max=48000, help="Output sample rate (0 = the model's own; else 16000..48000)")
    rms_mix_rate: float = param(0.25, min=0.0, max=1.0, step=0.01,
                                help="Loudness envelope: 0 = follow the input, 1 = keep the model's output")
    protect: float = param(0.33, min=0.0, max=0.5, step=0.01,
                           help="Protect breaths/consonants from the index (0.5 = off)")
    speaker_id: int = param(0, min=0, max=10_000, help="Speaker id of multi-speaker models")
    output_format: str = param("wav", choices=OUTPUT_FORMATS, help="Output file format")
    normalize: bool = param(True, help="Peak-normalise the output to -0.1 dBFS (--no-normalize keeps levels)")
    seed: int = param(-1, min=-1, max=2**31 - 1, help="Noise seed for repeatable output (-1 = random)")
    unvoiced: Literal["keep-zero", "interpolate"] = param(
        "keep-zero", help="Frames without pitch: keep-zero = unvoiced, as trained (RVC <= 2024; protect works); "
                          "interpolate = pitch filled in from the neighbours (RVC 2026 main; protect has no effect)")
    length: Literal["exact", "upstream"] = param(
        "exact", help="Output length: exact = the input's duration to the sample; upstream = RVC's own "
                      "(10-20 ms short, 10 ms dropped per odd-length segment) and its loudness envelope")
    preset: Literal["none", "upstream-compatible"] = param(
        "none", help="upstream-compatible = RVC 2026 main's output end to end (sets unvoiced interpolate, "
                     "length upstream, no normalisation; exact f0 windows); none = the values as given")

    def check(self) -> "ConvertParams":
        """Validate, and apply the preset (its values replace the ones given)."""
        validate(self)
        if self.resample_sr and self.resample_sr < 16000:
            raise InvalidInputError(f"resample_sr must be 0 or between 16000 and 48000 (got {self.resample_sr}).")
        for name, value in PRESETS[self.preset].items():
            setattr(self, name, value)
        return self

    def name_tag(self) -> str:
        """The parameters as a file-name fragment (what differs between two conversions of one file)."""
        parts = [f"{self.f0_method}", f"k{self.transpose:+d}", f"ir{self.index_rate:g}", f"pr{self.protect:g}",
                 f"rms{self.rms_mix_rate:g}"]
        if self.f0_method == "harvest":
            parts.append(f"fr{self.filter_radius}")
        if self.speaker_id:
            parts.append(f"sid{self.speaker_id}")
        if self.resample_sr:
            parts.append(f"{self.resample_sr}Hz")
        if self.preset != "none":
            parts.append("upstream" if self.preset == UPSTREAM_COMPATIBLE else self.preset)
        else:
            if not self.normalize:
                parts.append("raw")
            if self.unvoiced != "keep-zero":
                parts.append("uvinterp")
            if self.length != "exact":
                parts.append("uplen")
        if self.seed >= 0:
            parts.append(f"seed{self.seed}")
        return "_".join(parts)


# ---------------------------------------------------------------------------
# a small thread-safe LRU cache limited by item count and estimated bytes


class LRUCache:
    def __init__(self, max_items: int, max_bytes: int) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._lock = threading.RLock()

    def get_or_load(self, key: Any, load: Callable[[], Any], size: Callable[[Any], int] = lambda _: 0) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
        value = load()  # outside the lock: loading can take seconds
        with self._lock:
            self._items[key] = (value, int(size(value)))
            self._items.move_to_end(key)
            while len(self._items) > self.max_items or (
                len(self._items) > 1 and sum(s for _, s in self._items.values()) > self.max_bytes
            ):
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[Any]:
        with self._lock:
            return list(self._items)


def _module_bytes(module: Any) -> int:
    try:
        return sum(p.numel() * p.element_size() for p in module.parameters())
    except Exception:
        return 0


VOICES = LRUCache(max_items=4, max_bytes=2 * 2**30)
ENCODERS = LRUCache(max_items=1, max_bytes=2 * 2**30)
INDEXES = LRUCache(max_items=3, max_bytes=2 * 2**30)


def clear_caches() -> None:
    for cache in (VOICES, ENCODERS, INDEXES):
        cache.clear()


def _file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), int(st.st_mtime_ns), int(st.st_size)


def get_voice(path: str | Path, device: Any) -> Any:
    """The loaded voice for ``path`` (cached; a changed file is reloaded)."""
    from engines.rvc.infer.voice import load_voice

    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"Model file not found: {p}", "Pick a .pth model from weights/ or give its path.")
    return VOICES.get_or_load((_file_key(p), str(device)), lambda: load_voice(p, device=device),
                              lambda vm: _module_bytes(vm.net))


def get_encoder(path: str | Path, device: Any) -> Any:
    from engines.rvc.content.hubert import load_content_encoder

    p = Path(path)
    key = (_file_key(p) if p.is_file() else str(p), str(device))
    return ENCODERS.get_or_load(key, lambda: load_content_encoder(p, device=str(device)),
                                lambda enc: _module_bytes(enc.model))


def get_index(path: str | Path, expected_dim: int) -> Any:
    from engines.rvc.index import load_index

    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"Index file not found: {p}", "Build the index first, or convert without one.")
    loaded = INDEXES.get_or_load(_file_key(p), lambda: load_index(p), lambda li: li.nbytes)
    if loaded.dim != expected_dim:  # re-run the check with the model's dimension for the clear message
        load_index(p, expected_dim)
    return loaded


# ---------------------------------------------------------------------------
# inputs and outputs


def expand_inputs(inputs: str | Path | Sequence[str | Path]) -> list[Path]:
    """Files as given, folders expanded to the audio files inside (recursively, sorted)."""
    from engines.core.audio import AUDIO_EXTENSIONS

    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found.extend(sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in AUDIO_EXTENSIONS
                                and not q.name.startswith(".")))
        else:
            found.append(p)
    if not found:
        raise InvalidInputError("No audio files to convert.", "Give one or more audio files or a folder holding them.")
    return found


def output_name(source: Path, model_path: Path, params: ConvertParams) -> str:
    return f"{source.stem}__{Path(model_path).stem}__{params.name_tag()}.{params.output_format}"


@dataclass
class FileOutcome:
    input: str
    output: str | None = None
    sidecar: str | None = None
    ok: bool = False
    error: str | None = None
    hint: str | None = None
    error_ref: str | None = None  # the error's catalogue id + params (engines.core.messages), to show it translated
    input_seconds: float = 0.0
    seconds: float = 0.0
    sample_rate: int = 0
    streamed: bool = False
    times: dict[str, float] = field(default_factory=dict)

    @property
    def real_time_factor(self) -> float:
        """Processing seconds per second of audio."""
        return self.seconds / self.input_seconds if self.input_seconds else 0.0


@dataclass
class ConvertReport:
    model: str
    index: str | None
    params: dict[str, Any]
    files: list[FileOutcome]
    load_seconds: float = 0.0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def converted(self) -> list[FileOutcome]:
        return [f for f in self.files if f.ok]

    @property
    def failed(self) -> list[FileOutcome]:
        return [f for f in self.files if not f.ok]

    def stage_totals(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for f in self.files:
            for k, v in f.times.items():
                total[k] = total.get(k, 0.0) + v
        return total

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for f, fd in zip(self.files, d["files"]):
            fd["real_time_factor"] = f.real_time_factor
        d["stage_totals"] = self.stage_totals()
        return d

    def summary(self) -> str:
        lines = [f"{len(self.converted)}/{len(self.files)} converted with {Path(self.model).name}"
                 + (f" + {Path(self.index).name}" if self.index else "")]
        lines += [f"  warning: {w}" for w in self.warnings]
        for f in self.files:
            if f.ok:
                lines.append(f"  ok   {Path(f.input).name} -> {f.output} ({f.input_seconds:.1f} s audio, "
                             f"{f.seconds:.1f} s, RTF {f.real_time_factor:.2f})")
            else:
                lines.append(f"  FAIL {Path(f.input).name}: {f.error}" + (f" ({f.hint})" if f.hint else ""))
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# the operation


def _device(ws: Any) -> Any:
    from engines.core.device import pick_device

    return pick_device(getattr(ws.settings, "device", "auto"))


def load_models(ws: Any, model_path: str | Path, index_path: str | Path | None, params: ConvertParams,
                device: Any = None, encoder_path: str | Path | None = None,
                rmvpe_path: str | Path | None = None) -> Any:
    """Voice + content encoder (+ index) for a conversion, from the caches.

    After the voice (it says whether pitch is needed), every other weight
    file is checked before any of them loads: all missing ones are named in
    one error, each with its CLI flag and environment variable. A HuBERT or
    RMVPE file that is not the official one is used, with the warning
    ``voicelab assets check`` gives for it (``Models.warnings``).
    """
    from engines.rvc.index import DIM_OF_VERSION
    from engines.rvc.infer.segment import Models
    from engines.rvc.pitch.f0 import method_problem
    from engines.rvc.encoders import DEFAULT_ENCODER, encoder_for_model, recorded_encoder
    from engines.rvc.weights import HUBERT, RMVPE, raise_first_problems

    device = device if device is not None else _device(ws)
    vm = get_voice(model_path, device)
    if params.speaker_id >= int(getattr(vm, "n_speakers", 1) or 1):
        raise InvalidInputError(
            f"Speaker id {params.speaker_id} does not exist in {Path(model_path).name} "
            f"(it has {vm.n_speakers} speaker embeddings).",
            f"Use a speaker id between 0 and {vm.n_speakers - 1}.",
        )
    # The encoder the voice was trained with (models that record none: HuBERT base), unless one is given.
    hubert_like = bool(encoder_path) or recorded_encoder(vm.encoder)[0] == DEFAULT_ENCODER
    enc_path = (HUBERT.resolve(encoder_path, ws.settings) if hubert_like
                else encoder_for_model({**vm.encoder, "path": str(vm.path)}, ws.settings))
    rmvpe = RMVPE.resolve(rmvpe_path, ws.settings)
    uses_rmvpe = bool(vm.f0) and params.f0_method == "rmvpe"
    problems: list[VoiceLabError] = [] if enc_path.exists() else [HUBERT.missing(enc_path, "voice conversion")]
    if vm.f0 and (f0_problem := method_problem(params.f0_method, rmvpe)):
        problems.append(f0_problem)
    raise_first_problems(problems)
    from engines.assets.check import weight_warning

    checked = ((HUBERT.asset, enc_path if hubert_like else None), (RMVPE.asset, rmvpe if uses_rmvpe else None))
    warnings = [w for name, path in checked
                if path is not None and (w := weight_warning(ws.settings, name, path))]
    encoder = get_encoder(enc_path, device)
    if hasattr(encoder, "dim") and encoder.dim(vm.version) != DIM_OF_VERSION[vm.version]:
        from engines.core.errors import InvalidModelError

        raise InvalidModelError(
            f"The content encoder {enc_path.name} gives {encoder.dim(vm.version)}-d features but "
            f"{Path(model_path).name} is an RVC {vm.version} model ({DIM_OF_VERSION[vm.version]}-d).",
            "Use HuBERT base (hubert_base.pt / ContentVec) as the content encoder.",
        )
    index = None
    if index_path and params.index_rate > 0:
        index = get_index(index_path, DIM_OF_VERSION[vm.version])
    return Models(voice=vm, encoder=encoder, index=index, device=device, warnings=warnings)


def vc_options(ws: Any, params: ConvertParams, rmvpe_path: str | Path | None = None) -> Any:
    """The pipeline's options for ``params`` (checked: the preset applied)."""
    from engines.rvc.infer.pipeline import VCOptions
    from engines.rvc.weights import RMVPE

    rmvpe = RMVPE.resolve(rmvpe_path, ws.settings if ws is not None else None)
    return VCOptions(
        transpose=params.transpose, f0_method=params.f0_method, index_rate=params.index_rate,
        filter_radius=params.filter_radius, rms_mix_rate=params.rms_mix_rate, protect=params.protect,
        speaker_id=params.speaker_id, resample_sr=params.resample_sr, normalize=params.normalize,
        unvoiced=params.unvoiced, length=params.length, exact_f0=params.preset == UPSTREAM_COMPATIBLE,
        rmvpe_path=str(rmvpe),
    )


def convert_files(
    ws: Any,
    model_path: str | Path,
    inputs: str | Path | Sequence[str | Path],
    params: ConvertParams | None = None,
    index_path: str | Path | None = None,
    out_dir: str | Path | None = None,
    hooks: Hooks | None = None,
    *,
    encoder_path: str | Path | None = None,
    rmvpe_path: str | Path | None = None,
    options: Any = None,
) -> ConvertReport:
    """Convert files (or folders of files) with one model; one outcome per file.

    Outputs go to ``out_dir`` (default ``<workspace>/outputs``) named
    ``<input>__<model>__<params>.<fmt>`` with a ``.json`` sidecar holding the
    parameters (the preset applied), model/index and timings. ``encoder_path``
    / ``rmvpe_path`` replace the configured HuBERT / RMVPE files. ``options``
    (a pipeline VCOptions) overrides the derived pipeline options (tests,
    benchmarks).
    """
    from engines.core.atomic import require_space, write_json
    from engines.core.audio import probe_audio, require_duration
    from engines.rvc.infer.files import convert_file
    from engines.rvc.models import noise

    hooks = ensure_hooks(hooks)
    params = (params or ConvertParams()).check()
    files = expand_inputs(inputs)
    out = Path(out_dir) if out_dir else ws.outputs
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    hooks.progress(0.0, msg("progress.loading_models"))
    models = load_models(ws, model_path, index_path, params, encoder_path=encoder_path, rmvpe_path=rmvpe_path)
    load_s = time.perf_counter() - t0
    opts = options if options is not None else vc_options(ws, params, rmvpe_path)
    report = ConvertReport(str(model_path), str(models.index.path) if models.index is not None else None,
                           to_dict(params), [], load_seconds=load_s, warnings=list(models.warnings))
    for warning in report.warnings:
        hooks.log(f"warning: {warning}")
    for i, src in enumerate(files):
        hooks.check_cancel()
        outcome = FileOutcome(input=str(src))
        sub = hooks.scaled(i / len(files), (i + 1) / len(files))
        sub.progress(0.0, msg("progress.converting_file", name=src.name))
        start = time.perf_counter()
        target = out / output_name(src, Path(model_path), params)
        try:
            info = probe_audio(src)
            require_duration(info, MIN_CONVERT_SECONDS, "conversion")
            require_space(out, int(info.duration * 48000 * 2))  # at most 48 kHz 16-bit mono out
            ctx = noise.seeded_noise(params.seed) if params.seed >= 0 else _nullcontext()
            with ctx:
                res = convert_file(models, src, target, params.output_format, opts, sub)
            outcome.output = str(res.output)
            outcome.ok = True
            outcome.input_seconds = res.input_seconds
            outcome.sample_rate = res.sample_rate
            outcome.streamed = res.streamed
            outcome.times = res.times
        except Cancelled:
            raise
        except VoiceLabError as exc:
            outcome.error, outcome.hint, outcome.error_ref = exc.message, exc.hint or None, exc.ref() or None
            hooks.log(f"{src.name}: {exc.message}")
        except Exception as exc:  # a bug or an unexpected library error: report it, keep going
            outcome.error = f"{type(exc).__name__}: {exc}"
            hooks.log(f"{src.name}: unexpected error\n{traceback.format_exc()}")
        outcome.seconds = time.perf_counter() - start
        if outcome.ok:
            sidecar = target.with_name(target.name + ".json")
            write_json(sidecar, {
                "input": str(src), "output": outcome.output, "model": str(model_path),
                "model_sha256": getattr(models.voice, "sha256", None), "index": report.index,
                "params": to_dict(params), "sample_rate": outcome.sample_rate,
                "input_seconds": outcome.input_seconds, "seconds": outcome.seconds,
                "times": outcome.times, "warnings": report.warnings, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            })
            outcome.sidecar = str(sidecar)
            hooks.log(f"{src.name} -> {target.name} ({outcome.seconds:.1f} s)")
        report.files.append(outcome)
    report.seconds = time.perf_counter() - t0
    hooks.progress(1.0, msg("progress.converted_files", done=len(report.converted), total=len(files)))
    return report


def _nullcontext() -> Any:
    import contextlib

    return contextlib.nullcontext()
