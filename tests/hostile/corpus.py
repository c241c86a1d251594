"""Our own hostile corpus: generated inputs, each with the outcome the studio must give.

Every case is made here from nothing (no fixtures on disk), written by ``build(root)``, and
says which surface it attacks:

``import``    a file or folder handed to ``dataset create`` / ``/dataset_import``
``convert``   an input file for ``rvc convert`` / ``/convert``
``model``     a model file for ``rvc ckpt info`` / ``/model_info``
``index``     an index for ``rvc convert --index`` / ``/convert``
``model_dir`` a CosyVoice model dir for ``cosyvoice doctor`` / ``/cosyvoice_synth``

``expect`` is a regular expression the error (or, for imports, the skip reason) must match;
``accept`` cases must go through (robustness, not refusal). Cases that could run code carry
a ``marker`` file that must still not exist afterwards. Argument and path attacks against the
HTTP API live in ``test_hostile_corpus.py`` next to the endpoints they call.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

SR = 16000


@dataclass(frozen=True)
class Case:
    id: str
    surface: str
    make: Callable[[Path, "Case"], Path]
    expect: str = ""  # regex the message must match (ignored for accept cases)
    accept: bool = False
    marker: bool = False  # the case's payload would create ``marker_path(root)`` if it ran
    notes: str = ""
    extra: dict = field(default_factory=dict)

    def marker_path(self, root: Path) -> Path:
        return root / f"PWNED-{self.id}"


def tone(seconds: float, sr: int = SR, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def _wav(root: Path, name: str, x: np.ndarray, sr: int = SR, subtype: str = "PCM_16") -> Path:
    p = root / name
    sf.write(str(p), x, sr, subtype=subtype)
    return p


def _bytes(root: Path, name: str, data: bytes) -> Path:
    p = root / name
    p.write_bytes(data)
    return p


# -- audio ------------------------------------------------------------------------------------

def nan_wav(root: Path, c: Case) -> Path:
    x = tone(2.0)
    x[8000:8100] = np.nan
    return _wav(root, f"{c.id}.wav", x, subtype="FLOAT")


def inf_wav(root: Path, c: Case) -> Path:
    x = tone(2.0)
    x[100] = np.inf
    return _wav(root, f"{c.id}.wav", x, subtype="FLOAT")


def truncated_wav(root: Path, c: Case) -> Path:
    full = io.BytesIO()
    sf.write(full, tone(3.0), SR, format="WAV", subtype="PCM_16")
    return _bytes(root, f"{c.id}.wav", full.getvalue()[:44 + 2 * 150])  # header says 3 s, 150 samples follow


def header_only_wav(root: Path, c: Case) -> Path:
    full = io.BytesIO()
    sf.write(full, tone(1.0), SR, format="WAV", subtype="PCM_16")
    return _bytes(root, f"{c.id}.wav", full.getvalue()[:44])


def empty_wav(root: Path, c: Case) -> Path:
    return _bytes(root, f"{c.id}.wav", b"")


def text_as_wav(root: Path, c: Case) -> Path:
    return _bytes(root, f"{c.id}.wav", b"this is not audio at all, just a text file pretending\n" * 20)


def zero_rate_wav(root: Path, c: Case) -> Path:
    data = bytearray(_wav(root, f"{c.id}.wav", tone(1.0)).read_bytes())
    data[24:28] = struct.pack("<I", 0)
    return _bytes(root, f"{c.id}.wav", bytes(data))


def garbage_mp3(root: Path, c: Case) -> Path:
    return _bytes(root, f"{c.id}.mp3", np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())


def riff_then_junk(root: Path, c: Case) -> Path:
    return _bytes(root, f"{c.id}.wav", b"RIFF\x24\x00\x01\x00WAVEfmt " + b"\xff" * 400)


def silent_wav(root: Path, c: Case) -> Path:
    return _wav(root, f"{c.id}.wav", np.zeros(3 * SR, np.float32))


def tiny_wav(root: Path, c: Case) -> Path:
    return _wav(root, f"{c.id}.wav", tone(0.01))


def huge_amplitude_wav(root: Path, c: Case) -> Path:
    return _wav(root, f"{c.id}.wav", tone(2.0) * 1e20, subtype="FLOAT")


def stereo_48k_flac(root: Path, c: Case) -> Path:
    x = tone(2.0, 48000)
    return _wav(root, f"{c.id}.flac", np.stack([x, 0.5 * x], axis=1), sr=48000)


# -- archives ---------------------------------------------------------------------------------

def _wav_bytes(seconds: float = 2.0) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, tone(seconds), SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def zip_traversal(root: Path, c: Case) -> Path:
    p = root / f"{c.id}.zip"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("../../evil.wav", _wav_bytes())
    return p


def zip_absolute(root: Path, c: Case) -> Path:
    p = root / f"{c.id}.zip"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr(zipfile.ZipInfo("/etc/evil.wav"), _wav_bytes())
    return p


def zip_symlink(root: Path, c: Case) -> Path:
    p = root / f"{c.id}.zip"
    info = zipfile.ZipInfo("link.wav")
    info.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    return p


def zip_bomb(root: Path, c: Case) -> Path:
    p = root / f"{c.id}.zip"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.wav", b"\0" * (8 << 20))
    return p


def zip_not_a_zip(root: Path, c: Case) -> Path:
    return _bytes(root, f"{c.id}.zip", b"PK\x03\x04 but then nothing that a zip reader can use" * 10)


def zip_encrypted(root: Path, c: Case) -> Path:
    """An entry flagged as encrypted (general purpose bit 0, set in the local and central headers)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("secret.wav", _wav_bytes(0.5))
    data = bytearray(buf.getvalue())
    for sig, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        pos = data.find(sig)
        data[pos + at] |= 0x1
    return _bytes(root, f"{c.id}.zip", bytes(data))


