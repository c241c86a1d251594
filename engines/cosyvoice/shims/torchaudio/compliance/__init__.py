"""``torchaudio.compliance``: Kaldi-compatible features."""

from . import kaldi  # noqa: F401
