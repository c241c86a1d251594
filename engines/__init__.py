"""VoiceLab engines: all audio and ML work, importable without gradio.

Importing this package (or any ``engines.*`` module that does not build a
model) must not import torch, so the CLI and the studio start fast.
"""

__version__ = "0.1.0"