def zip_nested(root: Path, c: Case) -> Path:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("a.wav", _wav_bytes())
    p = root / f"{c.id}.zip"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("inner.zip", inner.getvalue())
    return p


def folder_with_zip(root: Path, c: Case) -> Path:
    folder = root / c.id
    folder.mkdir()
    with zipfile.ZipFile(folder / "take.zip", "w") as zf:
        zf.writestr("take1.wav", _wav_bytes(2.5))
    (folder / "notes.txt").write_text("not audio")
    return folder


# -- model files ------------------------------------------------------------------------------

class _Exec:
    """Pickles to ``os.system("touch <marker>")``: what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def pickle_exec_pth(root: Path, c: Case) -> Path:
    p = root / f"{c.id}.pth"
    p.write_bytes(pickle.dumps({"weight": _Exec(c.marker_path(root)), "config": [0] * 18}, protocol=2))
    return p


def torch_exec_pth(root: Path, c: Case) -> Path:
    import torch

    p = root / f"{c.id}.pth"
    torch.save({"weight": {"x": torch.zeros(1)}, "payload": _Exec(c.marker_path(root))}, p)
    return p


def text_as_pth(root: Path, c: Case) -> Path:
    return _bytes(root, f"{c.id}.pth", b"hello, I am a model\n")


def tensors_not_rvc(root: Path, c: Case) -> Path:
    import torch

    p = root / f"{c.id}.pth"
    torch.save({"state_dict": {"layer.weight": torch.randn(4, 4)}}, p)
    return p


def truncated_pth(root: Path, c: Case) -> Path:
    from test_rvc_convert import make_fast_voice

    good = make_fast_voice(root / f"{c.id}.full.pth", "v1", "40k", f0=True)
    data = good.read_bytes()
    good.unlink()
    return _bytes(root, f"{c.id}.pth", data[: len(data) // 2])


def bad_config_pth(root: Path, c: Case) -> Path:
    import torch

    from test_rvc_convert import make_fast_voice

    good = make_fast_voice(root / f"{c.id}.full.pth", "v1", "40k", f0=True)
    obj = torch.load(good, map_location="cpu", weights_only=True)
    good.unlink()
    obj["config"] = ["x"] * 3
    torch.save(obj, root / f"{c.id}.pth")
    return root / f"{c.id}.pth"


# -- indexes ----------------------------------------------------------------------------------

def garbage_index(root: Path, c: Case) -> Path:
    return _bytes(root, f"{c.id}.index", np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def _faiss_index(root: Path, name: str, dim: int, n: int) -> Path:
    import faiss

    index = faiss.IndexFlatL2(dim)
    if n:
        index.add(np.random.default_rng(3).standard_normal((n, dim)).astype(np.float32))
    faiss.write_index(index, str(root / name))
    return root / name


def wrong_dim_index(root: Path, c: Case) -> Path:
    return _faiss_index(root, f"{c.id}.index", 768, 64)  # a v2 index for the v1 model


def empty_index(root: Path, c: Case) -> Path:
    return _faiss_index(root, f"{c.id}.index", 256, 0)


# -- CosyVoice model dirs ---------------------------------------------------------------------

def yaml_exec_model_dir(root: Path, c: Case) -> Path:
    """A model dir whose yaml runs a command when upstream (hyperpyyaml) or an unsafe yaml loader reads it."""
    folder = root / c.id
    folder.mkdir()
    marker = c.marker_path(root)
    (folder / "cosyvoice2.yaml").write_text(
        f'sample_rate: 24000\n'
        f'payload: !apply:os.system ["touch {marker}"]\n'
        f'payload2: !!python/object/apply:os.system ["touch {marker}"]\n', encoding="utf-8")
    for name in ("llm.pt", "flow.pt", "hift.pt", "campplus.onnx", "speech_tokenizer_v2.onnx"):
        (folder / name).write_bytes(b"\0" * 16)
    return folder


def spk2info_exec_model_dir(root: Path, c: Case) -> Path:
    folder = yaml_exec_model_dir(root, c)
    (folder / "cosyvoice2.yaml").write_text("sample_rate: 24000\n", encoding="utf-8")
    (folder / "spk2info.pt").write_bytes(pickle.dumps({"me": _Exec(c.marker_path(root))}, protocol=2))
    return folder


CASES: list[Case] = [
    # audio files, through the dataset import
    Case("nan_wav", "import", nan_wav, r"non-finite samples \(NaN or infinity\), the first at 0\.500 s"),
    Case("inf_wav", "import", inf_wav, r"non-finite samples"),
    Case("truncated_wav", "import", truncated_wav,
         r"too short for a clip: 0\.009 s of audio \(the file is truncated: its header declares 3\.000 s\); "
         r"the minimum is 0\.5 s"),
    Case("header_only_wav", "import", header_only_wav, r"no audio samples.*truncated: its header declares 1\.000 s"),
    Case("empty_wav", "import", empty_wav, r"empty \(0 bytes\)"),
    Case("text_as_wav", "import", text_as_wav, r"not audio \(it is a text file\)"),
    Case("zero_rate_wav", "import", zero_rate_wav, r"sample rate of 0 Hz"),
    Case("garbage_mp3", "import", garbage_mp3, r"Cannot decode 'garbage_mp3\.mp3'"),
    Case("riff_then_junk", "import", riff_then_junk, r"Cannot decode 'riff_then_junk\.wav'"),
    Case("silent_wav", "import", silent_wav, r"no clips from 3\.00 s of audio: every piece was silent or shorter"),
    Case("tiny_wav", "import", tiny_wav, r"too short for a clip: 0\.010 s of audio; the minimum is 0\.5 s"),
    Case("huge_amplitude_wav", "import", huge_amplitude_wav, accept=True,
         notes="finite but absurd levels: normalised into clips, never NaN"),
    Case("stereo_48k_flac", "import", stereo_48k_flac, accept=True),
    # archives
    Case("zip_traversal", "import", zip_traversal, r"path traversal"),
    Case("zip_absolute", "import", zip_absolute, r"absolute path"),
    Case("zip_symlink", "import", zip_symlink, r"symbolic link"),
    Case("zip_bomb", "import", zip_bomb, r"suspicious compression ratio"),
    Case("zip_not_a_zip", "import", zip_not_a_zip, r"not a readable zip archive"),
    Case("zip_encrypted", "import", zip_encrypted, r"encrypted zip entry"),
    Case("zip_nested", "import", zip_nested, r"inner\.zip.*not an audio file"),
    Case("folder_with_zip", "import", folder_with_zip, accept=True,
         notes="a zip inside an imported folder is imported like an uploaded zip"),
    # audio for conversion
    Case("convert_truncated", "convert", truncated_wav,
         r"too short for conversion: 0\.009 s of audio \(the file is truncated: its header declares 3\.000 s\); "
         r"the minimum is 0\.02 s"),
    Case("convert_nan", "convert", nan_wav, r"non-finite samples"),
    Case("convert_text", "convert", text_as_wav, r"not audio"),
    # model files
    Case("pickle_exec_pth", "model", pickle_exec_pth, r"it contains objects a model file should not contain", marker=True),
    Case("torch_exec_pth", "model", torch_exec_pth, r"it contains objects a model file should not contain", marker=True),
    Case("text_as_pth", "model", text_as_pth, r"text_as_pth\.pth cannot be loaded .*not a readable PyTorch file"),
    Case("tensors_not_rvc", "model", tensors_not_rvc, r"no RVC generator weights inside"),
    Case("truncated_pth", "model", truncated_pth, r"truncated_pth\.pth cannot be loaded .*not a readable PyTorch file"),
    Case("bad_config_pth", "model", bad_config_pth, r"its 'config' is not the 18-value RVC list"),
    # indexes
    Case("garbage_index", "index", garbage_index, r"is not a faiss index"),
    Case("wrong_dim_index", "index", wrong_dim_index, r"holds 768-d vectors \(RVC v2\) but the model is RVC v1"),
    Case("empty_index", "index", empty_index, r"is empty"),
    # CosyVoice model dirs (yaml is code)
    Case("yaml_exec_model_dir", "model_dir", yaml_exec_model_dir, r"model dirs are read only from", marker=True),
    Case("spk2info_exec_model_dir", "model_dir", spk2info_exec_model_dir, r"model dirs are read only from",
         marker=True),
]
